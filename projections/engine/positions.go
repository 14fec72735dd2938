package engine

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// RowQuerier is what read-only queries need: a pool, a connection or a
// transaction.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const activePositionSQL = `
SELECT coalesce(min(position), 0), count(*) FROM gcm.projection_builds
WHERE status = 'active' AND name = ANY($1)`

// ActivePosition is how far the active builds of the named projections have
// all applied the stream: the smallest of their checkpoints.
func ActivePosition(ctx context.Context, q RowQuerier, names []string) (uint64, error) {
	var pos int64
	var n int
	if err := q.QueryRow(ctx, activePositionSQL, names).Scan(&pos, &n); err != nil {
		return 0, fmt.Errorf("active position: %w", err)
	}
	if n < len(names) {
		return 0, nil
	}
	return uint64(pos), nil
}
