package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestMixIsValid checks that the replay mix only asks what the product
// allows: lifecycle steps in order, revisions of records that exist and are
// not withdrawn, milestones of plans that exist.
func TestMixIsValid(t *testing.T) {
	m := newMix(newGenerator(catalog.Default(), 7))
	status := map[string]string{}
	milestones := map[string]map[string]bool{}
	types := map[string]int{}
	for range 20_000 {
		env, err := m.next()
		if err != nil {
			t.Fatal(err)
		}
		types[env.Type]++
		p, err := events.Decode(env)
		if err != nil {
			t.Fatalf("%s: %v", env.Type, err)
		}
		key := env.Subject()
		st, exists := status[key]
		switch p := p.(type) {
		case events.RecordSubmitted:
			if st != events.StatusDraft {
				t.Fatalf("%s submitted from %q", key, st)
			}
			status[key] = events.StatusSubmitted
		case events.RecordPublished:
			if st != events.StatusSubmitted {
				t.Fatalf("%s published from %q", key, st)
			}
			status[key] = events.StatusPublished
		case events.RecordWithdrawn:
			if st != events.StatusPublished {
				t.Fatalf("%s withdrawn from %q", key, st)
			}
			status[key] = events.StatusWithdrawn
		case events.MilestoneProgressed:
			if !milestones[key][p.MilestoneID] || st == events.StatusWithdrawn {
				t.Fatalf("%s: progress on milestone %q of a plan that has no such milestone or is withdrawn", key, p.MilestoneID)
			}
		case events.QuestionnaireAnswered:
			if !exists && !p.Draft {
				status[key] = events.StatusSubmitted
			}
		default:
			if _, ok := events.RecordedContent(p); !ok {
				continue // a membership change
			}
			if strings.HasSuffix(env.Type, ".recorded") {
				if exists {
					t.Fatalf("%s recorded twice", key)
				}
				status[key] = events.StatusDraft
				if plan, ok := p.(events.Recorded[events.ActionPlan]); ok {
					milestones[key] = map[string]bool{}
					for _, ms := range plan.Record.Milestones {
						milestones[key][ms.ID] = true
					}
				}
			} else if !exists || st == events.StatusWithdrawn || st == events.StatusSubmitted {
				t.Fatalf("%s revised in status %q", key, st)
			}
		}
	}
	for _, typ := range []string{"iscm.member_joined", "activity.recorded", "activity.revised", "record.submitted", "record.published",
		"record.withdrawn", "action_plan.milestone_progressed", "questionnaire.answered", "position.recorded"} {
		if types[typ] == 0 {
			t.Errorf("no %s in 20000 events of the mix: %v", typ, types)
		}
	}
}

// TestRecordsProjectionBatchesEqualOneByOne rebuilds the records read model
// from a stream of the replay mix twice, in batches of a thousand events and
// one event at a time, and compares every table row by row: the set-based
// Apply gives the same result as applying the events one by one.
func TestRecordsProjectionBatchesEqualOneByOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, nc := testenv.NATS(t)
	if _, err := generate(ctx, nc, 4000, 100, 11, true); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	build := func(batch int) *pgxpool.Pool {
		pool, err := pgxpool.New(ctx, testenv.Postgres(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := migrations.Up(ctx, pool, migrations.Engine()); err != nil {
			t.Fatal(err)
		}
		eng := engine.New(pool, stream, engine.Config{BatchSize: batch}, productProjections()...)
		if err := eng.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		if err := eng.Rebuild(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
		return pool
	}
	batched, single := build(1000), build(1)
	for _, c := range []struct{ table, order string }{
		{"records", "iscm, kind, id"},
		{"feed", "iscm, kind, id"},
		{"history", "position"},
		{"questionnaires", "iscm, cycle, channel"},
		{"milestones", "iscm, plan_id, milestone_id"},
	} {
		q := "SELECT to_jsonb(t)::text FROM records." + c.table + " t ORDER BY " + c.order
		want := dump(ctx, t, single, q)
		got := dump(ctx, t, batched, q)
		if len(want) < 10 {
			t.Fatalf("records.%s holds %d rows after 4000 events of the mix: the stream lacks variety", c.table, len(want))
		}
		if len(got) != len(want) {
			t.Errorf("records.%s: %d rows in batches, %d one by one", c.table, len(got), len(want))
			continue
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("records.%s row %d differs:\nbatches:    %s\none by one: %s", c.table, i, got[i], want[i])
				break
			}
		}
	}
	var withdrawn, derived int
	if err := batched.QueryRow(ctx, `SELECT count(*) FILTER (WHERE change = 'withdrawn'), count(*) FILTER (WHERE source = 'questionnaire') FROM records.feed`).Scan(&withdrawn, &derived); err != nil {
		t.Fatal(err)
	}
	if withdrawn == 0 || derived == 0 {
		t.Errorf("the feed holds %d withdrawals and %d derived records: the comparison misses cases", withdrawn, derived)
	}
}

func dump(ctx context.Context, t *testing.T, pool *pgxpool.Pool, q string) []string {
	t.Helper()
	rows, err := pool.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
