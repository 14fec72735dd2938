package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
)

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	s := newStack(t)
	cases := []struct {
		name, method, path, token string
		status                    int
	}{
		{"anonymous JSON", "GET", "/v1/catalog", "", 200},
		{"authenticated JSON", "GET", "/v1/catalog", s.admin, 200},
		{"authenticated report", "GET", "/v1/progress/objectives", s.monitor, 200},
		{"a write", "POST", "/v1/iscms/cmc/resources", s.admin, 201},
		{"a problem", "POST", "/v1/iscms/cmc/resources", "", 401},
		{"a bad token", "GET", "/v1/activities", "gcm_nope-nope-nope-nope", 401},
		{"unknown route", "GET", "/v1/nothing", "", 404},
		{"wrong method", "PATCH", "/v1/iscms", s.admin, 405},
		{"CSV export", "GET", "/v1/exports/activities.csv", s.admin, 200},
		{"metrics", "GET", "/metrics", "", 200},
		{"probe", "GET", "/healthz", "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "POST" {
				body = `{"kind":"human","description":"x"}`
			}
			r := s.do(t, c.method, c.path, c.token, body, nil)
			if r.Status != c.status {
				t.Fatalf("%d %s, want %d", r.Status, r.Body, c.status)
			}
			for k, v := range map[string]string{
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
				"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
			} {
				if got := r.Header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			cc := r.Header.Get("Cache-Control")
			if c.token != "" && cc != "no-store" {
				t.Errorf("a response to a request with credentials has Cache-Control %q, want no-store", cc)
			}
			if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Authorization") {
				t.Errorf("Vary %q lacks Authorization", r.Header.Values("Vary"))
			}
		})
	}
	if r := s.do(t, "GET", "/v1/catalog", "", "", nil); r.Header.Get("Cache-Control") != "public, max-age=3600" {
		t.Errorf("the public catalog lost its caching: %q", r.Header.Get("Cache-Control"))
	}
}

func TestAuditLogListsWritesAndRefusals(t *testing.T) {
	s := newStack(t)
	admin := s.identityOf(t, s.admin)
	sec2 := s.identityOf(t, s.secret2)
	w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/resources?note=query-secret", s.admin, `{"kind":"human","description":"x"}`,
		map[string]string{"X-Correlation-Id": "corr-write-1"}), 201)
	written := uint64(w["position"].(float64))
	s.do(t, "POST", "/v1/iscms/cmc/resources", s.secret2, `{"kind":"human","description":"x"}`, nil)            // 403
	s.do(t, "POST", "/v1/iscms/cmc/resources", "", `{"kind":"human","description":"x"}`, nil)                   // 401
	s.do(t, "DELETE", "/v1/iscms/cmc/members/ARG", s.admin, "", nil)                                            // 409
	s.do(t, "POST", "/v1/iscms/cmc/resources", s.admin, `{"kind":"human"}`, map[string]string{"If-Match": "1"}) // 412 or 422
	s.do(t, "GET", "/v1/activities", "gcm_nope-nope-nope-nope", "", nil)                                        // a read refused: 401
	s.do(t, "GET", "/v1/activities", s.admin, "", nil)                                                          // a read: not audited
	s.do(t, "GET", "/v1/iscms/nope", "", "", nil)                                                               // a read's 404: not audited
	if err := s.audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	list := func(t *testing.T, token, query string) (int, audit.Page) {
		t.Helper()
		r := s.do(t, "GET", "/v1/audit"+query, token, "", nil)
		var p audit.Page
		if r.Status == http.StatusOK {
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatal(err)
			}
		}
		return r.Status, p
	}
	st, page := list(t, s.admin, "")
	if st != http.StatusOK || len(page.Items) != 6 {
		t.Fatalf("GET /v1/audit: %d, %d entries, want 6: %+v", st, len(page.Items), page.Items)
	}
	for i := 1; i < len(page.Items); i++ {
		if page.Items[i].At.After(page.Items[i-1].At) {
			t.Fatalf("not newest first: %v then %v", page.Items[i-1].At, page.Items[i].At)
		}
	}
	first := page.Items[len(page.Items)-1]
	if first.TokenID != admin.TokenID.String() || first.Actor != "test admin" || first.Role != "admin" || first.Method != "POST" ||
		first.Path != "/v1/iscms/cmc/resources" || first.Route != "POST /v1/iscms/{slug}/resources" || first.Status != 201 ||
		first.Outcome != "ok" || first.Position != written || first.CorrelationID != "corr-write-1" || first.ClientAddr != "127.0.0.1" {
		t.Errorf("the write's entry: %+v", first)
	}
	byStatus := map[int]audit.Entry{}
	for _, e := range page.Items {
		byStatus[e.Status] = e
	}
	if e := byStatus[403]; e.TokenID != sec2.TokenID.String() || e.ISCM != "puebla-process" || e.Outcome != "refused" || e.Reason != "forbidden" || e.Position != 0 {
		t.Errorf("the 403's entry: %+v", e)
	}
	if e := byStatus[409]; e.Method != "DELETE" || e.Reason != "state-conflict" {
		t.Errorf("the 409's entry: %+v", e)
	}
	filters := map[string]int{
		"?actor=anonymous":                             2,
		"?actor=" + admin.TokenID.String():             3,
		"?actor=" + url.QueryEscape("rcm secretariat"): 1,
		"?status=4xx":                                  5,
		"?status=401":                                  2,
		"?outcome=ok":                                  1,
		"?route=" + url.QueryEscape("POST /v1/iscms/{slug}/resources"): 4,
		"?route=" + url.QueryEscape("GET /v1/activities"):              1,
		"?status=4xx&actor=anonymous":                                  2,
	}
	for q, want := range filters {
		if st, p := list(t, s.admin, q); st != 200 || len(p.Items) != want {
			t.Errorf("GET /v1/audit%s: %d, %d entries, want %d", q, st, len(p.Items), want)
		}
	}
	// Pages.
	seen := 0
	for q := "?limit=2"; ; {
		st, p := list(t, s.admin, q)
		if st != 200 {
			t.Fatalf("page: %d", st)
		}
		seen += len(p.Items)
		if p.NextCursor == "" {
			break
		}
		q = "?limit=2&cursor=" + p.NextCursor
	}
	if seen < 6 {
		t.Errorf("pages of 2 listed %d entries, want at least 6", seen)
	}
	// The audit log is the admin's alone; asking for it is audited too.
	for token, want := range map[string]int{"": 401, s.monitor: 403, s.secret: 403} {
		if st, _ := list(t, token, ""); st != want {
			t.Errorf("GET /v1/audit with %q: %d, want %d", token, st, want)
		}
	}
	for _, q := range []string{"?limit=201", "?status=9xx", "?outcome=perhaps", "?cursor=zzz"} {
		if st, _ := list(t, s.admin, q); st != 400 {
			t.Errorf("GET /v1/audit%s: %d, want 400", q, st)
		}
	}
	if r := s.do(t, "GET", "/v1/audit", s.admin, "", nil); strings.Contains(string(r.Body), "query-secret") {
		t.Error("the audit log stores query strings")
	}
}

// TestRevocationAndExpiryTakeEffectAcrossInstances runs two API servers on
// one database, as replicas do, each with its own pool and its own cache of
// verified tokens: a token revoked through the first is refused by the
// first before Revoke returns, and by the second as soon as PostgreSQL
// delivers the revoking transaction's notification (the test allows two
// seconds; it takes well under a millisecond on loopback); an expired one
// by both, by their clocks.
func TestRevocationAndExpiryTakeEffectAcrossInstances(t *testing.T) {
	s := newStack(t)
	second := func() *httptest.Server {
		d := s.deps
		reg := prometheus.NewRegistry()
		d.Registerer, d.Gatherer = reg, reg
		pool, err := pgxpool.New(context.Background(), s.deps.Pool.Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		tokens := auth.NewStore(pool)
		listenTokens(t, tokens)
		d.Auth, d.Pool = tokens, pool
		srv := httptest.NewServer(New(d))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := s.srv, second()
	call := func(t *testing.T, srv *httptest.Server, token string, write bool) int {
		t.Helper()
		method, path, body := "GET", "/v1/resources", ""
		if write {
			method, path, body = "POST", "/v1/iscms/cmc/resources", `{"kind":"human","description":"x"}`
		}
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	ctx := context.Background()
	secret, tok, err := s.tokens.Create(ctx, auth.NewToken{Name: "replica test", Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*httptest.Server{a, b} {
		if st := call(t, srv, secret, true); st != http.StatusCreated {
			t.Fatalf("live token: %d", st)
		}
		// Answered from the instance's cache now.
		if st := call(t, srv, secret, false); st != http.StatusOK {
			t.Fatalf("live token: %d", st)
		}
	}
	// Revoked through the first instance's store: refused by the first at
	// once, and by the second once the notification is in.
	if _, err := s.deps.Auth.(*auth.Store).Revoke(ctx, tok.ID.String()); err != nil {
		t.Fatal(err)
	}
	before := s.last(t)
	for _, write := range []bool{true, false} {
		if st := call(t, a, secret, write); st != http.StatusUnauthorized {
			t.Errorf("revoked token on the revoking instance (write %v): %d, want 401", write, st)
		}
	}
	start := time.Now()
	for call(t, b, secret, false) != http.StatusUnauthorized {
		if time.Since(start) > 2*time.Second {
			t.Fatal("the second instance accepts a revoked token 2s after the revocation")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("the second instance refused the revoked token %s after the revocation returned", time.Since(start))
	if st := call(t, b, secret, true); st != http.StatusUnauthorized {
		t.Errorf("revoked token on the second instance (write): %d, want 401", st)
	}
	// Expiry: accepted until the moment, refused from then on by both.
	short, _, err := s.tokens.Create(ctx, auth.NewToken{Name: "short", Role: auth.RoleAdmin, TTL: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if call(t, a, short, false) != http.StatusOK || call(t, b, short, false) != http.StatusOK {
		t.Fatal("a fresh short-lived token is refused")
	}
	time.Sleep(1600 * time.Millisecond)
	for name, srv := range map[string]*httptest.Server{"first": a, "second": b} {
		if st := call(t, srv, short, true); st != http.StatusUnauthorized {
			t.Errorf("expired token on the %s instance: %d, want 401", name, st)
		}
	}
	if s.last(t) != before {
		t.Errorf("a revoked or expired token appended events: %d → %d", before, s.last(t))
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsNeverCarryTokenSecrets captures everything the API logs, at
// debug level, through a scenario of good, bad, revoked and expired tokens,
// malformed headers and secrets where they do not belong, and finds no
// secret in it, nor in the audit log.
func TestLogsNeverCarryTokenSecrets(t *testing.T) {
	var logs lockedBuffer
	s := newStack(t, func(d *Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		d.WaitTimeout = 100 * time.Millisecond
	})
	ctx := context.Background()
	chosen := "my-own-bootstrap-secret-0123456789"
	if _, _, err := s.tokens.Create(ctx, auth.NewToken{Name: "bootstrap", Role: auth.RoleAdmin, Secret: chosen}); err != nil {
		t.Fatal(err)
	}
	revoked, rt, err := s.tokens.Create(ctx, auth.NewToken{Name: "to revoke", Role: auth.RoleSecretariat, ISCM: "cmc"})
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := s.tokens.Create(ctx, auth.NewToken{Name: "to expire", Role: auth.RoleMonitor, TTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	unknown := "gcm_" + strings.Repeat("Q", 43)
	body := `{"kind":"human","description":"x"}`
	s.do(t, "POST", "/v1/iscms/cmc/resources", s.admin, body, nil)
	s.do(t, "POST", "/v1/iscms/puebla-process/resources", s.secret2, body, nil)
	s.do(t, "POST", "/v1/iscms/cmc/resources", s.secret2, body, nil)
	s.do(t, "GET", "/v1/resources", s.monitor, "", nil)
	s.do(t, "POST", "/v1/iscms/cmc/resources", chosen, body, nil)
	s.do(t, "POST", "/v1/iscms/cmc/resources", revoked, body, nil)
	if _, err := s.tokens.Revoke(ctx, rt.ID.String()); err != nil {
		t.Fatal(err)
	}
	s.do(t, "POST", "/v1/iscms/cmc/resources", revoked, body, nil)
	s.do(t, "GET", "/v1/resources", expired, "", nil)
	s.do(t, "POST", "/v1/iscms/cmc/resources", unknown, body, nil)
	s.do(t, "POST", "/v1/iscms/cmc/resources", s.admin, `{"description":`+`"`+s.admin+`"`, nil) // the secret in a malformed body
	s.do(t, "POST", "/v1/iscms/cmc/resources", "", body, map[string]string{"Authorization": "Basic " + s.admin})
	s.do(t, "POST", "/v1/iscms/cmc/resources", "", body, map[string]string{"Authorization": s.admin})
	s.do(t, "POST", "/v1/iscms/cmc/resources", "", body, map[string]string{"Authorization": "Bearer " + chosen + " " + s.monitor})
	s.do(t, "GET", "/v1/resources?access_token="+s.admin, "", "", nil)
	s.do(t, "POST", "/v1/"+s.admin, s.admin, body, nil)
	s.do(t, "POST", "/v1/iscms/"+s.monitor+"/resources", chosen, body, nil)
	s.do(t, "GET", "/v1/iscms/cmc?min_position=999999999", s.admin, "", nil) // a 503 with a warning logged
	if err := s.audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Count(out, `"msg":"http"`) < 15 {
		t.Fatalf("the scenario logged too little to judge:\n%s", out)
	}
	entries := s.auditEntries(t, audit.Query{})
	dump, _ := json.Marshal(entries)
	for _, secret := range []string{s.admin, s.secret, s.secret2, s.monitor, chosen, revoked, expired, unknown} {
		if strings.Contains(out, secret) {
			t.Errorf("a log record holds the secret %s…", secret[:8])
		}
		if bytes.Contains(dump, []byte(secret)) {
			t.Errorf("an audit entry holds the secret %s…", secret[:8])
		}
	}
	for _, word := range []string{"Authorization", "Bearer"} {
		if strings.Contains(out, word) {
			t.Errorf("a log record mentions %s", word)
		}
	}
	if !strings.Contains(out, redacted) {
		t.Error("no record was redacted: the scenario did not put a secret where a log could see it")
	}
}

func TestRedactingHandler(t *testing.T) {
	var buf bytes.Buffer
	log := newRedactingLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	secret := "gcm_" + strings.Repeat("a", 43)
	ex := &exchange{bearer: "chosen-secret-value"}
	ctx := withExchange(context.Background(), ex)
	log.With("attr", "x "+secret).InfoContext(ctx, "msg "+secret, "err", fmt.Errorf("verify %s", ex.bearer),
		slog.Group("g", "k", secret), "n", 42, "path", "/v1/chosen-secret-value")
	out := buf.String()
	if strings.Contains(out, secret) || strings.Contains(out, ex.bearer) || strings.Count(out, redacted) != 5 || !strings.Contains(out, "n=42") {
		t.Fatalf("redacted output: %s", out)
	}
	if newRedactingLogger(log) != log {
		t.Error("a redacting logger is wrapped twice")
	}
}
