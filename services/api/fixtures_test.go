package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
)

// target is one concrete request to a route.
type target struct {
	method, path, body string
	hdr                map[string]string
}

// fixtures turns a route pattern into a request that an allowed caller's
// attempt would complete: it creates, as admin, the objects the request
// acts on, in the state the action needs (a draft to submit, a submitted
// record to publish, a closed cycle to reopen, …). With reuse set, objects
// of a kind are created once per ISCM and reused whatever their state: for
// requests that are to be refused before the state matters.
type fixtures struct {
	s     *stack
	reuse bool
	seq   int
	// Sequences of questionnaire cycles and review cycles, apart so that a
	// closed review cycle never covers a questionnaire fixture's year.
	cycles, reviews int
	cache           map[string]string // "slug/segment" → record id
	// last is the position of the last fixture written.
	last uint64
}

func newFixtures(t *testing.T, s *stack) *fixtures {
	t.Helper()
	f := &fixtures{s: s, cache: map[string]string{}}
	// Activities name MEX; it must be a member where they are recorded.
	for _, slug := range []string{"puebla-process", "sacm"} {
		f.write(t, "POST", "/v1/iscms/"+slug+"/members", `{"state":"MEX"}`, nil, 201)
	}
	return f
}

func (f *fixtures) next() int { f.seq++; return f.seq }

// write sends a fixture request as admin and returns its answer.
func (f *fixtures) write(t *testing.T, method, path, body string, hdr map[string]string, want int) map[string]any {
	t.Helper()
	w := f.s.mustOK(t, f.s.do(t, method, path, f.s.admin, body, hdr), want)
	if p, ok := w["position"].(float64); ok {
		f.last = uint64(p)
	}
	return w
}

// freshStates are ISO codes a membership fixture takes one at a time.
var freshStates = strings.Fields("ARG BOL BRA CHL COL ECU PRY PER URY VEN GTM HND SLV CRI PAN NIC BLZ DOM CAN USA " +
	"FRA DEU ITA ESP PRT BEL NLD AUT CHE POL SWE NOR DNK FIN IRL GBR GRC TUR EGY MAR KEN NGA ZAF ETH GHA SEN")

func (f *fixtures) state() string { return freshStates[f.next()%len(freshStates)] }

// freshISCMs are ISCMs the position fixtures take one at a time (an ISCM
// has one position).
func (f *fixtures) freshISCM(t *testing.T) string {
	t.Helper()
	for _, c := range f.s.deps.Catalog.ISCMs {
		if c.Slug == "puebla-process" || c.Slug == "sacm" || f.cache["used/"+c.Slug] != "" {
			continue
		}
		f.cache["used/"+c.Slug] = "yes"
		return c.Slug
	}
	t.Fatal("out of ISCMs for position fixtures")
	return ""
}

// record creates a record of the segment in slug and takes it to status
// (draft, submitted or published); it returns its id and version.
func (f *fixtures) record(t *testing.T, slug, segment, status string) (string, uint64) {
	t.Helper()
	key := slug + "/" + segment
	if id, ok := f.cache[key]; ok && (f.reuse || segment == "positions") {
		return id, 0
	}
	base := "/v1/iscms/" + slug + "/" + segment
	w := f.write(t, "POST", base, recordBodies[segment][0], nil, 201)
	id := w["id"].(string)
	if status == "submitted" || status == "published" {
		w = f.write(t, "POST", base+"/"+id+"/submit", "", nil, 200)
	}
	if status == "published" {
		w = f.write(t, "POST", base+"/"+id+"/publish", "", nil, 200)
	}
	if f.reuse || segment == "positions" {
		f.cache[key] = id
	}
	return id, uint64(w["version"].(float64))
}

// questionnaire answers the questionnaire of slug for cycle: as a draft,
// submitted, or published.
func (f *fixtures) questionnaire(t *testing.T, slug string, cycle int, status string) {
	t.Helper()
	path := fmt.Sprintf("/v1/iscms/%s/questionnaires/%d/questionnaire", slug, cycle)
	q := ""
	if status == "draft" {
		q = "?draft=true"
	}
	f.write(t, "PUT", path+q, `{"channel":"questionnaire","agenda_item":"yes"}`, nil, 200)
	if status == "published" {
		f.write(t, "POST", path+"/publish", "", nil, 200)
	}
}

// published is a published record of the segment in slug, created once.
func (f *fixtures) published(t *testing.T, slug, segment string) string {
	t.Helper()
	key := "published/" + slug + "/" + segment
	if id, ok := f.cache[key]; ok {
		return id
	}
	if segment == "positions" {
		// The ISCM's one position: published, so that everyone reads it.
		if _, ok := f.cache[slug+"/positions"]; ok {
			t.Fatalf("the position of %s exists already in another state", slug)
		}
	}
	id, _ := f.record(t, slug, segment, "published")
	f.cache[key] = id
	return id
}

// publishedQuestionnaire is the published 2018 answers of slug.
func (f *fixtures) publishedQuestionnaire(t *testing.T, slug string) {
	t.Helper()
	if f.cache["q/"+slug] == "" {
		f.questionnaire(t, slug, 2018, "published")
		f.cache["q/"+slug] = "yes"
	}
}

// isWriteOfPosition reports whether a route changes a position, of which
// each ISCM has one: such requests need an ISCM of their own.
func isWriteOfPosition(pattern string) bool {
	return isWrite(strings.Fields(pattern)[0]) && strings.Contains(pattern, "/positions")
}

// segmentOfPath is the record segment of a path under /v1/iscms/{slug}/.
func segmentOfPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/v1/iscms/{slug}/")
	if !ok {
		return ""
	}
	seg, _, _ := strings.Cut(rest, "/")
	if _, ok := recordBodies[seg]; ok {
		return seg
	}
	return ""
}

// request builds a request to pattern acting on slug, with its fixtures in
// place. Every route the server serves must be known here.
func (f *fixtures) request(t *testing.T, pattern, slug string) target {
	t.Helper()
	method, path, _ := strings.Cut(pattern, " ")
	tg := target{method: method}
	fill := func(pairs ...string) string {
		return strings.NewReplacer(append([]string{"{slug}", slug}, pairs...)...).Replace(path)
	}
	seg := segmentOfPath(path)
	const q = "/v1/iscms/{slug}/questionnaires/{cycle}/{channel}"
	switch {
	case pattern == "POST /v1/iscms/{slug}/members":
		tg.path, tg.body = fill(), `{"state":"`+f.state()+`"}`
	case pattern == "DELETE /v1/iscms/{slug}/members/{state}":
		st := f.state()
		f.write(t, "POST", "/v1/iscms/"+slug+"/members", `{"state":"`+st+`"}`, nil, 201)
		tg.path = fill("{state}", st)
	case strings.HasPrefix(path, q):
		f.cycles++
		cycle := 2000 + f.cycles
		if cycle >= 2018 {
			cycle++ // 2018 holds the published answers
		}
		if cycle > 2045 {
			t.Fatal("out of questionnaire cycles for fixtures")
		}
		tg.path = fill("{cycle}", fmt.Sprint(cycle), "{channel}", "questionnaire")
		switch strings.TrimPrefix(path, q) {
		case "":
			if method == "PUT" {
				tg.body = `{"channel":"questionnaire","agenda_item":"planned"}`
			} else {
				f.publishedQuestionnaire(t, slug)
				tg.path = fill("{cycle}", "2018", "{channel}", "questionnaire")
			}
		case "/history":
			f.publishedQuestionnaire(t, slug)
			tg.path = fill("{cycle}", "2018", "{channel}", "questionnaire")
		case "/submit":
			f.questionnaire(t, slug, cycle, "draft")
		case "/publish":
			f.questionnaire(t, slug, cycle, "submitted")
		case "/withdraw":
			f.questionnaire(t, slug, cycle, "submitted")
		default:
			t.Fatalf("no fixture for %s", pattern)
		}
	case strings.HasPrefix(path, "/v1/review-cycles/{cycle}/"):
		// Cycles from 2067 on: no fixture's date falls in them.
		cycle := fmt.Sprintf("imrf-%d", 2070+4*(f.reviews/2))
		if f.reviews%2 == 1 {
			cycle = fmt.Sprintf("regional-%d", 2072+4*(f.reviews/2))
		}
		if f.reviews++; f.reviews > 16 {
			t.Fatal("out of review cycles for fixtures")
		}
		if strings.HasSuffix(path, "/reopen") {
			f.write(t, "POST", "/v1/review-cycles/"+cycle+"/close", "", nil, 200)
		}
		tg.path = fill("{cycle}", cycle)
	case pattern == "POST /v1/iscms/{slug}/action-plans/{id}/milestones/{milestone}/progress":
		id, _ := f.record(t, slug, "action-plans", "draft")
		tg.path, tg.body = fill("{id}", id, "{milestone}", "m1"), `{"progress":"in_progress","on":"2020-06-01"}`
	case seg != "":
		base := "/v1/iscms/{slug}/" + seg
		switch {
		case pattern == "POST "+base:
			tg.path, tg.body = fill(), recordBodies[seg][0]
		case pattern == "GET "+base:
			f.published(t, slug, seg)
			tg.path = fill()
		case pattern == "PUT "+base+"/{id}":
			id, v := f.record(t, slug, seg, "draft")
			tg.path, tg.body, tg.hdr = fill("{id}", id), recordBodies[seg][1], map[string]string{"If-Match": etag(v)}
		case pattern == "GET "+base+"/{id}", pattern == "GET "+base+"/{id}/history":
			tg.path = fill("{id}", f.published(t, slug, seg))
		case pattern == "POST "+base+"/{id}/submit", pattern == "POST "+base+"/{id}/withdraw":
			id, _ := f.record(t, slug, seg, "draft")
			tg.path = fill("{id}", id)
		case pattern == "POST "+base+"/{id}/publish":
			id, _ := f.record(t, slug, seg, "submitted")
			tg.path = fill("{id}", id)
		default:
			t.Fatalf("no fixture for %s", pattern)
		}
	case method == "GET":
		tg.path = fill("{iso3}", "MEX", "{name}", "activities.csv")
		switch path {
		case "/v1/reports/figures":
			tg.path += "?cycle=2018"
		case "/v1/reports/review":
			tg.path += "?cycle=imrf-2022"
		}
	default:
		t.Fatalf("no fixture for %s: add the route to the security tests", pattern)
	}
	return tg
}

// settle waits until the read models reflect every fixture written.
func (f *fixtures) settle(t *testing.T) {
	t.Helper()
	if f.last > 0 {
		f.s.mustOK(t, f.s.do(t, "GET", fmt.Sprintf("/v1/iscms/puebla-process?min_position=%d", f.last), "", "", nil), 200)
		f.s.mustOK(t, f.s.do(t, "GET", fmt.Sprintf("/v1/reports/figures?cycle=2018&min_position=%d", f.last), "", "", nil), 200)
	}
}

// auditEntries is every audit entry matching q, once the buffer is
// written.
func (s *stack) auditEntries(t *testing.T, q audit.Query) []audit.Entry {
	t.Helper()
	if err := s.audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	q.Limit = audit.MaxLimit
	for {
		page, err := s.audit.List(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		q.Cursor = page.NextCursor
	}
}

// identityOf is the identity of a token secret.
func (s *stack) identityOf(t *testing.T, secret string) auth.Identity {
	t.Helper()
	id, err := s.tokens.Verify(context.Background(), secret)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// withField adds a field to a JSON object body.
func withField(t *testing.T, body, field string, value any) string {
	t.Helper()
	m := map[string]any{}
	if body != "" {
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
	}
	m[field] = value
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
