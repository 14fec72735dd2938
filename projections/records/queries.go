package records

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotFound: no such record, or not visible to the caller.
var ErrNotFound = errors.New("not found")

// ErrBadCursor: a pagination cursor this server did not hand out.
var ErrBadCursor = errors.New("invalid cursor")

// Visibility says which records a caller may see: published ones always,
// every status when All, and every status of one ISCM (a secretariat's own).
type Visibility struct {
	All  bool
	ISCM string
}

// Record is one record as the read model holds it.
type Record struct {
	ISCM        string          `json:"iscm"`
	Kind        string          `json:"kind"`
	ID          string          `json:"id"`
	Status      string          `json:"status"`
	Source      Source          `json:"source"`
	Record      json.RawMessage `json:"record"`
	Milestones  []Milestone     `json:"milestones,omitempty"`
	Version     uint64          `json:"version"`
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	PublishedAt *time.Time      `json:"published_at"`
	createdPos  int64
}

// Source says where a record comes from: recorded by hand, or derived from
// questionnaire answers of a cycle and channel.
type Source struct {
	Type          string `json:"type"`
	Questionnaire string `json:"questionnaire,omitempty"`
	Cycle         *int   `json:"cycle,omitempty"`
	Channel       string `json:"channel,omitempty"`
}

// Milestone is an action plan milestone's latest progress.
type Milestone struct {
	ID       string  `json:"id"`
	Progress string  `json:"progress"`
	On       *string `json:"on"`
	Note     string  `json:"note,omitempty"`
}

// Queries reads the records' views.
type Queries struct{ pool *pgxpool.Pool }

// NewQueries returns the records' read-only queries.
func NewQueries(pool *pgxpool.Pool) *Queries { return &Queries{pool: pool} }

const recordCols = `iscm, kind, id, status, source, questionnaire, cycle, channel, content, version,
    created_at, updated_at, published_at, created_position`

func scanRecord(row pgx.CollectableRow) (Record, error) {
	var r Record
	var q, ch *string
	var v int64
	err := row.Scan(&r.ISCM, &r.Kind, &r.ID, &r.Status, &r.Source.Type, &q, &r.Source.Cycle, &ch, &r.Record, &v,
		&r.CreatedAt, &r.UpdatedAt, &r.PublishedAt, &r.createdPos)
	if q != nil {
		r.Source.Questionnaire = *q
	}
	if ch != nil {
		r.Source.Channel = *ch
	}
	r.Version = uint64(v)
	return r, err
}

// visible is the SQL condition of a Visibility, on arguments $1 (all) and
// $2 (own ISCM).
const visible = `($1 OR status = 'published' OR iscm = $2)`

// Get returns one record.
func (q *Queries) Get(ctx context.Context, vis Visibility, iscm, kind, id string) (Record, error) {
	rows, err := q.pool.Query(ctx, `SELECT `+recordCols+` FROM records.records WHERE `+visible+` AND iscm = $3 AND kind = $4 AND id = $5`,
		vis.All, vis.ISCM, iscm, kind, id)
	if err != nil {
		return Record{}, fmt.Errorf("get record: %w", err)
	}
	rs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return Record{}, fmt.Errorf("get record: %w", err)
	}
	if len(rs) == 0 {
		return Record{}, ErrNotFound
	}
	r := rs[0]
	if kind == "action_plan" {
		rows, err := q.pool.Query(ctx, `SELECT milestone_id, progress, to_char(on_date, 'YYYY-MM-DD'), note FROM records.milestones
WHERE iscm = $1 AND plan_id = $2 ORDER BY milestone_id`, iscm, id)
		if err != nil {
			return Record{}, fmt.Errorf("milestones: %w", err)
		}
		if r.Milestones, err = pgx.CollectRows(rows, pgx.RowToStructByPos[Milestone]); err != nil {
			return Record{}, fmt.Errorf("milestones: %w", err)
		}
	}
	return r, nil
}

// Filter narrows a list of records.
type Filter struct {
	ISCM      string
	Kind      string
	Objective int
	Principle int
	Theme     string
	Subkind   string // activity kind, forum, status answer, … as the kind has it
	Category  string // partner category or capacity-building form
	Status    string
	Source    string
	State     string
	From, To  *time.Time // records whose dates overlap [From, To]
	Cursor    string
	Limit     int
}

// Page is one page of a list, with the cursor of the next page ("" at the
// end).
type Page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// MaxLimit caps a page.
const MaxLimit = 200

// FeedCursor is the cursor of the feed entry of record iscm/kind/id at
// position pos, as the feed hands it out: the page after it starts with the
// entries changed after that one.
func FeedCursor(pos int64, iscm, kind, id string) string {
	return encodeCursor(pos, iscm+"/"+kind+"/"+id)
}

func encodeCursor(pos int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(pos, 10) + ":" + id))
}

func decodeCursor(c string) (int64, string, error) {
	if c == "" {
		return 0, "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	p, id, ok := strings.Cut(string(b), ":")
	pos, err := strconv.ParseInt(p, 10, 64)
	if !ok || err != nil || pos <= 0 {
		return 0, "", ErrBadCursor
	}
	return pos, id, nil
}

// filterSQL is a Filter's conditions on the arguments $3 to $14, in the
// order filterArgs gives them (after the Visibility's $1 and $2).
const filterSQL = `
  AND ($3 = '' OR iscm = $3)
  AND ($4 = '' OR kind = $4)
  AND ($5 = 0 OR objectives @> ARRAY[$5::int])
  AND ($6 = 0 OR principles @> ARRAY[$6::int])
  AND ($7 = '' OR themes @> ARRAY[$7::text])
  AND ($8 = '' OR subkind = $8)
  AND ($9 = '' OR category = $9)
  AND ($10 = '' OR status = $10)
  AND ($11 = '' OR source = $11)
  AND ($12 = '' OR states @> ARRAY[$12::text])
  AND ($13::date IS NULL OR coalesce(date_to, date_from) >= $13::date)
  AND ($14::date IS NULL OR date_from <= $14::date)`

func filterArgs(vis Visibility, f Filter) []any {
	return []any{vis.All, vis.ISCM, f.ISCM, f.Kind, f.Objective, f.Principle, f.Theme,
		f.Subkind, f.Category, f.Status, f.Source, f.State, f.From, f.To}
}

const listSQL = `
SELECT ` + recordCols + ` FROM records.records
WHERE ` + visible + filterSQL + `
  AND ($15 = 0 OR (created_position, id) < ($15, $16))
ORDER BY created_position DESC, id DESC
LIMIT $17`

// List returns a page of records, newest first, keyset-paginated.
func (q *Queries) List(ctx context.Context, vis Visibility, f Filter) (Page[Record], error) {
	pos, id, err := decodeCursor(f.Cursor)
	if err != nil {
		return Page[Record]{}, err
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxLimit {
		limit = 50
	}
	rows, err := q.pool.Query(ctx, listSQL, append(filterArgs(vis, f), pos, id, limit+1)...)
	if err != nil {
		return Page[Record]{}, fmt.Errorf("list records: %w", err)
	}
	rs, err := pgx.CollectRows(rows, scanRecord)
	if err != nil {
		return Page[Record]{}, fmt.Errorf("list records: %w", err)
	}
	page := Page[Record]{Items: rs}
	if len(rs) > limit {
		last := rs[limit-1]
		page.Items, page.NextCursor = rs[:limit], encodeCursor(last.createdPos, last.ID)
	}
	if page.Items == nil {
		page.Items = []Record{}
	}
	return page, nil
}

// Entry is one event in a record's history or an ISCM's timeline.
type Entry struct {
	Position   uint64          `json:"position"`
	Kind       string          `json:"kind"`
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Actor      string          `json:"actor,omitempty"`
	RecordedAt time.Time       `json:"recorded_at"`
	OccurredAt time.Time       `json:"occurred_at"`
	Status     string          `json:"status"`
	Summary    string          `json:"summary"`
	Content    json.RawMessage `json:"content,omitempty"`
}

func scanEntry(row pgx.CollectableRow) (Entry, error) {
	var e Entry
	var p int64
	err := row.Scan(&p, &e.Kind, &e.ID, &e.Type, &e.Actor, &e.RecordedAt, &e.OccurredAt, &e.Status, &e.Summary, &e.Content)
	e.Position = uint64(p)
	return e, err
}

const entryCols = `h.position, h.kind, h.id, h.event_type, h.actor, h.recorded_at, h.occurred_at, h.status, h.summary, h.content`

// History lists the events behind one record (or questionnaire), oldest
// first. Callers who may not see drafts see the history of published
// records only, without actors.
func (q *Queries) History(ctx context.Context, vis Visibility, iscm, kind, id string) ([]Entry, error) {
	var visibleNow bool
	err := q.pool.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM records.records WHERE iscm = $3 AND kind = $4 AND id = $5 AND `+visible+`)
    OR EXISTS (SELECT 1 FROM records.questionnaires WHERE iscm = $3 AND id = $5 AND $4 = 'questionnaire' AND `+visible+`)`,
		vis.All, vis.ISCM, iscm, kind, id).Scan(&visibleNow)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if !visibleNow {
		return nil, ErrNotFound
	}
	rows, err := q.pool.Query(ctx, `SELECT `+entryCols+` FROM records.history h WHERE h.iscm = $1 AND h.kind = $2 AND h.id = $3 ORDER BY h.position`, iscm, kind, id)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	es, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if !vis.All && vis.ISCM != iscm {
		for i := range es {
			es[i].Actor = ""
		}
	}
	return es, nil
}

// Timeline lists everything an ISCM recorded, newest first, keyset-paginated
// by position. Callers who may not see the ISCM's drafts see the events of
// its published records only.
func (q *Queries) Timeline(ctx context.Context, vis Visibility, iscm, cursor string, limit int) (Page[Entry], error) {
	before := int64(0)
	if cursor != "" {
		p, _, err := decodeCursor(cursor)
		if err != nil {
			return Page[Entry]{}, err
		}
		before = p
	}
	if limit <= 0 || limit > MaxLimit {
		limit = 50
	}
	own := vis.All || vis.ISCM == iscm
	rows, err := q.pool.Query(ctx, `
SELECT `+entryCols+` FROM records.history h
WHERE h.iscm = $1 AND ($2 = 0 OR h.position < $2)
  AND ($3 OR EXISTS (SELECT 1 FROM records.records r WHERE r.iscm = h.iscm AND r.kind = h.kind AND r.id = h.id AND r.status = 'published')
          OR EXISTS (SELECT 1 FROM records.questionnaires q WHERE q.iscm = h.iscm AND q.id = h.id AND h.kind = 'questionnaire' AND q.status = 'published'))
ORDER BY h.position DESC LIMIT $4`, iscm, before, own, limit+1)
	if err != nil {
		return Page[Entry]{}, fmt.Errorf("timeline: %w", err)
	}
	es, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return Page[Entry]{}, fmt.Errorf("timeline: %w", err)
	}
	page := Page[Entry]{Items: es}
	if len(es) > limit {
		page.Items, page.NextCursor = es[:limit], encodeCursor(int64(es[limit-1].Position), "")
	}
	if page.Items == nil {
		page.Items = []Entry{}
	}
	if !own {
		for i := range page.Items {
			page.Items[i].Actor = ""
		}
	}
	return page, nil
}

// Questionnaire is one ISCM's latest answers for a cycle and channel.
type Questionnaire struct {
	ISCM      string          `json:"iscm"`
	Cycle     int             `json:"cycle"`
	Channel   string          `json:"channel"`
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Answers   json.RawMessage `json:"answers"`
	Version   uint64          `json:"version"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Questionnaire returns the latest answers.
func (q *Queries) Questionnaire(ctx context.Context, vis Visibility, iscm string, cycle int, channel string) (Questionnaire, error) {
	var out Questionnaire
	var v int64
	err := q.pool.QueryRow(ctx, `
SELECT iscm, cycle, channel, id, status, answers, version, updated_at FROM records.questionnaires
WHERE `+visible+` AND iscm = $3 AND cycle = $4 AND channel = $5`, vis.All, vis.ISCM, iscm, cycle, channel).
		Scan(&out.ISCM, &out.Cycle, &out.Channel, &out.ID, &out.Status, &out.Answers, &v, &out.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Questionnaire{}, ErrNotFound
	}
	if err != nil {
		return Questionnaire{}, fmt.Errorf("questionnaire: %w", err)
	}
	out.Version = uint64(v)
	return out, nil
}

// Summary is an ISCM's current engagement at a glance.
type Summary struct {
	Position         *Current       `json:"position"`
	AgendaItem       *Current       `json:"agenda_item"`
	Stocktaking      *Current       `json:"stocktaking"`
	ActionPlan       *Current       `json:"action_plan"`
	Activities       map[string]int `json:"activities_by_kind"`
	Partnerships     map[string]int `json:"partnerships_by_category"`
	Records          map[string]int `json:"records_by_kind"`
	LastActivityDate *string        `json:"last_activity_date"`
	LastRecordedAt   *time.Time     `json:"last_recorded_at"`
}

// Current is the latest record of a kind that states a status.
type Current struct {
	Status string `json:"status"`
	ID     string `json:"id"`
	Source Source `json:"source"`
	Record string `json:"record_status"`
}

// Summary computes an ISCM's engagement summary from the records the caller
// may see (withdrawn records do not count).
func (q *Queries) Summary(ctx context.Context, vis Visibility, iscm string) (Summary, error) {
	s := Summary{Activities: map[string]int{}, Partnerships: map[string]int{}, Records: map[string]int{}}
	rows, err := q.pool.Query(ctx, `
SELECT DISTINCT ON (kind) kind, subkind, id, source, questionnaire, cycle, channel, status
FROM records.records
WHERE `+visible+` AND iscm = $3 AND status <> 'withdrawn' AND kind IN ('position', 'agenda_item', 'stocktaking', 'action_plan')
ORDER BY kind, (source = 'manual') DESC, updated_position DESC`, vis.All, vis.ISCM, iscm)
	if err != nil {
		return Summary{}, fmt.Errorf("summary: %w", err)
	}
	for rows.Next() {
		var kind string
		var c Current
		var qn, ch *string
		if err := rows.Scan(&kind, &c.Status, &c.ID, &c.Source.Type, &qn, &c.Source.Cycle, &ch, &c.Record); err != nil {
			rows.Close()
			return Summary{}, fmt.Errorf("summary: %w", err)
		}
		if qn != nil {
			c.Source.Questionnaire = *qn
		}
		if ch != nil {
			c.Source.Channel = *ch
		}
		cur := c
		switch kind {
		case "position":
			s.Position = &cur
		case "agenda_item":
			s.AgendaItem = &cur
		case "stocktaking":
			s.Stocktaking = &cur
		case "action_plan":
			s.ActionPlan = &cur
		}
	}
	if err := rows.Err(); err != nil {
		return Summary{}, fmt.Errorf("summary: %w", err)
	}
	rows, err = q.pool.Query(ctx, `
SELECT kind, CASE kind WHEN 'activity' THEN subkind WHEN 'partnership' THEN category ELSE '' END, count(*)
FROM records.records WHERE `+visible+` AND iscm = $3 AND status <> 'withdrawn'
GROUP BY 1, 2`, vis.All, vis.ISCM, iscm)
	if err != nil {
		return Summary{}, fmt.Errorf("summary counts: %w", err)
	}
	for rows.Next() {
		var kind, sub string
		var n int
		if err := rows.Scan(&kind, &sub, &n); err != nil {
			rows.Close()
			return Summary{}, fmt.Errorf("summary counts: %w", err)
		}
		s.Records[kind] += n
		switch kind {
		case "activity":
			s.Activities[sub] += n
		case "partnership":
			s.Partnerships[sub] += n
		}
	}
	if err := rows.Err(); err != nil {
		return Summary{}, fmt.Errorf("summary counts: %w", err)
	}
	err = q.pool.QueryRow(ctx, `
SELECT to_char(max(coalesce(date_to, date_from)) FILTER (WHERE kind = 'activity'), 'YYYY-MM-DD'), max(updated_at)
FROM records.records WHERE `+visible+` AND iscm = $3 AND status <> 'withdrawn'`,
		vis.All, vis.ISCM, iscm).Scan(&s.LastActivityDate, &s.LastRecordedAt)
	if err != nil {
		return Summary{}, fmt.Errorf("summary dates: %w", err)
	}
	return s, nil
}

// CycleState is whether IOM closed a review cycle.
type CycleState struct {
	ID        string     `json:"id"`
	Closed    bool       `json:"closed"`
	Note      string     `json:"note,omitempty"`
	ChangedAt *time.Time `json:"changed_at,omitempty"`
}

// Cycles returns the review cycles that were ever closed, by id.
func (q *Queries) Cycles(ctx context.Context) (map[string]CycleState, error) {
	rows, err := q.pool.Query(ctx, `SELECT id, closed, note, changed_at FROM records.cycles`)
	if err != nil {
		return nil, fmt.Errorf("cycles: %w", err)
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CycleState, error) {
		var c CycleState
		var at time.Time
		err := row.Scan(&c.ID, &c.Closed, &c.Note, &at)
		c.ChangedAt = &at
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("cycles: %w", err)
	}
	out := map[string]CycleState{}
	for _, c := range cs {
		out[c.ID] = c
	}
	return out, nil
}

// FeedItem is the latest public change of one record.
type FeedItem struct {
	ISCM        string          `json:"iscm"`
	Kind        string          `json:"kind"`
	ID          string          `json:"id"`
	Position    uint64          `json:"position"`
	Change      string          `json:"change"` // published, updated, withdrawn
	Title       string          `json:"title"`
	Record      json.RawMessage `json:"record,omitempty"`
	Source      Source          `json:"source"`
	Objectives  []int           `json:"objectives"`
	PublishedAt *time.Time      `json:"published_at"`
	ChangedAt   time.Time       `json:"changed_at"`
}

// FeedFilter narrows the feed.
type FeedFilter struct {
	ISCM   string
	Kind   string
	Cursor string // from a previous page: items after it
	Limit  int
}

const feedSQL = `
SELECT iscm, kind, id, position, change, title, record, source, coalesce(questionnaire, ''), cycle, coalesce(channel, ''),
       objectives, published_at, changed_at
FROM records.feed
WHERE ($1 = 0 OR (position, iscm || '/' || kind || '/' || id) > ($1, $2))
  AND ($3 = '' OR iscm = $3) AND ($4 = '' OR kind = $4)
ORDER BY position, iscm || '/' || kind || '/' || id
LIMIT $5`

// Feed returns the public changes after the cursor, oldest first: a
// consumer that follows next cursors sees every publication, correction and
// withdrawal once, in stream order.
func (q *Queries) Feed(ctx context.Context, f FeedFilter) (Page[FeedItem], error) {
	pos, key, err := decodeCursor(f.Cursor)
	if err != nil {
		return Page[FeedItem]{}, err
	}
	limit := f.Limit
	if limit <= 0 || limit > MaxLimit {
		limit = 50
	}
	rows, err := q.pool.Query(ctx, feedSQL, pos, key, f.ISCM, f.Kind, limit)
	if err != nil {
		return Page[FeedItem]{}, fmt.Errorf("feed: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (FeedItem, error) {
		var it FeedItem
		var p int64
		err := row.Scan(&it.ISCM, &it.Kind, &it.ID, &p, &it.Change, &it.Title, &it.Record, &it.Source.Type,
			&it.Source.Questionnaire, &it.Source.Cycle, &it.Source.Channel, &it.Objectives, &it.PublishedAt, &it.ChangedAt)
		it.Position = uint64(p)
		return it, err
	})
	if err != nil {
		return Page[FeedItem]{}, fmt.Errorf("feed: %w", err)
	}
	page := Page[FeedItem]{Items: orEmptyItems(items)}
	// The next cursor is the last item's key, even on a short page: a
	// consumer polls from there and sees only what changes later.
	switch {
	case len(items) > 0:
		last := items[len(items)-1]
		page.NextCursor = encodeCursor(int64(last.Position), last.ISCM+"/"+last.Kind+"/"+last.ID)
	default:
		page.NextCursor = f.Cursor
	}
	return page, nil
}

func orEmptyItems(s []FeedItem) []FeedItem {
	if s == nil {
		return []FeedItem{}
	}
	return s
}

// ExportColumns are the columns of a records export, in order.
var ExportColumns = []string{"iscm", "kind", "id", "status", "source", "questionnaire", "cycle", "channel", "title",
	"subkind", "category", "date_from", "date_to", "objectives", "principles", "themes", "states",
	"created_at", "updated_at", "published_at", "record"}

const exportSQL = `
SELECT iscm, kind, id, status, source, coalesce(questionnaire, ''), coalesce(cycle::text, ''), coalesce(channel, ''), title,
       subkind, category, coalesce(to_char(date_from, 'YYYY-MM-DD'), ''), coalesce(to_char(date_to, 'YYYY-MM-DD'), ''),
       array_to_string(objectives, ' '), array_to_string(principles, ' '), array_to_string(themes, ' '), array_to_string(states, ' '),
       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       coalesce(to_char(published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), ''), content::text
FROM records.records
WHERE ` + visible + filterSQL + `
ORDER BY created_position, id`

// Export streams every matching record as a row of ExportColumns, oldest
// first, without holding them in memory: rows go to fn as PostgreSQL sends
// them.
func (q *Queries) Export(ctx context.Context, vis Visibility, f Filter, fn func(row []string) error) error {
	rows, err := q.pool.Query(ctx, exportSQL, filterArgs(vis, f)...)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer rows.Close()
	row := make([]string, len(ExportColumns))
	ptrs := make([]any, len(row))
	for i := range row {
		ptrs[i] = &row[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		if err := fn(row); err != nil {
			return err
		}
	}
	return rows.Err()
}
