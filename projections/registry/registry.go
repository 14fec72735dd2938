// Package registry projects the ISCM registry: the mechanisms, their member
// and observer States, and for each State the ISCMs it takes part in. It
// also answers the read-only queries over those tables.
package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
)

// Name is the projection's name and the schema its views live in.
const Name = "registry"

// Projection builds the registry read model.
type Projection struct{}

// Name implements engine.Projection.
func (Projection) Name() string { return Name }

// Version implements engine.Projection.
func (Projection) Version() int { return 2 }

// Handles implements engine.Filter.
func (Projection) Handles(t string) bool {
	switch t {
	case events.ISCMRegistered{}.EventType(), events.MemberJoined{}.EventType(),
		events.MemberStatusChanged{}.EventType(), events.MemberLeft{}.EventType():
		return true
	}
	return false
}

const setupSQL = `
CREATE TABLE iscms (
    slug          text PRIMARY KEY,
    name          text NOT NULL,
    short_name    text NOT NULL,
    kind          text NOT NULL,
    region        text NOT NULL,
    version       bigint NOT NULL,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE TABLE memberships (
    iscm       text NOT NULL,
    state      text NOT NULL,
    status     text NOT NULL,
    since      date,
    until      date,
    active     boolean NOT NULL,
    position   bigint NOT NULL,
    PRIMARY KEY (iscm, state)
) WITH (fillfactor = 50);
-- A change of membership touches no indexed column, and pages keep room
-- for the new row version: updates are heap-only and prune themselves, so
-- a long history of joins and departures leaves neither the table nor its
-- indexes full of dead entries.
CREATE INDEX memberships_state ON memberships (state);
-- Every change of membership, for reports as of a past position.
CREATE TABLE membership_history (
    position bigint NOT NULL,
    iscm     text NOT NULL,
    state    text NOT NULL,
    status   text NOT NULL,
    active   boolean NOT NULL,
    PRIMARY KEY (position)
);
CREATE INDEX membership_history_key ON membership_history (iscm, state, position);
`

// Setup implements engine.Projection.
func (Projection) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, setupSQL)
	return err
}

const (
	insertISCMSQL = `
INSERT INTO iscms (slug, name, short_name, kind, region, version, registered_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
ON CONFLICT (slug) DO NOTHING`
	// The statements below apply a whole batch at once, from arrays.
	upsertMembersSQL = `
INSERT INTO memberships (iscm, state, status, since, until, active, position)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::date[], $5::date[], $6::boolean[], $7::bigint[])
ON CONFLICT (iscm, state) DO UPDATE SET status = EXCLUDED.status, since = EXCLUDED.since, until = EXCLUDED.until,
    active = EXCLUDED.active, position = EXCLUDED.position`
	statusMembersSQL = `
UPDATE memberships m SET status = u.status, position = u.pos
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(iscm, state, status, pos)
WHERE m.iscm = u.iscm AND m.state = u.state`
	leaveMembersSQL = `
UPDATE memberships m SET active = false, until = u.until, position = u.pos
FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[]) AS u(iscm, state, until, pos)
WHERE m.iscm = u.iscm AND m.state = u.state`
	touchISCMsSQL = `
UPDATE iscms i SET version = u.v, updated_at = u.at
FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS u(slug, v, at)
WHERE i.slug = u.slug`
)

type memberKey struct{ iscm, state string }

// membership is a row known in full because the batch holds its join.
type membership struct {
	status       string
	since, until *time.Time
	active       bool
	pos          int64
}

// Apply implements engine.Projection. It folds the batch in memory, in
// stream order, and writes it with a handful of set-based statements: the
// same result as applying its events one at a time.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, batch []engine.Event) error {
	b := &pgx.Batch{}
	full := map[memberKey]*membership{}
	var order []memberKey // keys of full, in first-seen order
	type statusPatch struct {
		status string
		pos    int64
	}
	type leavePatch struct {
		until *time.Time
		pos   int64
	}
	statuses, leaves := map[memberKey]statusPatch{}, map[memberKey]leavePatch{}
	var history [][]any
	touched := map[string]engine.Event{}
	for _, ev := range batch {
		pos := int64(ev.Position)
		switch p := ev.Payload.(type) {
		case events.ISCMRegistered:
			b.Queue(insertISCMSQL, p.Slug, p.Name, p.ShortName, p.Kind, p.Region, pos, ev.RecordedAt)
		case events.MemberJoined:
			k := memberKey{ev.ISCM, p.State}
			if full[k] == nil {
				order = append(order, k)
			}
			full[k] = &membership{status: p.Status, since: p.Since.TimePtr(), active: true, pos: pos}
			delete(statuses, k)
			delete(leaves, k)
			history = append(history, []any{pos, ev.ISCM, p.State, p.Status, true})
		case events.MemberStatusChanged:
			k := memberKey{ev.ISCM, p.State}
			if m := full[k]; m != nil {
				m.status, m.pos = p.Status, pos
			} else {
				statuses[k] = statusPatch{p.Status, pos}
			}
			history = append(history, []any{pos, ev.ISCM, p.State, p.Status, true})
		case events.MemberLeft:
			k := memberKey{ev.ISCM, p.State}
			if m := full[k]; m != nil {
				m.active, m.until, m.pos = false, p.Until.TimePtr(), pos
			} else {
				leaves[k] = leavePatch{p.Until.TimePtr(), pos}
			}
			history = append(history, []any{pos, ev.ISCM, p.State, "left", false})
		default:
			return fmt.Errorf("registry: unexpected event %s", ev.Type)
		}
		if ev.AggregateKind == events.KindISCM {
			touched[ev.AggregateID] = ev
		}
	}
	if len(order) > 0 {
		var is, ss, st []string
		var since, until []*time.Time
		var active []bool
		var pos []int64
		for _, k := range order {
			m := full[k]
			is, ss, st = append(is, k.iscm), append(ss, k.state), append(st, m.status)
			since, until, active, pos = append(since, m.since), append(until, m.until), append(active, m.active), append(pos, m.pos)
		}
		b.Queue(upsertMembersSQL, is, ss, st, since, until, active, pos)
	}
	if len(statuses) > 0 {
		var is, ss, st []string
		var pos []int64
		for k, p := range statuses {
			is, ss, st, pos = append(is, k.iscm), append(ss, k.state), append(st, p.status), append(pos, p.pos)
		}
		b.Queue(statusMembersSQL, is, ss, st, pos)
	}
	if len(leaves) > 0 {
		var is, ss []string
		var until []*time.Time
		var pos []int64
		for k, p := range leaves {
			is, ss, until, pos = append(is, k.iscm), append(ss, k.state), append(until, p.until), append(pos, p.pos)
		}
		b.Queue(leaveMembersSQL, is, ss, until, pos)
	}
	if len(touched) > 0 {
		var slugs []string
		var vs []int64
		var at []time.Time
		for slug, ev := range touched {
			slugs, vs, at = append(slugs, slug), append(vs, int64(ev.Position)), append(at, ev.RecordedAt)
		}
		b.Queue(touchISCMsSQL, slugs, vs, at)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if len(history) > 0 {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"membership_history"}, []string{"position", "iscm", "state", "status", "active"}, pgx.CopyFromRows(history))
		return err
	}
	return nil
}
