// Package chaos runs GCM Tracker as deployed, on loopback, under a steady
// load of writes while it breaks it on purpose, then checks that nothing
// acknowledged was lost or doubled and that the read models are what a
// fresh rebuild of the stream gives.
//
// The system under test is the gcmtrack binary in separate processes, as
// in production: three NATS JetStream nodes (gcmtrack nats-node, from
// deploy/nats/nats-{1,2,3}.conf with loopback ports and temporary store
// directories), a PostgreSQL cluster (deploy/embedded/pgcluster), two API
// processes (gcmtrack run --target=api, stream and idempotency bucket at
// three replicas) and two projector processes (--target=projector: one
// leads each projection build, the other stands by).
//
// The load generator sends a realistic mix of commands at a fixed rate:
// States joining and leaving ISCMs, records (activities, partnerships,
// agenda items, submissions) created and taken through their lifecycle, and
// questionnaire answers. Every write carries an Idempotency-Key; a write
// that fails without a definite answer (a transport error, a time-out, a
// 5xx, a key still in progress) is retried with the same key against the
// other API until it gets one. Meanwhile faults are injected in turn: kill
// -9 of the projector that leads (the time until the standby has taken its
// builds over and moved their checkpoints is measured), kill -9 of an API
// process while requests are in flight (then a restart), kill -9 of a NATS
// node (then a restart on the same store), SIGSTOP of a NATS node for ten
// seconds, and a restart of PostgreSQL.
//
// At the end the whole stream is read and checked: every acknowledged write
// is in it exactly once, at the position it was acknowledged with (matched
// by the Nats-Msg-Id the API derives from the idempotency key); no message
// id appears twice; no write that was finally refused left an event; each
// aggregate's events form an unbroken version chain (each was appended
// expecting the previous event of its subject). The read models the
// projectors kept through all this must equal, table by table, a fresh
// rebuild of the same stream into another database. The run prints a
// summary and fails on any loss or mismatch.
//
// The program is chaos/cmd/gcmchaos; `make chaos` builds and runs it.
package chaos
