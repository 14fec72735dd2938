package engine

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"gcmtrack/events"
)

// Event is one stream record with its payload decoded and upcast.
type Event struct {
	events.Record
	Payload events.Payload
}

// Projection builds read models from events.
//
// Apply must give the same result for a batch as for its events applied one
// at a time in order: when a batch fails, the engine re-applies its events
// one by one to find and park the one that cannot be applied.
type Projection interface {
	// Name is the projection's stable name; its views live in a schema of
	// that name.
	Name() string
	// Version changes whenever the tables or their meaning change; a new
	// version is rebuilt from position 1.
	Version() int
	// Setup creates the tables of a new build. The transaction's search_path
	// is the build's own schema, so names need no qualification.
	Setup(ctx context.Context, tx pgx.Tx) error
	// Apply applies events in stream order, with the same search_path.
	Apply(ctx context.Context, tx pgx.Tx, batch []Event) error
}

// Filter is implemented by projections that read only some event types; the
// engine neither decodes nor hands them the others (their positions still
// count toward the checkpoint).
type Filter interface {
	Handles(eventType string) bool
}

// Indexer is implemented by projections whose secondary indexes can wait
// for the end of a replay: a generation being built catches up without them
// and creates them (and gathers planner statistics) once it has caught up,
// just before it is activated, which costs far less than keeping them up to
// date event by event. An active generation created empty has them from
// the start.
//
// Indexes are SQL statements run with the build's schema first on the
// search_path, each in its own transaction and several at once on separate
// connections, longest first as listed. A build interrupted after some of
// them runs them all again, so each must be repeatable (CREATE INDEX IF
// NOT EXISTS, ANALYZE). The indexes Apply's own reads rely on belong in
// Setup.
type Indexer interface {
	Indexes() []string
}

// Transient reports whether err may go away by itself (the database
// restarting, a dropped connection, a serialization failure), so the batch is
// retried rather than its events parked.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", "40", "53", "57", "58":
			return true
		}
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr) || errors.Is(err, net.ErrClosed) || errors.Is(err, pgconn.ErrConnClosed)
}
