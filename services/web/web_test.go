package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
	"gcmtrack/services/api"
	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/idempotency"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// site is the whole system behind one test server: API and pages, as
// gcmtrack run serves them.
type site struct {
	srv    *httptest.Server
	store  *eventstore.Store
	tokens *auth.Store
	admin  string
	sec    string // puebla-process secretariat
	audit  *audit.Log
	pool   *pgxpool.Pool
}

func newSite(t *testing.T) *site {
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
	if err := migrations.Up(ctx, pool, migrations.Engine(), auth.Migrations(), Migrations()); err != nil {
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
	if _, err := regSvc.Join(ctx, "puebla-process", registry.AddMember{State: "MEX"}, command.Meta{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	recSvc := records.NewService(store, cat, regSvc)
	eng := engine.New(pool, store.Stream(), engine.Config{Metrics: engine.NewMetrics(reg)}, projregistry.Projection{}, projrecords.Projection{})
	if err := eng.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = eng.Run(ectx) }()
	t.Cleanup(func() { cancel(); <-done })
	tokens := auth.NewStore(pool)
	admin, _, err := tokens.Create(ctx, auth.NewToken{Name: "IOM officer", Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	sec, _, err := tokens.Create(ctx, auth.NewToken{Name: "RCM secretariat", Role: auth.RoleSecretariat, ISCM: "puebla-process"})
	if err != nil {
		t.Fatal(err)
	}
	pages, err := New(Deps{Catalog: cat, Pool: pool, Tokens: tokens, Records: recSvc, RecordsQ: projrecords.NewQueries(pool),
		RegistryQ: projregistry.NewQueries(pool), Reports: reports.NewStore(pool), PositionAt: store.PositionAt})
	if err != nil {
		t.Fatal(err)
	}
	// The pages are served as gcmtrack run serves them: behind the API's
	// limits, headers and audit log.
	auditLog := audit.Open(pool, audit.Config{})
	t.Cleanup(func() { _ = auditLog.Close(context.Background()) })
	apiH := api.New(api.Deps{Catalog: cat, Auth: tokens, Keys: keys, Registry: regSvc, RegistryQ: projregistry.NewQueries(pool),
		Records: recSvc, RecordsQ: projrecords.NewQueries(pool), Reports: reports.NewStore(pool), Store: store, Pool: pool,
		Pages: pages, Audit: auditLog})
	srv := httptest.NewServer(apiH)
	t.Cleanup(srv.Close)
	// Wait until the projections have applied the registrations.
	last, _ := store.LastPosition(ctx)
	pages.waitFor(ctx, last)
	return &site{srv: srv, store: store, tokens: tokens, admin: admin, sec: sec, audit: auditLog, pool: pool}
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t *testing.T
	c *http.Client
	s *site
}

func (s *site) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, s: s, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(path string) (int, string, http.Header) {
	b.t.Helper()
	res, err := b.c.Get(b.s.srv.URL + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header
}

func (b *browser) post(path string, form url.Values) (int, string, http.Header) {
	b.t.Helper()
	res, err := b.c.PostForm(b.s.srv.URL+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body), res.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the form token from a page.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	_, body, _ := b.get(path)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

func (b *browser) signin(token string) {
	b.t.Helper()
	st, body, h := b.post("/signin", url.Values{"token": {token}})
	if st != http.StatusSeeOther {
		b.t.Fatalf("sign in: %d %s", st, body)
	}
	var sc string
	for _, c := range h.Values("Set-Cookie") {
		if strings.HasPrefix(c, cookieName+"=") {
			sc = c
		}
	}
	if !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
		b.t.Fatalf("session cookie lacks HttpOnly/SameSite: %q", sc)
	}
}

func (s *site) last(t *testing.T) uint64 {
	p, err := s.store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublicPagesRender(t *testing.T) {
	s := newSite(t)
	b := s.browser(t)
	for _, p := range []string{"/", "/figures?cycle=2018", "/objectives", "/states", "/recommendations", "/review?cycle=imrf-2026&region=Americas", "/iscms/puebla-process", "/signin", "/figures?as_of=2020-01-01"} {
		st, body, h := b.get(p)
		if st != 200 {
			t.Errorf("%s: %d %s", p, st, body)
			continue
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: security headers %v", p, h)
		}
		if !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "<main") {
			t.Errorf("%s: not a page", p)
		}
	}
	for _, p := range []string{"/figures.csv?cycle=2018", "/objectives.csv", "/states.csv", "/recommendations.csv"} {
		st, body, h := b.get(p)
		if st != 200 || h.Get("Content-Type") != "text/csv; charset=utf-8" || !strings.Contains(body, ",") {
			t.Errorf("%s: %d %s", p, st, h.Get("Content-Type"))
		}
	}
	if st, _, _ := b.get("/iscms/nope"); st != 404 {
		t.Errorf("unknown ISCM page: %d", st)
	}
	if st, _, h := b.get("/dashboard"); st != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/signin") {
		t.Errorf("dashboard without a session: %d %s", st, h.Get("Location"))
	}
}

func TestSessionsCSRFAndRevocation(t *testing.T) {
	s := newSite(t)
	b := s.browser(t)
	if st, body, _ := b.post("/signin", url.Values{"token": {"gcm_not_a_token"}}); st != 401 || !strings.Contains(body, "unknown, expired or revoked") {
		t.Fatalf("bad token: %d", st)
	}
	b.signin(s.sec)
	if st, _, _ := b.get("/workspace/puebla-process"); st != 200 {
		t.Fatalf("own workspace: %d", st)
	}
	if st, _, _ := b.get("/workspace/sacm"); st != 403 {
		t.Fatalf("another ISCM's workspace: %d", st)
	}
	before := s.last(t)
	form := url.Values{"kind": {"data_exchange"}, "title": {"Exchange of statistics"}}
	if st, _, _ := b.post("/workspace/puebla-process/activities/new", form); st != 403 {
		t.Fatalf("post without CSRF: %d", st)
	}
	form.Set("csrf", "forged")
	if st, _, _ := b.post("/workspace/puebla-process/activities/new", form); st != 403 {
		t.Fatalf("post with a forged CSRF token: %d", st)
	}
	if s.last(t) != before {
		t.Fatal("a refused form appended an event")
	}
	form.Set("csrf", b.csrf("/workspace/puebla-process/activities/new"))
	if st, body, h := b.post("/workspace/puebla-process/activities/new", form); st != http.StatusSeeOther {
		t.Fatalf("post with CSRF: %d %s %v", st, body, h)
	}
	if s.last(t) != before+1 {
		t.Fatal("the form did not append one event")
	}
	// Revoking the token ends the session at once.
	list, err := s.tokens.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range list {
		if tok.ISCM == "puebla-process" {
			if _, err := s.tokens.Revoke(context.Background(), tok.ID.String()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st, _, h := b.get("/workspace/puebla-process"); st != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/signin") {
		t.Fatalf("after revocation: %d %s", st, h.Get("Location"))
	}
}

func TestFormsShowFieldErrorsAndChangeNothing(t *testing.T) {
	s := newSite(t)
	b := s.browser(t)
	b.signin(s.sec)
	csrf := b.csrf("/workspace/puebla-process/activities/new")
	before := s.last(t)
	st, body, _ := b.post("/workspace/puebla-process/activities/new", url.Values{"csrf": {csrf}, "kind": {"capacity_building"},
		"title": {""}, "start_date": {"2019-05-02"}, "end_date": {"2019-05-01"}, "url": {"ftp://example.org"}})
	if st != 422 {
		t.Fatalf("invalid form: %d", st)
	}
	for _, want := range []string{`id="err-title"`, `id="err-end_date"`, `id="err-url"`, `aria-invalid="true"`, "is required", "is before start_date"} {
		if !strings.Contains(body, want) {
			t.Errorf("the form does not show %q", want)
		}
	}
	if s.last(t) != before {
		t.Fatal("an invalid form appended an event")
	}
	// The values typed are kept.
	if !strings.Contains(body, `value="2019-05-02"`) {
		t.Error("the form lost the values typed")
	}
}

func TestQuestionnaireStepsSaveADraftThenSubmit(t *testing.T) {
	s := newSite(t)
	b := s.browser(t)
	b.signin(s.sec)
	base := "/workspace/puebla-process/questionnaire/2026/questionnaire/"
	csrf := b.csrf(base + "1")
	steps := []url.Values{
		{"respondent.chair.country": {"Mexico"}, "respondent.chair.name": {"A. Chair"}},
		{"position.status": {"yes"}, "position.objectives": {"1", "23"}, "position.themes": {"T2"}},
		{"agenda_item": {"yes"}, "action_plan.status": {"already_done"}, "capacity_building": {"training_workshop | Data workshop"}},
		{"partnerships": {"igo | IOM | technical secretariat"}, "hindering_factors": {"no_mandate"}, "submit": {"1"}},
	}
	for i, f := range steps {
		f.Set("csrf", csrf)
		st, body, h := b.post(base+strings.TrimSpace(string(rune('1'+i))), f)
		if st != http.StatusSeeOther {
			t.Fatalf("step %d: %d %s", i+1, st, body)
		}
		rec, err := records.NewService(s.store, catalog.Default(), registry.NewService(s.store, catalog.Default())).Load(context.Background(), "puebla-process", "questionnaire", "2026-questionnaire")
		if err != nil {
			t.Fatal(err)
		}
		want := "draft"
		if i == len(steps)-1 {
			want = "submitted"
			if !strings.HasPrefix(h.Get("Location"), "/workspace/puebla-process") {
				t.Errorf("after the last step: %s", h.Get("Location"))
			}
		}
		if rec.Status != want {
			t.Fatalf("after step %d the answers are %s, want %s", i+1, rec.Status, want)
		}
		if i == len(steps)-1 {
			a := rec.Answers.Answers
			if a.Respondent == nil || a.Respondent.Chair.Name != "A. Chair" || a.Position.Status != "yes" || len(a.Position.Objectives) != 2 ||
				len(a.CapacityBuilding) != 1 || a.CapacityBuilding[0].Form != "training_workshop" || len(a.Partnerships) != 1 || a.HinderingFactors[0] != "no_mandate" {
				t.Fatalf("answers after all steps = %+v", a)
			}
		}
	}
}

func TestFormWritesAreAuditedUnderTheSignedInUser(t *testing.T) {
	s := newSite(t)
	b := s.browser(t)
	b.signin(s.sec)
	form := url.Values{"kind": {"human"}, "description": {"Secretariat staff time"}}
	form.Set("csrf", b.csrf("/workspace/puebla-process/resources/new"))
	if st, body, _ := b.post("/workspace/puebla-process/resources/new", form); st != http.StatusSeeOther {
		t.Fatalf("form: %d %s", st, body)
	}
	if st, _, _ := b.post("/workspace/puebla-process/resources/new", url.Values{"kind": {"human"}}); st != http.StatusForbidden {
		t.Fatalf("post without CSRF: %d", st)
	}
	if err := s.audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(context.Background(), `SELECT actor, role, status, position FROM auth.audit WHERE method = 'POST' AND path = '/workspace/puebla-process/resources/new' ORDER BY at`)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Actor, Role string
		Status      int
		Position    *int64
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[entry])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Actor != "RCM secretariat" || got[0].Role != "secretariat" || got[0].Status != http.StatusSeeOther ||
		got[0].Position == nil || uint64(*got[0].Position) != s.last(t) || got[1].Status != http.StatusForbidden {
		t.Fatalf("audit entries = %+v", got)
	}
}

// TestPublicPagesAnswerNotModifiedUntilTheReadModelsMove checks the public
// pages' ETag: a visitor who sends it back gets 304 with no body while
// nothing changed, a page again once a write reached the read models; the
// tag differs by page and query; signed-in users get no tag.
func TestPublicPagesAnswerNotModifiedUntilTheReadModelsMove(t *testing.T) {
	s := newSite(t)
	b := s.browser(t)
	get := func(path, tag string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.srv.URL+path, nil)
		if tag != "" {
			req.Header.Set("If-None-Match", tag)
		}
		res, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body), res.Header
	}
	tags := map[string]string{}
	for _, p := range []string{"/", "/objectives", "/objectives?as_of=2020-01-01", "/states?sort=name", "/iscms/puebla-process", "/figures?cycle=2018", "/review?cycle=imrf-2026"} {
		st, _, h := get(p, "")
		tag := h.Get("ETag")
		if st != 200 || !strings.HasPrefix(tag, `W/"`) || h.Get("Vary") != "Cookie" {
			t.Fatalf("%s: %d, ETag %q, Vary %q", p, st, tag, h.Get("Vary"))
		}
		for q, other := range tags {
			if other == tag {
				t.Errorf("%s and %s share the ETag %s", p, q, tag)
			}
		}
		tags[p] = tag
		if st, body, _ := get(p, tag); st != http.StatusNotModified || body != "" {
			t.Errorf("%s with its ETag: %d, %d bytes", p, st, len(body))
		}
	}
	const member = "NOR (observer)"
	_, before, _ := get("/iscms/puebla-process", "")
	if strings.Contains(before, member) {
		t.Fatalf("the page shows %s before it joined", member)
	}
	// A write that reaches the read models changes every tag.
	ctx := context.Background()
	regSvc := registry.NewService(s.store, catalog.Default())
	res, err := regSvc.Join(ctx, "puebla-process", registry.AddMember{State: "NOR", Status: "observer"}, command.Meta{Actor: "test", CorrelationID: "etag"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		have, err := engine.ActivePosition(wctx, s.pool, reports.Sources)
		if err != nil {
			t.Fatal(err)
		}
		if have >= res.Position {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for p, tag := range tags {
		st, _, h := get(p, tag)
		if st != 200 || h.Get("ETag") == tag {
			t.Errorf("%s after a write, with the old ETag: %d, ETag %q", p, st, h.Get("ETag"))
		}
	}
	// Pages are rendered once per state and kept: the page kept since the
	// write shows it, to every visitor, the same.
	_, after, h := get("/iscms/puebla-process", "")
	_, again, h2 := get("/iscms/puebla-process", "")
	if !strings.Contains(after, member) || again != after || h.Get("ETag") != h2.Get("ETag") {
		t.Errorf("after the write: shows %s %t, the same page twice %t (ETags %q, %q)",
			member, strings.Contains(after, member), again == after, h.Get("ETag"), h2.Get("ETag"))
	}
	// Signed in, pages carry the user's own links and form tokens: no tag.
	b.signin(s.admin)
	if st, _, h := get("/objectives", tags["/objectives"]); st != 200 || h.Get("ETag") != "" {
		t.Errorf("signed in: %d, ETag %q", st, h.Get("ETag"))
	}
}
