// Package api is GCM Tracker's HTTP JSON API under /v1: it authenticates the
// caller, decodes and bounds the request, hands commands to the command
// side and queries to the read models, and answers errors as RFC 9457
// problem details. It also serves /openapi.json, /metrics, /healthz and
// /readyz.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/singleflight"

	"gcmtrack/events/catalog"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/projections/reports"
	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/idempotency"
	"gcmtrack/services/pagecache"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

// Authenticator resolves a bearer token to an identity.
type Authenticator interface {
	Verify(ctx context.Context, secret string) (auth.Identity, error)
}

// Deps are what the API needs. Pool is the read models' database.
type Deps struct {
	Catalog   *catalog.Catalog
	Auth      Authenticator
	Keys      *idempotency.Keys
	Registry  *registry.Service
	RegistryQ *projregistry.Queries
	Records   *records.Service
	RecordsQ  *projrecords.Queries
	Reports   *reports.Store
	// Store is the event store, for reports as of a date.
	Store      *eventstore.Store
	Pool       *pgxpool.Pool
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Ready reports whether the process can serve (databases reachable).
	Ready func(ctx context.Context) error
	// Pages serves every path outside the API (the web application); nil
	// answers 404 there.
	Pages http.Handler
	// WaitTimeout bounds a min_position wait; default 5 s.
	WaitTimeout time.Duration
	// Audit, when set, records every write and every refused request, and
	// serves GET /v1/audit.
	Audit *audit.Log
	// RateLimits bound each caller's request rate; the zero value limits
	// nothing (DefaultRateLimits are the binary's defaults).
	RateLimits RateLimits
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names
	// the client; without them the client is the connection's peer.
	TrustedProxies []netip.Prefix
}

// Server is the HTTP API.
type Server struct {
	d       Deps
	mux     *http.ServeMux
	metrics *metrics
	limits  *limiter
	// patterns lists the registered routes, for the OpenAPI check.
	patterns []string

	docOnce sync.Once
	doc     []byte
	docErr  error

	// feeds keeps encoded feed pages (serveFeed).
	feeds     *pagecache.Cache
	feedReads singleflight.Group
}

// New builds the API's handler.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	d.Logger = newRedactingLogger(d.Logger)
	if d.WaitTimeout <= 0 {
		d.WaitTimeout = 5 * time.Second
	}
	s := &Server{d: d, mux: http.NewServeMux(), metrics: newMetrics(d.Registerer), limits: newLimiter(d.RateLimits)}
	s.feeds = pagecache.New(feedPages, feedBytes)
	if d.Registerer != nil && d.Reports != nil { // the feeds are served
		d.Registerer.MustRegister(s.feeds.Collectors("feed")...)
	}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.handle("GET /openapi.json", s.openAPI)
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	if s.d.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.d.Gatherer, promhttp.HandlerOpts{}))
	}
	s.handle("GET /v1/catalog", s.getCatalog)
	s.handle("GET /v1/iscms", s.listISCMs)
	s.handle("GET /v1/iscms/{slug}", s.getISCM)
	s.handle("POST /v1/iscms/{slug}/members", s.addMember)
	s.handle("DELETE /v1/iscms/{slug}/members/{state}", s.removeMember)
	s.handle("GET /v1/states/{iso3}", s.getState)
	if s.d.Audit != nil {
		s.auditRoutes()
	}
	if s.d.Records != nil {
		s.recordRoutes()
	}
	if s.d.Reports != nil {
		s.reportRoutes()
		s.feedRoutes()
		s.exportRoutes()
	}
}

// handlerFunc is a route handler that may fail with an error the server
// turns into a problem.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(pattern string, h handlerFunc) {
	route := pattern
	s.patterns = append(s.patterns, pattern)
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			p := errProblem(err)
			if p.Status >= 500 {
				s.d.Logger.ErrorContext(r.Context(), "request failed", "route", route, "err", err, "correlation_id", correlationID(r.Context()))
			}
			writeProblem(w, r, p)
		}
	}))
}

// Security headers every response carries. The content security policy is
// that of JSON documents, which load nothing; an HTML handler mounted here
// sets its own.
var securityHeaders = map[string]string{
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"X-Frame-Options":         "DENY",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}

// unlimitedRoutes are never rate-limited: probes and scrapes must get
// through whatever the load.
var unlimitedRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// ServeHTTP adds correlation ids, security headers, rate limits, logging,
// metrics, the audit log and panic recovery around the routes, and answers
// unknown routes and methods as problems.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ex := &exchange{start: time.Now(), cid: r.Header.Get("X-Correlation-Id"), client: s.clientAddr(r)}
	if ex.cid == "" || len(ex.cid) > 100 || !printableASCII(ex.cid) {
		ex.cid = uuid.NewString()
	}
	if h := r.Header.Get("Authorization"); h != "" {
		ex.bearer = maskable(h)
	}
	r = r.WithContext(withExchange(r.Context(), ex))
	// A response to a request with credentials is never stored by a cache.
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK, noStore: r.Header.Get("Authorization") != ""}
	hdr := sw.Header()
	for k, v := range securityHeaders {
		hdr.Set(k, v)
	}
	hdr.Add("Vary", "Authorization")
	hdr.Set("X-Correlation-Id", ex.cid)
	h, pattern := s.mux.Handler(r)
	route := pattern
	if route == "" {
		route = "unmatched"
	}
	defer func() {
		if v := recover(); v != nil {
			s.d.Logger.ErrorContext(r.Context(), "panic in handler", "route", route, "panic", v, "correlation_id", ex.cid)
			if !sw.wrote {
				writeProblem(sw, r, problem(http.StatusInternalServerError, "internal", "an internal error occurred; it has been logged"))
			}
		}
		s.metrics.observe(route, r.Method, sw.status, time.Since(ex.start))
		s.d.Logger.InfoContext(r.Context(), "http", "method", r.Method, "path", r.URL.Path, "route", route, "status", sw.status,
			"duration_ms", float64(time.Since(ex.start).Microseconds())/1000, "correlation_id", ex.cid)
		s.recordAudit(r, ex, route, sw.status)
	}()
	if !unlimitedRoutes[pattern] {
		if v := s.admit(r, ex); !v.ok {
			s.metrics.limited.Inc()
			ex.unaudited = !v.audit
			sw.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(v.retryAfter.Seconds()))))
			writeProblem(sw, r, problem(http.StatusTooManyRequests, "rate-limited",
				fmt.Sprintf("too many requests; retry in %d s", int(math.Ceil(v.retryAfter.Seconds())))))
			return
		}
	}
	if p := checkTarget(r); p != nil {
		writeProblem(sw, r, p)
		return
	}
	if pattern == "" && s.d.Pages != nil && !strings.HasPrefix(r.URL.Path, "/v1/") {
		// The web pages, behind the same rate limits, audit and headers.
		route = "pages"
		s.d.Pages.ServeHTTP(sw, r)
		return
	}
	if pattern == "" {
		// The mux would answer 404 or 405 in plain text: find out which, and
		// answer a problem instead.
		probe := &statusWriter{ResponseWriter: discardWriter{header: http.Header{}}, status: http.StatusOK}
		h.ServeHTTP(probe, r)
		if allow := probe.Header().Get("Allow"); allow != "" {
			sw.Header().Set("Allow", allow)
		}
		st := probe.status
		if st != http.StatusMethodNotAllowed {
			st = http.StatusNotFound
		}
		writeProblem(sw, r, problem(st, strings.ToLower(strings.ReplaceAll(http.StatusText(st), " ", "-")),
			"no such resource or method: "+r.Method+" "+r.URL.Path))
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// admit applies the rate limits: by token for a valid token, else by client
// address. It authenticates the request's token to know which.
func (s *Server) admit(r *http.Request, ex *exchange) verdict {
	addr := addressKey(ex.client)
	if r.Header.Get("Authorization") == "" {
		return s.limits.allow(classAddress, addr)
	}
	if v := s.limits.blockedAfterFailure(addr); !v.ok {
		return v
	}
	s.authenticate(r, ex)
	var p *Problem
	switch {
	case ex.authenticated && isWrite(r.Method):
		return s.limits.allow(classTokenWrite, ex.id.TokenID.String())
	case ex.authenticated:
		return s.limits.allow(classTokenRead, ex.id.TokenID.String())
	case errors.As(ex.authErr, &p) && p.Status == http.StatusUnauthorized:
		return s.limits.failedAuth(addr)
	}
	return s.limits.allow(classAddress, addr)
}

// checkTarget refuses a request whose path or query, once decoded, is not
// valid UTF-8 or holds control characters: no resource is named so, and
// PostgreSQL's text would refuse such a parameter.
func checkTarget(r *http.Request) *Problem {
	ok := func(v string) bool {
		return utf8.ValidString(v) && !strings.ContainsFunc(v, func(c rune) bool { return c < ' ' || c == 0x7f })
	}
	if !ok(r.URL.Path) {
		return problem(http.StatusBadRequest, "bad-target", "the path holds bytes that are not printable UTF-8")
	}
	for k, vs := range r.URL.Query() {
		if !ok(k) || slices.ContainsFunc(vs, func(v string) bool { return !ok(v) }) {
			return problem(http.StatusBadRequest, "bad-target", "a query parameter holds bytes that are not printable UTF-8")
		}
	}
	return nil
}

// isWrite reports whether a method changes something.
func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// statusWriter records the status a handler answers, and makes responses
// to requests with credentials uncacheable whatever the handler set.
type statusWriter struct {
	http.ResponseWriter
	status  int
	wrote   bool
	noStore bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
		if w.noStore {
			w.Header().Set("Cache-Control", "no-store")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

// writeJSON answers a JSON document.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if s.d.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.d.Ready(ctx); err != nil {
			s.d.Logger.WarnContext(r.Context(), "not ready", "err", err)
			return problem(http.StatusServiceUnavailable, "not-ready", "a dependency is not reachable yet")
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// parseUint reads a non-negative integer parameter.
func parseUint(name, v string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, problem(http.StatusBadRequest, "bad-parameter", name+" must be a non-negative integer")
	}
	return n, nil
}
