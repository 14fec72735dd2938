// Package reports computes GCM Tracker's progress reports: the 2019
// review's figures from a cycle's questionnaire answers, objective and
// member-State coverage, evidence toward the review's recommendations
// (a)-(j), and review-cycle summaries per region.
//
// Every report is a pure function of a Snapshot: what the read models held
// at one stream position, with the records held as counts (Tally). A live
// snapshot is read from the current tables; a snapshot as of an earlier
// position is rebuilt from the history tables the projections keep of
// every event. Both go through the same computation, so a report as of
// position N equals what the live report said when the read models stood
// at N.
package reports

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"iter"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/records"
	"gcmtrack/projections/registry"
)

// Sources are the projections reports read.
var Sources = []string{registry.Name, records.Name}

// Record is what reports need of one record: of its searchable columns
// (records.Cols), those a report counts by.
type Record struct {
	ISCM, Kind, ID           string
	Status                   string
	Source                   string // manual or questionnaire
	Questionnaire            string
	Cycle                    int
	Title, Subkind, Category string
	From                     events.Date
	Objectives               []int
	Pos                      uint64    // position of its last change
	RecordedAt               time.Time // when it was first recorded
}

// setCols sets the record's columns from its content's.
func (r *Record) setCols(c records.Cols) {
	r.Title, r.Subkind, r.Category, r.From, r.Objectives = c.Title, c.Subkind, c.Category, c.From, c.Objectives
}

// Answer is one ISCM's questionnaire answers for a cycle and channel.
type Answer struct {
	ISCM, ID, Channel string
	Cycle             int
	Status            string
	Answers           events.Answers
	Pos               uint64
}

// Membership is one State's current participation in an ISCM.
type Membership struct {
	ISCM, State, Status string
}

// Snapshot is what the read models held at Position: the records as a
// Tally of what reports count of them, the questionnaires' answers and the
// memberships (both bounded by the catalog: ISCMs, cycles, States).
type Snapshot struct {
	Position    uint64
	Tally       *Tally
	Answers     []Answer
	Memberships []Membership

	gens string // the source projections' generations it was read from
	past bool   // rebuilt from the history (AsOf), not read live
	// recordsAt is how far the records projection had applied the stream
	// when a live snapshot's records and answers were read: at or beyond
	// Position, which the slower source sets.
	recordsAt uint64
}

// Store reads snapshots and keeps them: the live one, refreshed with what
// changed since it was read, and a few past ones. Reports are pure
// functions of a snapshot, so their results are kept too (Memo). A Store
// is shared by everything that serves reports in one process.
type Store struct {
	pool *pgxpool.Pool

	// Past is how past snapshots are rebuilt; set it before the Store is
	// used.
	Past PastDirection

	mu   sync.Mutex // guards live, past and memo
	live *Snapshot
	past []*Snapshot // as of earlier positions, most recently used first
	memo []memoEntry // most recently used first

	// buildLive and buildPast let one caller at a time read a live or a
	// past snapshot from the database; callers asking for the same one
	// meanwhile wait and share it. A past snapshot being rebuilt does not
	// hold up the live one.
	buildLive, buildPast sync.Mutex
}

// PastDirection says from which side a past snapshot is rebuilt.
type PastDirection int

const (
	// PastCheaper rebuilds it from whichever side has fewer records to
	// rebuild: forward from the start when more records changed since the
	// position than did not, else back from the live snapshot.
	PastCheaper PastDirection = iota
	// PastForward always rebuilds it forward.
	PastForward
	// PastFromLive always takes the live snapshot back to the position.
	PastFromLive
)

type memoEntry struct {
	key string
	v   any
}

// Cache sizes: a past snapshot never changes, so each is read once while
// it stays among the pastSnapshots most recently used; memoSize report
// results are kept the same way. A snapshot's size follows the catalog,
// not the records.
const (
	pastSnapshots = 8
	memoSize      = 128
)

// NewStore returns the reports' reader.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Position is how far both source projections have applied the stream.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	p, _, err := s.state(ctx, s.pool)
	return p, err
}

// Version names the read models' current state: each source's generation
// and position. What is computed from them alone changes only when it
// does, so it can tag responses (ETag) and key what is kept of them. It
// begins with the sources' common position.
func (s *Store) Version(ctx context.Context) (string, error) {
	pos, _, each, err := s.readState(ctx, s.pool)
	if err != nil {
		return "", err
	}
	h := fnv.New32a()
	h.Write([]byte(each))
	return fmt.Sprintf("%d.%08x", pos, h.Sum32()), nil
}

// stateSQL gives the sources' common position, their active generations
// (a snapshot of other generations, after a rebuild switched them, is read
// again, not refreshed) and each one's generation and position (a source
// ahead of the other moves the version).
const stateSQL = `
SELECT coalesce(min(position), 0), count(*), coalesce(string_agg(name || ':' || generation, ',' ORDER BY name), ''),
    coalesce(string_agg(name || ':' || generation || ':' || position, ',' ORDER BY name), '')
FROM gcm.projection_builds WHERE status = 'active' AND name = ANY($1)`

func (s *Store) state(ctx context.Context, q engine.RowQuerier) (uint64, string, error) {
	pos, gens, _, err := s.readState(ctx, q)
	return pos, gens, err
}

// readState reads stateSQL; the common position is 0 while a source has no
// active build.
func (s *Store) readState(ctx context.Context, q engine.RowQuerier) (pos uint64, gens, each string, err error) {
	var p int64
	var n int
	if err := q.QueryRow(ctx, stateSQL, Sources).Scan(&p, &n, &gens, &each); err != nil {
		return 0, "", "", fmt.Errorf("active position: %w", err)
	}
	if n < len(Sources) {
		return 0, gens, each, nil
	}
	return uint64(p), gens, each, nil
}

// liveRecordsSQL reads the columns reports need, which the records
// projection keeps beside each record's content: no content is decoded.
const liveRecordsSQL = `
SELECT iscm, kind, id, status, source, coalesce(questionnaire, ''), coalesce(cycle, 0),
    title, subkind, category, date_from, objectives, updated_position, created_at
FROM records.records`

const liveAnswersSQL = `
SELECT iscm, id, channel, cycle, status, answers, version FROM records.questionnaires`

const liveMembersSQL = `SELECT iscm, state, status FROM registry.memberships WHERE active`

// changedAnswersSQL reads the questionnaires changed after a position.
const changedAnswersSQL = liveAnswersSQL + ` WHERE version > $1`

// Live returns the read models as they are now, in one consistent view.
// The first call counts every record; later calls reuse the snapshot while
// the projections stand still and otherwise read only the records changed
// since it (each projection's changes carry their stream position).
func (s *Store) Live(ctx context.Context) (Snapshot, error) {
	pos, gens, err := s.state(ctx, s.pool)
	if err != nil {
		return Snapshot{}, fmt.Errorf("live snapshot: %w", err)
	}
	if snap := s.cachedLive(pos, gens); snap != nil {
		return *snap, nil
	}
	s.buildLive.Lock()
	defer s.buildLive.Unlock()
	if snap := s.cachedLive(pos, gens); snap != nil {
		return *snap, nil
	}
	s.mu.Lock()
	prev := s.live
	s.mu.Unlock()
	next, err := s.readLive(ctx, prev)
	if err != nil {
		return Snapshot{}, fmt.Errorf("live snapshot: %w", err)
	}
	s.mu.Lock()
	s.live = &next
	s.mu.Unlock()
	return next, nil
}

// cachedLive is the kept live snapshot if it is of the same generations
// and at least at pos.
func (s *Store) cachedLive(pos uint64, gens string) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live != nil && s.live.gens == gens && s.live.Position >= pos {
		return s.live
	}
	return nil
}

// readLive reads the live snapshot in one repeatable-read transaction:
// from scratch, or as prev plus what changed after it.
func (s *Store) readLive(ctx context.Context, prev *Snapshot) (Snapshot, error) {
	var snap Snapshot
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if snap.Position, snap.gens, err = s.state(ctx, tx); err != nil {
			return err
		}
		if err := liveTally(ctx, tx, prev, &snap); err != nil {
			return err
		}
		snap.Memberships, err = scanMembers(ctx, tx, liveMembersSQL)
		return err
	})
	return snap, err
}

// liveTally sets snap's tally, answers and recordsAt to the records
// projection's tables as tx sees them: read from scratch, or refreshed from
// prev when it is of snap's generations.
func liveTally(ctx context.Context, tx pgx.Tx, prev *Snapshot, snap *Snapshot) error {
	var at int64
	if err := tx.QueryRow(ctx, recordsAtSQL, records.Name).Scan(&at); err != nil {
		return fmt.Errorf("records position: %w", err)
	}
	snap.recordsAt = uint64(at)
	var err error
	if prev == nil || prev.gens != snap.gens || prev.recordsAt > snap.recordsAt {
		t := newTally().edit()
		if err := scanLiveRecords(ctx, tx, func(r *Record) { t.add(r, 1) }, liveRecordsSQL); err != nil {
			return err
		}
		snap.Tally = t.Tally
		snap.Answers, err = scanAnswers(ctx, tx, liveAnswersSQL)
		return err
	}
	// Answers change in place (a questionnaire is never removed): those
	// changed since prev are read and decoded again.
	changed, err := scanAnswers(ctx, tx, changedAnswersSQL, int64(prev.recordsAt))
	if err != nil {
		return err
	}
	if snap.Tally, err = refreshTally(ctx, tx, prev, changed); err != nil {
		return err
	}
	snap.Answers = refreshAnswers(prev.Answers, changed)
	return nil
}

// recordsAtSQL reads how far the records projection has applied the
// stream: what its tables hold in the same transaction.
const recordsAtSQL = `SELECT coalesce(max(position), 0) FROM gcm.projection_builds WHERE status = 'active' AND name = $1`

// refreshTally is prev's tally with the records changed after it was read
// (prev.recordsAt) taken away as they were then and added as they are now.
//   - A hand-made record's earlier version comes from its history, as in
//     AsOf: one index probe per record changed since.
//   - Derived records change only with their questionnaire (answered anew,
//     or moved on), all of them at once: their earlier versions are
//     derived from the questionnaire's answers in prev, as AsOf derives
//     them.
//
// prev's tally is shared with its readers and stays as it is.
func refreshTally(ctx context.Context, tx pgx.Tx, prev *Snapshot, answers []Answer) (*Tally, error) {
	t := prev.Tally.edit()
	if err := scanPastRecords(ctx, tx, func(r *Record) { t.add(r, -1) }, asOfChangedSQL, int64(prev.recordsAt)); err != nil {
		return nil, err
	}
	if len(answers) > 0 {
		was := answersByKey(prev.Answers)
		for _, a := range answers {
			if old := was[answerKey{a.ISCM, a.ID}]; old != nil {
				for r := range derivedRecords(old) {
					t.add(r, -1)
				}
			}
		}
	}
	if err := scanLiveRecords(ctx, tx, func(r *Record) { t.add(r, 1) }, liveRecordsSQL+" WHERE updated_position > $1", int64(prev.recordsAt)); err != nil {
		return nil, err
	}
	err := t.repair(func(k currentKey) (*Record, error) {
		var best *Record
		err := scanLiveRecords(ctx, tx, func(r *Record) { best = r }, liveBestSQL, k.iscm, k.kind, scopeStatuses(k.iom))
		return best, err
	})
	return t.Tally, err
}

// liveBestSQL reads the current record of one ISCM and kind among those of
// the given statuses, in the order of better.
const liveBestSQL = liveRecordsSQL + ` WHERE iscm = $1 AND kind = $2 AND status = ANY($3)
ORDER BY source = 'manual' DESC, updated_position DESC, id COLLATE "C" DESC LIMIT 1`

// pastBestSQL reads the hand-made record of one ISCM and kind among those
// of the given statuses unchanged since the position that changed last.
// Its order is better's, as liveBestSQL's: an order the updated_position
// index gives would let the planner walk that index back from the
// position through every record, for an ISCM with none of the kind.
const pastBestSQL = asOfKeptSQL + ` AND iscm = $2 AND kind = $3 AND status = ANY($4)
ORDER BY source = 'manual' DESC, updated_position DESC, id COLLATE "C" DESC LIMIT 1`

// scopeStatuses are the statuses a scope counts.
func scopeStatuses(iom bool) []string {
	if iom {
		return []string{events.StatusPublished, events.StatusSubmitted}
	}
	return []string{events.StatusPublished}
}

// AsOf returns the snapshot at an earlier position, rebuilt from the
// history tables. Position must not be beyond what the projections have
// applied.
func (s *Store) AsOf(ctx context.Context, position uint64) (Snapshot, error) {
	_, gens, err := s.state(ctx, s.pool)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot as of %d: %w", position, err)
	}
	if snap := s.cachedPast(position, gens); snap != nil {
		return *snap, nil
	}
	s.buildPast.Lock()
	defer s.buildPast.Unlock()
	if snap := s.cachedPast(position, gens); snap != nil {
		return *snap, nil
	}
	snap, err := s.readAsOf(ctx, position)
	if err != nil {
		return Snapshot{}, err
	}
	s.mu.Lock()
	s.past = keepPast(append([]*Snapshot{&snap}, s.past...))
	s.mu.Unlock()
	return snap, nil
}

// keepPast is the pastSnapshots most recently used past snapshots.
func keepPast(past []*Snapshot) []*Snapshot {
	if len(past) > pastSnapshots {
		clear(past[pastSnapshots:]) // let the dropped ones go
		return past[:pastSnapshots]
	}
	return past
}

func (s *Store) cachedPast(position uint64, gens string) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.past {
		if c.Position == position && c.gens == gens {
			// Move to the front: the cache keeps the most recently used.
			copy(s.past[1:i+1], s.past[:i])
			s.past[0] = c
			return c
		}
	}
	return nil
}

// Memo returns what compute returns for snap, computed once while it stays
// among the results most recently asked for. key names the report and
// everything else it depends on (its parameters, the caller's scope); the
// snapshot's position and generations complete it. compute must be a pure
// function of snap and what key names.
func (s *Store) Memo(key string, snap Snapshot, compute func() any) any {
	// A past snapshot's reports are kept apart from the live one's at the
	// same position: they should be equal, and are not assumed to be.
	key = fmt.Sprintf("%s@%d/%s/%t", key, snap.Position, snap.gens, snap.past)
	if v, ok := s.memoGet(key); ok {
		return v
	}
	v := compute()
	s.memoPut(key, v)
	return v
}

// MemoNow is Memo for a result read from the read models as they stand
// (compute queries them): it is kept until the source projections move.
// What compute reads may be ahead of the position it is kept under, never
// behind it.
func (s *Store) MemoNow(ctx context.Context, key string, compute func() (any, error)) (any, error) {
	pos, gens, err := s.state(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	key = fmt.Sprintf("%s@%d/%s", key, pos, gens)
	if v, ok := s.memoGet(key); ok {
		return v, nil
	}
	v, err := compute()
	if err != nil {
		return nil, err
	}
	s.memoPut(key, v)
	return v, nil
}

func (s *Store) memoGet(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, e := range s.memo {
		if e.key == key {
			copy(s.memo[1:i+1], s.memo[:i])
			s.memo[0] = e
			return e.v, true
		}
	}
	return nil, false
}

func (s *Store) memoPut(key string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.memo = append([]memoEntry{{key, v}}, s.memo...)
	if len(s.memo) > memoSize {
		s.memo = s.memo[:memoSize]
	}
}

// asOfKeptSQL reads the hand-made records that have not changed since the
// position: they are at the position what they are now. Hand-made records
// are never deleted from the records table.
const asOfKeptSQL = liveRecordsSQL + `
WHERE source = 'manual' AND updated_position <= $1`

// changedSinceSQL counts the records changed since a position, up to a
// limit.
const changedSinceSQL = `SELECT count(*) FROM (SELECT FROM records.records WHERE updated_position > $1 LIMIT $2) x`

// asOfChangedSQL rebuilds the hand-made records changed since the position
// (and created before it) from their history: the content of the last
// recorded/revised event and the status after the last event up to it,
// both from one index scan of the record's history up to the position. The
// cost follows the number of records changed since, not of events. When a
// record was first recorded does not change: the live read's created_at.
const asOfChangedSQL = `
SELECT r.iscm, r.kind, r.id, x.status, 'manual', '', 0, x.content, x.position, r.created_at
FROM records.records r
CROSS JOIN LATERAL (
    SELECT (array_agg(h.status ORDER BY h.position DESC))[1] AS status, max(h.position) AS position,
           (array_agg(h.content::text ORDER BY h.position DESC)
               FILTER (WHERE h.event_type LIKE '%.recorded' OR h.event_type LIKE '%.revised'))[1] AS content
    FROM records.history h
    WHERE h.iscm = r.iscm AND h.kind = r.kind AND h.id = r.id AND h.position <= $1
) x
WHERE r.source = 'manual' AND r.created_position <= $1 AND r.updated_position > $1`

// asOfAnswersSQL finds each questionnaire's answers as of the position:
// its status after its last event up to it and the answers of its last
// answer up to it, with an index probe each per questionnaire (the
// questionnaires table keeps every one that ever was), not a pass over
// every questionnaire event of the history.
const asOfAnswersSQL = `
SELECT q.iscm, q.id, q.channel, q.cycle, l.status, b.content, l.position
FROM records.questionnaires q
CROSS JOIN LATERAL (
    SELECT h.status, h.position FROM records.history h
    WHERE h.iscm = q.iscm AND h.kind = 'questionnaire' AND h.id = q.id AND h.position <= $1
    ORDER BY h.position DESC LIMIT 1
) l
CROSS JOIN LATERAL (
    SELECT h.content FROM records.history h
    WHERE h.iscm = q.iscm AND h.kind = 'questionnaire' AND h.id = q.id AND h.position <= $1
      AND h.event_type = 'questionnaire.answered'
    ORDER BY h.position DESC LIMIT 1
) b`

// asOfMembersSQL finds each State's last change in each ISCM up to the
// position with one index probe per pair: the memberships table keeps every
// pair that ever was (a departure only marks it inactive), so the cost
// follows the number of pairs, not the length of the history.
const asOfMembersSQL = `
SELECT m.iscm, m.state, h.status FROM registry.memberships m
CROSS JOIN LATERAL (
    SELECT status, active FROM registry.membership_history h
    WHERE h.iscm = m.iscm AND h.state = m.state AND h.position <= $1
    ORDER BY h.position DESC LIMIT 1
) h
WHERE h.active
ORDER BY m.iscm, m.state`

// readAsOf rebuilds the snapshot at an earlier position from the history
// tables, from the side s.Past says (by default the one with fewer records
// to rebuild):
//   - forward: the records unchanged since the position read as they are,
//     those changed since rebuilt from their history, those derived from
//     answers derived again from the answers as of the position;
//   - back from the live snapshot (brought up to date in the same
//     transaction, or read in it when there is none): pastTally.
func (s *Store) readAsOf(ctx context.Context, position uint64) (Snapshot, error) {
	snap := Snapshot{Position: position, past: true}
	s.mu.Lock()
	base := s.live
	s.mu.Unlock()
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if _, snap.gens, err = s.state(ctx, tx); err != nil {
			return err
		}
		if snap.Answers, err = scanAnswers(ctx, tx, asOfAnswersSQL, int64(position)); err != nil {
			return err
		}
		if snap.Memberships, err = scanMembers(ctx, tx, asOfMembersSQL, int64(position)); err != nil {
			return err
		}
		if s.Past == PastFromLive || (s.Past == PastCheaper && base != nil && base.gens == snap.gens) {
			live := Snapshot{gens: snap.gens}
			if err := liveTally(ctx, tx, base, &live); err != nil {
				return err
			}
			back := s.Past == PastFromLive
			if !back {
				var changed int
				if err := tx.QueryRow(ctx, changedSinceSQL, int64(position), live.Tally.records/2+1).Scan(&changed); err != nil {
					return err
				}
				back = 2*changed < live.Tally.records
			}
			if back {
				snap.Tally, err = pastTally(ctx, tx, &live, snap.Answers, position)
				return err
			}
		}
		t := newTally().edit()
		add := func(r *Record) { t.add(r, 1) }
		if err := scanLiveRecords(ctx, tx, add, asOfKeptSQL, int64(position)); err != nil {
			return err
		}
		if err := scanPastRecords(ctx, tx, add, asOfChangedSQL, int64(position)); err != nil {
			return err
		}
		for i := range snap.Answers {
			for r := range derivedRecords(&snap.Answers[i]) {
				add(r)
			}
		}
		snap.Tally = t.Tally
		return nil
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot as of %d: %w", position, err)
	}
	return snap, nil
}

// pastTally is live's tally taken back to the position: the records changed
// since, as they are now, taken away; the hand-made ones among them created
// before the position added as they were then (from their history), and
// the derived records of each questionnaire changed since added as its
// answers then (answers, as of the position) derive them. A current record
// that went stale is found among those added back, the hand-made records
// unchanged since and the records the answers then derive.
func pastTally(ctx context.Context, tx pgx.Tx, live *Snapshot, answers []Answer, position uint64) (*Tally, error) {
	t := live.Tally.edit()
	if err := scanLiveRecords(ctx, tx, func(r *Record) { t.add(r, -1) }, liveRecordsSQL+" WHERE updated_position > $1", int64(position)); err != nil {
		return nil, err
	}
	if err := scanPastRecords(ctx, tx, func(r *Record) { t.add(r, 1) }, asOfChangedSQL, int64(position)); err != nil {
		return nil, err
	}
	then := answersByKey(answers)
	for _, a := range live.Answers {
		if old := then[answerKey{a.ISCM, a.ID}]; old != nil && a.Pos > position {
			for r := range derivedRecords(old) {
				t.add(r, 1)
			}
		}
	}
	err := t.repair(func(k currentKey) (*Record, error) {
		var best *Record
		if err := scanLiveRecords(ctx, tx, func(r *Record) { best = r }, pastBestSQL, int64(position), k.iscm, k.kind, scopeStatuses(k.iom)); err != nil {
			return nil, err
		}
		sc := Scope{IncludeSubmitted: k.iom}
		for i := range answers {
			if answers[i].ISCM != k.iscm {
				continue
			}
			for r := range derivedRecords(&answers[i]) {
				if r.Kind == k.kind && sc.counts(r.Status) && (best == nil || better(r, best)) {
					best = r
				}
			}
		}
		return best, nil
	})
	return t.Tally, err
}

// answerKey names a questionnaire's answers by ISCM and questionnaire id.
type answerKey struct{ iscm, id string }

// answersByKey indexes answers by their key.
func answersByKey(as []Answer) map[answerKey]*Answer {
	out := make(map[answerKey]*Answer, len(as))
	for i := range as {
		out[answerKey{as[i].ISCM, as[i].ID}] = &as[i]
	}
	return out
}

// derivedRecords are the records derived from a questionnaire's answers,
// as the records projection derives them.
func derivedRecords(a *Answer) iter.Seq[*Record] {
	return func(yield func(*Record) bool) {
		for _, d := range a.Answers.Derive() {
			r := Record{
				ISCM: a.ISCM, Kind: d.Content.RecordKind(), ID: events.DerivedID(a.ID, d.Part), Status: a.Status,
				Source: "questionnaire", Questionnaire: a.ID, Cycle: a.Cycle, Pos: a.Pos,
			}
			r.setCols(records.Columns(d.Content))
			if !yield(&r) {
				return
			}
		}
	}
}

// scanLiveRecords reads records from the columns of liveRecordsSQL and
// passes each to f, a new Record each time.
func scanLiveRecords(ctx context.Context, tx pgx.Tx, f func(*Record), sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r := new(Record)
		var from *time.Time
		var pos int64
		if err := rows.Scan(&r.ISCM, &r.Kind, &r.ID, &r.Status, &r.Source, &r.Questionnaire, &r.Cycle,
			&r.Title, &r.Subkind, &r.Category, &from, &r.Objectives, &pos, &r.RecordedAt); err != nil {
			return err
		}
		r.Pos = uint64(pos)
		if from != nil {
			r.From = events.DateOf(*from)
		}
		if r.Source == "questionnaire" {
			// Derived records are dated by their cycle, as in AsOf.
			r.RecordedAt = time.Time{}
		}
		f(r)
	}
	return rows.Err()
}

// scanPastRecords reads records rebuilt from their history (the columns
// of asOfChangedSQL, their content decoded) and passes each to f as it
// comes, a new Record each time.
func scanPastRecords(ctx context.Context, tx pgx.Tx, f func(*Record), sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		r := new(Record)
		var content []byte
		var pos int64
		if err := rows.Scan(&r.ISCM, &r.Kind, &r.ID, &r.Status, &r.Source, &r.Questionnaire, &r.Cycle, &content, &pos, &r.RecordedAt); err != nil {
			return err
		}
		r.Pos = uint64(pos)
		c, err := decodeContent(r.Kind, content)
		if err != nil {
			return fmt.Errorf("%s %s: %w", r.Kind, r.ID, err)
		}
		r.setCols(records.Columns(c))
		f(r)
	}
	return rows.Err()
}

// decodeContent reads a record's stored content by its kind.
func decodeContent(kind string, b []byte) (events.Content, error) {
	var c events.Content
	var err error
	switch kind {
	case events.KindPosition:
		c, err = decode[events.Position](b)
	case events.KindAgendaItem:
		c, err = decode[events.AgendaItem](b)
	case events.KindStocktaking:
		c, err = decode[events.Stocktaking](b)
	case events.KindActionPlan:
		c, err = decode[events.ActionPlan](b)
	case events.KindActivity:
		c, err = decode[events.Activity](b)
	case events.KindPartnership:
		c, err = decode[events.Partnership](b)
	case events.KindSubmission:
		c, err = decode[events.Submission](b)
	case events.KindHinderingFactor:
		c, err = decode[events.HinderingFactor](b)
	case events.KindResource:
		c, err = decode[events.Resource](b)
	case events.KindExpansion:
		c, err = decode[events.Expansion](b)
	default:
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	return c, err
}

func decode[C events.Content](b []byte) (events.Content, error) {
	var c C
	err := json.Unmarshal(b, &c)
	return c, err
}

func scanAnswers(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]Answer, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Answer, error) {
		var a Answer
		var body []byte
		var pos int64
		if err := row.Scan(&a.ISCM, &a.ID, &a.Channel, &a.Cycle, &a.Status, &body, &pos); err != nil {
			return a, err
		}
		a.Pos = uint64(pos)
		if err := json.Unmarshal(body, &a.Answers); err != nil {
			return a, fmt.Errorf("answers %s %s: %w", a.ISCM, a.ID, err)
		}
		return a, nil
	})
}

// refreshAnswers is prev with the answers changed since it replaced or
// added. prev is shared with its snapshot's readers and stays as it is.
func refreshAnswers(prev, changed []Answer) []Answer {
	if len(changed) == 0 {
		return prev
	}
	type key struct{ iscm, id string }
	at := make(map[key]int, len(prev))
	out := slices.Clone(prev)
	for i, a := range out {
		at[key{a.ISCM, a.ID}] = i
	}
	for _, a := range changed {
		if i, ok := at[key{a.ISCM, a.ID}]; ok {
			out[i] = a
		} else {
			out = append(out, a)
		}
	}
	return out
}

func scanMembers(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]Membership, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[Membership])
}

// sortedKeys returns a set's members, sorted.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
