// Package audit keeps GCM Tracker's audit log: who did what through the API,
// refused attempts included, in the PostgreSQL table auth.audit (created by
// the auth migrations, services/auth/sql).
//
// Requests never wait for it. Record puts an entry in a bounded buffer and
// returns; a background writer takes what has gathered and writes it in one
// COPY. When the buffer is full the entry is dropped and counted in
// gcm_audit_dropped_total, so a flood of requests or a slow database costs
// audit entries, never request latency. Close writes what is still buffered.
package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a request.
const (
	OutcomeOK      = "ok"      // 1xx, 2xx and 3xx
	OutcomeRefused = "refused" // 4xx
	OutcomeError   = "error"   // 5xx
)

// RoleAnonymous is the role of a request without a valid token; its actor is
// "anonymous" too.
const RoleAnonymous = "anonymous"

// Entry is one audited request.
type Entry struct {
	ID int64     `json:"id"`
	At time.Time `json:"at"` // when the request arrived
	// TokenID is the id of the valid token the request carried; empty for
	// anonymous requests and invalid tokens.
	TokenID string `json:"token_id,omitempty"`
	// Actor is the token's name at the time, or "anonymous".
	Actor string `json:"actor"`
	// Role is the token's role, or "anonymous".
	Role string `json:"role"`
	// ISCM is the ISCM a secretariat token is bound to.
	ISCM   string `json:"iscm,omitempty"`
	Method string `json:"method"`
	// Path is the request's path, without its query string.
	Path string `json:"path"`
	// Route is the pattern that served the request, such as
	// "POST /v1/iscms/{slug}/members", or "unmatched".
	Route   string `json:"route"`
	Status  int    `json:"status"`
	Outcome string `json:"outcome"`
	// Reason is the short name of the problem a refusal or error answered,
	// such as "forbidden".
	Reason string `json:"reason,omitempty"`
	// Position is the stream position a successful write reached.
	Position      uint64 `json:"position,omitempty"`
	CorrelationID string `json:"correlation_id"`
	ClientAddr    string `json:"client_addr"`
}

// OutcomeOf classifies an HTTP status.
func OutcomeOf(status int) string {
	switch {
	case status >= 500:
		return OutcomeError
	case status >= 400:
		return OutcomeRefused
	}
	return OutcomeOK
}

// Defaults for Config's zero fields.
const (
	DefaultBuffer = 4096
	DefaultBatch  = 500
)

// Config sets up a Log.
type Config struct {
	// Buffer is how many entries may wait for the writer; default
	// DefaultBuffer. Past it, entries are dropped and counted.
	Buffer int
	// Batch is the most entries one write takes; default DefaultBatch.
	Batch int
	// Registerer, when set, receives the log's metrics.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Why an entry was dropped, the label of gcm_audit_dropped_total.
const (
	dropBufferFull  = "buffer_full"
	dropWriteFailed = "write_failed"
	dropClosed      = "closed"
)

// writeAttempts bounds the tries of one batch; a batch that fails them all
// is dropped and counted.
const writeAttempts = 3

// writeTimeout bounds one attempt to write a batch.
const writeTimeout = 10 * time.Second

// item is what the buffer carries: an entry, or a flush marker that the
// writer closes once everything before it is written.
type item struct {
	entry   Entry
	flushed chan struct{}
}

// Log is the audit log: a bounded buffer in front of auth.audit, and the
// queries that read it back.
type Log struct {
	pool *pgxpool.Pool
	cfg  Config

	mu     sync.RWMutex // held for writing only to set closed
	closed bool
	queue  chan item
	quit   chan struct{} // closed by Close: drain and stop
	done   chan struct{} // closed when the writer has stopped
	// ctx bounds the writer's database calls; Close cancels it when its
	// own deadline passes.
	ctx    context.Context
	cancel context.CancelFunc

	dropped *prometheus.CounterVec
	written prometheus.Counter
}

// Open starts a log writing to pool, whose database must have the auth
// migrations applied. Close stops it.
func Open(pool *pgxpool.Pool, cfg Config) *Log {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Log{
		pool: pool, cfg: cfg,
		queue: make(chan item, cfg.Buffer), quit: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gcm_audit_dropped_total",
			Help: "Audit entries lost: buffer_full (the writer fell behind), write_failed (the database refused a batch), closed (recorded after Close).",
		}, []string{"reason"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gcm_audit_written_total", Help: "Audit entries written to auth.audit.",
		}),
	}
	for _, r := range []string{dropBufferFull, dropWriteFailed, dropClosed} {
		l.dropped.WithLabelValues(r)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(l.dropped, l.written)
	}
	go l.run()
	return l
}

// Record queues an entry for writing. It never blocks: when the buffer is
// full, or the log is closed, the entry is dropped and counted.
func (l *Log) Record(e Entry) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.WithLabelValues(dropClosed).Inc()
		return
	}
	select {
	case l.queue <- item{entry: e}:
	default:
		l.dropped.WithLabelValues(dropBufferFull).Inc()
	}
}

// Flush waits until every entry recorded before the call has been written
// (or dropped after failed attempts).
func (l *Log) Flush(ctx context.Context) error {
	marker := make(chan struct{})
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return l.wait(ctx)
	}
	select {
	case l.queue <- item{flushed: marker}:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case <-marker:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking entries, writes those still buffered and stops the
// writer. When ctx ends first, the writer's database calls are cancelled
// and what remains is dropped and counted. Close may be called again.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.quit)
	}
	l.mu.Unlock()
	return l.wait(ctx)
}

func (l *Log) wait(ctx context.Context) error {
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		l.cancel()
		<-l.done
		return ctx.Err()
	}
}

// run is the writer: it takes an entry, everything else already waiting
// (up to a batch), and writes them together.
func (l *Log) run() {
	defer close(l.done)
	defer l.cancel()
	batch := make([]Entry, 0, l.cfg.Batch)
	var markers []chan struct{}
	take := func(it item) {
		if it.flushed != nil {
			markers = append(markers, it.flushed)
		} else {
			batch = append(batch, it.entry)
		}
	}
	flush := func() {
		if len(batch) > 0 {
			l.write(batch)
			batch = batch[:0]
		}
		for _, m := range markers {
			close(m)
		}
		markers = markers[:0]
	}
	for {
		select {
		case it := <-l.queue:
			take(it)
		gather:
			for len(batch) < l.cfg.Batch {
				select {
				case it := <-l.queue:
					take(it)
				default:
					break gather
				}
			}
			flush()
		case <-l.quit:
			// Close holds no Record back any more: what is queued is all.
			for {
				select {
				case it := <-l.queue:
					take(it)
					if len(batch) >= l.cfg.Batch {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}

// columns of auth.audit that write fills, in the order of row.
var columns = []string{"at", "token_id", "actor", "role", "iscm", "method", "path", "route", "status",
	"outcome", "reason", "position", "correlation_id", "client_addr"}

// write stores a batch, retrying transient failures; a batch that cannot
// be written is dropped, counted and logged.
func (l *Log) write(batch []Entry) {
	rows := make([][]any, len(batch))
	for i, e := range batch {
		rows[i] = row(e)
	}
	var err error
	delay := 100 * time.Millisecond
	for attempt := 1; attempt <= writeAttempts; attempt++ {
		ctx, cancel := context.WithTimeout(l.ctx, writeTimeout)
		_, err = l.pool.CopyFrom(ctx, pgx.Identifier{"auth", "audit"}, columns, pgx.CopyFromRows(rows))
		cancel()
		if err == nil {
			l.written.Add(float64(len(batch)))
			return
		}
		if permanent(err) || attempt == writeAttempts {
			break
		}
		select {
		case <-time.After(delay):
		case <-l.ctx.Done():
		}
		if l.ctx.Err() != nil {
			break
		}
		delay *= 4
	}
	l.dropped.WithLabelValues(dropWriteFailed).Add(float64(len(batch)))
	l.cfg.Logger.Error("audit entries lost", "entries", len(batch), "err", err)
}

// permanent reports whether retrying a failed write cannot help: the
// database refused the data itself.
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "42": // data exception, integrity constraint, syntax or privilege
		return true
	}
	return false
}

// Limits of the table's columns; longer values are cut.
const (
	maxActor  = 200
	maxMethod = 20
	maxPath   = 1000
	maxRoute  = 200
	maxReason = 100
	maxShort  = 100 // correlation id, client address, ISCM
)

// row is an entry as COPY sends it. Strings are made valid UTF-8 without
// NUL bytes, which PostgreSQL's text refuses, and cut to the column
// limits: an odd request path must not lose a whole batch.
func row(e Entry) []any {
	var tokenID *uuid.UUID
	if id, err := uuid.Parse(e.TokenID); err == nil {
		tokenID = &id
	}
	var iscm *string
	if e.ISCM != "" {
		v := clean(e.ISCM, maxShort)
		iscm = &v
	}
	var position *int64
	if e.Position > 0 {
		p := int64(min(e.Position, 1<<63-1))
		position = &p
	}
	actor, role := clean(e.Actor, maxActor), e.Role
	if actor == "" {
		actor = RoleAnonymous
	}
	switch role {
	case "admin", "monitor", "secretariat":
	default:
		role = RoleAnonymous
	}
	status := min(max(e.Status, 100), 599)
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	method := clean(e.Method, maxMethod)
	if method == "" {
		method = "?"
	}
	return []any{at, tokenID, actor, role, iscm, method, clean(e.Path, maxPath),
		clean(e.Route, maxRoute), int16(status), OutcomeOf(status), clean(e.Reason, maxReason), position,
		clean(e.CorrelationID, maxShort), clean(e.ClientAddr, maxShort)}
}

// clean makes s valid UTF-8 without NUL bytes, of at most n characters.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n])
	}
	return s
}

// MaxLimit caps a page of List; DefaultLimit is the page size when none is
// asked for.
const (
	MaxLimit     = 200
	DefaultLimit = 50
)

// ErrInvalidQuery means a filter or cursor of List is malformed.
var ErrInvalidQuery = errors.New("invalid audit query")

// Query filters and pages List.
type Query struct {
	// Actor is "anonymous", a token id or a token name.
	Actor string
	// Status is a status class such as "4xx", or a status such as "403".
	Status string
	// Outcome is ok, refused or error.
	Outcome string
	// Route is a route pattern such as "POST /v1/iscms/{slug}/members".
	Route string
	// Cursor is the NextCursor of the previous page.
	Cursor string
	// Limit is the page size, 1 to MaxLimit; 0 means DefaultLimit.
	Limit int
}

// Page is one page of entries, newest first, with the cursor of the next
// page ("" at the end).
type Page struct {
	Items      []Entry `json:"items"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// List returns entries newest first, keyset-paginated by (time, id).
func (l *Log) List(ctx context.Context, q Query) (Page, error) {
	for _, f := range []string{q.Actor, q.Route} {
		if len(f) > maxFilter {
			return Page{}, fmt.Errorf("%w: a filter is longer than %d bytes", ErrInvalidQuery, maxFilter)
		}
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Cursor != "" {
		at, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page{}, err
		}
		where = append(where, "(at, id) < ("+arg(at)+"::timestamptz, "+arg(id)+"::bigint)")
	}
	switch id, err := uuid.Parse(q.Actor); {
	case q.Actor == "":
	case q.Actor == RoleAnonymous:
		where = append(where, "token_id IS NULL")
	case err == nil:
		where = append(where, "token_id = "+arg(id))
	default:
		where = append(where, "actor = "+arg(q.Actor))
	}
	if q.Status != "" {
		lo, hi, err := statusRange(q.Status)
		if err != nil {
			return Page{}, err
		}
		where = append(where, "status BETWEEN "+arg(lo)+" AND "+arg(hi))
	}
	switch q.Outcome {
	case "":
	case OutcomeOK, OutcomeRefused, OutcomeError:
		where = append(where, "outcome = "+arg(q.Outcome))
	default:
		return Page{}, fmt.Errorf("%w: outcome must be ok, refused or error", ErrInvalidQuery)
	}
	if q.Route != "" {
		where = append(where, "route = "+arg(q.Route))
	}
	limit := q.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return Page{}, fmt.Errorf("%w: limit must be from 1 to %d", ErrInvalidQuery, MaxLimit)
	}
	sql := `SELECT id, at, coalesce(token_id::text, ''), actor, role, coalesce(iscm, ''), method, path, route,
		status, outcome, reason, coalesce(position, 0), correlation_id, client_addr FROM auth.audit`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY at DESC, id DESC LIMIT " + arg(limit+1)
	rows, err := l.pool.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("list audit entries: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var status int16
		var position int64
		err := r.Scan(&e.ID, &e.At, &e.TokenID, &e.Actor, &e.Role, &e.ISCM, &e.Method, &e.Path, &e.Route,
			&status, &e.Outcome, &e.Reason, &position, &e.CorrelationID, &e.ClientAddr)
		e.Status, e.Position = int(status), uint64(position)
		return e, err
	})
	if err != nil {
		return Page{}, fmt.Errorf("list audit entries: %w", err)
	}
	page := Page{Items: items}
	if page.Items == nil {
		page.Items = []Entry{}
	}
	if len(items) > limit {
		last := items[limit-1]
		page.Items, page.NextCursor = items[:limit], encodeCursor(last.At, last.ID)
	}
	return page, nil
}

// statusRange reads "4xx" or "403".
func statusRange(s string) (int, int, error) {
	if len(s) == 3 && s[1:] == "xx" && s[0] >= '1' && s[0] <= '5' {
		lo := int(s[0]-'0') * 100
		return lo, lo + 99, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, 0, fmt.Errorf("%w: status must be a class such as 4xx or a status such as 403", ErrInvalidQuery)
	}
	return n, n, nil
}

// maxCursor bounds a cursor's length before it is decoded; maxFilter a
// filter's.
const (
	maxCursor = 64
	maxFilter = 200
)

func encodeCursor(at time.Time, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + ":" + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (time.Time, int64, error) {
	bad := fmt.Errorf("%w: cursor is not one this server handed out", ErrInvalidQuery)
	if len(c) > maxCursor {
		return time.Time{}, 0, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, 0, bad
	}
	us, id, ok := strings.Cut(string(b), ":")
	micros, err1 := strconv.ParseInt(us, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if !ok || err1 != nil || err2 != nil || n <= 0 {
		return time.Time{}, 0, bad
	}
	return time.UnixMicro(micros), n, nil
}
