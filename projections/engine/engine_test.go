package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
	"gcmtrack/projections/migrations"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// seen records every event it is given, once: a projection whose table
// shows exactly which positions were applied.
type seen struct {
	version int
	// failAfterApply makes the n-th Apply call fail with a transient error
	// after it has written, as a transaction aborted at commit would.
	failAfterApply atomic.Int32
	calls          atomic.Int32
	// poison names a state whose event the projection refuses.
	poison string
}

func (p *seen) Name() string          { return "seen" }
func (p *seen) Version() int          { return p.version }
func (p *seen) Handles(t string) bool { return t != events.ISCMRegistered{}.EventType() }
func (p *seen) Setup(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `CREATE TABLE seen (position bigint PRIMARY KEY, state text NOT NULL)`)
	return err
}

func (p *seen) Apply(ctx context.Context, tx pgx.Tx, batch []Event) error {
	n := p.calls.Add(1)
	rows := make([][]any, 0, len(batch))
	for _, ev := range batch {
		j, ok := ev.Payload.(events.MemberJoined)
		if !ok {
			return fmt.Errorf("unexpected %s", ev.Type)
		}
		if j.State == p.poison {
			return fmt.Errorf("cannot apply %s", j.State)
		}
		rows = append(rows, []any{int64(ev.Position), j.State})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"seen"}, []string{"position", "state"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	if f := p.failAfterApply.Load(); f > 0 && n == f {
		return &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command (simulated)"}
	}
	return nil
}

type fixture struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	pool   *pgxpool.Pool
}

func setup(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamName, Subjects: []string{events.SubjectWildcard}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Up(ctx, pool, migrations.Engine()); err != nil {
		t.Fatal(err)
	}
	return &fixture{js: js, stream: st, pool: pool}
}

func (f *fixture) publish(t *testing.T, env events.Envelope) uint64 {
	t.Helper()
	data, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := f.js.Publish(context.Background(), env.Subject(), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func (f *fixture) join(t *testing.T, state string) uint64 {
	t.Helper()
	env, err := events.New("sacm", events.KindISCM, "sacm", events.MemberJoined{State: state, Status: events.StatusMember}, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return f.publish(t, env)
}

func (f *fixture) joinMany(t *testing.T, n int) {
	t.Helper()
	codes := []string{"ARG", "BOL", "BRA", "CHL", "COL", "ECU", "GUY", "PRY", "PER", "SUR", "URY", "VEN"}
	for i := range n {
		f.join(t, codes[i%len(codes)])
	}
}

type row struct {
	Position int64
	State    string
}

func (f *fixture) rows(t *testing.T) []row {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT position, state FROM seen.seen ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) position(t *testing.T, name string) uint64 {
	t.Helper()
	p, err := ActivePosition(context.Background(), f.pool, []string{name})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, f *fixture, cfg Config, p Projection) (stop func()) {
	t.Helper()
	e := New(f.pool, f.stream, cfg, p)
	if err := e.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestAbortedBatchIsRetriedWithoutLossOrDoubles(t *testing.T) {
	f := setup(t)
	f.joinMany(t, 500)
	p := &seen{version: 1}
	p.failAfterApply.Store(2) // the second batch's transaction aborts after writing
	start(t, f, Config{BatchSize: 64}, p)
	waitFor(t, 20*time.Second, "projection to reach 500", func() bool { return f.position(t, "seen") == 500 })
	got := f.rows(t)
	if len(got) != 500 {
		t.Fatalf("%d rows, want 500", len(got))
	}
	for i, r := range got {
		if r.Position != int64(i+1) {
			t.Fatalf("row %d has position %d: an event was lost or doubled", i, r.Position)
		}
	}
}

func TestKilledProjectorResumesAndEqualsRebuild(t *testing.T) {
	f := setup(t)
	f.joinMany(t, 300)
	p := &seen{version: 1}
	stop := start(t, f, Config{BatchSize: 7}, p)
	waitFor(t, 20*time.Second, "some progress", func() bool { return f.position(t, "seen") > 0 })
	stop() // the process dies somewhere mid-stream
	f.joinMany(t, 200)
	start(t, f, Config{BatchSize: 50}, &seen{version: 1})
	waitFor(t, 20*time.Second, "projection to reach 500", func() bool { return f.position(t, "seen") == 500 })
	resumed := f.rows(t)

	e := New(f.pool, f.stream, Config{BatchSize: 1000}, &seen{version: 1})
	if err := e.Rebuild(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	rebuilt := f.rows(t)
	if diff := cmp.Diff(rebuilt, resumed); diff != "" {
		t.Fatalf("resumed read model differs from a fresh rebuild (-rebuilt +resumed):\n%s", diff)
	}
	if len(rebuilt) != 500 {
		t.Fatalf("rebuild has %d rows, want 500", len(rebuilt))
	}
	var schemas int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'p_seen_%'`).Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if schemas != 1 {
		t.Errorf("%d build schemas left after the rebuild, want only the new one", schemas)
	}
}

func TestPoisonEventsAreParkedAndTheRestApplied(t *testing.T) {
	f := setup(t)
	f.joinMany(t, 10)
	// An event from a future schema version this binary cannot read.
	env, err := events.New("sacm", events.KindISCM, "sacm", events.MemberJoined{State: "CHL"}, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env.SchemaVersion = 99
	future := f.publish(t, env)
	refused := f.join(t, "XKX") // the projection refuses this one
	f.joinMany(t, 10)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	start(t, f, Config{BatchSize: 100, Metrics: m}, &seen{version: 1, poison: "XKX"})
	waitFor(t, 20*time.Second, "projection to reach 22", func() bool { return f.position(t, "seen") == 22 })
	if got := len(f.rows(t)); got != 20 {
		t.Fatalf("%d rows applied, want the 20 good events", got)
	}
	rows, err := f.pool.Query(context.Background(), `SELECT position, error FROM gcm.dead_letters WHERE name = 'seen' ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	type dl struct {
		Position int64
		Error    string
	}
	parked, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dl])
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].Position != int64(future) || parked[1].Position != int64(refused) {
		t.Fatalf("parked = %+v, want positions %d and %d", parked, future, refused)
	}
	if !strings.Contains(parked[0].Error, events.ErrFutureSchema.Error()) {
		t.Errorf("future event parked with error %q", parked[0].Error)
	}
	if got := testutil.ToFloat64(m.parked.WithLabelValues("seen")); got != 2 {
		t.Errorf("dead letter metric = %v, want 2", got)
	}
}

func TestStandbyTakesOverWhenLeaderStops(t *testing.T) {
	f := setup(t)
	f.joinMany(t, 50)
	stopA := start(t, f, Config{Standby: 100 * time.Millisecond}, &seen{version: 1})
	waitFor(t, 20*time.Second, "leader to reach 50", func() bool { return f.position(t, "seen") == 50 })
	pb := &seen{version: 1}
	start(t, f, Config{Standby: 100 * time.Millisecond}, pb)
	f.joinMany(t, 10)
	waitFor(t, 20*time.Second, "leader to reach 60", func() bool { return f.position(t, "seen") == 60 })
	if pb.calls.Load() != 0 {
		t.Fatalf("standby applied %d batches while the leader ran", pb.calls.Load())
	}
	stopA()
	f.joinMany(t, 10)
	began := time.Now()
	waitFor(t, 10*time.Second, "standby to take over", func() bool { return f.position(t, "seen") == 70 })
	t.Logf("standby took over in %s", time.Since(began).Round(time.Millisecond))
	if got := len(f.rows(t)); got != 70 {
		t.Fatalf("%d rows, want 70", got)
	}
}

func TestNewVersionBuildsAlongsideAndSwitches(t *testing.T) {
	f := setup(t)
	f.joinMany(t, 40)
	stop := start(t, f, Config{}, &seen{version: 1})
	waitFor(t, 20*time.Second, "v1 to reach 40", func() bool { return f.position(t, "seen") == 40 })
	stop()
	// A new binary with version 2: v1 keeps serving until v2 has caught up.
	start(t, f, Config{Standby: 50 * time.Millisecond}, &seen{version: 2})
	waitFor(t, 20*time.Second, "v2 to become active", func() bool {
		var v int
		err := f.pool.QueryRow(context.Background(), `SELECT version FROM gcm.projection_builds WHERE name = 'seen' AND status = 'active'`).Scan(&v)
		return err == nil && v == 2
	})
	if got := len(f.rows(t)); got != 40 {
		t.Fatalf("v2 serves %d rows, want 40", got)
	}
	f.joinMany(t, 5)
	waitFor(t, 20*time.Second, "v2 to follow the stream", func() bool { return f.position(t, "seen") == 45 })
}

// indexedSeen defers an index until its build is activated.
type indexedSeen struct{ seen }

func (p *indexedSeen) Indexes() []string {
	return []string{`CREATE INDEX IF NOT EXISTS seen_state ON seen (state)`, `ANALYZE seen`}
}

// indexesOf lists the indexes of the seen table in a build's schema.
func (f *fixture) indexesOf(t *testing.T, generation int) []string {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'seen' ORDER BY 1`,
		fmt.Sprintf("p_seen_%d", generation))
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestDeferredIndexesComeWithActivation(t *testing.T) {
	f := setup(t)
	f.joinMany(t, 30)
	// A first build, created active and empty, has its indexes at once.
	stop := start(t, f, Config{}, &indexedSeen{seen{version: 1}})
	if got := f.indexesOf(t, 1); !slices.Equal(got, []string{"seen_pkey", "seen_state"}) {
		t.Fatalf("active build created with indexes %v", got)
	}
	waitFor(t, 20*time.Second, "v1 to reach 30", func() bool { return f.position(t, "seen") == 30 })
	stop()
	// A rebuild replays without the deferred index and creates it in the
	// transaction that activates the build.
	p := &indexedSeen{seen{version: 2}}
	e := New(f.pool, f.stream, Config{BatchSize: 10, Standby: 50 * time.Millisecond}, p)
	if err := e.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.indexesOf(t, 2); !slices.Equal(got, []string{"seen_pkey"}) {
		t.Fatalf("building generation created with indexes %v, want only its primary key", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.Run(ctx) }()
	waitFor(t, 20*time.Second, "v2 to become active", func() bool {
		var v int
		err := f.pool.QueryRow(context.Background(), `SELECT version FROM gcm.projection_builds WHERE name = 'seen' AND status = 'active'`).Scan(&v)
		return err == nil && v == 2
	})
	if got := f.indexesOf(t, 2); !slices.Equal(got, []string{"seen_pkey", "seen_state"}) {
		t.Fatalf("activated build has indexes %v", got)
	}
	if got := len(f.rows(t)); got != 30 {
		t.Fatalf("v2 serves %d rows, want 30", got)
	}
}
