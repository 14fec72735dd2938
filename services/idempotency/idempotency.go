// Package idempotency remembers the outcome of requests made with an
// Idempotency-Key, so that a client retrying within the retention period gets
// the first outcome back instead of a second execution.
//
// JetStream's own duplicate window is short, so records live in a JetStream
// key-value bucket whose TTL is the retention period (48 hours by default,
// counted from the last write). A record is first "pending" while its request
// runs, then "done" with the response to replay. Claims are taken with
// compare-and-set writes, so concurrent requests with the same key cannot
// both proceed.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Errors callers branch on.
var (
	// ErrMismatch means the key was already used for a different request
	// (HTTP 422).
	ErrMismatch = errors.New("idempotency key reused with a different request")
	// ErrInProgress means a request with the same key is still running
	// (HTTP 409); the client should retry later.
	ErrInProgress = errors.New("request with this idempotency key in progress")
	// ErrClaimLost is returned by Finish when the claim was taken over after
	// it went stale, or already finished: the outcome was not stored.
	ErrClaimLost = errors.New("idempotency claim lost")
)

// Defaults for Config's zero fields.
const (
	DefaultBucket = "GCM_IDEMPOTENCY"
	DefaultTTL    = 48 * time.Hour
	DefaultStale  = 30 * time.Second
)

// beginAttempts bounds Begin's retries when the record vanishes between
// failing to create it and reading it (released or expired meanwhile).
const beginAttempts = 3

// Config sets up the bucket.
type Config struct {
	// Bucket is the key-value bucket's name; default DefaultBucket.
	Bucket string
	// TTL is how long a record is kept after its last write; default
	// DefaultTTL. Clients may retry safely for this long.
	TTL time.Duration
	// Replicas of the bucket: 1 embedded (the default), 3 in production.
	Replicas int
	// Stale is the age after which a pending record is presumed abandoned
	// (its process died) and may be taken over; default DefaultStale. It
	// must exceed the longest time a request may run, or a slow request
	// could be executed twice.
	Stale time.Duration
}

// Keys stores idempotency records.
type Keys struct {
	kv    jetstream.KeyValue
	stale time.Duration
}

// Open creates the bucket, or updates its settings, and returns a store on
// it.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Keys, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Stale <= 0 {
		cfg.Stale = DefaultStale
	}
	kcfg := jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "GCM Tracker: outcomes of requests made with an Idempotency-Key",
		// Only the latest state of a record matters.
		History:  1,
		TTL:      cfg.TTL,
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
	}
	// Several API replicas starting at once race to create the bucket on a
	// cluster; a loser's request can time out while the winner's is placed.
	// Try again a few times before giving up.
	var kv jetstream.KeyValue
	var err error
	for attempt := range 6 {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		kv, err = js.CreateOrUpdateKeyValue(actx, kcfg)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open idempotency bucket %s: %w", cfg.Bucket, err)
	}
	return &Keys{kv: kv, stale: cfg.Stale}, nil
}

// Key derives the record key from the caller's identity and the client's
// Idempotency-Key: the hex SHA-256 of actor, a NUL and the key. Scoping by
// actor keeps two clients that pick the same key from colliding or reading
// each other's outcomes; hashing yields a valid bucket key for any input.
func Key(actor, clientKey string) string {
	h := sha256.New()
	h.Write([]byte(actor))
	h.Write([]byte{0})
	h.Write([]byte(clientKey))
	return hex.EncodeToString(h.Sum(nil))
}

// RequestHash fingerprints a request: the hex SHA-256 of method, path and
// body. Method and path are NUL-terminated so that no two different requests
// run together into the same bytes.
func RequestHash(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Outcome is a finished request's response, replayed to retries.
type Outcome struct {
	Status int
	Body   []byte
	Header map[string]string // response headers worth replaying, e.g. ETag, Location
}

// Claim is a key held by one request; pass it to Finish or Release.
type Claim struct {
	key       string
	hash      string
	startedAt time.Time
	revision  uint64 // the record's revision when claimed, for compare-and-set
}

// Key returns the record key the claim holds.
func (c *Claim) Key() string { return c.key }

// Record states.
const (
	statePending = "pending"
	stateDone    = "done"
)

// record is the stored value. Body and Header carry no omitempty so that an
// empty body or header map is replayed as it was given.
type record struct {
	State     string            `json:"state"`
	Hash      string            `json:"hash"`
	StartedAt time.Time         `json:"started_at"`
	Status    int               `json:"status,omitempty"`
	Body      []byte            `json:"body"`
	Header    map[string]string `json:"header"`
}

// Begin claims key for a request whose fingerprint is requestHash. It
// returns exactly one of:
//   - a *Claim: proceed, then call Finish or Release;
//   - an *Outcome to replay: the request already finished;
//   - ErrMismatch: the key was used for a different request;
//   - ErrInProgress: the same request is running and is not stale yet;
//   - another error: the bucket could not be reached or read.
func (k *Keys) Begin(ctx context.Context, key, requestHash string) (*Claim, *Outcome, error) {
	for range beginAttempts {
		c, o, vanished, err := k.begin(ctx, key, requestHash)
		if !vanished {
			return c, o, err
		}
	}
	// The record keeps appearing and disappearing: others are busy with it.
	return nil, nil, fmt.Errorf("begin %s: %w", key, ErrInProgress)
}

// begin makes one attempt at Begin. vanished reports that the record
// disappeared between failing to create it and reading it, so that a new
// attempt may succeed.
func (k *Keys) begin(ctx context.Context, key, requestHash string) (c *Claim, o *Outcome, vanished bool, err error) {
	now := time.Now().UTC()
	pending, err := json.Marshal(record{State: statePending, Hash: requestHash, StartedAt: now})
	if err != nil {
		return nil, nil, false, fmt.Errorf("begin %s: %w", key, err)
	}
	claim := &Claim{key: key, hash: requestHash, startedAt: now}

	rev, err := k.kv.Create(ctx, key, pending)
	if err == nil {
		claim.revision = rev
		return claim, nil, false, nil
	}
	if !isConflict(err) {
		return nil, nil, false, fmt.Errorf("begin %s: %w", key, err)
	}

	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil, true, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("begin %s: %w", key, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return nil, nil, false, fmt.Errorf("begin %s: decode record: %w", key, err)
	}
	if r.Hash != requestHash {
		return nil, nil, false, fmt.Errorf("begin %s: %w", key, ErrMismatch)
	}
	switch r.State {
	case stateDone:
		return nil, &Outcome{Status: r.Status, Body: r.Body, Header: r.Header}, false, nil
	case statePending:
		if now.Sub(r.StartedAt) < k.stale {
			return nil, nil, false, fmt.Errorf("begin %s: %w", key, ErrInProgress)
		}
		// The holder presumably died. Take over only if nobody else wrote
		// the record since we read it.
		rev, err := k.kv.Update(ctx, key, pending, e.Revision())
		if isConflict(err) {
			return nil, nil, false, fmt.Errorf("begin %s: %w", key, ErrInProgress)
		}
		if err != nil {
			return nil, nil, false, fmt.Errorf("begin %s: take over stale claim: %w", key, err)
		}
		claim.revision = rev
		return claim, nil, false, nil
	default:
		return nil, nil, false, fmt.Errorf("begin %s: record in unknown state %q", key, r.State)
	}
}

// Finish stores the outcome of the claimed request for replay. It fails with
// ErrClaimLost when the claim is no longer the record's latest revision.
func (k *Keys) Finish(ctx context.Context, c *Claim, o Outcome) error {
	v, err := json.Marshal(record{
		State:     stateDone,
		Hash:      c.hash,
		StartedAt: c.startedAt,
		Status:    o.Status,
		Body:      o.Body,
		Header:    o.Header,
	})
	if err != nil {
		return fmt.Errorf("finish %s: %w", c.key, err)
	}
	if _, err := k.kv.Update(ctx, c.key, v, c.revision); err != nil {
		if isConflict(err) {
			return fmt.Errorf("finish %s: %w", c.key, ErrClaimLost)
		}
		return fmt.Errorf("finish %s: %w", c.key, err)
	}
	return nil
}

// Release forgets a claim whose request failed in a way worth retrying
// (a 5xx), so that the next Begin with the key may claim it. The delete is
// conditional on the claim's revision: a claim that was already taken over
// or finished is left alone, and that is not an error.
func (k *Keys) Release(ctx context.Context, c *Claim) error {
	err := k.kv.Delete(ctx, c.key, jetstream.LastRevision(c.revision))
	if err != nil && !isConflict(err) {
		return fmt.Errorf("release %s: %w", c.key, err)
	}
	return nil
}

// isConflict reports whether a write lost a compare-and-set: the key exists
// or moved past the expected revision. Replicated buckets report this with a
// different error code than single-replica ones, hence the explicit codes.
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
