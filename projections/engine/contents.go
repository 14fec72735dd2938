package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Contents reads everything the active build of a projection serves: for
// each view of the projection's schema (one per table of the build), every
// row rendered as PostgreSQL's text form of the whole row, sorted. Two read
// models hold the same data exactly when their Contents are equal, which is
// how a read model kept up to date live is checked against a fresh rebuild
// of the same stream, or one database against another after a restore.
func Contents(ctx context.Context, pool *pgxpool.Pool, name string) (map[string][]string, error) {
	views, err := collectNames(ctx, pool, viewsSQL, name)
	if err != nil {
		return nil, fmt.Errorf("contents of %s: %w", name, err)
	}
	out := make(map[string][]string, len(views))
	for _, v := range views {
		rows, err := pool.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{name, v}.Sanitize()+" AS t")
		if err != nil {
			return nil, fmt.Errorf("contents of %s.%s: %w", name, v, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("contents of %s.%s: %w", name, v, err)
		}
		slices.Sort(lines)
		out[v] = lines
	}
	return out, nil
}

// DiffContents compares two results of Contents and describes up to limit
// differences: tables missing on either side, and rows present on one side
// only. It returns nil when they are equal.
func DiffContents(a, b map[string][]string, limit int) []string {
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < limit {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		} else if len(diffs) == limit {
			diffs = append(diffs, "…")
		}
	}
	tables := make([]string, 0, len(a)+len(b))
	for t := range a {
		tables = append(tables, t)
	}
	for t := range b {
		if _, ok := a[t]; !ok {
			tables = append(tables, t)
		}
	}
	slices.Sort(tables)
	for _, t := range tables {
		ra, oka := a[t]
		rb, okb := b[t]
		switch {
		case !oka:
			add("table %s only on the right (%d rows)", t, len(rb))
			continue
		case !okb:
			add("table %s only on the left (%d rows)", t, len(ra))
			continue
		}
		// Both sorted: walk them together.
		i, j := 0, 0
		for i < len(ra) || j < len(rb) {
			switch {
			case j >= len(rb) || (i < len(ra) && ra[i] < rb[j]):
				add("%s: left only: %s", t, ra[i])
				i++
			case i >= len(ra) || rb[j] < ra[i]:
				add("%s: right only: %s", t, rb[j])
				j++
			default:
				i++
				j++
			}
		}
	}
	return diffs
}
