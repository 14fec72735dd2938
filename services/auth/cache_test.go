package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/projections/migrations"
	"gcmtrack/services/auth"
)

// instances returns n stores on one fresh database, each with its own pool
// and listener, as n API processes have.
func instances(t *testing.T, n int) ([]*auth.Store, *pgxpool.Pool) {
	t.Helper()
	url := testenv.Postgres(t)
	var stores []*auth.Store
	var first *pgxpool.Pool
	for i := range n {
		pool, err := pgxpool.New(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if i == 0 {
			first = pool
			if err := migrations.Up(t.Context(), pool, auth.Migrations()); err != nil {
				t.Fatal(err)
			}
		}
		stores = append(stores, auth.NewStore(pool))
	}
	return stores, first
}

// listen runs s.Listen until the test ends and waits until it caches.
func listen(t *testing.T, s *auth.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Listen(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the listener to connect", s.Caching)
}

// waitFor polls cond for at most two seconds.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("waited 2s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func refused(s *auth.Store, secret string) func() bool {
	return func() bool {
		_, err := s.Verify(context.Background(), secret)
		return errors.Is(err, auth.ErrInvalidToken)
	}
}

func mustVerify(t *testing.T, s *auth.Store, secret string) {
	t.Helper()
	if _, err := s.Verify(t.Context(), secret); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// Without a listener nothing is kept: every Verify reads the table.
func TestNoCacheWithoutListener(t *testing.T) {
	s, _ := newStore(t)
	secret, _ := mustCreate(t, s, auth.NewToken{Name: "admin", Role: auth.RoleAdmin})
	mustVerify(t, s, secret)
	if n := auth.CachedTokens(s); n != 0 || s.Caching() {
		t.Errorf("without a listener: %d cached tokens, caching %v", n, s.Caching())
	}
}

// A revocation through one instance is refused by it before Revoke
// returns, and by the other instances once PostgreSQL delivers the
// notification its transaction sent.
func TestRevocationReachesEveryInstance(t *testing.T) {
	stores, _ := instances(t, 2)
	a, b := stores[0], stores[1]
	listen(t, a)
	listen(t, b)
	secret, tok := mustCreate(t, a, auth.NewToken{Name: "admin", Role: auth.RoleAdmin})
	for _, s := range stores {
		mustVerify(t, s, secret)
		mustVerify(t, s, secret)
		if n := auth.CachedTokens(s); n != 1 {
			t.Fatalf("%d cached tokens after Verify, want 1", n)
		}
	}
	if _, err := a.Revoke(t.Context(), tok.ID.String()); err != nil {
		t.Fatal(err)
	}
	if !refused(a, secret)() {
		t.Error("the revoking instance accepts the token after Revoke returned")
	}
	took := waitFor(t, "the revocation to reach the other instance", refused(b, secret))
	t.Logf("the other instance refused the revoked token after %s", took)
}

// A change made in SQL, outside the product (an operator revoking or
// shortening a token by hand), reaches every instance the same way.
func TestTableChangesOutsideTheStoreReachEveryInstance(t *testing.T) {
	stores, pool := instances(t, 2)
	for _, s := range stores {
		listen(t, s)
	}
	revoked, _ := mustCreate(t, stores[0], auth.NewToken{Name: "by hand", Role: auth.RoleAdmin})
	expired, _ := mustCreate(t, stores[0], auth.NewToken{Name: "shortened", Role: auth.RoleMonitor})
	for _, s := range stores {
		mustVerify(t, s, revoked)
		mustVerify(t, s, expired)
	}
	if _, err := pool.Exec(t.Context(), `UPDATE auth.tokens SET revoked_at = now() WHERE name = 'by hand'`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), `UPDATE auth.tokens SET expires_at = now() WHERE name = 'shortened'`); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores {
		waitFor(t, "a revocation in SQL to take effect", refused(s, revoked))
		waitFor(t, "an expiry set in SQL to take effect", refused(s, expired))
	}
}

// Recording a use touches last_used_at only, which notifies nothing: a
// busy instance does not empty the others' caches.
func TestRecordingUseKeepsTheCache(t *testing.T) {
	stores, pool := instances(t, 2)
	a, b := stores[0], stores[1]
	listen(t, a)
	listen(t, b)
	secret, _ := mustCreate(t, a, auth.NewToken{Name: "admin", Role: auth.RoleAdmin})
	mustVerify(t, b, secret)
	if _, err := pool.Exec(t.Context(), `UPDATE auth.tokens SET last_used_at = NULL`); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, a, secret) // records the use
	time.Sleep(100 * time.Millisecond)
	if n := auth.CachedTokens(b); n != 1 {
		t.Errorf("recording a use emptied the other instance's cache (%d cached)", n)
	}
}

// An expired token is refused by the clock, without a notification.
func TestExpiryIsCheckedLocally(t *testing.T) {
	stores, _ := instances(t, 1)
	s := stores[0]
	listen(t, s)
	secret, _ := mustCreate(t, s, auth.NewToken{Name: "short", Role: auth.RoleAdmin, TTL: 300 * time.Millisecond})
	mustVerify(t, s, secret)
	if auth.CachedTokens(s) != 1 {
		t.Fatal("the token is not cached")
	}
	time.Sleep(350 * time.Millisecond)
	if !refused(s, secret)() {
		t.Error("an expired, cached token is accepted")
	}
}

// When the listener's connection is lost, the cache is dropped at once and
// every Verify reads the table until the listener is back: a revocation
// whose notification nobody heard still holds.
func TestListenerDownFallsBackToTheTable(t *testing.T) {
	stores, pool := instances(t, 1)
	s := stores[0]
	auth.SetListenRetry(s, time.Hour) // stays down once lost
	listen(t, s)
	secret, tok := mustCreate(t, s, auth.NewToken{Name: "admin", Role: auth.RoleAdmin})
	other, _ := mustCreate(t, s, auth.NewToken{Name: "monitor", Role: auth.RoleMonitor})
	mustVerify(t, s, secret)
	if auth.CachedTokens(s) != 1 {
		t.Fatal("the token is not cached")
	}
	var killed bool
	if err := pool.QueryRow(t.Context(),
		`SELECT bool_and(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		auth.ListenerApplication).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate the listener's connection: %v, %v", killed, err)
	}
	waitFor(t, "the listener to notice", func() bool { return !s.Caching() })
	if n := auth.CachedTokens(s); n != 0 {
		t.Errorf("%d tokens still cached with the listener down", n)
	}
	// Revoked in SQL: the notification has no listener to reach.
	if _, err := pool.Exec(t.Context(), `UPDATE auth.tokens SET revoked_at = now() WHERE id = $1`, tok.ID); err != nil {
		t.Fatal(err)
	}
	if !refused(s, secret)() {
		t.Error("with the listener down, a token revoked in the table is accepted")
	}
	mustVerify(t, s, other)
	if n := auth.CachedTokens(s); n != 0 {
		t.Errorf("with the listener down, Verify cached %d tokens", n)
	}
}
