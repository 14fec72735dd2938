package records

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
)

// Apply implements engine.Projection set by set: it reads the rows a batch
// touches in one round trip, applies the events to them in memory in stream
// order, and writes each touched row once (a delete of its old version and
// a COPY of its new one) with the batch's history rows. A batch of a
// thousand events costs a handful of statements, not thousands.
//
// The rules are those of the read model, event by event:
//   - <kind>.recorded creates a draft (source "manual"); <kind>.revised
//     replaces the content and keeps the status;
//   - record.submitted / published / withdrawn set the status (published_at
//     on publication); on a questionnaire they set its status and its
//     derived records' (which keep their first publication date);
//   - questionnaire.answered keeps the latest answers per ISCM, cycle and
//     channel (a draft until first submitted; a re-submission keeps the
//     status) and replaces the derived records: a part keeps its id and
//     first position, parts no longer answered are dropped;
//   - milestone progress keeps each milestone's latest state and moves the
//     plan's version;
//   - every event but a cycle's adds a history row with the record's
//     status after it;
//   - after a revision, publication, withdrawal, milestone or answer, a
//     record published now enters the feed or updates its entry there, and
//     one that was published and is no longer becomes a withdrawal.
func (Projection) Apply(ctx context.Context, tx pgx.Tx, batch []engine.Event) error {
	a := newApplier()
	a.want(batch)
	if err := a.load(ctx, tx); err != nil {
		return err
	}
	for _, ev := range batch {
		if err := a.apply(ev); err != nil {
			return err
		}
	}
	return a.write(ctx, tx)
}

type recKey struct{ iscm, kind, id string }

// qKey names a questionnaire by its ISCM and id (cycle and channel).
type qKey struct{ iscm, id string }

type mKey struct{ iscm, plan, milestone string }

// recRow is a row of records.
type recRow struct {
	recKey
	tid                       pgtype.TID // where the row was before the batch
	status, source            string
	questionnaire             *string
	cycle                     *int32
	channel                   *string
	title, subkind, category  string
	dateFrom, dateTo          *time.Time
	objectives, principles    []int
	themes, states            []string
	content                   string
	version, created, updated int64
	createdAt, updatedAt      time.Time
	publishedAt               *time.Time
	createdBy, updatedBy      string
}

const recCols = `ctid, iscm, kind, id, status, source, questionnaire, cycle, channel, title, subkind, category,
    date_from, date_to, objectives, principles, themes, states, content::text, version, created_position, updated_position,
    created_at, updated_at, published_at, created_by, updated_by`

var recColumns = []string{"iscm", "kind", "id", "status", "source", "questionnaire", "cycle", "channel", "title", "subkind", "category",
	"date_from", "date_to", "objectives", "principles", "themes", "states", "content", "version", "created_position", "updated_position",
	"created_at", "updated_at", "published_at", "created_by", "updated_by"}

func (r *recRow) scan(row pgx.Rows) error {
	return row.Scan(&r.tid, &r.iscm, &r.kind, &r.id, &r.status, &r.source, &r.questionnaire, &r.cycle, &r.channel, &r.title, &r.subkind, &r.category,
		&r.dateFrom, &r.dateTo, &r.objectives, &r.principles, &r.themes, &r.states, &r.content, &r.version, &r.created, &r.updated,
		&r.createdAt, &r.updatedAt, &r.publishedAt, &r.createdBy, &r.updatedBy)
}

func (r *recRow) values() []any {
	return []any{r.iscm, r.kind, r.id, r.status, r.source, r.questionnaire, r.cycle, r.channel, r.title, r.subkind, r.category,
		r.dateFrom, r.dateTo, r.objectives, r.principles, r.themes, r.states, r.content, r.version, r.created, r.updated,
		r.createdAt, r.updatedAt, r.publishedAt, r.createdBy, r.updatedBy}
}

// setContent sets the content and the columns searched by it.
func (r *recRow) setContent(c Cols, body string) {
	r.title, r.subkind, r.category = c.Title, c.Subkind, c.Category
	r.dateFrom, r.dateTo = c.From.TimePtr(), c.To.TimePtr()
	r.objectives, r.principles, r.themes, r.states = c.Objectives, c.Principles, c.Themes, c.States
	r.content = body
}

// touch records who changed the row at which position.
func (r *recRow) touch(ev engine.Event) {
	r.version, r.updated = int64(ev.Position), int64(ev.Position)
	r.updatedAt, r.updatedBy = ev.RecordedAt, ev.Actor
}

// qRow is a row of questionnaires.
type qRow struct {
	tid              pgtype.TID
	iscm             string
	cycle            int32
	channel, id      string
	status           string
	draft            bool
	answers          string
	submittedOn      *time.Time
	version, created int64
	updatedAt        time.Time
	updatedBy        string
}

const qCols = `ctid, iscm, cycle, channel, id, status, draft, answers::text, submitted_on, version, created_position, updated_at, updated_by`

var qColumns = []string{"iscm", "cycle", "channel", "id", "status", "draft", "answers", "submitted_on", "version", "created_position", "updated_at", "updated_by"}

func (q *qRow) scan(row pgx.Rows) error {
	return row.Scan(&q.tid, &q.iscm, &q.cycle, &q.channel, &q.id, &q.status, &q.draft, &q.answers, &q.submittedOn, &q.version, &q.created, &q.updatedAt, &q.updatedBy)
}

func (q *qRow) values() []any {
	return []any{q.iscm, q.cycle, q.channel, q.id, q.status, q.draft, q.answers, q.submittedOn, q.version, q.created, q.updatedAt, q.updatedBy}
}

// feedRow is a row of feed.
type feedRow struct {
	recKey
	tid           pgtype.TID
	position      int64
	change, title string
	record        *string
	source        string
	questionnaire *string
	cycle         *int32
	channel       *string
	objectives    []int
	publishedAt   *time.Time
	changedAt     time.Time
}

const feedCols = `ctid, iscm, kind, id, position, change, title, record::text, source, questionnaire, cycle, channel, objectives, published_at, changed_at`

var feedColumns = []string{"iscm", "kind", "id", "position", "change", "title", "record", "source", "questionnaire", "cycle", "channel", "objectives", "published_at", "changed_at"}

func (f *feedRow) scan(row pgx.Rows) error {
	return row.Scan(&f.tid, &f.iscm, &f.kind, &f.id, &f.position, &f.change, &f.title, &f.record, &f.source, &f.questionnaire, &f.cycle, &f.channel,
		&f.objectives, &f.publishedAt, &f.changedAt)
}

func (f *feedRow) values() []any {
	return []any{f.iscm, f.kind, f.id, f.position, f.change, f.title, f.record, f.source, f.questionnaire, f.cycle, f.channel,
		f.objectives, f.publishedAt, f.changedAt}
}

var (
	milestoneColumns = []string{"iscm", "plan_id", "milestone_id", "progress", "on_date", "note", "position"}
	historyColumns   = []string{"position", "iscm", "kind", "id", "event_type", "actor", "recorded_at", "occurred_at", "status", "summary", "content"}
)

// applier holds the rows a batch touches, as they are before the batch
// (loaded) and after each of its events (applied).
type applier struct {
	recs     map[recKey]*recRow    // nil: no such row
	recOld   map[recKey]pgtype.TID // where the rows that existed before the batch are
	recDirty []recKey              // changed rows, in order of first change
	recSeen  map[recKey]bool
	derived  map[qKey]map[recKey]bool // the records derived from each questionnaire

	qs                map[qKey]*qRow
	qInDB             map[qKey]bool
	qDirty            []qKey
	qSeen             map[qKey]bool
	loadQ             map[qKey]bool
	loadRec, loadFeed map[recKey]bool

	feed       map[recKey]*feedRow
	feedInDB   map[recKey]bool
	feedDirty  []recKey
	feedSeen   map[recKey]bool
	feedByQ    map[qKey]map[recKey]bool
	milestones map[mKey][]any
	mOrder     []mKey
	history    [][]any
	cycles     pgx.Batch
}

func newApplier() *applier {
	return &applier{
		recs: map[recKey]*recRow{}, recOld: map[recKey]pgtype.TID{}, recSeen: map[recKey]bool{}, derived: map[qKey]map[recKey]bool{},
		qs: map[qKey]*qRow{}, qInDB: map[qKey]bool{}, qSeen: map[qKey]bool{}, loadQ: map[qKey]bool{}, loadRec: map[recKey]bool{}, loadFeed: map[recKey]bool{},
		feed: map[recKey]*feedRow{}, feedInDB: map[recKey]bool{}, feedSeen: map[recKey]bool{}, feedByQ: map[qKey]map[recKey]bool{},
		milestones: map[mKey][]any{},
	}
}

// want notes the rows the batch's events address. A record whose first
// event in the batch is its <kind>.recorded is not looked up: that event is
// the first of its aggregate (the store appends it only to an empty
// subject), so neither the record nor a feed entry exists yet. The feed
// entry of a record only submitted in the batch is not looked up either.
func (a *applier) want(batch []engine.Event) {
	created := map[recKey]bool{}
	for _, ev := range batch {
		switch {
		case ev.ISCM == events.SystemTenant:
		case ev.AggregateKind == events.KindQuestionnaire:
			a.loadQ[qKey{ev.ISCM, ev.AggregateID}] = true
		default:
			k := recKey{ev.ISCM, ev.AggregateKind, ev.AggregateID}
			switch {
			case created[k]:
				continue
			case a.loadRec[k]:
			case strings.HasSuffix(ev.Type, ".recorded"):
				created[k] = true
				continue
			default:
				a.loadRec[k] = true
			}
			// Only the events apply passes to syncFeed read the feed.
			if ev.Type != "record.submitted" {
				a.loadFeed[k] = true
			}
		}
	}
}

const (
	loadRecordsSQL = `SELECT r.* FROM unnest($1::text[], $2::text[], $3::text[]) AS k(i, k, d)
    CROSS JOIN LATERAL (SELECT ` + recCols + ` FROM records WHERE iscm = k.i AND kind = k.k AND id = k.d) r`
	loadDerivedSQL = `SELECT r.* FROM unnest($1::text[], $2::text[]) AS k(i, q)
    CROSS JOIN LATERAL (SELECT ` + recCols + ` FROM records WHERE iscm = k.i AND questionnaire = k.q) r`
	loadQuestionnairesSQL = `SELECT q.* FROM unnest($1::text[], $2::text[]) AS k(i, d)
    CROSS JOIN LATERAL (SELECT ` + qCols + ` FROM questionnaires WHERE iscm = k.i AND id = k.d) q`
	loadFeedSQL = `SELECT f.* FROM unnest($1::text[], $2::text[], $3::text[]) AS k(i, k, d)
    CROSS JOIN LATERAL (SELECT ` + feedCols + ` FROM feed WHERE iscm = k.i AND kind = k.k AND id = k.d) f`
	loadFeedDerivedSQL = `SELECT f.* FROM unnest($1::text[], $2::text[]) AS k(i, q)
    CROSS JOIN LATERAL (SELECT ` + feedCols + ` FROM feed WHERE iscm = k.i AND questionnaire = k.q) f`
	// Rows read by load are deleted where load found them: the build's
	// writer holds its lock, so nothing else moves them meanwhile.
	deleteRecordsSQL        = `DELETE FROM records WHERE ctid = ANY($1::tid[])`
	deleteFeedSQL           = `DELETE FROM feed WHERE ctid = ANY($1::tid[])`
	deleteQuestionnairesSQL = `DELETE FROM questionnaires WHERE ctid = ANY($1::tid[])`
	deleteMilestonesSQL     = `DELETE FROM milestones USING unnest($1::text[], $2::text[], $3::text[]) AS k(i, p, m)
    WHERE iscm = k.i AND plan_id = k.p AND milestone_id = k.m`
)

// load reads every row the batch may change, in one round trip. Each key
// is looked up on its own (LATERAL): an index probe per key whatever the
// planner guesses of the arrays' length.
func (a *applier) load(ctx context.Context, tx pgx.Tx) error {
	var ri, rk, rd, fi, fk, fd, qi, qd []string
	for k := range a.loadRec {
		ri, rk, rd = append(ri, k.iscm), append(rk, k.kind), append(rd, k.id)
	}
	for k := range a.loadFeed {
		fi, fk, fd = append(fi, k.iscm), append(fk, k.kind), append(fd, k.id)
	}
	for k := range a.loadQ {
		qi, qd = append(qi, k.iscm), append(qd, k.id)
	}
	b := &pgx.Batch{}
	if len(ri) > 0 {
		b.Queue(loadRecordsSQL, ri, rk, rd)
	}
	if len(fi) > 0 {
		b.Queue(loadFeedSQL, fi, fk, fd)
	}
	if len(qi) > 0 {
		b.Queue(loadDerivedSQL, qi, qd)
		b.Queue(loadQuestionnairesSQL, qi, qd)
		b.Queue(loadFeedDerivedSQL, qi, qd)
	}
	if b.Len() == 0 {
		return nil
	}
	res := tx.SendBatch(ctx, b)
	defer res.Close()
	readRecs := func() error {
		rows, err := res.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			r := &recRow{}
			if err := r.scan(rows); err != nil {
				rows.Close()
				return err
			}
			a.recs[r.recKey], a.recOld[r.recKey] = r, r.tid
			if r.questionnaire != nil {
				a.addDerived(qKey{r.iscm, *r.questionnaire}, r.recKey)
			}
		}
		return rows.Err()
	}
	readFeed := func() error {
		rows, err := res.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			f := &feedRow{}
			if err := f.scan(rows); err != nil {
				rows.Close()
				return err
			}
			a.feed[f.recKey], a.feedInDB[f.recKey] = f, true
			if f.questionnaire != nil {
				a.addFeedByQ(qKey{f.iscm, *f.questionnaire}, f.recKey)
			}
		}
		return rows.Err()
	}
	if len(ri) > 0 {
		if err := readRecs(); err != nil {
			return fmt.Errorf("records: load records: %w", err)
		}
	}
	if len(fi) > 0 {
		if err := readFeed(); err != nil {
			return fmt.Errorf("records: load feed: %w", err)
		}
	}
	if len(qi) > 0 {
		if err := readRecs(); err != nil {
			return fmt.Errorf("records: load derived records: %w", err)
		}
		rows, err := res.Query()
		if err != nil {
			return fmt.Errorf("records: load questionnaires: %w", err)
		}
		for rows.Next() {
			q := &qRow{}
			if err := q.scan(rows); err != nil {
				rows.Close()
				return fmt.Errorf("records: load questionnaires: %w", err)
			}
			k := qKey{q.iscm, q.id}
			a.qs[k], a.qInDB[k] = q, true
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("records: load questionnaires: %w", err)
		}
		if err := readFeed(); err != nil {
			return fmt.Errorf("records: load feed: %w", err)
		}
	}
	return res.Close()
}

func (a *applier) addDerived(q qKey, k recKey) {
	if a.derived[q] == nil {
		a.derived[q] = map[recKey]bool{}
	}
	a.derived[q][k] = true
}

func (a *applier) addFeedByQ(q qKey, k recKey) {
	if a.feedByQ[q] == nil {
		a.feedByQ[q] = map[recKey]bool{}
	}
	a.feedByQ[q][k] = true
}

func (a *applier) dirtyRec(k recKey) {
	if !a.recSeen[k] {
		a.recSeen[k] = true
		a.recDirty = append(a.recDirty, k)
	}
}

func (a *applier) dirtyQ(k qKey) {
	if !a.qSeen[k] {
		a.qSeen[k] = true
		a.qDirty = append(a.qDirty, k)
	}
}

func (a *applier) dirtyFeed(k recKey) {
	if !a.feedSeen[k] {
		a.feedSeen[k] = true
		a.feedDirty = append(a.feedDirty, k)
	}
}

// apply applies one event to the rows in memory.
func (a *applier) apply(ev engine.Event) error {
	if err := a.applyRows(ev); err != nil {
		return err
	}
	if ev.Type != "record.submitted" && !strings.HasSuffix(ev.Type, ".recorded") && ev.ISCM != events.SystemTenant {
		a.syncFeed(ev)
	}
	return nil
}

func (a *applier) applyRows(ev engine.Event) error {
	k := recKey{ev.ISCM, ev.AggregateKind, ev.AggregateID}
	if c, ok := events.RecordedContent(ev.Payload); ok {
		body, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("records: encode content: %w", err)
		}
		cols := Columns(c)
		r := a.recs[k]
		switch {
		case strings.HasSuffix(ev.Type, ".recorded") && r == nil:
			r = &recRow{recKey: k, source: "manual", created: int64(ev.Position), createdAt: ev.RecordedAt, createdBy: ev.Actor}
			a.recs[k] = r
			fallthrough
		case strings.HasSuffix(ev.Type, ".recorded"):
			r.status, r.publishedAt = events.StatusDraft, nil
		case r == nil: // a revision of a record the read model does not hold
			a.history = append(a.history, a.historyRow(ev, "revised", body))
			return nil
		}
		r.setContent(cols, string(body))
		r.touch(ev)
		a.dirtyRec(k)
		summary := "revised"
		if strings.HasSuffix(ev.Type, ".recorded") {
			summary = "recorded"
		}
		a.history = append(a.history, a.historyRow(ev, summary, body))
		return nil
	}
	switch p := ev.Payload.(type) {
	case events.CycleClosed:
		a.cycles.Queue(cycleSQL, p.Cycle, true, p.Note, ev.RecordedAt, ev.Actor, int64(ev.Position))
	case events.CycleReopened:
		a.cycles.Queue(cycleSQL, p.Cycle, false, p.Note, ev.RecordedAt, ev.Actor, int64(ev.Position))
	case events.RecordSubmitted:
		a.transition(ev, events.StatusSubmitted)
		a.history = append(a.history, a.historyRow(ev, note("submitted", p.Note), nil))
	case events.RecordPublished:
		a.transition(ev, events.StatusPublished)
		a.history = append(a.history, a.historyRow(ev, note("published", p.Note), nil))
	case events.RecordWithdrawn:
		a.transition(ev, events.StatusWithdrawn)
		a.history = append(a.history, a.historyRow(ev, note("withdrawn", p.Reason), nil))
	case events.MilestoneProgressed:
		mk := mKey{ev.ISCM, ev.AggregateID, p.MilestoneID}
		if _, ok := a.milestones[mk]; !ok {
			a.mOrder = append(a.mOrder, mk)
		}
		a.milestones[mk] = []any{ev.ISCM, ev.AggregateID, p.MilestoneID, p.Progress, p.On.TimePtr(), p.Note, int64(ev.Position)}
		if r := a.recs[k]; r != nil {
			r.touch(ev)
			a.dirtyRec(k)
		}
		body, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("records: encode milestone: %w", err)
		}
		a.history = append(a.history, a.historyRow(ev, fmt.Sprintf("milestone %s: %s", p.MilestoneID, p.Progress), body))
	case events.QuestionnaireAnswered:
		answers, err := json.Marshal(p.Answers)
		if err != nil {
			return fmt.Errorf("records: encode answers: %w", err)
		}
		if err := a.answer(ev, p, string(answers)); err != nil {
			return err
		}
		summary := "answered"
		if p.Draft {
			summary = "answers saved as a draft"
		}
		a.history = append(a.history, a.historyRow(ev, summary, answers))
	default:
		return fmt.Errorf("records: unexpected event %s", ev.Type)
	}
	return nil
}

// historyRow is the history row of an event, with the status of its
// record after it.
func (a *applier) historyRow(ev engine.Event, summary string, content []byte) []any {
	status := ""
	if r := a.recs[recKey{ev.ISCM, ev.AggregateKind, ev.AggregateID}]; r != nil {
		status = r.status
	} else if q := a.qs[qKey{ev.ISCM, ev.AggregateID}]; q != nil && ev.AggregateKind == events.KindQuestionnaire {
		status = q.status
	}
	var c any
	if content != nil {
		c = string(content)
	}
	return []any{int64(ev.Position), ev.ISCM, ev.AggregateKind, ev.AggregateID, ev.Type, ev.Actor, ev.RecordedAt, ev.OccurredAt, status, summary, c}
}

// transition sets a record's status, or a questionnaire's and its derived
// records'.
func (a *applier) transition(ev engine.Event, status string) {
	if ev.AggregateKind == events.KindQuestionnaire {
		qk := qKey{ev.ISCM, ev.AggregateID}
		if q := a.qs[qk]; q != nil {
			q.status, q.version, q.updatedAt, q.updatedBy = status, int64(ev.Position), ev.RecordedAt, ev.Actor
			a.dirtyQ(qk)
		}
		for k := range a.derived[qk] {
			r := a.recs[k]
			r.status = status
			r.touch(ev)
			if status == events.StatusPublished && r.publishedAt == nil {
				r.publishedAt = &ev.RecordedAt
			}
			a.dirtyRec(k)
		}
		return
	}
	k := recKey{ev.ISCM, ev.AggregateKind, ev.AggregateID}
	if r := a.recs[k]; r != nil {
		r.status = status
		r.touch(ev)
		if status == events.StatusPublished {
			r.publishedAt = &ev.RecordedAt
		}
		a.dirtyRec(k)
	}
}

// answer keeps the latest answers and replaces the derived records.
func (a *applier) answer(ev engine.Event, p events.QuestionnaireAnswered, answers string) error {
	qk := qKey{ev.ISCM, ev.AggregateID}
	q := a.qs[qk]
	if q == nil {
		status := events.StatusSubmitted
		if p.Draft {
			status = events.StatusDraft
		}
		q = &qRow{iscm: ev.ISCM, cycle: int32(p.Cycle), channel: p.Channel, id: ev.AggregateID, status: status, created: int64(ev.Position)}
		a.qs[qk] = q
	} else if q.status == events.StatusDraft && !p.Draft {
		q.status = events.StatusSubmitted
	}
	q.draft, q.answers, q.submittedOn = p.Draft, answers, p.Answers.SubmittedOn.TimePtr()
	q.version, q.updatedAt, q.updatedBy = int64(ev.Position), ev.RecordedAt, ev.Actor
	a.dirtyQ(qk)

	derived := p.Answers.Derive()
	keep := make(map[string]bool, len(derived))
	for _, d := range derived {
		keep[events.DerivedID(ev.AggregateID, d.Part)] = true
	}
	for k := range a.derived[qk] {
		if !keep[k.id] {
			a.recs[k] = nil
			delete(a.derived[qk], k)
			a.dirtyRec(k)
		}
	}
	for _, d := range derived {
		body, err := json.Marshal(d.Content)
		if err != nil {
			return fmt.Errorf("records: encode derived record: %w", err)
		}
		k := recKey{ev.ISCM, d.Content.RecordKind(), events.DerivedID(ev.AggregateID, d.Part)}
		r := a.recs[k]
		if r == nil {
			qid, cycle, channel := q.id, q.cycle, q.channel
			r = &recRow{recKey: k, source: "questionnaire", questionnaire: &qid, cycle: &cycle, channel: &channel,
				created: int64(ev.Position), createdAt: ev.RecordedAt, createdBy: ev.Actor}
			if q.status == events.StatusPublished {
				r.publishedAt = &ev.RecordedAt
			}
			a.recs[k] = r
		} else if q.status == events.StatusPublished {
			if r.publishedAt == nil {
				r.publishedAt = &ev.RecordedAt
			}
		} else {
			r.publishedAt = nil
		}
		r.status = q.status
		r.setContent(Columns(d.Content), string(body))
		r.touch(ev)
		if r.questionnaire != nil {
			a.addDerived(qKey{ev.ISCM, *r.questionnaire}, k)
		}
		a.dirtyRec(k)
	}
	return nil
}

// syncFeed brings the feed entries of the records an event touched up to
// date.
func (a *applier) syncFeed(ev engine.Event) {
	if ev.AggregateKind != events.KindQuestionnaire {
		a.syncFeedRow(ev, recKey{ev.ISCM, ev.AggregateKind, ev.AggregateID})
		return
	}
	qk := qKey{ev.ISCM, ev.AggregateID}
	for k := range a.feedByQ[qk] {
		a.tombstone(ev, k)
	}
	for k := range a.derived[qk] {
		a.publishFeed(ev, k)
	}
}

func (a *applier) syncFeedRow(ev engine.Event, k recKey) {
	a.tombstone(ev, k)
	a.publishFeed(ev, k)
}

// tombstone turns the feed entry of a record no longer published into a
// withdrawal.
func (a *applier) tombstone(ev engine.Event, k recKey) {
	f := a.feed[k]
	if f == nil || f.change == "withdrawn" {
		return
	}
	if r := a.recs[k]; r != nil && r.status == events.StatusPublished {
		return
	}
	f.change, f.record, f.position, f.changedAt = "withdrawn", nil, int64(ev.Position), ev.RecordedAt
	a.dirtyFeed(k)
}

// publishFeed enters a published record in the feed or updates its entry.
func (a *applier) publishFeed(ev engine.Event, k recKey) {
	r := a.recs[k]
	if r == nil || r.status != events.StatusPublished {
		return
	}
	f := a.feed[k]
	content := r.content
	switch {
	case f == nil:
		f = &feedRow{recKey: k, change: "published", source: r.source, questionnaire: r.questionnaire, cycle: r.cycle, channel: r.channel}
		a.feed[k] = f
		if r.questionnaire != nil {
			a.addFeedByQ(qKey{k.iscm, *r.questionnaire}, k)
		}
	case f.change == "withdrawn":
		f.change = "published"
	default:
		f.change = "updated"
	}
	f.position, f.title, f.record, f.objectives = int64(ev.Position), r.title, &content, r.objectives
	f.publishedAt, f.changedAt = r.publishedAt, r.updatedAt
	a.dirtyFeed(k)
}

// write stores the changed rows: the old versions of rows that existed go,
// the new versions come in by COPY, with the history rows.
func (a *applier) write(ctx context.Context, tx pgx.Tx) error {
	var del, fdel, qdel []pgtype.TID
	var recRows [][]any
	for _, k := range a.recDirty {
		if old, ok := a.recOld[k]; ok {
			del = append(del, old)
		}
		if r := a.recs[k]; r != nil {
			recRows = append(recRows, r.values())
		}
	}
	var feedRows [][]any
	for _, k := range a.feedDirty {
		if f := a.feed[k]; a.feedInDB[k] {
			fdel = append(fdel, f.tid)
		}
		feedRows = append(feedRows, a.feed[k].values())
	}
	var qRows [][]any
	for _, k := range a.qDirty {
		if q := a.qs[k]; a.qInDB[k] {
			qdel = append(qdel, q.tid)
		}
		qRows = append(qRows, a.qs[k].values())
	}
	var mdel [3][]string
	mRows := make([][]any, 0, len(a.mOrder))
	for _, k := range a.mOrder {
		mdel[0], mdel[1], mdel[2] = append(mdel[0], k.iscm), append(mdel[1], k.plan), append(mdel[2], k.milestone)
		mRows = append(mRows, a.milestones[k])
	}
	b := &a.cycles
	if len(del) > 0 {
		b.Queue(deleteRecordsSQL, del)
	}
	if len(fdel) > 0 {
		b.Queue(deleteFeedSQL, fdel)
	}
	if len(qdel) > 0 {
		b.Queue(deleteQuestionnairesSQL, qdel)
	}
	if len(mdel[0]) > 0 {
		b.Queue(deleteMilestonesSQL, mdel[0], mdel[1], mdel[2])
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("records: %w", err)
		}
	}
	for _, c := range []struct {
		table string
		cols  []string
		rows  [][]any
	}{
		{"records", recColumns, recRows},
		{"questionnaires", qColumns, qRows},
		{"feed", feedColumns, feedRows},
		{"milestones", milestoneColumns, mRows},
		{"history", historyColumns, a.history},
	} {
		if len(c.rows) == 0 {
			continue
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("records: write %s: %w", c.table, err)
		}
	}
	return nil
}
