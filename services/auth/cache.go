package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// Verified tokens are kept in memory while a listener connection to
// PostgreSQL proves that this process hears of every change to the tokens
// table: a trigger on auth.tokens notifies channel tokensChannel in the
// changing transaction (revocation, expiry, role, deletion), and the
// listener empties the cache when the notification arrives. Whenever the
// listener is not known to be connected, nothing is kept and every Verify
// reads the table, as without the cache.

// tokensChannel is the channel the tokens trigger notifies
// (sql/00003_tokens_notify.sql).
const tokensChannel = "auth_tokens_changed"

const (
	// listenPing is how often the listener proves its connection alive
	// when no notification arrives; cached tokens are used only within
	// listenAlive of the last proof, so a connection that died silently
	// stops the cache after that long at most.
	listenPing  = time.Second
	listenAlive = 3 * listenPing
	// listenRetry is the pause before the listener reconnects.
	listenRetry = time.Second
	// maxCached bounds the cache; it is emptied when full. Only valid
	// tokens are cached, and installations hold few.
	maxCached = 10000
)

// tokenCache holds verified tokens by the hash of their secret.
type tokenCache struct {
	mu sync.Mutex
	// gen changes with every invalidation: a Verify stores what it read
	// only if no invalidation happened since it started reading, so a
	// notification that overtakes a read cannot be undone by it.
	gen uint64
	// listening is true from the moment the listener's LISTEN took effect
	// until its connection fails; aliveUntil is when the last proof of the
	// connection's health runs out.
	listening  bool
	aliveUntil time.Time
	entries    map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	id      Identity
	expires time.Time // zero: never
	read    time.Time // when the table was read for it
}

// usable reports whether cached entries may answer now.
func (c *tokenCache) usable(now time.Time) bool {
	return c.listening && now.Before(c.aliveUntil)
}

// get is the identity of a cached, unexpired token, read from the table
// less than lastUsedEvery ago (older entries are read again, which also
// keeps last_used_at current).
func (c *tokenCache) get(h [sha256.Size]byte, now time.Time) (Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.usable(now) {
		return Identity{}, false
	}
	e, ok := c.entries[h]
	if !ok || (!e.expires.IsZero() && !now.Before(e.expires)) || now.Sub(e.read) >= lastUsedEvery {
		return Identity{}, false
	}
	return e.id, true
}

// begin starts a read of the table: the generation to hand to put, and
// whether what is read may be cached at all.
func (c *tokenCache) begin(now time.Time) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen, c.usable(now)
}

// put caches what a read begun at generation gen found, unless the cache
// was invalidated meanwhile.
func (c *tokenCache) put(h [sha256.Size]byte, gen uint64, e cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen || !c.usable(time.Now()) {
		return
	}
	if c.entries == nil || len(c.entries) >= maxCached {
		c.entries = map[[sha256.Size]byte]cachedToken{}
	}
	c.entries[h] = e
}

// invalidate forgets every cached token.
func (c *tokenCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.entries = nil
}

// setListening records the listener's state; either change forgets every
// cached token (notifications may have been missed while it was down).
func (c *tokenCache) setListening(on bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.entries = nil
	c.listening = on
	c.aliveUntil = time.Time{}
	if on {
		c.aliveUntil = now.Add(listenAlive)
	}
}

// alive extends the proof of the listener's health.
func (c *tokenCache) alive(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.listening {
		c.aliveUntil = now.Add(listenAlive)
	}
}

// Listen keeps verified tokens in memory while it runs, until ctx ends: it
// holds one connection to PostgreSQL (besides the pool's) listening for
// changes to the tokens table, and empties the cache on each. While that
// connection is down, reconnecting, or has not proved itself alive within
// the last few seconds, Verify reads the table on every call. A revocation
// reaches the instances that run Listen when PostgreSQL delivers the
// notification, normally within milliseconds of its commit; the revoking
// process itself forgets its cached tokens before Revoke returns.
//
// logger may be nil.
func (s *Store) Listen(ctx context.Context, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	defer s.cache.setListening(false, time.Now())
	for {
		err := s.listen(ctx)
		s.cache.setListening(false, time.Now())
		if ctx.Err() != nil {
			return
		}
		logger.WarnContext(ctx, "token listener disconnected; verifying every token against the database", "err", err)
		t := time.NewTimer(s.listenRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listen runs one listener connection until it fails or ctx ends.
func (s *Store) listen(ctx context.Context) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = listenerApplication
	// The wait for a notification ends every listenPing: a deadline on the
	// socket ends it, never a cancel request (a new connection each time).
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = conn.Exec(lctx, "LISTEN "+tokensChannel)
	cancel()
	if err != nil {
		return err
	}
	s.cache.setListening(true, time.Now())
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			s.cache.invalidate()
			s.cache.alive(time.Now())
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed():
			return err
		}
		// Nothing arrived: prove the connection is still there.
		pctx, cancel := context.WithTimeout(ctx, listenPing)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
		s.cache.alive(time.Now())
	}
}

// listenerApplication names the listener's connection in
// pg_stat_activity.
const listenerApplication = "gcmtrack token listener"

// Caching reports whether Verify may answer from memory now: the listener
// is connected and proved alive within the last few seconds.
func (s *Store) Caching() bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.usable(time.Now())
}
