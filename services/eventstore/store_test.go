package eventstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
)

func openStore(t testing.TB) *Store {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func joined(t *testing.T, slug, state string) events.Envelope {
	t.Helper()
	env, err := events.New(slug, events.KindISCM, slug, events.MemberJoined{State: state, Status: events.StatusMember}, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env.Actor = "test"
	return env
}

func lastPosition(t *testing.T, s *Store) uint64 {
	t.Helper()
	p, err := s.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConcurrentAppendsWithSameExpectedVersion(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	first, err := s.Append(ctx, joined(t, "sacm", "ARG"), 0, "")
	if err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = s.Append(ctx, joined(t, "sacm", "BRA"), first.Position, "")
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		var ce *ConflictError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ce):
			if !errors.Is(err, ErrConflict) {
				t.Errorf("conflict error does not match ErrConflict: %v", err)
			}
			if ce.Current <= first.Position {
				t.Errorf("conflict reports version %d, want the winner's (> %d)", ce.Current, first.Position)
			}
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d appends won, want exactly 1", wins)
	}
	h, err := s.Load(ctx, "sacm", events.KindISCM, "sacm")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Records) != 2 || h.Version != lastPosition(t, s) {
		t.Fatalf("history has %d events at version %d, want 2 at %d", len(h.Records), h.Version, lastPosition(t, s))
	}
}

func TestNewAggregateExpectsNoEvents(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if _, err := s.Append(ctx, joined(t, "cmc", "JAM"), 0, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, joined(t, "cmc", "BRB"), 0, "")
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("second append as new aggregate: %v, want a conflict", err)
	}
	// Another aggregate is independent of the first one's version.
	if _, err := s.Append(ctx, joined(t, "ocam", "GTM"), 0, ""); err != nil {
		t.Fatalf("append to another aggregate: %v", err)
	}
}

func TestRetriedAppendWithSameMsgIDAppendsOnce(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	env := joined(t, "pidc", "FJI")
	a, err := s.Append(ctx, env, 0, "req-1")
	if err != nil {
		t.Fatal(err)
	}
	// The retry carries the same message id; the expected version it states
	// is stale by now, but the duplicate is recognised first.
	b, err := s.Append(ctx, env, 0, "req-1")
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !b.Duplicate || b.Position != a.Position {
		t.Fatalf("retry = %+v, want a duplicate at position %d", b, a.Position)
	}
	if got := lastPosition(t, s); got != 1 {
		t.Fatalf("stream holds %d events, want 1", got)
	}
}

func TestLoadReturnsEventsInOrder(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	var v uint64
	states := []string{"ARG", "BOL", "BRA", "CHL", "COL"}
	for _, st := range states {
		// Interleave another aggregate so positions have gaps per subject.
		if _, err := s.Append(ctx, joined(t, "other", st), 0, ""); err != nil && !errors.Is(err, ErrConflict) {
			t.Fatal(err)
		}
		r, err := s.Append(ctx, joined(t, "sacm", st), v, "")
		if err != nil {
			t.Fatal(err)
		}
		v = r.Position
	}
	h, err := s.Load(ctx, "sacm", events.KindISCM, "sacm")
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != v || len(h.Records) != len(states) {
		t.Fatalf("loaded %d events at version %d, want %d at %d", len(h.Records), h.Version, len(states), v)
	}
	for i, r := range h.Records {
		p, err := events.Decode(r.Envelope)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.(events.MemberJoined).State; got != states[i] {
			t.Errorf("event %d: state %s, want %s", i, got, states[i])
		}
		if i > 0 && r.Position <= h.Records[i-1].Position {
			t.Errorf("positions out of order: %d after %d", r.Position, h.Records[i-1].Position)
		}
	}
	empty, err := s.Load(ctx, "nobody", events.KindISCM, "nobody")
	if err != nil || empty.Version != 0 || len(empty.Records) != 0 {
		t.Fatalf("empty aggregate = %+v, %v", empty, err)
	}
}

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestLoadsLeaveNoConsumersBehind(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	var v uint64
	for i := range 1500 { // more than one direct batch
		r, err := s.Append(ctx, joined(t, "big", fmt.Sprintf("S%02d", i%100)), v, "")
		if err != nil {
			t.Fatal(err)
		}
		v = r.Position
	}
	for range 50 {
		h, err := s.Load(ctx, "big", events.KindISCM, "big")
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Records) != 1500 || h.Version != v {
			t.Fatalf("loaded %d events at version %d, want 1500 at %d", len(h.Records), h.Version, v)
		}
	}
	if err := s.ReadAll(ctx, 1, func(events.Record) error { return nil }); err != nil {
		t.Fatal(err)
	}
	info, err := s.Stream().Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers != 0 {
		t.Fatalf("%d consumers left on the stream after loads", info.State.Consumers)
	}
}
