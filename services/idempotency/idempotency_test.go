package idempotency_test

import (
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/services/idempotency"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// open returns keys on a fresh embedded server, and the JetStream context.
func open(t *testing.T, cfg idempotency.Config) (*idempotency.Keys, jetstream.JetStream) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	k, err := idempotency.Open(t.Context(), js, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return k, js
}

func mustClaim(t *testing.T, k *idempotency.Keys, key, hash string) *idempotency.Claim {
	t.Helper()
	c, o, err := k.Begin(t.Context(), key, hash)
	if err != nil || c == nil || o != nil {
		t.Fatalf("Begin(%s) = %v, %+v, %v; want a claim", key, c, o, err)
	}
	return c
}

func TestOpenBucket(t *testing.T) {
	_, js := open(t, idempotency.Config{})
	kv, err := js.KeyValue(t.Context(), idempotency.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 48*time.Hour || st.History() != 1 {
		t.Errorf("default bucket: TTL %s, history %d; want 48h, 1", st.TTL(), st.History())
	}

	// Reopening with other settings updates the bucket.
	k, err := idempotency.Open(t.Context(), js, idempotency.Config{TTL: 24 * time.Hour})
	if err != nil || k == nil {
		t.Fatalf("reopen: %v", err)
	}
	if st, err = kv.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 24*time.Hour {
		t.Errorf("after reopen: TTL %s, want 24h", st.TTL())
	}

	// A named bucket.
	if _, err := idempotency.Open(t.Context(), js, idempotency.Config{Bucket: "OTHER", TTL: 30 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	other, err := js.KeyValue(t.Context(), "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	if st, err = other.Status(t.Context()); err != nil || st.TTL() != 30*time.Hour {
		t.Errorf("named bucket: TTL %v, %v; want 30h", st.TTL(), err)
	}
}

func TestKeyAndHash(t *testing.T) {
	k := idempotency.Key("token:a", "k1")
	if b, err := hex.DecodeString(k); err != nil || len(b) != 32 {
		t.Errorf("Key = %q, want 64 hex digits", k)
	}
	if k != idempotency.Key("token:a", "k1") {
		t.Error("Key is not deterministic")
	}
	for _, other := range [][2]string{{"token:b", "k1"}, {"token:a", "k2"}, {"token:a\x00k", "1"}, {"token:", "ak1"}} {
		if idempotency.Key(other[0], other[1]) == k {
			t.Errorf("Key(%q, %q) collides with Key(token:a, k1)", other[0], other[1])
		}
	}

	h := idempotency.RequestHash("POST", "/v1/x", []byte(`{"a":1}`))
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		t.Errorf("RequestHash = %q, want 64 hex digits", h)
	}
	for _, other := range []string{
		idempotency.RequestHash("PUT", "/v1/x", []byte(`{"a":1}`)),
		idempotency.RequestHash("POST", "/v1/y", []byte(`{"a":1}`)),
		idempotency.RequestHash("POST", "/v1/x", []byte(`{"a":2}`)),
		idempotency.RequestHash("POST", "/v1/x{", []byte(`"a":1}`)),
	} {
		if other == h {
			t.Error("different requests share a RequestHash")
		}
	}
}

func TestBeginFinishReplay(t *testing.T) {
	k, _ := open(t, idempotency.Config{})
	ctx := t.Context()
	key := idempotency.Key("token:1", "create-report-42")
	hash := idempotency.RequestHash("POST", "/v1/reports", []byte(`{"title":"x"}`))
	other := idempotency.RequestHash("POST", "/v1/reports", []byte(`{"title":"y"}`))

	c := mustClaim(t, k, key, hash)
	if c.Key() != key {
		t.Errorf("Claim.Key() = %q, want %q", c.Key(), key)
	}

	// While pending.
	if _, _, err := k.Begin(ctx, key, hash); !errors.Is(err, idempotency.ErrInProgress) {
		t.Errorf("Begin(same, pending) = %v, want ErrInProgress", err)
	}
	if _, _, err := k.Begin(ctx, key, other); !errors.Is(err, idempotency.ErrMismatch) {
		t.Errorf("Begin(other, pending) = %v, want ErrMismatch", err)
	}

	want := idempotency.Outcome{
		Status: 201,
		Body:   []byte(`{"id":"r-42"}`),
		Header: map[string]string{"ETag": `"3"`, "Location": "/v1/reports/r-42"},
	}
	if err := k.Finish(ctx, c, want); err != nil {
		t.Fatalf("Finish: %v", err)
	}

	// When done: replay, as often as asked.
	for range 2 {
		c2, got, err := k.Begin(ctx, key, hash)
		if err != nil || c2 != nil || got == nil {
			t.Fatalf("Begin(same, done) = %v, %+v, %v; want an outcome", c2, got, err)
		}
		if diff := cmp.Diff(want, *got); diff != "" {
			t.Errorf("replayed outcome (-want +got):\n%s", diff)
		}
	}
	if _, _, err := k.Begin(ctx, key, other); !errors.Is(err, idempotency.ErrMismatch) {
		t.Errorf("Begin(other, done) = %v, want ErrMismatch", err)
	}

	// A claim is spent once finished.
	if err := k.Finish(ctx, c, idempotency.Outcome{Status: 500}); !errors.Is(err, idempotency.ErrClaimLost) {
		t.Errorf("second Finish = %v, want ErrClaimLost", err)
	}
	// Releasing a finished claim leaves the outcome alone.
	if err := k.Release(ctx, c); err != nil {
		t.Errorf("Release(finished) = %v", err)
	}
	if _, got, err := k.Begin(ctx, key, hash); err != nil || got == nil || got.Status != 201 {
		t.Errorf("Begin after Release(finished) = %+v, %v; want the replay", got, err)
	}

	// The same client key from another actor is another record.
	mustClaim(t, k, idempotency.Key("token:2", "create-report-42"), other)
}

func TestReplayEmptyOutcome(t *testing.T) {
	k, _ := open(t, idempotency.Config{})
	for i, want := range []idempotency.Outcome{
		{Status: 204},
		{Status: 200, Body: []byte{}, Header: map[string]string{}},
	} {
		key := idempotency.Key("token:1", strconv.Itoa(i))
		c := mustClaim(t, k, key, "h")
		if err := k.Finish(t.Context(), c, want); err != nil {
			t.Fatal(err)
		}
		_, got, err := k.Begin(t.Context(), key, "h")
		if err != nil || got == nil {
			t.Fatalf("Begin = %+v, %v", got, err)
		}
		if diff := cmp.Diff(want, *got); diff != "" {
			t.Errorf("replayed outcome (-want +got):\n%s", diff)
		}
	}
}

func TestConcurrentBegin(t *testing.T) {
	k, _ := open(t, idempotency.Config{})
	ctx := t.Context()
	key := idempotency.Key("token:1", "race")
	want := idempotency.Outcome{Status: 200, Body: []byte("ok")}

	const n = 20
	var (
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		claims, busy, replay int
		start                = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			c, o, err := k.Begin(ctx, key, "h")
			// The winner finishes at once, so late arrivals may see the replay.
			if c != nil {
				if err := k.Finish(ctx, c, want); err != nil {
					t.Errorf("Finish: %v", err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case c != nil && o == nil && err == nil:
				claims++
			case c == nil && o != nil && err == nil:
				replay++
				if diff := cmp.Diff(want, *o); diff != "" {
					t.Errorf("replayed outcome (-want +got):\n%s", diff)
				}
			case c == nil && o == nil && errors.Is(err, idempotency.ErrInProgress):
				busy++
			default:
				t.Errorf("Begin = %v, %+v, %v", c, o, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if claims != 1 || claims+busy+replay != n {
		t.Errorf("%d claims, %d in progress, %d replays; want exactly 1 claim of %d", claims, busy, replay, n)
	}

	// All pending: the other 19 must be told to wait.
	key2 := idempotency.Key("token:1", "race-2")
	results := make(chan error, n)
	claimed := make(chan *idempotency.Claim, n)
	start2 := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start2
			c, _, err := k.Begin(ctx, key2, "h")
			if c != nil {
				claimed <- c
			}
			results <- err
		})
	}
	close(start2)
	wg.Wait()
	close(results)
	close(claimed)
	var inProgress int
	for err := range results {
		if errors.Is(err, idempotency.ErrInProgress) {
			inProgress++
		} else if err != nil {
			t.Errorf("Begin: %v", err)
		}
	}
	if len(claimed) != 1 || inProgress != n-1 {
		t.Errorf("%d claims and %d ErrInProgress, want 1 and %d", len(claimed), inProgress, n-1)
	}
}

func TestStaleTakeover(t *testing.T) {
	const stale = 200 * time.Millisecond
	k, _ := open(t, idempotency.Config{Stale: stale})
	ctx := t.Context()
	key := idempotency.Key("token:1", "slow")

	dead := mustClaim(t, k, key, "h")
	if _, _, err := k.Begin(ctx, key, "h"); !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("Begin(fresh pending) = %v, want ErrInProgress", err)
	}
	time.Sleep(stale + 50*time.Millisecond)

	// A stale claim still refuses a different request.
	if _, _, err := k.Begin(ctx, key, "other"); !errors.Is(err, idempotency.ErrMismatch) {
		t.Errorf("Begin(other, stale) = %v, want ErrMismatch", err)
	}
	live := mustClaim(t, k, key, "h")
	// The new claim is fresh again.
	if _, _, err := k.Begin(ctx, key, "h"); !errors.Is(err, idempotency.ErrInProgress) {
		t.Errorf("Begin after takeover = %v, want ErrInProgress", err)
	}

	// The presumed-dead holder comes back: it can neither finish nor
	// release the key from under the new holder.
	if err := k.Finish(ctx, dead, idempotency.Outcome{Status: 201}); !errors.Is(err, idempotency.ErrClaimLost) {
		t.Errorf("Finish(taken-over claim) = %v, want ErrClaimLost", err)
	}
	if err := k.Release(ctx, dead); err != nil {
		t.Errorf("Release(taken-over claim) = %v", err)
	}
	if _, _, err := k.Begin(ctx, key, "h"); !errors.Is(err, idempotency.ErrInProgress) {
		t.Errorf("Begin after stale Release = %v, want ErrInProgress", err)
	}

	want := idempotency.Outcome{Status: 202, Body: []byte("accepted")}
	if err := k.Finish(ctx, live, want); err != nil {
		t.Fatalf("Finish(live): %v", err)
	}
	// Done records never go stale.
	time.Sleep(stale + 50*time.Millisecond)
	_, got, err := k.Begin(ctx, key, "h")
	if err != nil || got == nil {
		t.Fatalf("Begin after Finish = %+v, %v; want the replay", got, err)
	}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("replayed outcome (-want +got):\n%s", diff)
	}
}

func TestRelease(t *testing.T) {
	k, _ := open(t, idempotency.Config{})
	ctx := t.Context()
	key := idempotency.Key("token:1", "flaky")

	c := mustClaim(t, k, key, "h")
	if err := k.Release(ctx, c); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// Releasing twice is harmless.
	if err := k.Release(ctx, c); err != nil {
		t.Errorf("second Release: %v", err)
	}
	// The key is free again, for the same request or, since nothing was
	// recorded, for another one.
	c2 := mustClaim(t, k, key, "h")
	if err := k.Release(ctx, c2); err != nil {
		t.Fatal(err)
	}
	c3 := mustClaim(t, k, key, "other")
	if err := k.Finish(ctx, c3, idempotency.Outcome{Status: 200}); err != nil {
		t.Fatal(err)
	}
	if _, o, err := k.Begin(ctx, key, "other"); err != nil || o == nil || o.Status != 200 {
		t.Errorf("Begin after Finish = %+v, %v; want the replay", o, err)
	}
}
