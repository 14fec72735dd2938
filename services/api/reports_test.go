package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"gcmtrack/projections/reports"
)

// answer stores and publishes one answer set.
func (s *stack) answer(t *testing.T, iscm string, cycle int, channel, body string) uint64 {
	t.Helper()
	path := fmt.Sprintf("/v1/iscms/%s/questionnaires/%d/%s", iscm, cycle, channel)
	s.mustOK(t, s.do(t, "PUT", path, s.admin, body, nil), 200)
	w := s.mustOK(t, s.do(t, "POST", path+"/publish", s.admin, "", nil), 200)
	return uint64(w["position"].(float64))
}

func slugs(c any) string {
	var out []string
	for _, x := range c.(map[string]any)["iscms"].([]any) {
		out = append(out, x.(string))
	}
	sort.Strings(out)
	return fmt.Sprintf("%d %s", int(c.(map[string]any)["count"].(float64)), strings.Join(out, ","))
}

func TestFiguresFromAFixture(t *testing.T) {
	s := newStack(t)
	s.answer(t, "puebla-process", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"yes","themes":["T2"],"objectives":[1,2]},"agenda_item":"yes","action_plan":{"status":"already_done"},"capacity_building":[{"title":"a","form":"training_workshop"},{"title":"b","form":"technical_secretariat"}],"partnerships":[{"partner":"IOM","category":"igo"}]}`)
	s.answer(t, "cmc", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"no","plans_refinement":true},"agenda_item":"planned","action_plan":{"status":"already_done"},"capacity_building":[{"title":"c","form":"awareness_raising"}]}`)
	s.answer(t, "igc", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"no"},"agenda_item":"no","action_plan":{"status":"not_known"}}`)
	s.answer(t, "sacm", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"yes","themes":["T4"],"objectives":[1]},"agenda_item":"yes","action_plan":{"status":"not_known"},"partnerships":[{"partner":"Puebla Process","category":"iscm"},{"partner":"ILO","category":"igo"}]}`)
	s.answer(t, "sacm", 2018, "interview", `{"channel":"interview","capacity_building":[{"title":"d","form":"online_meeting"}],"partnerships":[{"partner":"ICRC","category":"ngo_civil_society"}]}`)
	pos := s.answer(t, "pafom", 2018, "interview", `{"channel":"interview","position":{"status":"yes","objectives":[23]},"partnerships":[{"partner":"UNECA","category":"un_regional_commission"}]}`)
	// Another cycle does not count.
	s.answer(t, "rabat-process", 2022, "questionnaire", `{"channel":"questionnaire","position":{"status":"yes"}}`)

	f := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/reports/figures?cycle=2018&min_position=%d", pos), "", "", nil), 200)
	get := func(path string) any {
		var v any = f
		for _, k := range strings.Split(path, ".") {
			v = v.(map[string]any)[k]
		}
		return v
	}
	for path, want := range map[string]string{
		"respondents.questionnaire": "4 cmc,igc,puebla-process,sacm",
		"respondents.interview":     "2 pafom,sacm",
		"respondents.all":           "5 cmc,igc,pafom,puebla-process,sacm",
		"figure_2.yes":              "2 puebla-process,sacm",
		"figure_2.no":               "2 cmc,igc",
		"figure_2.in_process":       "0 ",
		"figure_2.without_position_planning_refinement": "1 cmc",
		"figure_4.by_answer.yes.with_position":          "2 puebla-process,sacm",
		"figure_4.by_answer.yes.without_position":       "0 ",
		"figure_4.by_answer.planned.without_position":   "1 cmc",
		"figure_4.by_answer.no.total":                   "1 igc",
		"figure_5.already_have_one":                     "2 cmc,puebla-process",
		"figure_5.by_answer.not_known":                  "2 igc,sacm",
		"figure_8.with_partnerships":                    "3 pafom,puebla-process,sacm",
	} {
		if got := slugs(get(path)); got != want {
			t.Errorf("%s = %s, want %s", path, got, want)
		}
	}
	if n := get("figure_8.respondents").(float64); n != 5 {
		t.Errorf("figure_8.respondents = %v, want 5", n)
	}
	cats := map[string]string{}
	for _, c := range get("figure_8.by_category").([]any) {
		cats[c.(map[string]any)["category"].(string)] = slugs(c)
	}
	for cat, want := range map[string]string{"igo": "2 puebla-process,sacm", "iscm": "1 sacm", "ngo_civil_society": "1 sacm", "un_regional_commission": "1 pafom", "academia": "0 "} {
		if cats[cat] != want {
			t.Errorf("figure 8 %s = %s, want %s", cat, cats[cat], want)
		}
	}
	forms := map[string]string{}
	for _, c := range get("figure_7.by_form").([]any) {
		forms[c.(map[string]any)["form"].(string)] = slugs(c)
	}
	if len(forms) != 4 || forms["online_meeting"] != "1 sacm" || forms["training_workshop"] != "1 puebla-process" {
		t.Errorf("figure 7 = %v", forms)
	}
	objs := map[string]string{}
	for _, o := range get("figure_3.objectives").([]any) {
		objs[o.(map[string]any)["id"].(string)] = slugs(o)
	}
	if objs["1"] != "2 puebla-process,sacm" || objs["23"] != "1 pafom" || len(objs) != 3 {
		t.Errorf("figure 3 objectives = %v", objs)
	}

	// A re-submission changes the figures.
	p2 := "/v1/iscms/igc/questionnaires/2018/questionnaire"
	w := s.mustOK(t, s.do(t, "PUT", p2, s.admin, `{"channel":"questionnaire","position":{"status":"yes"},"agenda_item":"yes"}`, nil), 200)
	f = s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/reports/figures?cycle=2018&min_position=%d", uint64(w["position"].(float64))), "", "", nil), 200)
	if got := slugs(get("figure_2.yes")); got != "3 igc,puebla-process,sacm" {
		t.Errorf("after re-submission figure_2.yes = %s", got)
	}
	// Unpublished answers count for IOM only.
	s.mustOK(t, s.do(t, "PUT", "/v1/iscms/midsa/questionnaires/2018/questionnaire", s.admin, `{"channel":"questionnaire","position":{"status":"in_process"}}`, nil), 200)
	pub := s.mustOK(t, s.do(t, "GET", "/v1/reports/figures?cycle=2018&min_position="+fmt.Sprint(s.last(t)), "", "", nil), 200)
	iom := s.mustOK(t, s.do(t, "GET", "/v1/reports/figures?cycle=2018", s.monitor, "", nil), 200)
	if slugs(pub["figure_2"].(map[string]any)["in_process"]) != "0 " || slugs(iom["figure_2"].(map[string]any)["in_process"]) != "1 midsa" {
		t.Errorf("scope: public %v, IOM %v", pub["figure_2"], iom["figure_2"])
	}
	// 304 on a repeated poll.
	r := s.do(t, "GET", "/v1/reports/figures?cycle=2018", "", "", nil)
	if nm := s.do(t, "GET", "/v1/reports/figures?cycle=2018", "", "", map[string]string{"If-None-Match": r.Header.Get("ETag")}); nm.Status != 304 {
		t.Errorf("repeated poll: %d, want 304", nm.Status)
	}
}

func TestAsOfEqualsTheLiveAnswerAtThatPosition(t *testing.T) {
	s := newStack(t)
	reportsAt := func(q string) map[string]string {
		out := map[string]string{}
		for _, p := range []string{"/v1/reports/figures?cycle=2018", "/v1/progress/objectives", "/v1/progress/states", "/v1/progress/recommendations", "/v1/reports/review?cycle=regional-2020&region=Americas", "/v1/progress/states/MEX"} {
			sep := "?"
			if strings.Contains(p, "?") {
				sep = "&"
			}
			r := s.do(t, "GET", p+sep+strings.TrimLeft(q, "&?"), s.monitor, "", nil)
			if r.Status != 200 {
				t.Fatalf("%s%s: %d %s", p, q, r.Status, r.Body)
			}
			out[p] = string(r.Body)
		}
		return out
	}
	live := map[uint64]map[string]string{}
	step := func(method, path, body string, hdr map[string]string) map[string]any {
		status := map[string]int{"PUT": 200, "POST": 201}[method]
		if strings.HasSuffix(path, "/submit") || strings.HasSuffix(path, "/publish") || strings.HasSuffix(path, "/withdraw") || hdr != nil {
			status = 200
		}
		w := s.mustOK(t, s.do(t, method, path, s.admin, body, hdr), status)
		pos := uint64(w["position"].(float64))
		live[pos] = reportsAt(fmt.Sprintf("&min_position=%d", pos))
		return w
	}
	step("POST", "/v1/iscms/puebla-process/members", `{"state":"MEX"}`, nil)
	step("PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", `{"channel":"questionnaire","position":{"status":"yes","objectives":[1,2]},"agenda_item":"yes","action_plan":{"status":"yes"}}`, nil)
	w := step("POST", "/v1/iscms/puebla-process/activities", `{"kind":"capacity_building","title":"w","start_date":"2019-05-01","objectives":[3],"states":["MEX"]}`, nil)
	// The activity changes after the positions before: as of those, its
	// earlier content and status count.
	act := "/v1/iscms/puebla-process/activities/" + w["id"].(string)
	step("POST", act+"/submit", "", nil)
	step("POST", act+"/publish", "", nil)
	step("POST", "/v1/iscms/sacm/members", `{"state":"MEX","status":"observer"}`, nil)
	w = s.mustOK(t, s.do(t, "GET", act, s.admin, "", nil), 200)
	step("PUT", act, `{"kind":"capacity_building","title":"w2","start_date":"2019-06-01","objectives":[4,7]}`,
		map[string]string{"If-Match": fmt.Sprintf(`"%d"`, uint64(w["version"].(float64)))})
	step("PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", `{"channel":"questionnaire","position":{"status":"in_process","objectives":[5]},"agenda_item":"planned"}`, nil)
	step("POST", "/v1/iscms/puebla-process/partnerships", `{"partner":"ECLAC","category":"un_regional_commission"}`, nil)
	step("POST", act+"/withdraw", `{"note":"duplicate"}`, nil)
	// Hand-made agenda items after the one the answers derive: as of the
	// positions before them the derived one is current again; as of the
	// positions before the first is revised, the second is.
	var items []string
	for _, standing := range []string{"standard", "one_off"} {
		w := step("POST", "/v1/iscms/puebla-process/agenda-items",
			`{"meeting":{"title":"Vice-ministerial meeting","date":"2019-06-12","place":"Guatemala City"},"standing":"`+standing+`","objectives":[1]}`, nil)
		item := "/v1/iscms/puebla-process/agenda-items/" + w["id"].(string)
		step("POST", item+"/submit", "", nil)
		step("POST", item+"/publish", "", nil)
		items = append(items, item)
	}
	w = s.mustOK(t, s.do(t, "GET", items[0], s.admin, "", nil), 200)
	step("PUT", items[0], `{"meeting":{"title":"Vice-ministerial meeting","date":"2019-06-13","place":"Guatemala City"},"standing":"planned","objectives":[2]}`,
		map[string]string{"If-Match": fmt.Sprintf(`"%d"`, uint64(w["version"].(float64)))})
	for pos, want := range live {
		got := reportsAt(fmt.Sprintf("&as_of_position=%d", pos))
		for p := range want {
			if got[p] != want[p] {
				t.Errorf("%s as of %d differs from the live answer then:\n as_of: %s\n  live: %s", p, pos, got[p], want[p])
			}
		}
	}
	// A past snapshot rebuilt forward equals the live one taken back, at
	// every position (the API above takes whichever is cheaper).
	ctx := context.Background()
	forward, back := reports.NewStore(s.deps.Pool), reports.NewStore(s.deps.Pool)
	forward.Past, back.Past = reports.PastForward, reports.PastFromLive
	if _, err := back.Live(ctx); err != nil {
		t.Fatal(err)
	}
	for pos := range live {
		f, err := forward.AsOf(ctx, pos)
		if err != nil {
			t.Fatal(err)
		}
		b, err := back.AsOf(ctx, pos)
		if err != nil {
			t.Fatal(err)
		}
		if ft, bt := snapshotText(t, f), snapshotText(t, b); ft != bt {
			t.Errorf("as of %d, rebuilt forward and taken back from the live snapshot differ:\n forward: %s\n    back: %s", pos, ft, bt)
		}
	}
	// as_of a date: today includes everything, long ago nothing.
	today := time.Now().UTC().Format(time.DateOnly)
	all := s.mustOK(t, s.do(t, "GET", "/v1/progress/states?as_of="+today, s.monitor, "", nil), 200)
	if all["position"].(float64) != float64(s.last(t)) {
		t.Errorf("as_of today is at position %v, want %d", all["position"], s.last(t))
	}
	none := s.mustOK(t, s.do(t, "GET", "/v1/progress/states?as_of=2000-01-01", s.monitor, "", nil), 200)
	if none["position"].(float64) != 0 || len(none["items"].([]any)) != 0 {
		t.Errorf("as_of 2000 = %v", none)
	}
	if r := s.do(t, "GET", "/v1/progress/states?as_of_position=999999", s.monitor, "", nil); r.Status != 409 {
		t.Errorf("as_of_position beyond the read models: %d", r.Status)
	}
}

func TestProgressViews(t *testing.T) {
	s := newStack(t)
	for _, m := range []string{`{"state":"MEX"}`, `{"state":"GTM"}`, `{"state":"USA","status":"observer"}`} {
		s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, m, nil), 201)
	}
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/sacm/members", s.admin, `{"state":"ARG"}`, nil), 201)
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/ocam/members", s.admin, `{"state":"MEX"}`, nil), 201)
	pos := s.answer(t, "puebla-process", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"yes","objectives":[1,23]},"agenda_item":"yes","action_plan":{"status":"already_done"},"capacity_building":[{"title":"x","form":"training_workshop"}],"partnerships":[{"partner":"a","category":"igo"},{"partner":"b","category":"iscm"},{"partner":"c","category":"academia"}],"submissions":[{"forum":"imrf","title":"t"}],"resources":[{"kind":"human","description":"d"}]}`)
	q := fmt.Sprintf("?min_position=%d", pos)
	o := s.mustOK(t, s.do(t, "GET", "/v1/progress/objectives"+q, "", "", nil), 200)
	items := o["items"].([]any)
	if len(items) != 23 {
		t.Fatalf("%d objectives", len(items))
	}
	one := items[0].(map[string]any)
	if slugs(one["position"]) != "1 puebla-process" || one["member_states"].(float64) != 2 {
		t.Errorf("objective 1 = %v (want puebla-process via its position and its 2 member States)", one)
	}
	st := s.mustOK(t, s.do(t, "GET", "/v1/progress/states/MEX"+q, "", "", nil), 200)
	if st["iscm_count"].(float64) != 2 || st["with_formal_position"].(float64) != 1 || st["with_standard_agenda_item"].(float64) != 1 || st["with_action_plan"].(float64) != 1 {
		t.Errorf("MEX = %v", st)
	}
	all := s.mustOK(t, s.do(t, "GET", "/v1/progress/states"+q, "", "", nil), 200)
	if first := all["items"].([]any)[0].(map[string]any); first["state"] != "MEX" || len(all["items"].([]any)) != 4 {
		t.Errorf("states = %v", all["items"])
	}
	rec := s.mustOK(t, s.do(t, "GET", "/v1/progress/recommendations"+q, "", "", nil), 200)
	var puebla map[string]string
	for _, x := range rec["iscms"].([]any) {
		m := x.(map[string]any)
		if m["iscm"] == "puebla-process" {
			puebla = map[string]string{}
			for _, it := range m["items"].([]any) {
				e := it.(map[string]any)
				puebla[e["recommendation"].(string)] = e["status"].(string)
			}
		}
	}
	want := map[string]string{"a": "strong", "b": "some", "c": "none", "d": "none", "e": "some", "f": "some", "g": "none", "h": "strong", "i": "strong", "j": "strong"}
	for k, v := range want {
		if puebla[k] != v {
			t.Errorf("recommendation %s for puebla-process: %s, want %s (rule: %v)", k, puebla[k], v, rec["rules"].(map[string]any)[k])
		}
	}
	rv := s.mustOK(t, s.do(t, "GET", "/v1/reports/review?cycle=regional-2020&region=Americas", "", "", nil), 200)
	var names []string
	for _, x := range rv["iscms"].([]any) {
		names = append(names, x.(map[string]any)["iscm"].(string))
	}
	if !strings.Contains(strings.Join(names, ","), "puebla-process") || !strings.Contains(strings.Join(names, ","), "eu-celac") || strings.Contains(strings.Join(names, ","), "colombo-process") {
		t.Errorf("Americas review covers %v", names)
	}
	if r := s.do(t, "GET", "/v1/reports/review?cycle=imrf-2023", "", "", nil); r.Status != 400 {
		t.Errorf("imrf-2023: %d", r.Status)
	}
}

func TestClosedCycleRefusesEdits(t *testing.T) {
	s := newStack(t)
	w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"x","start_date":"2025-05-01"}`, nil), 201)
	id, v := w["id"].(string), w["version"].(float64)
	if r := s.do(t, "POST", "/v1/review-cycles/imrf-2026/close", s.secret2, "", nil); r.Status != 403 {
		t.Fatalf("secretariat closing a cycle: %d", r.Status)
	}
	s.mustOK(t, s.do(t, "POST", "/v1/review-cycles/imrf-2026/close", s.admin, `{"note":"report submitted"}`, nil), 200)
	before := s.last(t)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/iscms/puebla-process/activities/" + id, `{"kind":"data_exchange","title":"y","start_date":"2025-05-01"}`},
		{"PUT", "/v1/iscms/puebla-process/activities/" + id, `{"kind":"data_exchange","title":"y","start_date":"2018-05-01"}`},
		{"POST", "/v1/iscms/puebla-process/activities/" + id + "/submit", ""},
		{"POST", "/v1/iscms/puebla-process/activities", `{"kind":"data_exchange","title":"z","start_date":"2024-02-01"}`},
		{"PUT", "/v1/iscms/puebla-process/questionnaires/2026/questionnaire", `{"channel":"questionnaire"}`},
	} {
		var h map[string]string
		if strings.Contains(c.path, "/activities/") {
			h = map[string]string{"If-Match": fmt.Sprintf(`"%d"`, int(v))}
		}
		r := s.do(t, c.method, c.path, s.admin, c.body, h)
		if r.Status != 423 || !strings.Contains(string(r.Body), "imrf-2026") {
			t.Errorf("%s %s in a closed cycle: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	if s.last(t) != before {
		t.Fatal("a refused edit appended an event")
	}
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"older","start_date":"2018-02-01"}`, nil), 201)
	if r := s.do(t, "POST", "/v1/review-cycles/imrf-2026/close", s.admin, "", nil); r.Status != 409 {
		t.Errorf("closing twice: %d", r.Status)
	}
	s.mustOK(t, s.do(t, "POST", "/v1/review-cycles/imrf-2026/reopen", s.admin, "", nil), 200)
	s.mustOK(t, s.do(t, "PUT", "/v1/iscms/puebla-process/activities/"+id, s.secret2, `{"kind":"data_exchange","title":"y","start_date":"2025-05-01"}`, map[string]string{"If-Match": fmt.Sprintf(`"%d"`, int(v))}), 200)
	l := s.mustOK(t, s.do(t, "GET", "/v1/review-cycles?min_position="+fmt.Sprint(s.last(t)), "", "", nil), 200)
	for _, c := range l["items"].([]any) {
		m := c.(map[string]any)
		if m["id"] == "imrf-2026" && m["closed"] != false {
			t.Errorf("imrf-2026 after reopening = %v", m)
		}
	}
}

func feedIDs(t *testing.T, s *stack, path string) (map[string][]string, string) {
	t.Helper()
	out := map[string][]string{}
	r := s.mustOK(t, s.do(t, "GET", path, "", "", nil), 200)
	for _, it := range r["items"].([]any) {
		m := it.(map[string]any)
		out[m["id"].(string)] = append(out[m["id"].(string)], m["_gcm"].(map[string]any)["change"].(string))
	}
	return out, r["next_url"].(string)
}

func TestFeedsShowOnlyPublishedRecords(t *testing.T) {
	s := newStack(t)
	mk := func(title string) string {
		w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/resources", s.admin, `{"kind":"human","description":"`+title+`"}`, nil), 201)
		return w["id"].(string)
	}
	base := "/v1/iscms/cmc/resources/"
	draft := mk("draft")
	submitted := mk("submitted")
	s.mustOK(t, s.do(t, "POST", base+submitted+"/submit", s.admin, "", nil), 200)
	published := mk("published")
	s.mustOK(t, s.do(t, "POST", base+published+"/submit", s.admin, "", nil), 200)
	s.mustOK(t, s.do(t, "POST", base+published+"/publish", s.admin, "", nil), 200)
	withdrawnDraft := mk("withdrawn draft")
	s.mustOK(t, s.do(t, "POST", base+withdrawnDraft+"/withdraw", s.admin, "", nil), 200)
	retracted := mk("published then withdrawn")
	s.mustOK(t, s.do(t, "POST", base+retracted+"/submit", s.admin, "", nil), 200)
	s.mustOK(t, s.do(t, "POST", base+retracted+"/publish", s.admin, "", nil), 200)
	w := s.mustOK(t, s.do(t, "POST", base+retracted+"/withdraw", s.admin, "", nil), 200)
	pos := uint64(w["position"].(float64))

	ids, _ := feedIDs(t, s, fmt.Sprintf("/v1/feeds/published.json?min_position=%d", pos))
	key := func(id string) string { return "gcmtrack:cmc/resource/" + id }
	if len(ids) != 2 || ids[key(published)][0] != "published" || ids[key(retracted)][0] != "withdrawn" {
		t.Fatalf("feed = %v", ids)
	}
	r := s.do(t, "GET", "/v1/feeds/published.json", "", "", nil)
	// A withdrawal keeps the title that was public, not the content.
	for _, secret := range []string{draft, submitted, withdrawnDraft, "draft\"", "submitted\"", "withdrawn draft", `"description":"published then withdrawn"`} {
		if strings.Contains(string(r.Body), secret) {
			t.Errorf("the JSON feed shows %q", secret)
		}
	}
	if r.Header.Get("Content-Type") != "application/feed+json" {
		t.Errorf("JSON feed Content-Type %q", r.Header.Get("Content-Type"))
	}
	a := s.do(t, "GET", "/v1/feeds/published.atom", "", "", nil)
	if a.Status != 200 || !strings.Contains(string(a.Body), `<feed xmlns="http://www.w3.org/2005/Atom">`) || !strings.Contains(string(a.Body), published) {
		t.Fatalf("atom: %d %s", a.Status, a.Body)
	}
	for _, secret := range []string{draft, submitted, withdrawnDraft} {
		if strings.Contains(string(a.Body), secret) {
			t.Errorf("the Atom feed shows %q", secret)
		}
	}
}

// A feed entry shows its record's content as last published or corrected;
// a withdrawal shows none.
func TestFeedShowsTheContentOfEachPublicChange(t *testing.T) {
	s := newStack(t)
	base := "/v1/iscms/cmc/resources/"
	w := s.mustOK(t, s.do(t, "POST", base[:len(base)-1], s.admin, `{"kind":"human","description":"first text"}`, nil), 201)
	id := w["id"].(string)
	s.mustOK(t, s.do(t, "POST", base+id+"/submit", s.admin, "", nil), 200)
	w = s.mustOK(t, s.do(t, "POST", base+id+"/publish", s.admin, "", nil), 200)
	item := func(pos uint64) (string, string) {
		t.Helper()
		r := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/feeds/published.json?min_position=%d", pos), "", "", nil), 200)
		items := r["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("%d feed items, want 1", len(items))
		}
		g := items[0].(map[string]any)["_gcm"].(map[string]any)
		rec, _ := g["item"].(map[string]any)["record"].(map[string]any)
		desc, _ := rec["description"].(string)
		return g["change"].(string), desc
	}
	if change, desc := item(uint64(w["position"].(float64))); change != "published" || desc != "first text" {
		t.Fatalf("after publication: %s %q", change, desc)
	}
	w = s.mustOK(t, s.do(t, "PUT", base+id, s.admin, `{"kind":"human","description":"corrected text"}`,
		map[string]string{"If-Match": fmt.Sprintf(`"%d"`, uint64(w["position"].(float64)))}), 200)
	if change, desc := item(uint64(w["position"].(float64))); change != "updated" || desc != "corrected text" {
		t.Fatalf("after a correction: %s %q", change, desc)
	}
	w = s.mustOK(t, s.do(t, "POST", base+id+"/withdraw", s.admin, "", nil), 200)
	if change, desc := item(uint64(w["position"].(float64))); change != "withdrawn" || desc != "" {
		t.Fatalf("after withdrawal: %s %q", change, desc)
	}
}

// A feed page is kept encoded for its URL until the read models move: its
// links name the host and scheme each consumer used, and a publication
// shows at once.
func TestFeedKeptPerAddressUntilTheReadModelsMove(t *testing.T) {
	s := newStack(t)
	get := func(host, proto, tag string) (int, map[string]any, string) {
		t.Helper()
		req, err := http.NewRequest("GET", s.srv.URL+"/v1/feeds/published.json?limit=5", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		if proto != "" {
			req.Header.Set("X-Forwarded-Proto", proto)
		}
		if tag != "" {
			req.Header.Set("If-None-Match", tag)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var doc map[string]any
		if res.StatusCode == 200 {
			if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
		}
		return res.StatusCode, doc, res.Header.Get("ETag")
	}
	base := "/v1/iscms/cmc/resources/"
	publish := func(desc string) uint64 {
		w := s.mustOK(t, s.do(t, "POST", base[:len(base)-1], s.admin, `{"kind":"human","description":"`+desc+`"}`, nil), 201)
		id := w["id"].(string)
		s.mustOK(t, s.do(t, "POST", base+id+"/submit", s.admin, "", nil), 200)
		w = s.mustOK(t, s.do(t, "POST", base+id+"/publish", s.admin, "", nil), 200)
		return uint64(w["position"].(float64))
	}
	pos := publish("first")
	s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/feeds/published.json?min_position=%d", pos), "", "", nil), 200)

	var tag string
	for _, c := range []struct{ host, proto, want string }{
		{"tracker.example", "", "http://tracker.example/"},
		{"mirror.example", "", "http://mirror.example/"},
		{"tracker.example", "https", "https://tracker.example/"},
		{"tracker.example", "", "http://tracker.example/"},
	} {
		st, doc, etag := get(c.host, c.proto, "")
		if st != 200 {
			t.Fatalf("%s %s: %d", c.proto, c.host, st)
		}
		items := doc["items"].([]any)
		if len(items) != 1 || !strings.HasPrefix(doc["feed_url"].(string), c.want) || !strings.HasPrefix(doc["next_url"].(string), c.want) ||
			!strings.HasPrefix(items[0].(map[string]any)["url"].(string), c.want) {
			t.Errorf("%s %s: %d items, feed_url %v, next_url %v", c.proto, c.host, len(items), doc["feed_url"], doc["next_url"])
		}
		if tag != "" && etag != tag {
			t.Errorf("%s %s: ETag %q, want the page's %q", c.proto, c.host, etag, tag)
		}
		tag = etag
	}
	if st, _, _ := get("tracker.example", "", tag); st != http.StatusNotModified {
		t.Fatalf("a repeated poll: %d, want 304", st)
	}
	pos = publish("second")
	s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/feeds/published.json?min_position=%d", pos), "", "", nil), 200)
	st, doc, etag := get("tracker.example", "", tag)
	if st != 200 || etag == tag || len(doc["items"].([]any)) != 2 {
		t.Fatalf("after a second publication, with the old ETag: %d, ETag %q (was %q), %v", st, etag, tag, doc["items"])
	}
}

func TestFeedPolledDuringWritesYieldsEveryItemOnce(t *testing.T) {
	s := newStack(t)
	const n = 40
	var wg sync.WaitGroup
	published := make(chan string, n)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			iscm := []string{"cmc", "sacm", "igc", "midsa"}[w]
			for i := range n / 4 {
				r := s.do(t, "POST", "/v1/iscms/"+iscm+"/resources", s.admin, fmt.Sprintf(`{"kind":"human","description":"r%d"}`, i), nil)
				if r.Status != 201 {
					t.Errorf("create: %d %s", r.Status, r.Body)
					return
				}
				var res map[string]any
				_ = json.Unmarshal(r.Body, &res)
				id := res["id"].(string)
				for _, a := range []string{"submit", "publish"} {
					if r := s.do(t, "POST", "/v1/iscms/"+iscm+"/resources/"+id+"/"+a, s.admin, "", nil); r.Status != 200 {
						t.Errorf("%s: %d %s", a, r.Status, r.Body)
						return
					}
				}
				published <- "gcmtrack:" + iscm + "/resource/" + id
			}
		}()
	}
	seen := map[string]int{}
	next := "/v1/feeds/published.json?limit=7"
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	deadline := time.Now().Add(60 * time.Second)
	finished := false
	for !finished || len(seen) < n {
		select {
		case <-done:
			finished = true
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("saw %d of %d items before the deadline", len(seen), n)
		}
		ids, nu := feedIDs(t, s, next)
		for id, changes := range ids {
			seen[id] += len(changes)
		}
		u, err := url.Parse(nu)
		if err != nil {
			t.Fatal(err)
		}
		next = u.RequestURI()
		if len(ids) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(published)
	for id := range published {
		if seen[id] != 1 {
			t.Errorf("%s seen %d times, want once", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("feed yielded %d items, want %d", len(seen), n)
	}
}

func TestExportsParseBack(t *testing.T) {
	s := newStack(t)
	for i := range 3 {
		w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/activities", s.admin, fmt.Sprintf(`{"kind":"awareness_raising","title":"Campaña %d — ünïcode","objectives":[3,17],"start_date":"2019-0%d-01"}`, i, i+1), nil), 201)
		id := w["id"].(string)
		s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/activities/"+id+"/submit", s.admin, "", nil), 200)
		if i < 2 {
			s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/activities/"+id+"/publish", s.admin, "", nil), 200)
		}
	}
	pos := s.answer(t, "cmc", 2018, "questionnaire", `{"channel":"questionnaire","position":{"status":"no","plans_refinement":true},"agenda_item":"planned"}`)
	q := fmt.Sprintf("min_position=%d", pos)

	r := s.do(t, "GET", "/v1/exports/activities.csv?source=manual&"+q, "", "", nil)
	if r.Status != 200 || r.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("csv: %d %s", r.Status, r.Header)
	}
	rows, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0][0] != "iscm" || !strings.Contains(rows[1][8], "ünïcode") || rows[1][13] != "3 17" {
		t.Fatalf("public CSV rows = %v", rows)
	}
	// IOM sees the submitted one too; a filter narrows.
	r = s.do(t, "GET", "/v1/exports/activities.csv?source=manual&from=2019-01-15", s.monitor, "", nil)
	rows, _ = csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if len(rows) != 3 {
		t.Fatalf("filtered IOM CSV has %d rows, want header + 2", len(rows))
	}

	r = s.do(t, "GET", "/v1/exports/activities.xlsx?source=manual", s.monitor, "", nil)
	x, err := excelize.OpenReader(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("xlsx: %v (%d)", err, r.Status)
	}
	xrows, err := x.GetRows("Sheet1")
	if err != nil {
		t.Fatal(err)
	}
	if len(xrows) != 4 || xrows[0][2] != "id" || xrows[3][3] != "submitted" {
		t.Fatalf("xlsx rows = %v", xrows)
	}

	r = s.do(t, "GET", "/v1/exports/figures.csv?cycle=2018", "", "", nil)
	rows, err = csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil || r.Status != 200 {
		t.Fatalf("figures csv: %d %v", r.Status, err)
	}
	found := false
	for _, row := range rows {
		if row[1] == "figure_2" && row[2] == "without_position_planning_refinement" {
			found = row[3] == "1" && row[4] == "cmc"
		}
	}
	if !found {
		t.Fatalf("figures CSV lacks figure 2's refining count: %v", rows)
	}
	for _, bad := range []string{"/v1/exports/activities.pdf", "/v1/exports/nothing.csv"} {
		if r := s.do(t, "GET", bad, "", "", nil); r.Status != 404 {
			t.Errorf("%s: %d", bad, r.Status)
		}
	}
}

// TestLiveSnapshotRefreshEqualsAFreshRead checks that the live snapshot,
// refreshed with what changed since it was read, holds what reading every
// table afresh holds, through creations, revisions, each lifecycle step and
// a questionnaire answered anew with fewer parts (its dropped derived
// records must go).
func TestLiveSnapshotRefreshEqualsAFreshRead(t *testing.T) {
	s := newStack(t)
	steps := 0
	check := func(w map[string]any) {
		t.Helper()
		if kept, fresh := keptAndFresh(t, s, uint64(w["position"].(float64))); kept != fresh {
			t.Fatalf("after step %d the refreshed snapshot differs from a fresh read:\n refreshed: %s\n     fresh: %s", steps, kept, fresh)
		}
		steps++
	}
	q := "/v1/iscms/puebla-process/questionnaires/2018/questionnaire"
	check(s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX"}`, nil), 201))
	check(s.mustOK(t, s.do(t, "PUT", q, s.admin, `{"channel":"questionnaire","position":{"status":"yes","objectives":[1,2]},"agenda_item":"yes","action_plan":{"status":"yes"},"partnerships":[{"partner":"IOM","category":"igo"}]}`, nil), 200))
	check(s.mustOK(t, s.do(t, "POST", q+"/publish", s.admin, "", nil), 200))
	w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities", s.admin, `{"kind":"capacity_building","title":"w","start_date":"2019-05-01","objectives":[3],"states":["MEX"]}`, nil), 201)
	check(w)
	act := "/v1/iscms/puebla-process/activities/" + w["id"].(string)
	check(s.mustOK(t, s.do(t, "PUT", act, s.admin, `{"kind":"capacity_building","title":"w2","start_date":"2019-06-01","objectives":[4,5]}`,
		map[string]string{"If-Match": fmt.Sprintf(`"%d"`, uint64(w["position"].(float64)))}), 200))
	check(s.mustOK(t, s.do(t, "POST", act+"/submit", s.admin, "", nil), 200))
	check(s.mustOK(t, s.do(t, "POST", act+"/publish", s.admin, "", nil), 200))
	// Answered anew without the action plan and the partnership: their
	// derived records are dropped.
	check(s.mustOK(t, s.do(t, "PUT", q, s.admin, `{"channel":"questionnaire","position":{"status":"in_process","objectives":[5]},"agenda_item":"planned"}`, nil), 200))
	check(s.mustOK(t, s.do(t, "POST", act+"/withdraw", s.admin, `{"note":"duplicate"}`, nil), 200))
	check(s.mustOK(t, s.do(t, "DELETE", "/v1/iscms/puebla-process/members/MEX", s.admin, "", nil), 200))
	// A submission revised after publication: counted by its new forum
	// and title only.
	w = s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/submissions", s.admin, `{"forum":"gfmd","title":"Outcome","date":"2018-12-05"}`, nil), 201)
	check(w)
	sub := "/v1/iscms/puebla-process/submissions/" + w["id"].(string)
	check(s.mustOK(t, s.do(t, "POST", sub+"/submit", s.admin, "", nil), 200))
	w = s.mustOK(t, s.do(t, "POST", sub+"/publish", s.admin, "", nil), 200)
	check(w)
	check(s.mustOK(t, s.do(t, "PUT", sub, s.admin, `{"forum":"imrf","title":"Statement","date":"2022-05-17"}`,
		map[string]string{"If-Match": fmt.Sprintf(`"%d"`, uint64(w["position"].(float64)))}), 200))
	// Two agenda items published; the later one, current, withdrawn: the
	// earlier one is current again, and hand-made ones stay ahead of the
	// one derived from the answers.
	var items []string
	for _, standing := range []string{"standard", "one_off"} {
		w = s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/agenda-items", s.admin,
			`{"meeting":{"title":"Vice-ministerial meeting","date":"2019-06-12","place":"Guatemala City"},"standing":"`+standing+`","objectives":[1]}`, nil), 201)
		check(w)
		item := "/v1/iscms/puebla-process/agenda-items/" + w["id"].(string)
		check(s.mustOK(t, s.do(t, "POST", item+"/submit", s.admin, "", nil), 200))
		check(s.mustOK(t, s.do(t, "POST", item+"/publish", s.admin, "", nil), 200))
		items = append(items, item)
	}
	agendaGrade := func(w map[string]any) string {
		t.Helper()
		rec := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/progress/recommendations?min_position=%d", uint64(w["position"].(float64))), s.monitor, "", nil), 200)
		for _, x := range rec["iscms"].([]any) {
			if m := x.(map[string]any); m["iscm"] == "puebla-process" {
				return m["items"].([]any)[7].(map[string]any)["status"].(string)
			}
		}
		return ""
	}
	w = s.mustOK(t, s.do(t, "POST", items[1]+"/withdraw", s.admin, `{"note":"duplicate"}`, nil), 200)
	check(w)
	if g := agendaGrade(w); g != "strong" {
		t.Errorf("the one-off item withdrawn, the standard one is current: recommendation (h) %q, want strong", g)
	}
	w = s.mustOK(t, s.do(t, "POST", items[0]+"/withdraw", s.admin, `{"note":"superseded"}`, nil), 200)
	check(w)
	if g := agendaGrade(w); g != "some" {
		t.Errorf("both withdrawn, the answer's planned item is current: recommendation (h) %q, want some", g)
	}
}

// TestReportsReadWhileWritten reads reports, live and as of earlier
// positions, from several clients while another writes, then checks that
// the snapshot kept through it all equals a fresh read.
func TestReportsReadWhileWritten(t *testing.T) {
	s := newStack(t)
	// The readers start once the read models hold the catalog's ISCMs.
	start, err := s.store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/iscms/puebla-process?min_position=%d", start), s.monitor, "", nil), 200)
	var last atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for c := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths := []string{"/v1/progress/objectives", "/v1/progress/states", "/v1/reports/figures?cycle=2018", "/v1/iscms/puebla-process"}
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				p := paths[(c+i)%len(paths)]
				if at := last.Load(); i%3 == 0 && at > 0 && !strings.HasPrefix(p, "/v1/iscms/") {
					sep := "?"
					if strings.Contains(p, "?") {
						sep = "&"
					}
					// A position written but maybe not yet projected: wait
					// for it, as a client should.
					pos := 1 + uint64(i)%at
					p += fmt.Sprintf("%sas_of_position=%d&min_position=%d", sep, pos, pos)
				}
				if r := s.do(t, "GET", p, s.monitor, "", nil); r.Status != 200 {
					select {
					case errs <- fmt.Sprintf("%s: %d %s", p, r.Status, r.Body):
					default:
					}
				}
			}
		}()
	}
	q := "/v1/iscms/puebla-process/questionnaires/2018/questionnaire"
	for i := range 10 {
		w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities", s.admin,
			fmt.Sprintf(`{"kind":"capacity_building","title":"w%d","start_date":"2019-05-01","objectives":[%d]}`, i, 1+i%23), nil), 201)
		act := "/v1/iscms/puebla-process/activities/" + w["id"].(string)
		s.mustOK(t, s.do(t, "POST", act+"/submit", s.admin, "", nil), 200)
		w = s.mustOK(t, s.do(t, "POST", act+"/publish", s.admin, "", nil), 200)
		last.Store(uint64(w["position"].(float64)))
		body := `{"channel":"questionnaire","position":{"status":"yes","objectives":[1]},"agenda_item":"yes","partnerships":[{"partner":"IOM","category":"igo"}]}`
		if i%2 == 1 {
			body = `{"channel":"questionnaire","position":{"status":"in_process","objectives":[2]}}`
		}
		w = s.mustOK(t, s.do(t, "PUT", q, s.admin, body, nil), 200)
		last.Store(uint64(w["position"].(float64)))
	}
	close(done)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if kept, fresh := keptAndFresh(t, s, last.Load()); kept != fresh {
		t.Fatalf("the kept snapshot differs from a fresh read:\n  kept: %s\n fresh: %s", kept, fresh)
	}
}

// keptAndFresh reads a report through the API once the read models reached
// pos (which refreshes the API's shared store), then returns the store's
// live snapshot and one read afresh, each as text: answers and memberships
// in key order, then the tally's entries.
func keptAndFresh(t *testing.T, s *stack, pos uint64) (string, string) {
	t.Helper()
	s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/progress/objectives?min_position=%d", pos), s.monitor, "", nil), 200)
	ctx := context.Background()
	kept, err := s.deps.Reports.Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kept.Position < pos {
		t.Fatalf("kept snapshot at %d after a write at %d", kept.Position, pos)
	}
	fresh, err := reports.NewStore(s.deps.Pool).Live(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snapshotText(t, kept), snapshotText(t, fresh)
}

func snapshotText(t *testing.T, snap reports.Snapshot) string {
	t.Helper()
	ans := slices.Clone(snap.Answers)
	slices.SortFunc(ans, func(a, b reports.Answer) int { return strings.Compare(a.ISCM+a.ID, b.ISCM+b.ID) })
	ms := slices.Clone(snap.Memberships)
	slices.SortFunc(ms, func(a, b reports.Membership) int { return strings.Compare(a.ISCM+a.State, b.ISCM+b.State) })
	b, err := json.Marshal([]any{snap.Position, ans, ms})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n" + snap.Tally.String()
}
