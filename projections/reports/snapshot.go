// Package reports computes GCM Tracker's progress reports: the 2019
// review's figures from a cycle's questionnaire answers, objective and
// member-State coverage, evidence toward the review's recommendations
// (a)-(j), and review-cycle summaries per region.
//
// Every report is a pure function of a Snapshot: what the read models held
// at one stream position. A live snapshot is read from the current tables;
// a snapshot as of an earlier position is rebuilt from the history tables
// the projections keep of every event. Both go through the same
// computation, so a report as of position N equals what the live report
// said when the read models stood at N.
package reports

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
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

// Record is what reports need of one record.
type Record struct {
	ISCM, Kind, ID string
	Status         string
	Source         string // manual or questionnaire
	Questionnaire  string
	Cycle          int
	records.Cols
	Pos        uint64    // position of its last change
	RecordedAt time.Time // when it was first recorded
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

// Snapshot is what the read models held at Position.
type Snapshot struct {
	Position    uint64
	Records     []Record
	Answers     []Answer
	Memberships []Membership
}

// Store reads snapshots.
type Store struct{ pool *pgxpool.Pool }

// NewStore returns the reports' reader.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Position is how far both source projections have applied the stream.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	return engine.ActivePosition(ctx, s.pool, Sources)
}

const liveRecordsSQL = `
SELECT iscm, kind, id, status, source, coalesce(questionnaire, ''), coalesce(cycle, 0), content, updated_position, created_at
FROM records.records`

const liveAnswersSQL = `
SELECT iscm, id, channel, cycle, status, answers, version FROM records.questionnaires`

const liveMembersSQL = `SELECT iscm, state, status FROM registry.memberships WHERE active`

// Live reads the current read models in one consistent transaction.
func (s *Store) Live(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if snap.Position, err = engine.ActivePosition(ctx, tx, Sources); err != nil {
			return err
		}
		if snap.Records, err = scanRecords(ctx, tx, liveRecordsSQL); err != nil {
			return err
		}
		for i := range snap.Records {
			if snap.Records[i].Source == "questionnaire" {
				// Derived records are dated by their cycle, as in AsOf.
				snap.Records[i].RecordedAt = time.Time{}
			}
		}
		if snap.Answers, err = scanAnswers(ctx, tx, liveAnswersSQL); err != nil {
			return err
		}
		snap.Memberships, err = scanMembers(ctx, tx, liveMembersSQL)
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("live snapshot: %w", err)
	}
	return snap, nil
}

// asOfRecordsSQL rebuilds hand-made records at a position from their
// history: the content of the last recorded/revised event and the status
// after the last event up to it. Hand-made records are never deleted from
// the records table, so each is looked up in the history by its own index
// probes: the cost follows the number of records, not of events.
const asOfRecordsSQL = `
SELECT r.iscm, r.kind, r.id, l.status, 'manual', '', 0, b.content, l.position, f.recorded_at
FROM records.records r
CROSS JOIN LATERAL (
    SELECT h.status, h.position FROM records.history h
    WHERE h.iscm = r.iscm AND h.kind = r.kind AND h.id = r.id AND h.position <= $1
    ORDER BY h.position DESC LIMIT 1
) l
CROSS JOIN LATERAL (
    SELECT h.content FROM records.history h
    WHERE h.iscm = r.iscm AND h.kind = r.kind AND h.id = r.id AND h.position <= $1
      AND (h.event_type LIKE '%.recorded' OR h.event_type LIKE '%.revised')
    ORDER BY h.position DESC LIMIT 1
) b
CROSS JOIN LATERAL (
    SELECT h.recorded_at FROM records.history h
    WHERE h.iscm = r.iscm AND h.kind = r.kind AND h.id = r.id
    ORDER BY h.position LIMIT 1
) f
WHERE r.source = 'manual'
ORDER BY r.iscm, r.kind, r.id`

const asOfAnswersSQL = `
WITH last AS (
    SELECT DISTINCT ON (iscm, id) iscm, id, status, position
    FROM records.history WHERE position <= $1 AND kind = 'questionnaire'
    ORDER BY iscm, id, position DESC
), body AS (
    SELECT DISTINCT ON (iscm, id) iscm, id, content, position
    FROM records.history WHERE position <= $1 AND kind = 'questionnaire' AND event_type = 'questionnaire.answered'
    ORDER BY iscm, id, position DESC
)
SELECT l.iscm, l.id, split_part(l.id, '-', 2), split_part(l.id, '-', 1)::int, l.status, b.content, l.position
FROM last l JOIN body b USING (iscm, id)`

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

// AsOf rebuilds the snapshot at an earlier position from the history
// tables. Position must not be beyond what the projections have applied.
func (s *Store) AsOf(ctx context.Context, position uint64) (Snapshot, error) {
	snap := Snapshot{Position: position}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		if snap.Records, err = scanRecords(ctx, tx, asOfRecordsSQL, int64(position)); err != nil {
			return err
		}
		if snap.Answers, err = scanAnswers(ctx, tx, asOfAnswersSQL, int64(position)); err != nil {
			return err
		}
		snap.Memberships, err = scanMembers(ctx, tx, asOfMembersSQL, int64(position))
		return err
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot as of %d: %w", position, err)
	}
	// Records derived from answers, as the records projection derives them.
	for _, a := range snap.Answers {
		for _, d := range a.Answers.Derive() {
			snap.Records = append(snap.Records, Record{
				ISCM: a.ISCM, Kind: d.Content.RecordKind(), ID: events.DerivedID(a.ID, d.Part), Status: a.Status,
				Source: "questionnaire", Questionnaire: a.ID, Cycle: a.Cycle, Cols: records.Columns(d.Content), Pos: a.Pos,
			})
		}
	}
	return snap, nil
}

func scanRecords(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]Record, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Record, error) {
		var r Record
		var content []byte
		var pos int64
		if err := row.Scan(&r.ISCM, &r.Kind, &r.ID, &r.Status, &r.Source, &r.Questionnaire, &r.Cycle, &content, &pos, &r.RecordedAt); err != nil {
			return r, err
		}
		r.Pos = uint64(pos)
		c, err := decodeContent(r.Kind, content)
		if err != nil {
			return r, fmt.Errorf("%s %s: %w", r.Kind, r.ID, err)
		}
		r.Cols = records.Columns(c)
		return r, nil
	})
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
