// Package engine runs projections: it reads the event stream from JetStream
// and applies it in batches to PostgreSQL read models.
//
// Rules it keeps:
//   - A batch of events and the projection's checkpoint are written in the
//     same transaction, so a crash at any point neither loses nor doubles an
//     event. PostgreSQL, not a consumer's ack state, is the truth for
//     position: the stream is read through an ordered consumer that keeps no
//     server state and restarts from the checkpoint.
//   - Each build of a projection lives in a schema of its own (p_<name>_<n>);
//     queries read views in the schema named after the projection, which
//     point at the active build. Changing a projection's version builds a new
//     generation from position 1 while the old one keeps serving, then swaps
//     the views in one transaction.
//   - One instance applies a build at a time: the runner holds a PostgreSQL
//     advisory lock on the very connection it writes with, and every
//     checkpoint update is a compare-and-set, so a replica that lost its lock
//     cannot write behind the new leader's back.
//   - Transient errors (database gone, serialization failures) retry with
//     backoff from the checkpoint. An event that cannot be applied is parked
//     in gcm.dead_letters with its error; the events after it go on.
package engine
