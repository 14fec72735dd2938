// Package records projects what ISCM secretariats record: every record with
// its current content and lifecycle status (including those derived from
// questionnaire answers, marked with their source), the history of each
// record, each ISCM's timeline, and the latest questionnaire answers per
// ISCM, cycle and channel. It also answers the read-only queries over them.
package records

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"

	"gcmtrack/events"
)

// Name is the projection's name and the schema its views live in.
const Name = "records"

// Projection builds the records read model.
type Projection struct{}

// Name implements engine.Projection.
func (Projection) Name() string { return Name }

// Version implements engine.Projection. Version 3 indexes records by the
// position of their last change, which live report snapshots refresh by.
// Version 4 keeps documents (content, answers, feed entries) as json, the
// text the events carry, rather than jsonb: nothing queries inside them,
// and parsing each into jsonb on write took about 5 % of a rebuild's batch
// time.
func (Projection) Version() int { return 4 }

// Handles implements engine.Filter: everything but the registry's events.
func (Projection) Handles(t string) bool { return !strings.HasPrefix(t, "iscm.") }

const setupSQL = `
CREATE TABLE records (
    iscm             text NOT NULL,
    kind             text NOT NULL,
    id               text NOT NULL,
    status           text NOT NULL,
    source           text NOT NULL,
    questionnaire    text,
    cycle            integer,
    channel          text,
    title            text NOT NULL,
    subkind          text NOT NULL,
    category         text NOT NULL,
    date_from        date,
    date_to          date,
    objectives       integer[] NOT NULL,
    principles       integer[] NOT NULL,
    themes           text[] NOT NULL,
    states           text[] NOT NULL,
    content          json NOT NULL,
    version          bigint NOT NULL,
    created_position bigint NOT NULL,
    updated_position bigint NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    published_at     timestamptz,
    created_by       text NOT NULL,
    updated_by       text NOT NULL,
    PRIMARY KEY (iscm, kind, id)
);
CREATE INDEX records_questionnaire ON records (iscm, questionnaire) WHERE questionnaire IS NOT NULL;

CREATE TABLE milestones (
    iscm         text NOT NULL,
    plan_id      text NOT NULL,
    milestone_id text NOT NULL,
    progress     text NOT NULL,
    on_date      date,
    note         text NOT NULL,
    position     bigint NOT NULL,
    PRIMARY KEY (iscm, plan_id, milestone_id)
);

CREATE TABLE history (
    position     bigint NOT NULL,
    iscm         text NOT NULL,
    kind         text NOT NULL,
    id           text NOT NULL,
    event_type   text NOT NULL,
    actor        text NOT NULL,
    recorded_at  timestamptz NOT NULL,
    occurred_at  timestamptz NOT NULL,
    status       text NOT NULL,
    summary      text NOT NULL,
    content      json,
    PRIMARY KEY (position)
);

-- The public feed: one row per record that is or was published, at the
-- position of its last public change, so a consumer polling by position
-- sees every publication, correction and withdrawal once.
CREATE TABLE feed (
    iscm          text NOT NULL,
    kind          text NOT NULL,
    id            text NOT NULL,
    position      bigint NOT NULL,
    change        text NOT NULL,
    title         text NOT NULL,
    record        json,
    source        text NOT NULL,
    questionnaire text,
    cycle         integer,
    channel       text,
    objectives    integer[] NOT NULL,
    published_at  timestamptz,
    changed_at    timestamptz NOT NULL,
    PRIMARY KEY (iscm, kind, id)
);
CREATE INDEX feed_questionnaire ON feed (iscm, questionnaire) WHERE questionnaire IS NOT NULL;

CREATE TABLE cycles (
    id         text PRIMARY KEY,
    closed     boolean NOT NULL,
    note       text NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    position   bigint NOT NULL
);

CREATE TABLE questionnaires (
    iscm             text NOT NULL,
    cycle            integer NOT NULL,
    channel          text NOT NULL,
    id               text NOT NULL,
    status           text NOT NULL,
    draft            boolean NOT NULL,
    answers          json NOT NULL,
    submitted_on     date,
    version          bigint NOT NULL,
    created_position bigint NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text NOT NULL,
    PRIMARY KEY (iscm, cycle, channel)
);
`

// indexes are the indexes the queries use and Apply does not, and the
// planner's statistics: a build creates them once it has caught up (see
// engine.Indexer), several at once, longest first: history holds a row per
// event. A table's ANALYZE waits for an index being created on it, so each
// comes after them.
var indexes = []string{
	`CREATE INDEX IF NOT EXISTS history_record ON history (iscm, kind, id, position)`,
	`CREATE INDEX IF NOT EXISTS history_timeline ON history (iscm, position DESC)`,
	`CREATE INDEX IF NOT EXISTS records_list ON records (kind, created_position DESC, id DESC)`,
	`CREATE INDEX IF NOT EXISTS records_all ON records (created_position DESC, id DESC)`,
	`CREATE INDEX IF NOT EXISTS records_updated ON records (updated_position)`,
	`CREATE INDEX IF NOT EXISTS records_objectives ON records USING gin (objectives)`,
	`CREATE INDEX IF NOT EXISTS records_principles ON records USING gin (principles)`,
	`CREATE INDEX IF NOT EXISTS records_themes ON records USING gin (themes)`,
	`ANALYZE history`,
	`CREATE INDEX IF NOT EXISTS feed_position ON feed (position, iscm, kind, id)`,
	`ANALYZE records`,
	`ANALYZE feed`,
	`ANALYZE questionnaires`,
	`ANALYZE milestones`,
}

// Indexes implements engine.Indexer.
func (Projection) Indexes() []string { return indexes }

// Setup implements engine.Projection.
func (Projection) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, setupSQL)
	return err
}

// Cols are the columns a record's content is searched and reported by.
type Cols struct {
	Title, Subkind, Category string
	From, To                 events.Date
	Objectives, Principles   []int
	Themes, States           []string
}

// Columns extracts a record's searchable columns from its content.
func Columns(c events.Content) Cols {
	var k Cols
	switch r := c.(type) {
	case events.Position:
		k.Subkind = r.Status
		if r.Document != nil {
			k.Title = r.Document.Title
		}
		if r.Meeting != nil {
			k.From = r.Meeting.Date
			if k.Title == "" {
				k.Title = r.Meeting.Title
			}
		}
		k.Objectives, k.Principles, k.Themes = r.Objectives, r.Principles, r.Themes
	case events.AgendaItem:
		k.Title, k.Subkind, k.From, k.Objectives = r.Meeting.Title, r.Standing, r.Meeting.Date, r.Objectives
	case events.Stocktaking:
		k.Subkind, k.From = r.Status, r.PlannedFor
		if r.Document != nil {
			k.Title = r.Document.Title
		}
	case events.ActionPlan:
		k.Title, k.Subkind, k.From, k.To, k.Objectives = r.Title, r.Status, r.PeriodFrom, r.PeriodTo, r.Objectives
	case events.Activity:
		k.Title, k.Subkind, k.Category, k.From, k.To = r.Title, r.Kind, r.Form, r.StartDate, r.EndDate
		k.Objectives, k.Principles, k.States = r.Objectives, r.Principles, r.States
	case events.Partnership:
		k.Title, k.Category, k.From, k.To = r.Partner, r.Category, r.Since, r.Until
	case events.Submission:
		k.Title, k.Subkind, k.From = r.Title, r.Forum, r.Date
	case events.HinderingFactor:
		k.Title, k.Subkind = r.Description, r.Factor
	case events.Resource:
		k.Title, k.Subkind = r.Description, r.Kind
	case events.Expansion:
		k.Title, k.Subkind = r.Entity, r.Modality
	}
	if k.To.IsZero() {
		k.To = k.From
	}
	k.Objectives, k.Principles = nonNil(k.Objectives), nonNil(k.Principles)
	k.Themes, k.States = nonNil(k.Themes), nonNil(k.States)
	return k
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

const (
	cycleSQL = `
INSERT INTO cycles (id, closed, note, changed_at, changed_by, position) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET closed = EXCLUDED.closed, note = EXCLUDED.note, changed_at = EXCLUDED.changed_at,
    changed_by = EXCLUDED.changed_by, position = EXCLUDED.position`
)

func note(what, n string) string {
	if n == "" {
		return what
	}
	return what + ": " + n
}
