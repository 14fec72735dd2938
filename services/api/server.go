// Package api is GCM Tracker's HTTP JSON API under /v1: it authenticates the
// caller, decodes and bounds the request, hands commands to the command
// side and queries to the read models, and answers errors as RFC 9457
// problem details. It also serves /openapi.json, /metrics, /healthz and
// /readyz.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gcmtrack/events/catalog"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/projections/reports"
	"gcmtrack/services/auth"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/idempotency"
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
	// WaitTimeout bounds a min_position wait; default 5 s.
	WaitTimeout time.Duration
}

// Server is the HTTP API.
type Server struct {
	d       Deps
	mux     *http.ServeMux
	metrics *metrics
	// patterns lists the registered routes, for the OpenAPI check.
	patterns []string

	docOnce sync.Once
	doc     []byte
	docErr  error

	snaps snapshots
}

// New builds the API's handler.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.WaitTimeout <= 0 {
		d.WaitTimeout = 5 * time.Second
	}
	s := &Server{d: d, mux: http.NewServeMux(), metrics: newMetrics(d.Registerer)}
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
				s.d.Logger.Error("request failed", "route", route, "err", err, "correlation_id", correlationID(r.Context()))
			}
			writeProblem(w, r, p)
		}
	}))
}

// ServeHTTP adds correlation ids, logging, metrics and panic recovery around
// the routes, and answers unknown routes and methods as problems.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cid := r.Header.Get("X-Correlation-Id")
	if cid == "" || len(cid) > 100 {
		cid = uuid.NewString()
	}
	r = r.WithContext(withCorrelationID(r.Context(), cid))
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	sw.Header().Set("X-Correlation-Id", cid)
	h, pattern := s.mux.Handler(r)
	defer func() {
		if v := recover(); v != nil {
			s.d.Logger.Error("panic in handler", "route", pattern, "panic", v, "correlation_id", cid)
			if !sw.wrote {
				writeProblem(sw, r, problem(http.StatusInternalServerError, "internal", "an internal error occurred; it has been logged"))
			}
		}
		route := pattern
		if route == "" {
			route = "unmatched"
		}
		s.metrics.observe(route, r.Method, sw.status, time.Since(start))
		s.d.Logger.Info("http", "method", r.Method, "path", r.URL.Path, "route", route, "status", sw.status,
			"duration_ms", float64(time.Since(start).Microseconds())/1000, "correlation_id", cid)
	}()
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

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type discardWriter struct{ header http.Header }

func (d discardWriter) Header() http.Header         { return d.header }
func (d discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d discardWriter) WriteHeader(int)             {}

type ctxKey int

const correlationKey ctxKey = 1

func withCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey, id)
}

func correlationID(ctx context.Context) string {
	s, _ := ctx.Value(correlationKey).(string)
	return s
}

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
			s.d.Logger.Warn("not ready", "err", err)
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
