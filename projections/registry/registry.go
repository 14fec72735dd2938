// Package registry projects the ISCM registry: the mechanisms, their member
// and observer States, and for each State the ISCMs it takes part in. It
// also answers the read-only queries over those tables.
package registry

import (
	"context"
	"fmt"

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
func (Projection) Version() int { return 1 }

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
);
CREATE INDEX memberships_state ON memberships (state) WHERE active;
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
	touchISCMSQL = `UPDATE iscms SET version = $2, updated_at = $3 WHERE slug = $1`
	joinSQL      = `
INSERT INTO memberships (iscm, state, status, since, until, active, position)
VALUES ($1, $2, $3, $4, NULL, true, $5)
ON CONFLICT (iscm, state) DO UPDATE SET status = EXCLUDED.status, since = EXCLUDED.since, until = NULL, active = true, position = EXCLUDED.position`
	statusSQL  = `UPDATE memberships SET status = $3, position = $4 WHERE iscm = $1 AND state = $2`
	leaveSQL   = `UPDATE memberships SET active = false, until = $3, position = $4 WHERE iscm = $1 AND state = $2`
	historySQL = `
INSERT INTO membership_history (position, iscm, state, status, active)
SELECT $1, iscm, state, status, active FROM memberships WHERE iscm = $2 AND state = $3
ON CONFLICT (position) DO NOTHING`
)

// Apply implements engine.Projection. The batch's statements are pipelined
// in one round trip.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, batch []engine.Event) error {
	b := &pgx.Batch{}
	for _, ev := range batch {
		pos := int64(ev.Position)
		switch p := ev.Payload.(type) {
		case events.ISCMRegistered:
			b.Queue(insertISCMSQL, p.Slug, p.Name, p.ShortName, p.Kind, p.Region, pos, ev.RecordedAt)
		case events.MemberJoined:
			b.Queue(joinSQL, ev.ISCM, p.State, p.Status, dateArg(p.Since), pos)
			b.Queue(historySQL, pos, ev.ISCM, p.State)
		case events.MemberStatusChanged:
			b.Queue(statusSQL, ev.ISCM, p.State, p.Status, pos)
			b.Queue(historySQL, pos, ev.ISCM, p.State)
		case events.MemberLeft:
			b.Queue(leaveSQL, ev.ISCM, p.State, dateArg(p.Until), pos)
			b.Queue(historySQL, pos, ev.ISCM, p.State)
		default:
			return fmt.Errorf("registry: unexpected event %s", ev.Type)
		}
		if ev.AggregateKind == events.KindISCM {
			b.Queue(touchISCMSQL, ev.AggregateID, pos, ev.RecordedAt)
		}
	}
	return tx.SendBatch(ctx, b).Close()
}

func dateArg(d events.Date) any {
	if d.IsZero() {
		return nil
	}
	return d.Time()
}
