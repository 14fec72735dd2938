package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/projections/reports"
	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/idempotency"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// stack is the whole system in one test: embedded JetStream, a fresh
// PostgreSQL database, the projector and the API.
type stack struct {
	srv     *httptest.Server
	store   *eventstore.Store
	admin   string
	secret  string // a secretariat token of sacm
	secret2 string // a secretariat token of puebla-process
	monitor string
	api     *Server
	deps    Deps
	tokens  *auth.Store
	audit   *audit.Log
}

// newStack builds the stack; opts adjust the API's dependencies before the
// server is built.
func newStack(t testing.TB, opts ...func(*Deps)) *stack {
	t.Helper()
	ctx := context.Background()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := migrations.Up(ctx, pool, migrations.Engine(), auth.Migrations()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	store, err := eventstore.Open(ctx, js, eventstore.Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := idempotency.Open(ctx, js, idempotency.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.Default()
	regSvc := registry.NewService(store, cat)
	if _, err := regSvc.RegisterCatalog(ctx, command.Meta{Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(pool, store.Stream(), engine.Config{Metrics: engine.NewMetrics(reg)}, projregistry.Projection{}, projrecords.Projection{})
	if err := eng.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ectx) }()
	t.Cleanup(func() { cancel(); <-done })
	tokens := auth.NewStore(pool)
	listenTokens(t, tokens)
	admin, _, err := tokens.Create(ctx, auth.NewToken{Name: "test admin", Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	sec, _, err := tokens.Create(ctx, auth.NewToken{Name: "sacm secretariat", Role: auth.RoleSecretariat, ISCM: "sacm"})
	if err != nil {
		t.Fatal(err)
	}
	sec2, _, err := tokens.Create(ctx, auth.NewToken{Name: "rcm secretariat", Role: auth.RoleSecretariat, ISCM: "puebla-process"})
	if err != nil {
		t.Fatal(err)
	}
	mon, _, err := tokens.Create(ctx, auth.NewToken{Name: "iom monitor", Role: auth.RoleMonitor})
	if err != nil {
		t.Fatal(err)
	}
	auditLog := audit.Open(pool, audit.Config{Registerer: reg})
	t.Cleanup(func() { _ = auditLog.Close(context.Background()) })
	d := Deps{Catalog: cat, Auth: tokens, Keys: keys, Registry: regSvc, RegistryQ: projregistry.NewQueries(pool),
		Records: records.NewService(store, cat, regSvc), RecordsQ: projrecords.NewQueries(pool),
		Reports: reports.NewStore(pool), Store: store,
		Pool: pool, Gatherer: reg, Registerer: reg, Audit: auditLog}
	for _, o := range opts {
		o(&d)
	}
	s := New(d)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &stack{srv: srv, store: store, admin: admin, secret: sec, secret2: sec2, monitor: mon, api: s,
		deps: d, tokens: tokens, audit: auditLog}
}

// listenTokens keeps verified tokens in memory until the test ends, as
// `gcmtrack run` does, once the listener is connected.
func listenTokens(t testing.TB, tokens *auth.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tokens.Listen(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	for start := time.Now(); !tokens.Caching(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("the token listener did not connect within 5s")
		}
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not JSON (%v): %s", err, r.Body)
	}
	return m
}

func (s *stack) do(t testing.TB, method, path, token string, body string, hdr map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (s *stack) last(t testing.TB) uint64 {
	t.Helper()
	p, err := s.store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAddMemberRoundTrip(t *testing.T) {
	s := newStack(t)
	r := s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX","status":"member","since":"2019-01-01"}`, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("add member: %d %s", r.Status, r.Body)
	}
	pos := uint64(r.json(t)["position"].(float64))
	if pos != s.last(t) || r.Header.Get("Gcm-Position") != fmt.Sprint(pos) || r.Header.Get("ETag") != fmt.Sprintf(`"%d"`, pos) {
		t.Fatalf("write answered position %d, headers %v; stream is at %d", pos, r.Header, s.last(t))
	}
	// Read it back, waiting for the projection to reach the write.
	r = s.do(t, "GET", fmt.Sprintf("/v1/iscms/puebla-process?min_position=%d", pos), "", "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}
	prof := r.json(t)
	members := prof["members"].([]any)
	if prof["member_count"].(float64) != 1 || len(members) != 1 || members[0].(map[string]any)["state"] != "MEX" || members[0].(map[string]any)["since"] != "2019-01-01" {
		t.Fatalf("profile = %s", r.Body)
	}
	if r.Header.Get("ETag") != fmt.Sprintf(`"%d"`, pos) {
		t.Errorf("ETag %q, want the version %d", r.Header.Get("ETag"), pos)
	}
	r = s.do(t, "GET", fmt.Sprintf("/v1/states/MEX?min_position=%d", pos), "", "", nil)
	st := r.json(t)
	if r.Status != http.StatusOK || st["iscm_count"].(float64) != 1 || st["iscms"].([]any)[0].(map[string]any)["slug"] != "puebla-process" {
		t.Fatalf("state MEX: %d %s", r.Status, r.Body)
	}
	// Observer status change, then leaving.
	r = s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX","status":"observer"}`, map[string]string{"If-Match": fmt.Sprintf(`"%d"`, pos)})
	if r.Status != http.StatusCreated {
		t.Fatalf("status change: %d %s", r.Status, r.Body)
	}
	r = s.do(t, "DELETE", "/v1/iscms/puebla-process/members/MEX", s.admin, "", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("leave: %d %s", r.Status, r.Body)
	}
	pos = uint64(r.json(t)["position"].(float64))
	r = s.do(t, "GET", fmt.Sprintf("/v1/states/MEX?min_position=%d", pos), "", "", nil)
	if st := r.json(t); st["iscm_count"].(float64) != 0 {
		t.Fatalf("after leaving: %s", r.Body)
	}
	r = s.do(t, "GET", "/v1/iscms", "", "", nil)
	if items := r.json(t)["items"].([]any); len(items) != 30 {
		t.Fatalf("%d ISCMs listed, want the catalog's 30", len(items))
	}
}

func TestIdempotencyKey(t *testing.T) {
	s := newStack(t)
	h := map[string]string{"Idempotency-Key": "add-arg-1"}
	first := s.do(t, "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, h)
	if first.Status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}
	before := s.last(t)
	again := s.do(t, "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, h)
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry answered %d %s, want the first answer %d %s", again.Status, again.Body, first.Status, first.Body)
	}
	other := s.do(t, "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"BRA"}`, h)
	if other.Status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body: %d %s, want 422", other.Status, other.Body)
	}
	if s.last(t) != before {
		t.Fatalf("stream moved from %d to %d on a retry", before, s.last(t))
	}
}

func TestStaleIfMatchAndConflicts(t *testing.T) {
	s := newStack(t)
	r := s.do(t, "POST", "/v1/iscms/cmc/members", s.admin, `{"state":"JAM"}`, nil)
	v := r.json(t)["version"].(float64)
	before := s.last(t)
	r = s.do(t, "POST", "/v1/iscms/cmc/members", s.admin, `{"state":"BRB"}`, map[string]string{"If-Match": fmt.Sprintf(`"%d"`, int(v)-1)})
	if r.Status != http.StatusPreconditionFailed || r.json(t)["version"].(float64) != v {
		t.Fatalf("stale If-Match: %d %s, want 412 with version %v", r.Status, r.Body, v)
	}
	r = s.do(t, "POST", "/v1/iscms/cmc/members", s.admin, `{"state":"JAM"}`, nil)
	if r.Status != http.StatusConflict {
		t.Fatalf("joining twice: %d %s, want 409", r.Status, r.Body)
	}
	if s.last(t) != before {
		t.Fatal("a refused write appended an event")
	}
}

func TestBadInputIsAProblemAndAppendsNothing(t *testing.T) {
	s := newStack(t)
	big := `{"state":"MEX","since":"` + strings.Repeat("x", 2<<20) + `"}`
	cases := []struct {
		name, method, path, token, body string
		hdr                             map[string]string
		status                          int
		detail                          string
	}{
		{"malformed JSON", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":`, nil, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG","colour":"blue"}`, nil, 400, `unknown field "colour"`},
		{"server-owned field", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG","iscm":"other"}`, nil, 400, `field "iscm" is set by the server`},
		{"two values", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}{"state":"BRA"}`, nil, 400, "after the JSON object"},
		{"wrong type", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":12}`, nil, 400, `field "state"`},
		{"unknown ISCM", "POST", "/v1/iscms/no-such-iscm/members", s.admin, `{"state":"ARG"}`, nil, 404, "no-such-iscm"},
		{"unknown State", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"XYZ"}`, nil, 422, "state"},
		{"lower-case State", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"arg"}`, nil, 422, "alpha-3"},
		{"bad status", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG","status":"friend"}`, nil, 422, "status"},
		{"bad date", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG","since":"2019-13-45"}`, nil, 422, "since"},
		{"oversized body", "POST", "/v1/iscms/sacm/members", s.admin, big, nil, 413, "larger than"},
		{"wrong content type", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, map[string]string{"Content-Type": "text/plain"}, 415, "application/json"},
		{"no token", "POST", "/v1/iscms/sacm/members", "", `{"state":"ARG"}`, nil, 401, "Bearer"},
		{"bad token", "POST", "/v1/iscms/sacm/members", "gcm_nope", `{"state":"ARG"}`, nil, 401, "unknown"},
		{"not admin", "POST", "/v1/iscms/sacm/members", s.secret, `{"state":"ARG"}`, nil, 403, "admin"},
		{"bad If-Match", "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, map[string]string{"If-Match": "yesterday"}, 400, "If-Match"},
		{"leave as non-member", "DELETE", "/v1/iscms/sacm/members/ARG", s.admin, "", nil, 409, "not a member"},
		{"leave unknown State", "DELETE", "/v1/iscms/sacm/members/QQQ", s.admin, "", nil, 422, "state"},
		{"unknown State page", "GET", "/v1/states/QQQ", "", "", nil, 404, "QQQ"},
		{"unknown ISCM page", "GET", "/v1/iscms/nope", "", "", nil, 404, "nope"},
		{"bad min_position", "GET", "/v1/iscms?min_position=-3", "", "", nil, 400, "min_position"},
		{"unknown route", "GET", "/v1/nothing", "", "", nil, 404, "no such resource"},
		{"wrong method", "PATCH", "/v1/iscms", s.admin, `{}`, nil, 405, "PATCH"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.last(t)
			r := s.do(t, tc.method, tc.path, tc.token, tc.body, tc.hdr)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q, want application/problem+json", ct)
			}
			p := r.json(t)
			if p["status"].(float64) != float64(tc.status) || p["type"] == "" || p["title"] == "" {
				t.Errorf("problem lacks type/title/status: %s", r.Body)
			}
			if d, _ := p["detail"].(string); !strings.Contains(d, tc.detail) && !strings.Contains(string(r.Body), tc.detail) {
				t.Errorf("problem does not name %q: %s", tc.detail, r.Body)
			}
			if after := s.last(t); after != before {
				t.Errorf("stream moved from %d to %d", before, after)
			}
		})
	}
}

func TestMinPositionTimesOutWith503(t *testing.T) {
	s := newStack(t)
	s.api.d.WaitTimeout = 200 * time.Millisecond
	r := s.do(t, "GET", "/v1/iscms?min_position=999999", "", "", nil)
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("unreachable min_position: %d (Retry-After %q), want 503 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s := newStack(t)
	r := s.do(t, "GET", "/openapi.json", "", "", nil)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v %s", err, r.Body[:min(len(r.Body), 200)])
	}
	seen := map[string]bool{}
	for _, pat := range append(s.api.patterns, "GET /metrics") {
		method, path, _ := strings.Cut(pat, " ")
		ops, ok := doc.Paths[path]
		if !ok {
			t.Errorf("route %s is not in the OpenAPI document", pat)
			continue
		}
		if _, ok := ops[strings.ToLower(method)]; !ok {
			t.Errorf("route %s: method not documented", pat)
		}
		seen[strings.ToLower(method)+" "+path] = true
	}
	for path, ops := range doc.Paths {
		for m := range ops {
			if !seen[m+" "+path] {
				t.Errorf("documented %s %s is not served", m, path)
			}
		}
	}
}

// A retry of a request whose event was stored but whose answer was lost
// (the process stopped before keeping the outcome) answers as the first
// attempt would have, and appends nothing.
func TestRetryAfterALostAnswerAnswersTheStoredEvent(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	id, err := s.api.d.Auth.Verify(ctx, s.admin)
	if err != nil {
		t.Fatal(err)
	}
	const clientKey = "join-arg-lost-answer"
	// The first attempt: the event is stored under the request's message
	// id, and no outcome is kept (as when the process dies right after).
	first, err := s.api.d.Registry.Join(ctx, "sacm", registry.AddMember{State: "ARG"},
		command.Meta{Actor: id.Actor(), MsgID: idempotency.Key(id.Actor(), clientKey)})
	if err != nil {
		t.Fatal(err)
	}
	before := s.last(t)
	r := s.do(t, "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, map[string]string{"Idempotency-Key": clientKey})
	if r.Status != http.StatusCreated || uint64(r.json(t)["position"].(float64)) != first.Position {
		t.Fatalf("retry: %d %s, want 201 at position %d", r.Status, r.Body, first.Position)
	}
	if s.last(t) != before {
		t.Fatal("the retry appended an event")
	}
	// A new request with another key is decided afresh: ARG is a member.
	if r := s.do(t, "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, map[string]string{"Idempotency-Key": "other"}); r.Status != http.StatusConflict {
		t.Fatalf("another key: %d", r.Status)
	}
}
