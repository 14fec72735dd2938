package api

// Tests after the OWASP API Security Top 10 (2023). Each is a matrix over
// the routes the server serves (Server.patterns), so a new route is covered
// as soon as it is registered, and each checks that a refused request left
// the event stream as it was.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"gcmtrack/events"
	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

// The roles of the matrices.
const (
	roleAnonymous   = "anonymous"
	roleMonitor     = auth.RoleMonitor
	roleSecretariat = auth.RoleSecretariat
	roleAdmin       = auth.RoleAdmin
)

var roles = []string{roleAnonymous, roleMonitor, roleSecretariat, roleAdmin}

// allowed is the access policy, written out from DESIGN.md rather than
// taken from the code: reads for everyone (what they see depends on the
// role), the audit log for admin, publishing, review cycles and
// memberships for admin, every other write for admin and the ISCM's own
// secretariat.
func allowed(pattern, role string) bool {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case path == "/v1/audit":
		return role == roleAdmin
	case method == http.MethodGet:
		return true
	case strings.HasSuffix(path, "/publish"), strings.Contains(path, "/members"), strings.HasPrefix(path, "/v1/review-cycles/"):
		return role == roleAdmin
	}
	return role == roleAdmin || role == roleSecretariat
}

// tokenFor is a token of the role; a secretariat's is bound to slug.
func (s *stack) tokenFor(t *testing.T, role, slug string) string {
	t.Helper()
	switch role {
	case roleMonitor:
		return s.monitor
	case roleAdmin:
		return s.admin
	case roleSecretariat:
		switch slug {
		case "puebla-process":
			return s.secret2
		case "sacm":
			return s.secret
		}
		secret, _, err := s.tokens.Create(context.Background(), auth.NewToken{Name: slug + " secretariat", Role: auth.RoleSecretariat, ISCM: slug})
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	return ""
}

func writePatterns(s *stack) []string {
	var out []string
	for _, p := range s.api.patterns {
		if isWrite(strings.Fields(p)[0]) {
			out = append(out, p)
		}
	}
	return out
}

// TestOWASPAPI5FunctionLevelAuthorization sends every route as each role:
// exactly the calls the policy allows succeed; the others are 401 (no
// token) or 403 and append nothing.
func TestOWASPAPI5FunctionLevelAuthorization(t *testing.T) {
	s := newStack(t)
	f := newFixtures(t, s)
	for _, p := range s.api.patterns {
		if strings.HasPrefix(p, "GET ") {
			f.request(t, p, "puebla-process") // the objects reads find, published
		}
	}
	f.settle(t)
	var calls, allowedCalls int
	for _, pattern := range s.api.patterns {
		for _, role := range roles {
			t.Run(pattern+" as "+role, func(t *testing.T) {
				slug := "puebla-process"
				if isWriteOfPosition(pattern) {
					slug = f.freshISCM(t)
				}
				tg := f.request(t, pattern, slug)
				token := s.tokenFor(t, role, slug)
				before := s.last(t)
				r := s.do(t, tg.method, tg.path, token, tg.body, tg.hdr)
				calls++
				if allowed(pattern, role) {
					allowedCalls++
					if r.Status/100 != 2 {
						t.Fatalf("%s %s as %s: %d %s, want success", tg.method, tg.path, role, r.Status, r.Body)
					}
					return
				}
				want := http.StatusForbidden
				if role == roleAnonymous {
					want = http.StatusUnauthorized
				}
				if r.Status != want {
					t.Fatalf("%s %s as %s: %d %s, want %d", tg.method, tg.path, role, r.Status, r.Body, want)
				}
				if want == http.StatusUnauthorized && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without WWW-Authenticate: %v", r.Header)
				}
				if after := s.last(t); after != before {
					t.Errorf("refused, yet the stream moved from %d to %d", before, after)
				}
			})
		}
	}
	t.Logf("%d routes × %d roles: %d calls, %d allowed", len(s.api.patterns), len(roles), calls, allowedCalls)
}

// TestOWASPAPI1ObjectLevelAuthorization has one ISCM's secretariat try
// every write on another ISCM's objects, through the other ISCM's paths and
// through its own paths with the other's object ids: all refused, nothing
// appended, every refusal in the audit log. Reads of the other ISCM's
// drafts find nothing.
func TestOWASPAPI1ObjectLevelAuthorization(t *testing.T) {
	s := newStack(t)
	f := newFixtures(t, s)
	f.reuse = true
	attacker := s.identityOf(t, s.secret) // sacm's secretariat
	sent := map[string]int{}              // path → status
	try := func(t *testing.T, tg target) {
		t.Helper()
		before := s.last(t)
		r := s.do(t, tg.method, tg.path, s.secret, tg.body, tg.hdr)
		if r.Status != http.StatusForbidden && r.Status != http.StatusNotFound {
			t.Errorf("%s %s as sacm's secretariat: %d %s, want 403 or 404", tg.method, tg.path, r.Status, r.Body)
		}
		if after := s.last(t); after != before {
			t.Errorf("%s %s: the stream moved from %d to %d", tg.method, tg.path, before, after)
		}
		sent[tg.method+" "+tg.path] = r.Status
	}
	for _, pattern := range writePatterns(s) {
		t.Run(pattern, func(t *testing.T) {
			tg := f.request(t, pattern, "puebla-process")
			try(t, tg)
			if strings.Contains(pattern, "{id}") {
				// Its own ISCM in the path, puebla-process's object id.
				tg.path = strings.Replace(tg.path, "/v1/iscms/puebla-process/", "/v1/iscms/sacm/", 1)
				try(t, tg)
			}
		})
	}
	entries := s.auditEntries(t, audit.Query{Actor: attacker.TokenID.String()})
	logged := map[string]int{}
	for _, e := range entries {
		logged[e.Method+" "+e.Path] = e.Status
		if e.Outcome != audit.OutcomeRefused || e.Role != auth.RoleSecretariat || e.ISCM != "sacm" || e.Actor != "sacm secretariat" {
			t.Errorf("audit entry %+v: want a refusal of sacm's secretariat", e)
		}
	}
	for req, status := range sent {
		if logged[req] != status {
			t.Errorf("%s (%d) is not in the audit log (%d)", req, status, logged[req])
		}
	}
	if len(entries) != len(sent) {
		t.Errorf("%d audit entries for %d refused requests", len(entries), len(sent))
	}
	t.Logf("%d cross-ISCM writes refused and audited", len(sent))

	// Reads: puebla-process's drafts are not sacm's to see.
	f.reuse = false
	drafts := map[string]string{}
	for seg := range recordBodies {
		if seg == "positions" {
			continue // the position of puebla-process exists, reused above
		}
		id, _ := f.record(t, "puebla-process", seg, "draft")
		drafts[seg] = id
	}
	f.questionnaire(t, "puebla-process", 2019, "draft")
	f.settle(t)
	for seg, id := range drafts {
		base := "/v1/iscms/puebla-process/" + seg + "/" + id
		for _, path := range []string{base, base + "/history", "/v1/iscms/sacm/" + seg + "/" + id} {
			if r := s.do(t, "GET", path, s.secret, "", nil); r.Status != http.StatusNotFound {
				t.Errorf("sacm's secretariat reads %s: %d, want 404", path, r.Status)
			}
		}
		if r := s.do(t, "GET", base, s.secret2, "", nil); r.Status != http.StatusOK {
			t.Errorf("puebla-process's secretariat cannot read its own draft %s: %d", base, r.Status)
		}
		for _, list := range []string{"/v1/iscms/puebla-process/" + seg, "/v1/" + seg + "?iscm=puebla-process", "/v1/iscms/puebla-process/timeline",
			"/v1/exports/" + seg + ".csv", "/v1/feeds/published.json"} {
			if r := s.do(t, "GET", list, s.secret, "", nil); r.Status != http.StatusOK || bytes.Contains(r.Body, []byte(id)) {
				t.Errorf("sacm's secretariat lists puebla-process's draft %s in %s (%d)", id, list, r.Status)
			}
		}
	}
	q := "/v1/iscms/puebla-process/questionnaires/2019/questionnaire"
	for _, path := range []string{q, q + "/history"} {
		if r := s.do(t, "GET", path, s.secret, "", nil); r.Status != http.StatusNotFound {
			t.Errorf("sacm's secretariat reads %s: %d, want 404", path, r.Status)
		}
		if r := s.do(t, "GET", path, s.secret2, "", nil); r.Status != http.StatusOK {
			t.Errorf("puebla-process's secretariat reads its draft answers %s: %d", path, r.Status)
		}
	}
}

// TestOWASPAPI2BrokenAuthentication sends every write with no token, a
// malformed header, an unknown, an expired and a revoked token: all 401
// with WWW-Authenticate, nothing appended, each in the audit log as an
// anonymous refusal.
func TestOWASPAPI2BrokenAuthentication(t *testing.T) {
	s := newStack(t)
	f := newFixtures(t, s)
	f.reuse = true
	ctx := context.Background()
	expired, _, err := s.tokens.Create(ctx, auth.NewToken{Name: "short-lived admin", Role: auth.RoleAdmin, TTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	revoked, tok, err := s.tokens.Create(ctx, auth.NewToken{Name: "revoked admin", Role: auth.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.tokens.Revoke(ctx, tok.ID.String()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	credentials := map[string]string{ // name → Authorization header ("" for none)
		"missing":         "",
		"basic":           "Basic YWRtaW46YWRtaW4=",
		"empty bearer":    "Bearer ",
		"scheme only":     "Bearer",
		"no scheme":       s.admin,
		"two words":       "Bearer " + s.admin + " " + s.admin,
		"non-ASCII":       "Bearer gcm_\xff\xfe\xa0",
		"overlong":        "Bearer gcm_" + strings.Repeat("A", 4000),
		"unknown":         "Bearer gcm_" + strings.Repeat("x", 43),
		"expired":         "Bearer " + expired,
		"revoked":         "Bearer " + revoked,
		"admin's, cut":    "Bearer " + s.admin[:len(s.admin)-1],
		"admin's, padded": "Bearer " + s.admin + "=",
	}
	sent := 0
	for _, pattern := range writePatterns(s) {
		tg := f.request(t, pattern, "puebla-process")
		for name, cred := range credentials {
			t.Run(pattern+" "+name, func(t *testing.T) {
				hdr := map[string]string{}
				for k, v := range tg.hdr {
					hdr[k] = v
				}
				if cred != "" {
					hdr["Authorization"] = cred
				}
				before := s.last(t)
				r := s.do(t, tg.method, tg.path, "", tg.body, hdr)
				sent++
				if r.Status != http.StatusUnauthorized || r.Header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("%d %s, want a 401 problem", r.Status, r.Body)
				}
				if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), `Bearer realm="gcmtrack"`) {
					t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
				}
				if s.last(t) != before {
					t.Errorf("the stream moved from %d to %d", before, s.last(t))
				}
			})
		}
	}
	entries := s.auditEntries(t, audit.Query{Status: "401"})
	if len(entries) != sent {
		t.Errorf("%d 401s in the audit log, want %d", len(entries), sent)
	}
	for _, e := range entries {
		if e.Actor != audit.RoleAnonymous || e.Role != audit.RoleAnonymous || e.TokenID != "" || e.Reason != "unauthenticated" {
			t.Fatalf("audit entry of a bad token: %+v", e)
		}
	}
}

// bodyType is the type a write route decodes its body into.
func bodyType(t *testing.T, pattern string) any {
	t.Helper()
	_, path, _ := strings.Cut(pattern, " ")
	switch {
	case strings.HasSuffix(path, "/members"):
		return registry.AddMember{}
	case strings.HasSuffix(path, "/progress"):
		return records.Progress{}
	case strings.HasSuffix(path, "/{channel}"):
		return events.Answers{}
	case strings.HasSuffix(path, "/submit"), strings.HasSuffix(path, "/publish"), strings.HasSuffix(path, "/withdraw"),
		strings.HasSuffix(path, "/close"), strings.HasSuffix(path, "/reopen"):
		return note{}
	}
	if seg := segmentOfPath(path); seg != "" {
		for _, rt := range recordTypes {
			if rt.segment == seg {
				return rt.zero()
			}
		}
	}
	t.Fatalf("no body type known for %s", pattern)
	return nil
}

// TestOWASPAPI3PropertyLevelAuthorization sends each server-owned field in
// the body of every write that takes one (unless the route's content has a
// field of that name): 400 naming the field, nothing appended. And no
// response ever carries a token secret, its hash or the tokens table's
// bookkeeping.
func TestOWASPAPI3PropertyLevelAuthorization(t *testing.T) {
	s := newStack(t)
	f := newFixtures(t, s)
	f.reuse = true
	owned := []string{"iscm", "status", "actor", "version", "id", "position", "created_at", "updated_at", "published_at", "source", "kind"}
	checked := 0
	for _, pattern := range writePatterns(s) {
		if strings.HasPrefix(pattern, "DELETE ") {
			continue // no body
		}
		own := jsonFields(reflect.TypeOf(bodyType(t, pattern)))
		tg := f.request(t, pattern, "puebla-process")
		for _, field := range owned {
			if own[field] {
				continue // the content's own field (a position's status, an activity's kind)
			}
			t.Run(pattern+" "+field, func(t *testing.T) {
				before := s.last(t)
				r := s.do(t, tg.method, tg.path, s.admin, withField(t, tg.body, field, "x"), tg.hdr)
				checked++
				if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `\"`+field+`\"`) {
					t.Fatalf("%s %s with %q: %d %s, want 400 naming it", tg.method, tg.path, field, r.Status, r.Body)
				}
				if s.last(t) != before {
					t.Errorf("the stream moved from %d to %d", before, s.last(t))
				}
			})
		}
	}
	t.Logf("%d bodies with a server-owned field refused", checked)

	// Responses: every read, as admin and anonymous, and the audit log,
	// of objects in another ISCM (puebla-process's position is a draft).
	for _, pattern := range s.api.patterns {
		if strings.HasPrefix(pattern, "GET ") {
			f.request(t, pattern, "sacm")
		}
	}
	f.settle(t)
	secrets := []string{s.admin, s.secret, s.secret2, s.monitor}
	var forbidden []string
	for _, sec := range secrets {
		h := sha256.Sum256([]byte(sec))
		forbidden = append(forbidden, sec, hex.EncodeToString(h[:]), base64.StdEncoding.EncodeToString(h[:]),
			base64.RawURLEncoding.EncodeToString(h[:]), `\x`+hex.EncodeToString(h[:]))
	}
	forbidden = append(forbidden, `"hash"`, `"secret"`, `"last_used_at"`, `"revoked_at"`, `"expires_at"`, `"token_hash"`)
	reads := 0
	for _, pattern := range append(s.api.patterns, "GET /metrics") {
		if !strings.HasPrefix(pattern, "GET ") {
			continue
		}
		tg := f.request(t, pattern, "sacm")
		for _, token := range []string{s.admin, ""} {
			r := s.do(t, "GET", tg.path, token, "", nil)
			reads++
			for _, bad := range forbidden {
				if bytes.Contains(r.Body, []byte(bad)) {
					t.Errorf("GET %s answers %q", tg.path, bad)
				}
			}
		}
	}
	t.Logf("%d read responses carry no token secret, hash or token bookkeeping", reads)
}

// patternReader yields n bytes of a JSON-looking string without holding
// them: the client side of the oversize test costs no memory either.
type patternReader struct{ n int }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	k := min(len(b), p.n)
	for i := range k {
		b[i] = 'x'
	}
	if p.n == k {
		b[k-1] = '"'
	}
	p.n -= k
	return k, nil
}

// TestOWASPAPI4UnrestrictedResourceConsumption: oversized bodies cost the
// server no more than the body cap, deep and long JSON is refused before
// decoding, pages and cursors are bounded, and a burst past the rate limit
// is a 429 with Retry-After. Nothing refused appends anything.
func TestOWASPAPI4UnrestrictedResourceConsumption(t *testing.T) {
	s := newStack(t)
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX"}`, nil), 201)

	t.Run("oversized body in flat memory", func(t *testing.T) {
		const size, requests = 16 << 20, 20
		before := s.last(t)
		var peak atomic.Uint64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		runtime.GC()
		var m0 runtime.MemStats
		runtime.ReadMemStats(&m0)
		wg.Add(1)
		go func() { // sample the heap while the requests run
			defer wg.Done()
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}()
		for i := range requests {
			req, err := http.NewRequest("POST", s.srv.URL+"/v1/iscms/puebla-process/activities", &patternReader{n: size})
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+s.secret2)
			if i%2 == 0 {
				req.ContentLength = size // announced: refused unread
			} else {
				req.ContentLength = -1 // chunked: read up to the cap
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(b, []byte("larger than")) {
				t.Fatalf("request %d: %d %s, want 413", i, res.StatusCode, b)
			}
		}
		close(stop)
		wg.Wait()
		runtime.GC()
		var m1 runtime.MemStats
		runtime.ReadMemStats(&m1)
		sentMiB := float64(size*requests) / (1 << 20)
		heapDelta := (float64(m1.HeapAlloc) - float64(m0.HeapAlloc)) / (1 << 20)
		peakDelta := (float64(peak.Load()) - float64(m0.HeapAlloc)) / (1 << 20)
		allocPer := float64(m1.TotalAlloc-m0.TotalAlloc) / requests / (1 << 20)
		t.Logf("%d requests of %d MiB (%.0f MiB sent): heap after %+.1f MiB, peak %+.1f MiB, %.2f MiB allocated per request",
			requests, size>>20, sentMiB, heapDelta, peakDelta, allocPer)
		if heapDelta > 8 || peakDelta > sentMiB/10 {
			t.Errorf("the heap grew by %.1f MiB (peak %.1f MiB) for %.0f MiB sent: not flat", heapDelta, peakDelta, sentMiB)
		}
		if allocPer > 4 {
			t.Errorf("%.2f MiB allocated per oversized request: more than the 1 MiB cap allows", allocPer)
		}
		if s.last(t) != before {
			t.Error("an oversized body appended an event")
		}
	})

	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	states := `["MEX"` + strings.Repeat(`,"MEX"`, maxArray) + `]`
	cases := []struct {
		name, method, path, token, body string
		hdr                             map[string]string
		status                          int
		names                           string
	}{
		{"nested 33 deep", "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"x","states":` + deep(32) + `}`, nil, 400, "deeper than 32"},
		{"nested 100000 deep", "PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", s.secret2, strings.Repeat(`{"a":`, 100000), nil, 400, "deeper than 32"},
		{"array of 1001", "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"x","states":` + states + `}`, nil, 400, "more than 1000 elements"},
		{"array of 1001 in a note", "POST", "/v1/review-cycles/imrf-2026/close", s.admin, `{"note":` + strings.Replace(states, `"MEX"`, "1", -1) + `}`, nil, 400, "more than 1000 elements"},
		{"limit 100000", "GET", "/v1/activities?limit=100000", "", "", nil, 400, "limit"},
		{"limit 0", "GET", "/v1/activities?limit=0", "", "", nil, 400, "limit"},
		{"limit -1", "GET", "/v1/iscms/puebla-process/activities?limit=-1", "", "", nil, 400, "limit"},
		{"limit 1e9 on the timeline", "GET", "/v1/iscms/puebla-process/timeline?limit=1000000000", "", "", nil, 400, "limit"},
		{"limit 100000 on the feed", "GET", "/v1/feeds/published.json?limit=100000", "", "", nil, 400, "limit"},
		{"limit 100000 on the export", "GET", "/v1/exports/activities.csv?limit=100000", "", "", nil, 400, "limit"},
		{"limit 100000 on the audit log", "GET", "/v1/audit?limit=100000", s.admin, "", nil, 400, "limit"},
		{"garbage cursor", "GET", "/v1/activities?cursor=!!!", "", "", nil, 400, "cursor"},
		{"control bytes in a query", "GET", "/v1/activities?iscm=%00%01", "", "", nil, 400, "query parameter"},
		{"invalid UTF-8 in a path", "GET", "/v1/iscms/%ff%fe", "", "", nil, 400, "path"},
		{"NUL in a path", "POST", "/v1/iscms/puebla-process/activities/%00/submit", s.secret2, "", nil, 400, "path"},
		{"NUL in a body", "POST", "/v1/iscms/puebla-process/resources", s.secret2, `{"kind":"human","description":"a\u0000b"}`, nil, 400, "NUL"},
		{"forged cursor", "GET", "/v1/activities?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("-5:x")), "", "", nil, 400, "cursor"},
		{"overlong cursor", "GET", "/v1/activities?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("5:"+strings.Repeat("x", 20000))), "", "", nil, 400, "cursor"},
		{"overlong timeline cursor", "GET", "/v1/iscms/puebla-process/timeline?cursor=" + strings.Repeat("A", 20000), "", "", nil, 400, "cursor"},
		{"garbage feed cursor", "GET", "/v1/feeds/published.json?after=zzz", "", "", nil, 400, "after"},
		{"garbage audit cursor", "GET", "/v1/audit?cursor=zzz", s.admin, "", nil, 400, "cursor"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.last(t)
			r := s.do(t, c.method, c.path, c.token, c.body, c.hdr)
			if r.Status != c.status || !strings.Contains(string(r.Body), c.names) {
				t.Fatalf("%d %s, want %d naming %q", r.Status, r.Body, c.status, c.names)
			}
			if s.last(t) != before {
				t.Errorf("the stream moved from %d to %d", before, s.last(t))
			}
		})
	}

	t.Run("burst past the rate limit", func(t *testing.T) {
		rs := newStack(t, func(d *Deps) {
			d.RateLimits = RateLimits{TokenWrites: Rate{PerSecond: 1, Burst: 5}, TokenReads: Rate{PerSecond: 1, Burst: 20}, Anonymous: Rate{PerSecond: 1, Burst: 10}}
		})
		before := rs.last(t)
		ok, limited := 0, 0
		for i := range 15 {
			r := rs.do(t, "POST", "/v1/iscms/cmc/resources", rs.admin, fmt.Sprintf(`{"kind":"human","description":"r%d"}`, i), nil)
			switch r.Status {
			case http.StatusCreated:
				ok++
			case http.StatusTooManyRequests:
				limited++
				if ra := r.Header.Get("Retry-After"); ra != "1" || r.Header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("429 with Retry-After %q, Content-Type %q", ra, r.Header.Get("Content-Type"))
				}
			default:
				t.Fatalf("write %d: %d %s", i, r.Status, r.Body)
			}
		}
		if ok < 5 || ok > 6 || limited != 15-ok {
			t.Errorf("%d writes accepted and %d limited, want the burst of 5 (6 with a refill) and the rest limited", ok, limited)
		}
		if got := rs.last(t) - before; got != uint64(ok) {
			t.Errorf("%d events appended for %d accepted writes", got, ok)
		}
		// The token's reads have their own bucket; anonymous callers theirs.
		if r := rs.do(t, "GET", "/v1/resources", rs.admin, "", nil); r.Status != http.StatusOK {
			t.Errorf("a read after the write burst: %d", r.Status)
		}
		anon := 0
		for range 15 {
			if r := rs.do(t, "GET", "/v1/catalog", "", "", nil); r.Status == http.StatusTooManyRequests {
				anon++
			}
		}
		if anon < 4 {
			t.Errorf("%d of 15 anonymous reads limited, want at least 4 past the burst of 10", anon)
		}
		// Probes get through whatever the load.
		if r := rs.do(t, "GET", "/healthz", "", "", nil); r.Status != http.StatusOK {
			t.Errorf("/healthz under the limit: %d", r.Status)
		}
		if n := len(rs.auditEntries(t, audit.Query{Status: "429"})); n < 1 || n > 4 {
			t.Errorf("%d 429s audited, want some, at most one a second per caller", n)
		}
	})
}

// TestPublicViewsShowOnlyPublishedRecords mixes drafts, submitted,
// published and withdrawn records and answers, and reads every public view
// anonymously: only what IOM published appears.
func TestPublicViewsShowOnlyPublishedRecords(t *testing.T) {
	s := newStack(t)
	base := "/v1/iscms/cmc/activities/"
	mk := func(title string, steps ...string) string {
		w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/activities", s.admin, `{"kind":"awareness_raising","title":"`+title+`","objectives":[3],"start_date":"2021-05-01"}`, nil), 201)
		id := w["id"].(string)
		for _, a := range steps {
			s.mustOK(t, s.do(t, "POST", base+id+"/"+a, s.admin, "", nil), 200)
		}
		return id
	}
	hidden := map[string]string{
		"Zq-draft":             mk("Zq-draft"),
		"Zq-submitted":         mk("Zq-submitted", "submit"),
		"Zq-withdrawn-draft":   mk("Zq-withdrawn-draft", "withdraw"),
		"Zq-published-then-wd": mk("Zq-published-then-wd", "submit", "publish", "withdraw"),
	}
	public := mk("Zq-published", "submit", "publish")
	// Answers: cmc's published, igc's only submitted.
	s.answer(t, "cmc", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"yes","objectives":[3]},"agenda_item":"yes","capacity_building":[{"title":"Zq-answer-published","form":"training_workshop"}]}`)
	w := s.mustOK(t, s.do(t, "PUT", "/v1/iscms/igc/questionnaires/2018/questionnaire", s.admin,
		`{"channel":"questionnaire","position":{"status":"yes","objectives":[9]},"agenda_item":"yes","capacity_building":[{"title":"Zq-answer-submitted","form":"information_note"}]}`, nil), 200)
	pos := uint64(w["position"].(float64))
	wait := fmt.Sprintf("min_position=%d", pos)

	views := []string{
		"/v1/activities?" + wait, "/v1/iscms/cmc/activities?" + wait, "/v1/iscms/cmc/timeline?" + wait,
		"/v1/iscms/cmc?" + wait, "/v1/iscms/igc?" + wait, "/v1/iscms/igc/activities?" + wait,
		"/v1/iscms/igc/questionnaires/2018/questionnaire?" + wait,
		"/v1/exports/activities.csv?" + wait, "/v1/exports/activities.xlsx?" + wait,
		"/v1/exports/positions.csv?" + wait, "/v1/exports/figures.csv?cycle=2018&" + wait,
		"/v1/reports/figures?cycle=2018&" + wait, "/v1/reports/review?cycle=imrf-2022&" + wait,
		"/v1/progress/objectives?" + wait, "/v1/progress/states?" + wait, "/v1/progress/recommendations?" + wait,
		"/v1/feeds/published.json?" + wait, "/v1/feeds/published.atom?" + wait,
	}
	text := func(r response) string {
		if !bytes.HasPrefix(r.Body, []byte("PK")) {
			return string(r.Body)
		}
		x, err := excelize.OpenReader(bytes.NewReader(r.Body))
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := x.GetRows("Sheet1")
		return fmt.Sprint(rows)
	}
	all := ""
	for _, v := range views {
		r := s.do(t, "GET", v, "", "", nil)
		if r.Status != http.StatusOK && !(r.Status == http.StatusNotFound && strings.Contains(v, "/igc/questionnaires/")) {
			t.Errorf("GET %s: %d %s", v, r.Status, r.Body)
			continue
		}
		body := text(r)
		all += body
		for title, id := range hidden {
			if strings.Contains(body, title) || strings.Contains(body, id) {
				if !(title == "Zq-published-then-wd" && strings.Contains(v, "/feeds/")) { // a feed announces the withdrawal
					t.Errorf("anonymous GET %s shows %s", v, title)
				}
			}
		}
		if strings.Contains(body, "Zq-answer-submitted") {
			t.Errorf("anonymous GET %s shows igc's unpublished answers", v)
		}
	}
	for _, want := range []string{"Zq-published", public, "Zq-answer-published"} {
		if !strings.Contains(all, want) {
			t.Errorf("no public view shows %s", want)
		}
	}
	// The anonymous figures leave igc out; IOM's include it, so the
	// fixture is not vacuous.
	anon := s.do(t, "GET", "/v1/reports/figures?cycle=2018", "", "", nil)
	iom := s.do(t, "GET", "/v1/reports/figures?cycle=2018", s.monitor, "", nil)
	if bytes.Contains(anon.Body, []byte(`"igc"`)) || !bytes.Contains(iom.Body, []byte(`"igc"`)) {
		t.Errorf("figures: anonymous names igc %v, IOM names igc %v; want false, true",
			bytes.Contains(anon.Body, []byte(`"igc"`)), bytes.Contains(iom.Body, []byte(`"igc"`)))
	}
}
