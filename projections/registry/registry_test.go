package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// dump reads the registry's tables in a stable order.
func dump(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var out string
	for _, q := range []string{
		`SELECT slug, version FROM registry.iscms ORDER BY slug`,
		`SELECT iscm, state, status, coalesce(since::text, ''), coalesce(until::text, ''), active, position FROM registry.memberships ORDER BY iscm, state`,
		`SELECT position, iscm, state, status, active FROM registry.membership_history ORDER BY position`,
	} {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintln(vals)
	}
	return out
}

// The batch fold must give what applying events one at a time gives, for
// any mix of joins, status changes and departures.
func TestBatchesEqualOneEventAtATime(t *testing.T) {
	ctx := context.Background()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamName, Subjects: []string{events.SubjectWildcard}})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(iscm string, p events.Payload) {
		env, err := events.New(iscm, events.KindISCM, iscm, p, time.Time{}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(env)
		if _, err := js.Publish(ctx, env.Subject(), data); err != nil {
			t.Fatal(err)
		}
	}
	iscms := []string{"cmc", "sacm", "ocam"}
	for _, i := range iscms {
		publish(i, events.ISCMRegistered{Slug: i, Name: i, ShortName: i, Kind: "rcp", Region: "Americas"})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	states := []string{"ARG", "BRA", "CHL", "MEX", "GTM"}
	member := map[[2]string]bool{}
	d := func(s string) events.Date { x, _ := events.ParseDate(s); return x }
	for range 600 {
		i, st := iscms[rng.IntN(len(iscms))], states[rng.IntN(len(states))]
		k := [2]string{i, st}
		switch {
		case !member[k]:
			publish(i, events.MemberJoined{State: st, Status: []string{"member", "observer"}[rng.IntN(2)], Since: d("2019-01-02")})
			member[k] = true
		case rng.IntN(2) == 0:
			publish(i, events.MemberStatusChanged{State: st, Status: []string{"member", "observer"}[rng.IntN(2)]})
		default:
			publish(i, events.MemberLeft{State: st, Until: d("2021-03-04")})
			member[k] = false
		}
	}
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := migrations.Up(ctx, pool, migrations.Engine()); err != nil {
		t.Fatal(err)
	}
	var dumps []string
	for _, size := range []int{1, 7, 1000} {
		e := engine.New(pool, stream, engine.Config{BatchSize: size}, Projection{})
		if err := e.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.Rebuild(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
		dumps = append(dumps, dump(t, pool))
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM registry.membership_history`).Scan(&rows); err != nil || rows != 600 {
		t.Fatalf("membership history has %d rows (%v), want 600", rows, err)
	}
	for i, size := range []int{7, 1000} {
		if diff := cmp.Diff(dumps[0], dumps[i+1]); diff != "" {
			t.Fatalf("batches of %d differ from one event at a time:\n%s", size, diff)
		}
	}
}
