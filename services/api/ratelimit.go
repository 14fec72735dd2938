package api

import (
	"container/list"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a token bucket: PerSecond requests on average, bursts of Burst.
// A zero PerSecond means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) unlimited() bool { return r.PerSecond <= 0 }

// RateLimits bound how fast one caller may send requests; past them the API
// answers 429 with Retry-After. Callers with a valid token are counted by
// token, others (no token, or a token that is not valid) by client address.
// The zero value limits nothing.
type RateLimits struct {
	// TokenWrites limits a token's POST, PUT, PATCH and DELETE requests.
	TokenWrites Rate
	// TokenReads limits a token's other requests.
	TokenReads Rate
	// Anonymous limits the requests of one client address that carry no
	// valid token, whatever their method. An address whose bucket is empty
	// after a failed authentication is refused before its next token is
	// even looked up.
	Anonymous Rate
	// MaxTracked bounds how many callers are tracked at once; default
	// 100000. Past it the longest idle caller is forgotten.
	MaxTracked int
}

// DefaultRateLimits are the limits of `gcmtrack run` unless set otherwise:
// generous for a person or a script recording an ISCM's work, tight enough
// that one caller cannot flood the event store or the database.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		TokenWrites: Rate{PerSecond: 20, Burst: 40},
		TokenReads:  Rate{PerSecond: 50, Burst: 200},
		Anonymous:   Rate{PerSecond: 10, Burst: 100},
	}
}

// Validate reports a limit that cannot work: a negative rate, or a rate
// without a burst of at least one request.
func (l RateLimits) Validate() error {
	for name, r := range map[string]Rate{"token writes": l.TokenWrites, "token reads": l.TokenReads, "anonymous": l.Anonymous} {
		if r.PerSecond < 0 || math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) || (r.PerSecond > 0 && r.Burst < 1) {
			return fmt.Errorf("rate limit of %s: %g per second with a burst of %d: want a rate of 0 (no limit) or more, and a burst of 1 or more", name, r.PerSecond, r.Burst)
		}
	}
	if l.MaxTracked < 0 {
		return fmt.Errorf("rate limits: MaxTracked %d is negative", l.MaxTracked)
	}
	return nil
}

const defaultMaxTracked = 100_000

// limiter keeps one token bucket per caller and bucket class, forgetting
// callers once their bucket has refilled (a full bucket is the same as a
// new one) or, past MaxTracked, the longest idle ones first. Its memory is
// therefore bounded by MaxTracked whatever the number of callers.
type limiter struct {
	cfg RateLimits
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // of *bucket
	lru     *list.List               // front: most recently used
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	last time.Time
	// refill is how long the bucket takes to fill from empty: idle for
	// longer, it is full and may be forgotten.
	refill time.Duration
	// failedAuth is when an invalid token last came from this address.
	failedAuth time.Time
	// audited is when a refusal of this caller was last audited.
	audited time.Time
}

func newLimiter(cfg RateLimits) *limiter {
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = defaultMaxTracked
	}
	return &limiter{cfg: cfg, now: time.Now, entries: map[string]*list.Element{}, lru: list.New()}
}

// Bucket classes: the key's prefix.
const (
	classTokenWrite = "w:"
	classTokenRead  = "r:"
	classAddress    = "a:"
)

func (l *limiter) rateOf(class string) Rate {
	switch class {
	case classTokenWrite:
		return l.cfg.TokenWrites
	case classTokenRead:
		return l.cfg.TokenReads
	}
	return l.cfg.Anonymous
}

// get returns the caller's bucket, creating it; l.mu must be held.
func (l *limiter) get(class, key string, r Rate, now time.Time) *bucket {
	k := class + key
	if el, ok := l.entries[k]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*bucket)
	}
	l.evict(now)
	refill := time.Duration(math.Ceil(float64(max(r.Burst, 1)) / r.PerSecond * float64(time.Second)))
	b := &bucket{key: k, lim: rate.NewLimiter(rate.Limit(r.PerSecond), max(r.Burst, 1)), refill: refill}
	l.entries[k] = l.lru.PushFront(b)
	return b
}

// evict forgets callers idle long enough for their bucket to be full (and
// with no recent failed authentication), and the longest idle ones past
// MaxTracked. The list is in order of last use, so it stops at the first
// caller that must be kept.
func (l *limiter) evict(now time.Time) {
	for el := l.lru.Back(); el != nil; el = l.lru.Back() {
		b := el.Value.(*bucket)
		recentFailure := !b.failedAuth.IsZero() && now.Sub(b.failedAuth) < failedAuthMemory
		if l.lru.Len() < l.cfg.MaxTracked && (now.Sub(b.last) < b.refill || recentFailure) {
			return
		}
		l.lru.Remove(el)
		delete(l.entries, b.key)
	}
}

// failedAuthMemory is how long an address is remembered for a failed
// authentication.
const failedAuthMemory = time.Minute

// verdict is the limiter's answer to one request.
type verdict struct {
	ok bool
	// retryAfter is when the caller may try again, when refused.
	retryAfter time.Duration
	// audit says whether this refusal should be audited: at most one a
	// second per caller is, so that a flood cannot crowd the audit log.
	audit bool
}

// allow takes one request from the caller's bucket of the class.
func (l *limiter) allow(class, key string) verdict {
	r := l.rateOf(class)
	if r.unlimited() {
		return verdict{ok: true}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(class, key, r, now)
	b.last = now
	if b.lim.AllowN(now, 1) {
		return verdict{ok: true}
	}
	return l.refuse(b, b.wait(r, now), now)
}

// wait is how long until the bucket holds a whole token again.
func (b *bucket) wait(r Rate, now time.Time) time.Duration {
	return time.Duration((1 - b.lim.TokensAt(now)) / r.PerSecond * float64(time.Second))
}

// blockedAfterFailure reports whether an address that recently presented an
// invalid token has used up its bucket; its next token is then not looked
// up at all, so guessing costs the database nothing.
func (l *limiter) blockedAfterFailure(addr string) verdict {
	r := l.cfg.Anonymous
	if r.unlimited() {
		return verdict{ok: true}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.entries[classAddress+addr]
	if !ok {
		return verdict{ok: true}
	}
	b := el.Value.(*bucket)
	if b.failedAuth.IsZero() || now.Sub(b.failedAuth) > failedAuthMemory || b.lim.TokensAt(now) >= 1 {
		return verdict{ok: true}
	}
	b.last = now
	l.lru.MoveToFront(el)
	return l.refuse(b, b.wait(r, now), now)
}

// failedAuth notes an invalid token from addr and charges the address's
// bucket for it.
func (l *limiter) failedAuth(addr string) verdict {
	v := l.allow(classAddress, addr)
	if l.cfg.Anonymous.unlimited() {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.entries[classAddress+addr]; ok {
		el.Value.(*bucket).failedAuth = l.now()
	}
	return v
}

func (l *limiter) refuse(b *bucket, wait time.Duration, now time.Time) verdict {
	v := verdict{retryAfter: max(wait, time.Second)}
	if now.Sub(b.audited) >= time.Second {
		b.audited, v.audit = now, true
	}
	return v
}

// tracked is how many callers the limiter remembers.
func (l *limiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// addressKey is the part of a client address that identifies a caller: the
// address itself for IPv4, its /64 network for IPv6 (one subscriber holds
// a whole /64 and could otherwise rotate through it).
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
