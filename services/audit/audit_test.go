package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/projections/migrations"
	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Up(context.Background(), pool, auth.Migrations()); err != nil {
		t.Fatal(err)
	}
	return pool
}

func count(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM auth.audit`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func entry(i int, tokenID, actor, role string, status int) audit.Entry {
	return audit.Entry{
		At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second), TokenID: tokenID,
		Actor: actor, Role: role, Method: "POST", Path: fmt.Sprintf("/v1/iscms/sacm/activities/%d", i),
		Route: "POST /v1/iscms/{slug}/activities", Status: status, Outcome: audit.OutcomeOf(status),
		CorrelationID: fmt.Sprintf("c-%d", i), ClientAddr: "192.0.2.7",
	}
}

func TestRecordThenListNewestFirstWithFilters(t *testing.T) {
	pool := newPool(t)
	l := audit.Open(pool, audit.Config{})
	defer l.Close(context.Background())
	admin, sec := uuid.NewString(), uuid.NewString()
	const n = 25
	for i := range n {
		switch {
		case i%5 == 0:
			l.Record(entry(i, "", "anonymous", "anonymous", 401))
		case i%2 == 0:
			e := entry(i, admin, "IOM admin", "admin", 201)
			e.Position = uint64(100 + i)
			l.Record(e)
		default:
			e := entry(i, sec, "sacm secretariat", "secretariat", 403)
			e.ISCM, e.Reason = "sacm", "forbidden"
			l.Record(e)
		}
	}
	ctx := context.Background()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Every page newest first; all pages together list every entry once.
	seen := map[int64]bool{}
	var prev time.Time
	cursor := ""
	for pages := 0; ; pages++ {
		page, err := l.List(ctx, audit.Query{Limit: 4, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Items {
			if seen[e.ID] {
				t.Fatalf("entry %d listed twice", e.ID)
			}
			seen[e.ID] = true
			if !prev.IsZero() && e.At.After(prev) {
				t.Fatalf("entry at %v after one at %v: not newest first", e.At, prev)
			}
			prev = e.At
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if len(seen) != n {
		t.Fatalf("listed %d entries, want %d", len(seen), n)
	}

	first, err := l.List(ctx, audit.Query{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := first.Items[0]
	want := entry(24, admin, "IOM admin", "admin", 201)
	want.ID, want.Position, want.At = got.ID, 124, got.At.UTC()
	got.At = got.At.UTC()
	if got != want {
		t.Fatalf("newest entry\n got  %+v\n want %+v", got, want)
	}

	for _, c := range []struct {
		q    audit.Query
		want int
	}{
		{audit.Query{Actor: "anonymous"}, 5},
		{audit.Query{Actor: admin}, 10},
		{audit.Query{Actor: "sacm secretariat"}, 10},
		{audit.Query{Status: "4xx"}, 15},
		{audit.Query{Status: "403"}, 10},
		{audit.Query{Status: "2xx", Actor: admin}, 10},
		{audit.Query{Outcome: audit.OutcomeRefused}, 15},
		{audit.Query{Route: "POST /v1/iscms/{slug}/activities"}, 25},
		{audit.Query{Route: "GET /v1/iscms"}, 0},
	} {
		page, err := l.List(ctx, audit.Query{Actor: c.q.Actor, Status: c.q.Status, Outcome: c.q.Outcome, Route: c.q.Route, Limit: 200})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) != c.want {
			t.Errorf("%+v: %d entries, want %d", c.q, len(page.Items), c.want)
		}
	}
	for _, q := range []audit.Query{
		{Cursor: "not-a-cursor"}, {Cursor: strings.Repeat("A", 10000)}, {Status: "6xx"}, {Status: "abc"},
		{Outcome: "maybe"}, {Limit: 201}, {Limit: -1}, {Actor: strings.Repeat("x", 201)},
	} {
		if _, err := l.List(ctx, q); !errors.Is(err, audit.ErrInvalidQuery) {
			t.Errorf("%+v: err %v, want ErrInvalidQuery", q, err)
		}
	}
}

func TestOddValuesDoNotLoseABatch(t *testing.T) {
	pool := newPool(t)
	l := audit.Open(pool, audit.Config{})
	defer l.Close(context.Background())
	odd := entry(1, "not-a-uuid", "", "root", 200)
	odd.Path = "/v1/\xff\x00" + strings.Repeat("é", 5000)
	odd.CorrelationID = "\xfe\xfd"
	odd.Method = ""
	l.Record(odd)
	l.Record(entry(2, "", "anonymous", "anonymous", 401))
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	page, err := l.List(context.Background(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 {
		t.Fatalf("%d entries written, want 2", len(page.Items))
	}
	e := page.Items[1]
	if e.Role != "anonymous" || e.Actor != "anonymous" || e.TokenID != "" || len([]rune(e.Path)) != 1000 || strings.Contains(e.Path, "\x00") {
		t.Fatalf("odd entry stored as %+v", e)
	}
}

// TestFullBufferDropsAndCounts holds the table locked, so the writer cannot
// write, and records more than the buffer holds: Record never waits, the
// surplus is counted in gcm_audit_dropped_total, and what was buffered is
// written once the table is free again.
func TestFullBufferDropsAndCounts(t *testing.T) {
	pool := newPool(t)
	reg := prometheus.NewRegistry()
	l := audit.Open(pool, audit.Config{Buffer: 10, Batch: 5, Registerer: reg})
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE auth.audit IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	l.Record(entry(0, "", "anonymous", "anonymous", 401))
	time.Sleep(200 * time.Millisecond) // the writer takes it and waits for the lock
	const more = 30
	var slowest time.Duration
	for i := 1; i <= more; i++ {
		start := time.Now()
		l.Record(entry(i, "", "anonymous", "anonymous", 401))
		slowest = max(slowest, time.Since(start))
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("Record took %v with the writer stuck: it must not wait", slowest)
	}
	dropped := droppedTotal(t, reg)
	if dropped != more-10 {
		t.Errorf("dropped %v entries, want %d (the buffer holds 10)", dropped, more-10)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, pool); n != 1+10 {
		t.Errorf("%d entries written, want 11", n)
	}
	l.Record(entry(99, "", "anonymous", "anonymous", 401))
	if d := droppedTotal(t, reg); d != dropped+1 {
		t.Errorf("an entry recorded after Close was not counted as dropped: %v", d)
	}
	out, err := testutil.GatherAndCount(reg, "gcm_audit_dropped_total")
	if err != nil || out != 3 {
		t.Errorf("gcm_audit_dropped_total has %d series (%v), want one per reason", out, err)
	}
}

// droppedTotal sums gcm_audit_dropped_total over its reasons.
func droppedTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "gcm_audit_dropped_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestCloseWritesWhatIsBuffered(t *testing.T) {
	pool := newPool(t)
	l := audit.Open(pool, audit.Config{Batch: 7})
	const n = 100
	for i := range n {
		l.Record(entry(i, "", "anonymous", "anonymous", 401))
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := count(t, pool); got != n {
		t.Fatalf("%d entries written at Close, want %d", got, n)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTableIsAppendOnly(t *testing.T) {
	pool := newPool(t)
	l := audit.Open(pool, audit.Config{})
	l.Record(entry(1, "", "anonymous", "anonymous", 401))
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{`UPDATE auth.audit SET status = 200`, `DELETE FROM auth.audit`, `TRUNCATE auth.audit`,
		`DELETE FROM auth.audit WHERE false`} {
		if _, err := pool.Exec(context.Background(), stmt); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v, want refused as append-only", stmt, err)
		}
	}
	if n := count(t, pool); n != 1 {
		t.Fatalf("%d entries left, want 1", n)
	}
}
