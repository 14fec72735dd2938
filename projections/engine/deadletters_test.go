package engine

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"gcmtrack/events"
)

func TestParkedEventsAreRetriedAfterAFix(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	f.joinMany(t, 5)
	// An event of a schema version this binary does not know yet.
	env, err := events.New("sacm", events.KindISCM, "sacm", events.MemberJoined{State: "CHL", Status: events.StatusMember}, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env.SchemaVersion = 99
	future := f.publish(t, env)
	refused := f.join(t, "XKX") // the projection refuses this one
	f.joinMany(t, 5)

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := &seen{version: 1, poison: "XKX"}
	start(t, f, Config{BatchSize: 100, Metrics: m}, p)
	waitFor(t, 20*time.Second, "projection to reach 12", func() bool { return f.position(t, "seen") == 12 })
	if got := len(f.rows(t)); got != 10 {
		t.Fatalf("%d rows applied, want the 10 good events, those after the parked ones included", got)
	}
	if got := testutil.ToFloat64(m.parked.WithLabelValues("seen")); got != 2 {
		t.Errorf("dead letter metric = %v, want 2", got)
	}
	parked, err := ListDeadLetters(ctx, f.pool, DeadLetterFilter{Projection: "seen", Unresolved: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 2 || parked[0].Position != future || parked[1].Position != refused ||
		parked[0].BuildStatus != statusActive || parked[0].EventType != "iscm.member_joined" {
		t.Fatalf("parked = %+v, want positions %d and %d of the active build", parked, future, refused)
	}
	if !strings.Contains(parked[0].Error, events.ErrFutureSchema.Error()) {
		t.Fatalf("the future event was parked with %q", parked[0].Error)
	}

	// Still broken: both fail again and keep their dead letters.
	retrier := New(f.pool, nil, Config{}, &seen{version: 1, poison: "XKX"})
	res, err := retrier.RetryDeadLetters(ctx, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Err == nil || res[1].Err == nil || !strings.Contains(res[1].Error, "cannot apply XKX") {
		t.Fatalf("retry before the fix: %+v", res)
	}

	// The upgrade: a binary that reads the new schema version (simulated by
	// rewriting the stored event to the version this one knows) and whose
	// projection accepts XKX. The retry runs while the projector runs.
	var stored events.Envelope
	var data []byte
	if err := f.pool.QueryRow(ctx, `SELECT data FROM gcm.dead_letters WHERE position = $1`, int64(future)).Scan(&data); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	stored.SchemaVersion = 1
	data, _ = json.Marshal(stored)
	if _, err := f.pool.Exec(ctx, `UPDATE gcm.dead_letters SET data = $2 WHERE position = $1`, int64(future), data); err != nil {
		t.Fatal(err)
	}
	res, err = New(f.pool, nil, Config{}, &seen{version: 1}).RetryDeadLetters(ctx, "seen", []uint64{future})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Err != nil || res[0].ResolvedAt == nil {
		t.Fatalf("retry of position %d after the fix: %+v", future, res)
	}
	res, err = New(f.pool, nil, Config{}, &seen{version: 1}).RetryDeadLetters(ctx, "seen", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Position != refused || res[0].Err != nil {
		t.Fatalf("retry of the rest: %+v", res)
	}
	rows := f.rows(t)
	if len(rows) != 12 {
		t.Fatalf("%d rows after the retries, want 12", len(rows))
	}
	for i, r := range rows {
		if r.Position != int64(i+1) {
			t.Fatalf("row %d is position %d: an event missing or doubled", i, r.Position)
		}
	}
	left, err := ListDeadLetters(ctx, f.pool, DeadLetterFilter{Unresolved: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("unresolved after the retries: %+v", left)
	}
	if all, _ := ListDeadLetters(ctx, f.pool, DeadLetterFilter{}); len(all) != 2 || all[0].ResolvedAt == nil {
		t.Fatalf("resolved dead letters are kept, marked: %+v", all)
	}
	// Nothing to do a second time; the checkpoint did not move.
	if res, err := New(f.pool, nil, Config{}, &seen{version: 1}).RetryDeadLetters(ctx, "seen", nil); err != nil || len(res) != 0 {
		t.Fatalf("second retry: %+v, %v", res, err)
	}
	if pos := f.position(t, "seen"); pos != 12 {
		t.Fatalf("checkpoint %d after the retries, want 12", pos)
	}

	// The projector goes on with new events.
	f.joinMany(t, 3)
	waitFor(t, 20*time.Second, "projection to reach 15", func() bool { return f.position(t, "seen") == 15 })
}

func TestRetryRefusesAnotherProjectionVersion(t *testing.T) {
	ctx := context.Background()
	f := setup(t)
	f.join(t, "XKX")
	stop := start(t, f, Config{}, &seen{version: 1, poison: "XKX"})
	waitFor(t, 20*time.Second, "projection to reach 1", func() bool { return f.position(t, "seen") == 1 })
	stop()
	_, err := New(f.pool, nil, Config{}, &seen{version: 2}).RetryDeadLetters(ctx, "seen", nil)
	if !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("retry by a binary of another version: %v, want ErrVersionMismatch", err)
	}
	if _, err := New(f.pool, nil, Config{}, &seen{version: 1}).RetryDeadLetters(ctx, "nosuch", nil); err == nil {
		t.Fatal("retry of an unknown projection succeeded")
	}
}
