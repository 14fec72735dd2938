package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"gcmtrack/events"
)

// DeadLetter is an event a projection build parked because it could not
// apply it (gcm.dead_letters). The events after it were applied; the read
// model lacks this one's effect until it is retried or the projection is
// rebuilt.
type DeadLetter struct {
	ID         int64
	Projection string
	Generation int
	// BuildStatus is the status of the build that parked it: active,
	// building or retired.
	BuildStatus string
	Position    uint64
	Subject     string
	EventID     string
	EventType   string
	// Error is why it was parked, or why its last retry failed.
	Error      string
	ParkedAt   time.Time
	ResolvedAt *time.Time
}

// DeadLetterFilter selects dead letters; the zero value selects all.
type DeadLetterFilter struct {
	// Projection, when set, selects one projection's.
	Projection string
	// Positions, when set, selects the events at these stream positions.
	Positions []uint64
	// Unresolved leaves out those already retried successfully.
	Unresolved bool
}

const listDeadLettersSQL = `
SELECT d.id, d.name, d.generation, coalesce(b.status, 'retired'), d.position, d.subject, d.event_id,
       d.event_type, d.error, d.parked_at, d.resolved_at
FROM gcm.dead_letters d
LEFT JOIN gcm.projection_builds b ON b.name = d.name AND b.generation = d.generation
WHERE ($1 = '' OR d.name = $1)
  AND (cardinality($2::bigint[]) = 0 OR d.position = ANY($2::bigint[]))
  AND (NOT $3 OR d.resolved_at IS NULL)
ORDER BY d.name, d.generation, d.position`

// ListDeadLetters lists the dead letters f selects, by projection,
// generation and position.
func ListDeadLetters(ctx context.Context, pool *pgxpool.Pool, f DeadLetterFilter) ([]DeadLetter, error) {
	positions := make([]int64, len(f.Positions))
	for i, p := range f.Positions {
		positions[i] = int64(p)
	}
	rows, err := pool.Query(ctx, listDeadLettersSQL, f.Projection, positions, f.Unresolved)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		var pos int64
		err := row.Scan(&d.ID, &d.Projection, &d.Generation, &d.BuildStatus, &pos, &d.Subject, &d.EventID,
			&d.EventType, &d.Error, &d.ParkedAt, &d.ResolvedAt)
		d.Position = uint64(pos)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// RetryResult is the outcome of retrying one dead letter.
type RetryResult struct {
	DeadLetter
	// Err is nil when the event was applied and the dead letter resolved;
	// otherwise why it still cannot be applied (also stored as its error).
	Err error
}

// ErrVersionMismatch: the active build was made by another version of the
// projection than this binary's, whose Apply may not fit its tables.
var ErrVersionMismatch = errors.New("the active build is of another projection version")

// RetryDeadLetters re-applies the unresolved dead letters of the active
// build of a projection (of every projection of the engine when projection
// is empty), optionally only those at the given positions, in position
// order: typically after an upgrade lets the binary decode or apply events
// it could not before.
//
// Each event is decoded from the bytes stored with it (upcast as
// events.Decode does) and applied alone by the projection's Apply, in a
// transaction of its own on the build's schema, as the runner applies
// batches; the same transaction marks the dead letter resolved. An event
// that fails again keeps its dead letter, with the new error. The build's
// checkpoint does not move: it is past these events already. The retry may
// run while projectors apply the stream: its transactions are one more
// writer on the same tables.
//
// The event is applied as of now, after everything that came after it in
// the stream. For a projection whose result depends on the order of events
// (a later event on the same record overwrote what this one would have
// set, say), that can differ from applying it in its place; a rebuild
// (Engine.Rebuild) applies every event in order and is the safe remedy.
//
// A transient error (the database going away) stops the retry and is
// returned with the results so far; other failures are reported per event
// in the results.
func (e *Engine) RetryDeadLetters(ctx context.Context, projection string, positions []uint64) ([]RetryResult, error) {
	names := e.order
	if projection != "" {
		if _, ok := e.projections[projection]; !ok {
			return nil, fmt.Errorf("retry dead letters: unknown projection %q (have %v)", projection, e.order)
		}
		names = []string{projection}
	}
	var results []RetryResult
	for _, name := range names {
		p := e.projections[name]
		var b build
		err := e.pool.QueryRow(ctx, `SELECT generation, version, schema_name FROM gcm.projection_builds WHERE name = $1 AND status = 'active'`, name).
			Scan(&b.generation, &b.version, &b.schema)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return results, fmt.Errorf("retry dead letters of %s: active build: %w", name, err)
		}
		b.name = name
		letters, err := ListDeadLetters(ctx, e.pool, DeadLetterFilter{Projection: name, Positions: positions, Unresolved: true})
		if err != nil {
			return results, err
		}
		letters = slices.DeleteFunc(letters, func(d DeadLetter) bool { return d.Generation != b.generation })
		if len(letters) > 0 && b.version != p.Version() {
			return results, fmt.Errorf("retry dead letters of %s: %w: the active build is version %d, this binary's is %d; retry with the binary that runs the projectors, or rebuild",
				name, ErrVersionMismatch, b.version, p.Version())
		}
		for _, d := range letters {
			res, err := e.retryOne(ctx, p, b, d)
			if err != nil {
				return results, fmt.Errorf("retry dead letter of %s at position %d: %w", name, d.Position, err)
			}
			results = append(results, res)
		}
	}
	return results, nil
}

// retryOne applies one dead letter. Its error is for failures that stop the
// whole retry; the event's own failure is in the result.
func (e *Engine) retryOne(ctx context.Context, p Projection, b build, d DeadLetter) (RetryResult, error) {
	res := RetryResult{DeadLetter: d}
	var applyErr error
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+pgx.Identifier{b.schema}.Sanitize()+", public"); err != nil {
			return err
		}
		// Lock the dead letter: two retries at once apply it once.
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM gcm.dead_letters WHERE id = $1 AND resolved_at IS NULL FOR UPDATE`, d.ID).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // resolved meanwhile
		}
		if err != nil {
			return err
		}
		ev, err := decodeStored(d, data)
		if err == nil {
			if f, ok := p.(Filter); !ok || f.Handles(ev.Type) {
				err = p.Apply(ctx, tx, []Event{ev})
			}
		}
		if err != nil {
			applyErr = err
			return err // roll back whatever Apply wrote
		}
		var at time.Time
		if err := tx.QueryRow(ctx, `UPDATE gcm.dead_letters SET resolved_at = now() WHERE id = $1 RETURNING resolved_at`, d.ID).Scan(&at); err != nil {
			return err
		}
		res.ResolvedAt = &at
		return nil
	})
	switch {
	case err == nil:
		if res.ResolvedAt != nil {
			e.cfg.Logger.Info("dead letter re-applied", "projection", b.name, "generation", b.generation, "position", d.Position, "type", d.EventType)
		}
		return res, nil
	case applyErr == nil || Transient(applyErr):
		return res, err
	}
	res.Err, res.Error = applyErr, applyErr.Error()
	if _, err := e.pool.Exec(ctx, `UPDATE gcm.dead_letters SET error = $2 WHERE id = $1`, d.ID, res.Error); err != nil {
		return res, fmt.Errorf("record the retry's error: %w", err)
	}
	e.cfg.Logger.Warn("dead letter still cannot be applied", "projection", b.name, "generation", b.generation, "position", d.Position, "type", d.EventType, "err", applyErr)
	return res, nil
}

// decodeStored decodes a dead letter's stored message as the runner
// decodes messages from the stream.
func decodeStored(d DeadLetter, data []byte) (Event, error) {
	env, err := events.Unmarshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("position %d: %w", d.Position, err)
	}
	payload, err := events.Decode(env)
	if err != nil {
		return Event{}, err
	}
	return Event{Record: events.Record{Position: d.Position, Subject: d.Subject, Envelope: env}, Payload: payload}, nil
}
