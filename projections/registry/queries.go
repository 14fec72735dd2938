package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound: no such ISCM or State in the read model.
var ErrNotFound = errors.New("not found")

// ISCM is one mechanism as the read model holds it.
type ISCM struct {
	Slug          string    `json:"slug"`
	Name          string    `json:"name"`
	ShortName     string    `json:"short_name"`
	Kind          string    `json:"kind"`
	Region        string    `json:"region"`
	MemberCount   int       `json:"member_count"`
	ObserverCount int       `json:"observer_count"`
	Version       uint64    `json:"version"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Member is one State's participation in an ISCM.
type Member struct {
	State  string  `json:"state"`
	Status string  `json:"status"`
	Since  *string `json:"since"`
}

// Profile is an ISCM with its current members and observers.
type Profile struct {
	ISCM
	Members []Member `json:"members"`
}

// Participation is one ISCM a State takes part in.
type Participation struct {
	Slug      string  `json:"slug"`
	ShortName string  `json:"short_name"`
	Kind      string  `json:"kind"`
	Region    string  `json:"region"`
	Status    string  `json:"status"`
	Since     *string `json:"since"`
}

// Queries reads the registry's views.
type Queries struct{ pool *pgxpool.Pool }

// NewQueries returns the registry's read-only queries.
func NewQueries(pool *pgxpool.Pool) *Queries { return &Queries{pool: pool} }

const listSQL = `
SELECT i.slug, i.name, i.short_name, i.kind, i.region,
       count(m.state) FILTER (WHERE m.active AND m.status = 'member'),
       count(m.state) FILTER (WHERE m.active AND m.status = 'observer'),
       i.version, i.updated_at
FROM registry.iscms i LEFT JOIN registry.memberships m ON m.iscm = i.slug
WHERE ($1 = '' OR i.slug = $1)
GROUP BY i.slug, i.name, i.short_name, i.kind, i.region, i.version, i.updated_at ORDER BY i.slug`

func scanISCM(row pgx.CollectableRow) (ISCM, error) {
	var i ISCM
	var v int64
	err := row.Scan(&i.Slug, &i.Name, &i.ShortName, &i.Kind, &i.Region, &i.MemberCount, &i.ObserverCount, &v, &i.UpdatedAt)
	i.Version = uint64(v)
	return i, err
}

// List returns every registered ISCM, by slug.
func (q *Queries) List(ctx context.Context) ([]ISCM, error) {
	rows, err := q.pool.Query(ctx, listSQL, "")
	if err != nil {
		return nil, fmt.Errorf("list iscms: %w", err)
	}
	return pgx.CollectRows(rows, scanISCM)
}

const membersSQL = `
SELECT state, status, to_char(since, 'YYYY-MM-DD') FROM registry.memberships
WHERE iscm = $1 AND active ORDER BY status, state`

// Get returns one ISCM's profile with its current members.
func (q *Queries) Get(ctx context.Context, slug string) (Profile, error) {
	rows, err := q.pool.Query(ctx, listSQL, slug)
	if err != nil {
		return Profile{}, fmt.Errorf("get iscm: %w", err)
	}
	is, err := pgx.CollectRows(rows, scanISCM)
	if err != nil {
		return Profile{}, fmt.Errorf("get iscm: %w", err)
	}
	if len(is) == 0 {
		return Profile{}, ErrNotFound
	}
	rows, err = q.pool.Query(ctx, membersSQL, slug)
	if err != nil {
		return Profile{}, fmt.Errorf("members of %s: %w", slug, err)
	}
	ms, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Member])
	if err != nil {
		return Profile{}, fmt.Errorf("members of %s: %w", slug, err)
	}
	if ms == nil {
		ms = []Member{}
	}
	return Profile{ISCM: is[0], Members: ms}, nil
}

const stateSQL = `
SELECT i.slug, i.short_name, i.kind, i.region, m.status, to_char(m.since, 'YYYY-MM-DD')
FROM registry.memberships m JOIN registry.iscms i ON i.slug = m.iscm
WHERE m.state = $1 AND m.active ORDER BY i.slug`

// State returns the ISCMs a State currently takes part in.
func (q *Queries) State(ctx context.Context, iso3 string) ([]Participation, error) {
	rows, err := q.pool.Query(ctx, stateSQL, iso3)
	if err != nil {
		return nil, fmt.Errorf("iscms of %s: %w", iso3, err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Participation])
	if err != nil {
		return nil, fmt.Errorf("iscms of %s: %w", iso3, err)
	}
	if ps == nil {
		ps = []Participation{}
	}
	return ps, nil
}
