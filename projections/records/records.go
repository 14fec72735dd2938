// Package records projects what ISCM secretariats record: every record with
// its current content and lifecycle status (including those derived from
// questionnaire answers, marked with their source), the history of each
// record, each ISCM's timeline, and the latest questionnaire answers per
// ISCM, cycle and channel. It also answers the read-only queries over them.
package records

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
)

// Name is the projection's name and the schema its views live in.
const Name = "records"

// Projection builds the records read model.
type Projection struct{}

// Name implements engine.Projection.
func (Projection) Name() string { return Name }

// Version implements engine.Projection.
func (Projection) Version() int { return 1 }

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
    content          jsonb NOT NULL,
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
CREATE INDEX records_list ON records (kind, created_position DESC, id DESC);
CREATE INDEX records_all ON records (created_position DESC, id DESC);
CREATE INDEX records_iscm ON records (iscm, kind);
CREATE INDEX records_questionnaire ON records (iscm, questionnaire) WHERE questionnaire IS NOT NULL;
CREATE INDEX records_objectives ON records USING gin (objectives);
CREATE INDEX records_principles ON records USING gin (principles);
CREATE INDEX records_themes ON records USING gin (themes);

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
    content      jsonb,
    PRIMARY KEY (position)
);
CREATE INDEX history_record ON history (iscm, kind, id, position);
CREATE INDEX history_timeline ON history (iscm, position DESC);

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
    record        jsonb,
    source        text NOT NULL,
    questionnaire text,
    cycle         integer,
    channel       text,
    objectives    integer[] NOT NULL,
    published_at  timestamptz,
    changed_at    timestamptz NOT NULL,
    PRIMARY KEY (iscm, kind, id)
);
CREATE INDEX feed_position ON feed (position, iscm, kind, id);

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
    answers          jsonb NOT NULL,
    submitted_on     date,
    version          bigint NOT NULL,
    created_position bigint NOT NULL,
    updated_at       timestamptz NOT NULL,
    updated_by       text NOT NULL,
    PRIMARY KEY (iscm, cycle, channel)
);
`

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

func dateArg(d events.Date) any {
	if d.IsZero() {
		return nil
	}
	return d.Time()
}

const (
	insertRecordSQL = `
INSERT INTO records (iscm, kind, id, status, source, questionnaire, cycle, channel, title, subkind, category,
    date_from, date_to, objectives, principles, themes, states, content, version, created_position, updated_position,
    created_at, updated_at, published_at, created_by, updated_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, $19, $20, $20,
    CASE WHEN $4 = 'published' THEN $20::timestamptz END, $21, $21)
ON CONFLICT (iscm, kind, id) DO UPDATE SET
    status = EXCLUDED.status, title = EXCLUDED.title, subkind = EXCLUDED.subkind, category = EXCLUDED.category,
    date_from = EXCLUDED.date_from, date_to = EXCLUDED.date_to, objectives = EXCLUDED.objectives,
    principles = EXCLUDED.principles, themes = EXCLUDED.themes, states = EXCLUDED.states, content = EXCLUDED.content,
    version = EXCLUDED.version, updated_position = EXCLUDED.updated_position, updated_at = EXCLUDED.updated_at,
    updated_by = EXCLUDED.updated_by,
    published_at = CASE WHEN EXCLUDED.status = 'published' THEN coalesce(records.published_at, EXCLUDED.updated_at) END`
	reviseRecordSQL = `
UPDATE records SET title = $4, subkind = $5, category = $6, date_from = $7, date_to = $8, objectives = $9,
    principles = $10, themes = $11, states = $12, content = $13, version = $14, updated_position = $14,
    updated_at = $15, updated_by = $16
WHERE iscm = $1 AND kind = $2 AND id = $3`
	statusRecordSQL = `
UPDATE records SET status = $4, version = $5, updated_position = $5, updated_at = $6, updated_by = $7,
    published_at = CASE WHEN $4 = 'published' THEN $6 ELSE published_at END
WHERE iscm = $1 AND kind = $2 AND id = $3`
	touchRecordSQL = `
UPDATE records SET version = $4, updated_position = $4, updated_at = $5, updated_by = $6
WHERE iscm = $1 AND kind = $2 AND id = $3`
	milestoneSQL = `
INSERT INTO milestones (iscm, plan_id, milestone_id, progress, on_date, note, position)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (iscm, plan_id, milestone_id) DO UPDATE SET progress = EXCLUDED.progress, on_date = EXCLUDED.on_date,
    note = EXCLUDED.note, position = EXCLUDED.position`
	historySQL = `
INSERT INTO history (position, iscm, kind, id, event_type, actor, recorded_at, occurred_at, status, summary, content)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
    coalesce((SELECT status FROM records WHERE iscm = $2 AND kind = $3 AND id = $4),
             (SELECT status FROM questionnaires WHERE iscm = $2 AND id = $4 AND $3 = 'questionnaire'), ''),
    $9, $10)
ON CONFLICT (position) DO NOTHING`
	answerSQL = `
INSERT INTO questionnaires (iscm, cycle, channel, id, status, draft, answers, submitted_on, version, created_position, updated_at, updated_by)
VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN 'draft' ELSE 'submitted' END, $5, $6, $7, $8, $8, $9, $10)
ON CONFLICT (iscm, cycle, channel) DO UPDATE SET
    status = CASE WHEN questionnaires.status = 'draft' AND NOT EXCLUDED.draft THEN 'submitted' ELSE questionnaires.status END,
    draft = EXCLUDED.draft, answers = EXCLUDED.answers, submitted_on = EXCLUDED.submitted_on, version = EXCLUDED.version,
    updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by`
	cycleSQL = `
INSERT INTO cycles (id, closed, note, changed_at, changed_by, position) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET closed = EXCLUDED.closed, note = EXCLUDED.note, changed_at = EXCLUDED.changed_at,
    changed_by = EXCLUDED.changed_by, position = EXCLUDED.position`
	dropDerivedSQL = `DELETE FROM records WHERE iscm = $1 AND questionnaire = $2 AND NOT (id = ANY($3))`
	// Derived records take the questionnaire's status; a re-submission keeps
	// a part's id and first position.
	insertDerivedSQL = `
INSERT INTO records (iscm, kind, id, status, source, questionnaire, cycle, channel, title, subkind, category,
    date_from, date_to, objectives, principles, themes, states, content, version, created_position, updated_position,
    created_at, updated_at, published_at, created_by, updated_by)
SELECT $1, $2, $3, q.status, 'questionnaire', q.id, q.cycle, q.channel, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
    $14, $14, $14, $15, $15, CASE WHEN q.status = 'published' THEN $15::timestamptz END, $16, $16
FROM questionnaires q WHERE q.iscm = $1 AND q.id = $17
ON CONFLICT (iscm, kind, id) DO UPDATE SET
    status = EXCLUDED.status, title = EXCLUDED.title, subkind = EXCLUDED.subkind, category = EXCLUDED.category,
    date_from = EXCLUDED.date_from, date_to = EXCLUDED.date_to, objectives = EXCLUDED.objectives,
    principles = EXCLUDED.principles, themes = EXCLUDED.themes, states = EXCLUDED.states, content = EXCLUDED.content,
    version = EXCLUDED.version, updated_position = EXCLUDED.updated_position, updated_at = EXCLUDED.updated_at,
    updated_by = EXCLUDED.updated_by, published_at = CASE WHEN EXCLUDED.status = 'published' THEN coalesce(records.published_at, EXCLUDED.updated_at) END`
	questionnaireStatusSQL = `
UPDATE questionnaires SET status = $3, version = $4, updated_at = $5, updated_by = $6 WHERE iscm = $1 AND id = $2`
	derivedStatusSQL = `
UPDATE records SET status = $3, version = $4, updated_position = $4, updated_at = $5, updated_by = $6,
    published_at = CASE WHEN $3 = 'published' THEN coalesce(published_at, $5) ELSE published_at END
WHERE iscm = $1 AND questionnaire = $2`
)

// Feed upkeep: after an event, a record that is published now enters or
// updates the feed; one that was published and no longer is becomes a
// withdrawal.
const (
	feedUpsertSQL = `
INSERT INTO feed (iscm, kind, id, position, change, title, record, source, questionnaire, cycle, channel, objectives, published_at, changed_at)
SELECT r.iscm, r.kind, r.id, $1, 'published', r.title, r.content, r.source, r.questionnaire, r.cycle, r.channel, r.objectives, r.published_at, r.updated_at
FROM records r WHERE r.iscm = $2 AND r.status = 'published' AND %s
ON CONFLICT (iscm, kind, id) DO UPDATE SET position = EXCLUDED.position,
    change = CASE WHEN feed.change = 'withdrawn' THEN 'published' ELSE 'updated' END,
    title = EXCLUDED.title, record = EXCLUDED.record, objectives = EXCLUDED.objectives,
    published_at = EXCLUDED.published_at, changed_at = EXCLUDED.changed_at`
	feedTombstoneSQL = `
UPDATE feed f SET change = 'withdrawn', record = NULL, position = $1, changed_at = $3
WHERE f.iscm = $2 AND f.change <> 'withdrawn' AND %s
  AND NOT EXISTS (SELECT 1 FROM records r WHERE r.iscm = f.iscm AND r.kind = f.kind AND r.id = f.id AND r.status = 'published')`
)

var (
	feedUpsertRecord        = fmt.Sprintf(feedUpsertSQL, "r.kind = $3 AND r.id = $4")
	feedUpsertQuestionnaire = fmt.Sprintf(feedUpsertSQL, "r.questionnaire = $3")
	feedTombRecord          = fmt.Sprintf(feedTombstoneSQL, "f.kind = $4 AND f.id = $5")
	feedTombQuestionnaire   = fmt.Sprintf(feedTombstoneSQL, "f.questionnaire = $4")
)

// syncFeed queues the feed upkeep for the records an event touched.
func syncFeed(b *pgx.Batch, ev engine.Event) {
	pos := int64(ev.Position)
	if ev.AggregateKind == events.KindQuestionnaire {
		b.Queue(feedTombQuestionnaire, pos, ev.ISCM, ev.RecordedAt, ev.AggregateID)
		b.Queue(feedUpsertQuestionnaire, pos, ev.ISCM, ev.AggregateID)
		return
	}
	b.Queue(feedTombRecord, pos, ev.ISCM, ev.RecordedAt, ev.AggregateKind, ev.AggregateID)
	b.Queue(feedUpsertRecord, pos, ev.ISCM, ev.AggregateKind, ev.AggregateID)
}

// Apply implements engine.Projection. Statements are pipelined in one
// round trip; they run in order, so later statements see earlier ones.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, batch []engine.Event) error {
	b := &pgx.Batch{}
	for _, ev := range batch {
		if err := queue(b, ev); err != nil {
			return err
		}
		if ev.Type != "record.submitted" && !strings.HasSuffix(ev.Type, ".recorded") && ev.ISCM != events.SystemTenant {
			syncFeed(b, ev)
		}
	}
	return tx.SendBatch(ctx, b).Close()
}

func queue(b *pgx.Batch, ev engine.Event) error {
	pos := int64(ev.Position)
	at := ev.RecordedAt
	occ := ev.OccurredAt
	hist := func(summary string, content any) {
		b.Queue(historySQL, pos, ev.ISCM, ev.AggregateKind, ev.AggregateID, ev.Type, ev.Actor, at, occ, summary, content)
	}
	if c, ok := events.RecordedContent(ev.Payload); ok {
		body, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("records: encode content: %w", err)
		}
		k := Columns(c)
		if strings.HasSuffix(ev.Type, ".recorded") {
			b.Queue(insertRecordSQL, ev.ISCM, ev.AggregateKind, ev.AggregateID, events.StatusDraft, "manual", nil, nil, nil,
				k.Title, k.Subkind, k.Category, dateArg(k.From), dateArg(k.To), k.Objectives, k.Principles, k.Themes, k.States,
				body, pos, at, ev.Actor)
			hist("recorded", body)
		} else {
			b.Queue(reviseRecordSQL, ev.ISCM, ev.AggregateKind, ev.AggregateID, k.Title, k.Subkind, k.Category,
				dateArg(k.From), dateArg(k.To), k.Objectives, k.Principles, k.Themes, k.States, body, pos, at, ev.Actor)
			hist("revised", body)
		}
		return nil
	}
	switch p := ev.Payload.(type) {
	case events.CycleClosed:
		b.Queue(cycleSQL, p.Cycle, true, p.Note, at, ev.Actor, pos)
	case events.CycleReopened:
		b.Queue(cycleSQL, p.Cycle, false, p.Note, at, ev.Actor, pos)
	case events.RecordSubmitted:
		transition(b, ev, events.StatusSubmitted)
		hist(note("submitted", p.Note), nil)
	case events.RecordPublished:
		transition(b, ev, events.StatusPublished)
		hist(note("published", p.Note), nil)
	case events.RecordWithdrawn:
		transition(b, ev, events.StatusWithdrawn)
		hist(note("withdrawn", p.Reason), nil)
	case events.MilestoneProgressed:
		b.Queue(milestoneSQL, ev.ISCM, ev.AggregateID, p.MilestoneID, p.Progress, dateArg(p.On), p.Note, pos)
		b.Queue(touchRecordSQL, ev.ISCM, ev.AggregateKind, ev.AggregateID, pos, at, ev.Actor)
		body, _ := json.Marshal(p)
		hist(fmt.Sprintf("milestone %s: %s", p.MilestoneID, p.Progress), body)
	case events.QuestionnaireAnswered:
		answers, err := json.Marshal(p.Answers)
		if err != nil {
			return fmt.Errorf("records: encode answers: %w", err)
		}
		b.Queue(answerSQL, ev.ISCM, p.Cycle, p.Channel, ev.AggregateID, p.Draft, answers, dateArg(p.Answers.SubmittedOn), pos, at, ev.Actor)
		derived := p.Answers.Derive()
		ids := make([]string, 0, len(derived))
		for _, d := range derived {
			ids = append(ids, events.DerivedID(ev.AggregateID, d.Part))
		}
		b.Queue(dropDerivedSQL, ev.ISCM, ev.AggregateID, ids)
		for i, d := range derived {
			body, err := json.Marshal(d.Content)
			if err != nil {
				return fmt.Errorf("records: encode derived record: %w", err)
			}
			k := Columns(d.Content)
			b.Queue(insertDerivedSQL, ev.ISCM, d.Content.RecordKind(), ids[i], k.Title, k.Subkind, k.Category,
				dateArg(k.From), dateArg(k.To), k.Objectives, k.Principles, k.Themes, k.States, body, pos, at, ev.Actor, ev.AggregateID)
		}
		summary := "answered"
		if p.Draft {
			summary = "answers saved as a draft"
		}
		hist(summary, answers)
	default:
		return fmt.Errorf("records: unexpected event %s", ev.Type)
	}
	return nil
}

func note(what, n string) string {
	if n == "" {
		return what
	}
	return what + ": " + n
}

func transition(b *pgx.Batch, ev engine.Event, status string) {
	pos := int64(ev.Position)
	if ev.AggregateKind == events.KindQuestionnaire {
		b.Queue(questionnaireStatusSQL, ev.ISCM, ev.AggregateID, status, pos, ev.RecordedAt, ev.Actor)
		b.Queue(derivedStatusSQL, ev.ISCM, ev.AggregateID, status, pos, ev.RecordedAt, ev.Actor)
		return
	}
	b.Queue(statusRecordSQL, ev.ISCM, ev.AggregateKind, ev.AggregateID, status, pos, ev.RecordedAt, ev.Actor)
}
