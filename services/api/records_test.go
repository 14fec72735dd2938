package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// recordBodies is one valid body per record type, and a revision of it.
var recordBodies = map[string][2]string{
	"positions":         {`{"status":"in_process","themes":["T2"],"principles":[2],"objectives":[1,23]}`, `{"status":"yes","document":{"title":"Declaration","url":"https://example.org/d.pdf"},"meeting":{"title":"XXII meeting","date":"2017-11-16"},"themes":["T2","T4"],"principles":[2,4],"objectives":[1,2,23]}`},
	"agenda-items":      {`{"meeting":{"title":"Vice-ministerial meeting","date":"2019-06-12","place":"Guatemala City"},"standing":"standard","objectives":[1]}`, `{"meeting":{"title":"Vice-ministerial meeting","date":"2019-06-13","place":"Guatemala City"},"standing":"one_off","objectives":[1,7]}`},
	"stocktakings":      {`{"status":"yes","planned_for":"2020-01-31"}`, `{"status":"already_done","document":{"title":"Stocktaking report","url":"https://example.org/s"}}`},
	"action-plans":      {`{"status":"yes","title":"GCM action plan","period_from":"2020-01-01","period_to":"2022-12-31","objectives":[5,6],"milestones":[{"id":"m1","title":"Adopt"},{"title":"Review"}]}`, `{"status":"already_done","title":"GCM action plan","period_from":"2020-01-01","period_to":"2023-12-31","objectives":[5,6,7],"milestones":[{"id":"m1","title":"Adopt"},{"id":"m2","title":"Review"}]}`},
	"activities":        {`{"kind":"capacity_building","form":"training_workshop","title":"Workshop on data","start_date":"2019-03-01","end_date":"2019-03-02","states":["MEX"],"objectives":[1],"principles":[9],"partners":["IOM"],"url":"https://example.org/w"}`, `{"kind":"capacity_building","form":"training_workshop","title":"Regional workshop on data","start_date":"2019-03-01","end_date":"2019-03-03","states":["MEX"],"objectives":[1,3],"principles":[9]}`},
	"partnerships":      {`{"partner":"ECLAC","category":"un_regional_commission","nature":"data","since":"2018-01-01"}`, `{"partner":"ECLAC","category":"un_regional_commission","nature":"data and training","since":"2018-01-01"}`},
	"submissions":       {`{"forum":"gfmd","title":"Outcome","date":"2018-12-05"}`, `{"forum":"imrf","title":"Outcome","date":"2022-05-17","url":"https://example.org/o"}`},
	"hindering-factors": {`{"factor":"no_mandate"}`, `{"factor":"no_mandate","description":"no mandate yet"}`},
	"resources":         {`{"kind":"human","description":"Secretariat staff time"}`, `{"kind":"financial","description":"Trust fund"}`},
	"expansions":        {`{"entity":"CARICOM","modality":"observership"}`, `{"entity":"CARICOM","modality":"membership"}`},
}

func (s *stack) mustOK(t testing.TB, r response, want int) map[string]any {
	t.Helper()
	if r.Status != want {
		t.Fatalf("status %d, want %d: %s", r.Status, want, r.Body)
	}
	return r.json(t)
}

func TestEveryRecordTypeRoundTrips(t *testing.T) {
	s := newStack(t)
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX"}`, nil), 201)
	for _, rt := range recordTypes {
		t.Run(rt.segment, func(t *testing.T) {
			bodies := recordBodies[rt.segment]
			base := "/v1/iscms/puebla-process/" + rt.segment
			w := s.mustOK(t, s.do(t, "POST", base, s.secret2, bodies[0], nil), 201)
			id, pos := w["id"].(string), uint64(w["position"].(float64))
			got := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("%s/%s?min_position=%d", base, id, pos), s.secret2, "", nil), 200)
			if got["status"] != "draft" || got["kind"] != rt.kind || got["source"].(map[string]any)["type"] != "manual" {
				t.Fatalf("created record = %v", got)
			}
			assertSubset(t, bodies[0], got["record"])
			// Anonymous callers do not see drafts.
			if r := s.do(t, "GET", base+"/"+id, "", "", nil); r.Status != 404 {
				t.Fatalf("anonymous read of a draft: %d", r.Status)
			}
			// Revise needs If-Match; with it the new content replaces the old.
			if r := s.do(t, "PUT", base+"/"+id, s.secret2, bodies[1], nil); r.Status != http.StatusPreconditionRequired {
				t.Fatalf("revise without If-Match: %d", r.Status)
			}
			s.mustOK(t, s.do(t, "PUT", base+"/"+id, s.secret2, bodies[1], map[string]string{"If-Match": fmt.Sprintf(`"%d"`, pos)}), 200)
			s.mustOK(t, s.do(t, "POST", base+"/"+id+"/submit", s.secret2, "", nil), 200)
			// A secretariat cannot publish; an admin can.
			if r := s.do(t, "POST", base+"/"+id+"/publish", s.secret2, "", nil); r.Status != 403 {
				t.Fatalf("secretariat publishing: %d", r.Status)
			}
			w = s.mustOK(t, s.do(t, "POST", base+"/"+id+"/publish", s.admin, `{"note":"approved"}`, nil), 200)
			pos = uint64(w["position"].(float64))
			got = s.mustOK(t, s.do(t, "GET", fmt.Sprintf("%s/%s?min_position=%d", base, id, pos), "", "", nil), 200)
			if got["status"] != "published" || got["published_at"] == nil {
				t.Fatalf("published record = %v", got)
			}
			assertSubset(t, bodies[1], got["record"])
			h := s.mustOK(t, s.do(t, "GET", base+"/"+id+"/history", s.admin, "", nil), 200)
			items := h["items"].([]any)
			var types []string
			for _, it := range items {
				e := it.(map[string]any)
				types = append(types, e["type"].(string))
				if e["actor"] == "" {
					t.Errorf("history entry without actor: %v", e)
				}
			}
			want := []string{rt.kind + ".recorded", rt.kind + ".revised", "record.submitted", "record.published"}
			if strings.Join(types, ",") != strings.Join(want, ",") {
				t.Fatalf("history = %v, want %v", types, want)
			}
			// It is listed, and filterable.
			l := s.mustOK(t, s.do(t, "GET", "/v1/"+rt.segment+"?iscm=puebla-process", "", "", nil), 200)
			if n := len(l["items"].([]any)); n != 1 {
				t.Fatalf("public list has %d items, want 1", n)
			}
			// Withdrawn: gone from the public, and frozen.
			w = s.mustOK(t, s.do(t, "POST", base+"/"+id+"/withdraw", s.secret2, `{"note":"duplicate"}`, nil), 200)
			before := s.last(t)
			if r := s.do(t, "POST", base+"/"+id+"/publish", s.admin, "", nil); r.Status != 409 {
				t.Fatalf("publishing a withdrawn record: %d %s", r.Status, r.Body)
			}
			if r := s.do(t, "PUT", base+"/"+id, s.secret2, bodies[0], map[string]string{"If-Match": fmt.Sprintf(`"%d"`, uint64(w["version"].(float64)))}); r.Status != 409 {
				t.Fatalf("revising a withdrawn record: %d %s", r.Status, r.Body)
			}
			if s.last(t) != before {
				t.Fatal("a refused transition appended an event")
			}
			l = s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/iscms/puebla-process/%s?min_position=%d", rt.segment, uint64(w["position"].(float64))), "", "", nil), 200)
			if n := len(l["items"].([]any)); n != 0 {
				t.Fatalf("withdrawn record still listed publicly (%d items)", n)
			}
		})
	}
}

// assertSubset checks that every field of the body sent is in the stored
// record with the same value.
func assertSubset(t *testing.T, sent string, stored any) {
	t.Helper()
	var want map[string]any
	if err := json.Unmarshal([]byte(sent), &want); err != nil {
		t.Fatal(err)
	}
	got := stored.(map[string]any)
	for k, v := range want {
		wj, _ := json.Marshal(v)
		gj, _ := json.Marshal(got[k])
		if k == "milestones" {
			continue // ids are filled in
		}
		if string(wj) != string(gj) {
			t.Errorf("field %s: stored %s, sent %s", k, gj, wj)
		}
	}
}

func TestActionPlanMilestoneProgress(t *testing.T) {
	s := newStack(t)
	base := "/v1/iscms/puebla-process/action-plans"
	w := s.mustOK(t, s.do(t, "POST", base, s.secret2, recordBodies["action-plans"][0], nil), 201)
	id := w["id"].(string)
	s.mustOK(t, s.do(t, "POST", base+"/"+id+"/milestones/m2/progress", s.secret2, `{"progress":"in_progress","on":"2020-06-01","note":"drafting"}`, nil), 201)
	w = s.mustOK(t, s.do(t, "POST", base+"/"+id+"/milestones/m2/progress", s.secret2, `{"progress":"achieved","on":"2020-09-01"}`, nil), 201)
	got := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("%s/%s?min_position=%d", base, id, uint64(w["position"].(float64))), s.admin, "", nil), 200)
	ms := got["milestones"].([]any)
	if len(ms) != 1 || ms[0].(map[string]any)["progress"] != "achieved" || ms[0].(map[string]any)["id"] != "m2" {
		t.Fatalf("milestones = %v", ms)
	}
	if r := s.do(t, "POST", base+"/"+id+"/milestones/m9/progress", s.secret2, `{"progress":"achieved"}`, nil); r.Status != 404 {
		t.Fatalf("unknown milestone: %d", r.Status)
	}
	if r := s.do(t, "POST", base+"/"+id+"/milestones/m1/progress", s.secret2, `{"progress":"done"}`, nil); r.Status != 422 {
		t.Fatalf("bad progress: %d", r.Status)
	}
}

func TestPositionIsOnePerISCM(t *testing.T) {
	s := newStack(t)
	w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/positions", s.secret2, `{"status":"yes"}`, nil), 201)
	if w["id"] != "puebla-process" {
		t.Fatalf("position id %v, want the ISCM slug", w["id"])
	}
	r := s.do(t, "POST", "/v1/iscms/puebla-process/positions", s.secret2, `{"status":"no"}`, nil)
	if r.Status != 409 || !strings.Contains(string(r.Body), "revise") {
		t.Fatalf("second position: %d %s", r.Status, r.Body)
	}
}

func TestRecordBadInput(t *testing.T) {
	s := newStack(t)
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX"}`, nil), 201)
	w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities", s.secret2, recordBodies["activities"][0], nil), 201)
	id := w["id"].(string)
	s.mustOK(t, s.do(t, "POST", "/v1/iscms/puebla-process/activities/"+id+"/withdraw", s.secret2, "", nil), 200)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		field                           string
	}{
		{"unknown ISCM", "POST", "/v1/iscms/nope/activities", s.admin, `{"kind":"data_exchange","title":"x"}`, 404, "nope"},
		{"objective 24", "POST", "/v1/iscms/puebla-process/positions", s.secret2, `{"status":"yes","objectives":[24]}`, 422, "objectives[0]"},
		{"principle 0", "POST", "/v1/iscms/puebla-process/positions", s.secret2, `{"status":"yes","principles":[0]}`, 422, "principles[0]"},
		{"theme T7", "POST", "/v1/iscms/puebla-process/positions", s.secret2, `{"status":"yes","themes":["T7"]}`, 422, "themes[0]"},
		{"status outside the enum", "POST", "/v1/iscms/puebla-process/positions", s.secret2, `{"status":"maybe"}`, 422, "status"},
		{"State not a member", "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"x","states":["FRA"]}`, 422, "states[0]"},
		{"end before start", "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"x","start_date":"2019-05-02","end_date":"2019-05-01"}`, 422, "end_date"},
		{"not an http URL", "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"data_exchange","title":"x","url":"javascript:alert(1)"}`, 422, "url"},
		{"form outside the enum", "POST", "/v1/iscms/puebla-process/activities", s.secret2, `{"kind":"capacity_building","form":"party","title":"x"}`, 422, "form"},
		{"category outside the enum", "POST", "/v1/iscms/puebla-process/partnerships", s.secret2, `{"partner":"x","category":"friends"}`, 422, "category"},
		{"bad date", "POST", "/v1/iscms/puebla-process/submissions", s.secret2, `{"forum":"gfmd","title":"x","date":"2019-02-30"}`, 400, "date"},
		{"unknown field", "POST", "/v1/iscms/puebla-process/resources", s.secret2, `{"kind":"human","description":"x","amount":3}`, 400, "amount"},
		{"server-owned field", "POST", "/v1/iscms/puebla-process/resources", s.secret2, `{"kind":"human","description":"x","status":"published"}`, 400, "status"},
		{"publish a withdrawn record", "POST", "/v1/iscms/puebla-process/activities/" + id + "/publish", s.admin, "", 409, "withdrawn"},
		{"submit a withdrawn record", "POST", "/v1/iscms/puebla-process/activities/" + id + "/submit", s.secret2, "", 409, "withdrawn"},
		{"record of another ISCM", "POST", "/v1/iscms/sacm/activities", s.secret2, `{"kind":"data_exchange","title":"x"}`, 403, "puebla-process"},
		{"monitor cannot write", "POST", "/v1/iscms/sacm/activities", s.monitor, `{"kind":"data_exchange","title":"x"}`, 403, "admin"},
		{"questionnaire without channel", "PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", s.secret2, `{"agenda_item":"yes"}`, 422, "channel"},
		{"questionnaire channel mismatch", "PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", s.secret2, `{"channel":"interview"}`, 422, "channel"},
		{"questionnaire bad cycle", "PUT", "/v1/iscms/puebla-process/questionnaires/18/questionnaire", s.secret2, `{"channel":"questionnaire"}`, 404, "cycle"},
		{"questionnaire objective 24", "PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", s.secret2, `{"channel":"questionnaire","position":{"status":"yes","objectives":[24]}}`, 422, "position.objectives[0]"},
		{"questionnaire comment key", "PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire", s.secret2, `{"channel":"questionnaire","_comment":"x"}`, 400, "_comment"},
		{"bad list filter", "GET", "/v1/activities?objective=24", "", "", 400, "objective"},
		{"bad cursor", "GET", "/v1/activities?cursor=zzz", "", "", 400, "cursor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.last(t)
			r := s.do(t, tc.method, tc.path, tc.token, tc.body, nil)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			if r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("Content-Type %q", r.Header.Get("Content-Type"))
			}
			if !strings.Contains(string(r.Body), tc.field) {
				t.Errorf("problem does not name %q: %s", tc.field, r.Body)
			}
			if s.last(t) != before {
				t.Errorf("stream moved from %d to %d", before, s.last(t))
			}
		})
	}
}

func exampleResponse(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("../../events/catalog/data/questionnaire-response.example.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k := range m {
		if strings.HasPrefix(k, "_") {
			delete(m, k)
		}
	}
	out, _ := json.Marshal(m)
	return string(out)
}

func TestQuestionnaireDerivesRecordsAndResubmissionReplacesThem(t *testing.T) {
	s := newStack(t)
	path := "/v1/iscms/puebla-process/questionnaires/2018/questionnaire"
	w := s.mustOK(t, s.do(t, "PUT", path, s.secret2, exampleResponse(t), nil), 200)
	pos := uint64(w["position"].(float64))
	if s.last(t) != pos {
		t.Fatal("the questionnaire was not stored as one event")
	}
	list := func(segment string) []any {
		l := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/iscms/puebla-process/%s?source=questionnaire&min_position=%d", segment, pos), s.admin, "", nil), 200)
		return l["items"].([]any)
	}
	counts := map[string]int{}
	for _, rt := range recordTypes {
		counts[rt.segment] = len(list(rt.segment))
	}
	want := map[string]int{"positions": 1, "agenda-items": 1, "stocktakings": 1, "action-plans": 1, "activities": 4,
		"partnerships": 2, "submissions": 1, "hindering-factors": 0, "resources": 1, "expansions": 1}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s derived: %d, want %d", k, counts[k], v)
		}
	}
	pos0 := list("positions")[0].(map[string]any)
	src := pos0["source"].(map[string]any)
	if src["type"] != "questionnaire" || src["cycle"].(float64) != 2018 || src["channel"] != "questionnaire" || pos0["status"] != "submitted" {
		t.Fatalf("derived position = %v", pos0)
	}
	if obj := pos0["record"].(map[string]any)["objectives"].([]any); len(obj) != 7 {
		t.Fatalf("derived objectives = %v", obj)
	}
	// The engagement summary reflects the answers.
	prof := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/iscms/puebla-process?min_position=%d", pos), s.admin, "", nil), 200)
	eng := prof["engagement"].(map[string]any)
	if eng["position"].(map[string]any)["status"] != "yes" || eng["action_plan"].(map[string]any)["status"] != "already_done" {
		t.Fatalf("engagement = %v", eng)
	}
	// Nothing is public before IOM publishes the answers.
	if l := s.mustOK(t, s.do(t, "GET", "/v1/activities?iscm=puebla-process", "", "", nil), 200); len(l["items"].([]any)) != 0 {
		t.Fatal("unpublished questionnaire records are public")
	}
	w = s.mustOK(t, s.do(t, "POST", path+"/publish", s.admin, "", nil), 200)
	l := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("/v1/activities?iscm=puebla-process&min_position=%d", uint64(w["position"].(float64))), "", "", nil), 200)
	if len(l["items"].([]any)) != 4 {
		t.Fatalf("published questionnaire activities: %d, want 4", len(l["items"].([]any)))
	}
	// A re-submission replaces the derived records (history kept).
	resub := `{"channel":"questionnaire","position":{"status":"in_process","objectives":[3]},"agenda_item":"planned","capacity_building":[{"title":"Only one now","form":"information_note"}]}`
	w = s.mustOK(t, s.do(t, "PUT", path, s.secret2, resub, nil), 200)
	pos = uint64(w["position"].(float64))
	if n := len(list("activities")); n != 1 {
		t.Fatalf("after re-submission: %d activities, want 1", n)
	}
	if n := len(list("partnerships")); n != 0 {
		t.Fatalf("after re-submission: %d partnerships, want 0", n)
	}
	p := list("positions")[0].(map[string]any)
	if p["record"].(map[string]any)["status"] != "in_process" || p["status"] != "published" {
		t.Fatalf("re-submitted position = %v", p)
	}
	q := s.mustOK(t, s.do(t, "GET", fmt.Sprintf("%s?min_position=%d", path, pos), "", "", nil), 200)
	if q["answers"].(map[string]any)["agenda_item"] != "planned" {
		t.Fatalf("GET answers = %v", q)
	}
	h := s.mustOK(t, s.do(t, "GET", path+"/history", s.admin, "", nil), 200)
	if n := len(h["items"].([]any)); n != 3 {
		t.Fatalf("questionnaire history has %d entries, want 3 (answered, published, answered)", n)
	}
	tl := s.mustOK(t, s.do(t, "GET", "/v1/iscms/puebla-process/timeline?limit=2", s.admin, "", nil), 200)
	if len(tl["items"].([]any)) != 2 || tl["next_cursor"] == nil {
		t.Fatalf("timeline page = %v", tl)
	}
	tl2 := s.mustOK(t, s.do(t, "GET", "/v1/iscms/puebla-process/timeline?limit=2&cursor="+tl["next_cursor"].(string), s.admin, "", nil), 200)
	if len(tl2["items"].([]any)) != 1 {
		t.Fatalf("timeline second page = %v", tl2)
	}
}

func TestKeysetPaginationVisitsEveryRecordOnce(t *testing.T) {
	s := newStack(t)
	const n = 23
	var last uint64
	for i := range n {
		w := s.mustOK(t, s.do(t, "POST", "/v1/iscms/cmc/resources", s.admin, fmt.Sprintf(`{"kind":"human","description":"item %d"}`, i), nil), 201)
		last = uint64(w["position"].(float64))
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("pagination does not end")
		}
		url := fmt.Sprintf("/v1/resources?limit=5&min_position=%d", last)
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		page := s.mustOK(t, s.do(t, "GET", url, s.admin, "", nil), 200)
		for _, it := range page["items"].([]any) {
			id := it.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("record %s listed twice", id)
			}
			seen[id] = true
		}
		c, _ := page["next_cursor"].(string)
		if c == "" {
			break
		}
		cursor = c
	}
	if len(seen) != n {
		t.Fatalf("pages listed %d records, want %d", len(seen), n)
	}
}
