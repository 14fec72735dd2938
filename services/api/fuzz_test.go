package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/records"
)

// FuzzQuestionnaireBody feeds arbitrary bodies to the questionnaire's
// decoder and validator: whatever comes in, the answer is a 4xx problem or
// acceptance, never a panic or a 5xx.
func FuzzQuestionnaireBody(f *testing.F) {
	b, err := os.ReadFile("../../events/catalog/data/questionnaire-response.example.json")
	if err != nil {
		f.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		f.Fatal(err)
	}
	for k := range m {
		if strings.HasPrefix(k, "_") {
			delete(m, k)
		}
	}
	example, _ := json.Marshal(m)
	f.Add(example, 2018, "questionnaire")
	f.Add([]byte(`{"channel":"interview","position":{"status":"yes","objectives":[24,1,1]}}`), 2018, "interview")
	f.Add([]byte(`{"channel":"questionnaire","capacity_building":[{"title":"x","form":"party","date":"2019-02-30"}]}`), 2022, "questionnaire")
	f.Add([]byte(`[]`), 1999, "fax")
	cat := catalog.Default()
	members := map[string]string{"MEX": "member", "GTM": "observer"}
	f.Fuzz(func(t *testing.T, body []byte, cycle int, channel string) {
		var a events.Answers
		err := decodeAnswers(body, &a)
		if err == nil {
			err = records.ValidateAnswers(cat, members, cycle, channel, a)
		}
		if err == nil {
			return
		}
		if p := errProblem(err); p.Status < 400 || p.Status >= 500 {
			t.Fatalf("body %q answered %d: %v", body, p.Status, err)
		}
	})
}

// FuzzRecordBodies does the same for every record type's body.
func FuzzRecordBodies(f *testing.F) {
	for _, b := range recordBodies {
		f.Add(0, []byte(b[0]))
		f.Add(1, []byte(b[1]))
	}
	f.Add(4, []byte(`{"kind":"capacity_building","title":"x","states":["MEX","MEX","ZZZ"],"url":"ftp://x"}`))
	cat := catalog.Default()
	members := map[string]string{"MEX": "member"}
	f.Fuzz(func(t *testing.T, which int, body []byte) {
		if which < 0 {
			which = -which
		}
		rt := recordTypes[which%len(recordTypes)]
		err := refuseServerFields(body, rt.zero())
		var c events.Content
		if err == nil {
			c, err = rt.decode(body)
		}
		if err == nil {
			err = records.ValidateContent(cat, members, c)
		}
		if err == nil {
			return
		}
		if p := errProblem(err); p.Status < 400 || p.Status >= 500 {
			t.Fatalf("%s body %q answered %d: %v", rt.segment, body, p.Status, err)
		}
	})
}

// FuzzServeHTTP sends fuzzed requests through the whole server, on a real
// stack built once per fuzzing process: method, target (path and query),
// headers (one "Name: value" a line), a token chosen by its selector (none,
// admin, the two secretariats, monitor, an unknown one) and a body. Whatever
// comes in, the answer is never a 5xx, so never a panic (which the server
// answers 500), except 503 for a min_position the read models have not
// reached; every refusal is a problem document; every answer carries the
// security headers.
func FuzzServeHTTP(f *testing.F) {
	s := newStack(f, func(d *Deps) { d.WaitTimeout = 20 * time.Millisecond })
	// Objects for the seeds to act on.
	s.mustOK(f, s.do(f, "POST", "/v1/iscms/puebla-process/members", s.admin, `{"state":"MEX"}`, nil), 201)
	act := s.mustOK(f, s.do(f, "POST", "/v1/iscms/puebla-process/activities", s.secret2, recordBodies["activities"][0], nil), 201)["id"].(string)
	ct := "Content-Type: application/json"
	for _, seed := range []struct {
		method, target string
		token          uint8
		headers        string
		body           string
	}{
		{"GET", "/v1/catalog", 0, "", ""},
		{"GET", "/v1/activities?objective=3&limit=5&cursor=MTo", 4, "", ""},
		{"POST", "/v1/iscms/sacm/members", 1, ct + "\nIdempotency-Key: k1", `{"state":"ARG","status":"observer","since":"2019-01-01"}`},
		{"POST", "/v1/iscms/puebla-process/activities", 2, ct, recordBodies["activities"][0]},
		{"PUT", "/v1/iscms/puebla-process/activities/" + act, 2, ct + "\nIf-Match: \"1\"", recordBodies["activities"][1]},
		{"POST", "/v1/iscms/puebla-process/activities/" + act + "/submit", 3, ct, `{"note":"x"}`},
		{"PUT", "/v1/iscms/puebla-process/questionnaires/2018/questionnaire?draft=true", 2, ct, exampleResponse(f)},
		{"DELETE", "/v1/iscms/puebla-process/members/MEX", 1, "If-Match: W/\"x\"", ""},
		{"POST", "/v1/review-cycles/imrf-2026/close", 1, ct, `{"note":[[[[[[1]]]]]]}`},
		{"GET", "/v1/reports/figures?cycle=2018&as_of=2019-01-01", 5, "", ""},
		{"GET", "/v1/exports/activities.xlsx?from=2019-01-01&to=2018-01-01", 0, "", ""},
		{"GET", "/v1/feeds/published.atom?after=zz&kind=activities", 0, "X-Forwarded-For: 1.2.3.4", ""},
		{"GET", "/v1/audit?status=4xx&route=GET%20%2Fv1%2Fcatalog", 1, "", ""},
		{"PATCH", "/v1/iscms", 1, ct, "{}"},
		{"POST", "/v1/iscms/puebla-process/action-plans/x/milestones/m1/progress", 2, ct, `{"progress":"achieved","on":"2020-02-30"}`},
		{"GET", "/v1/iscms/puebla-process?min_position=18446744073709551615", 0, "Gcm-Min-Position: 1", ""},
	} {
		f.Add(seed.method, seed.target, seed.token, seed.headers, []byte(seed.body))
	}
	tokens := []string{"", s.admin, s.secret2, s.secret, s.monitor, "gcm_" + strings.Repeat("z", 43)}
	f.Fuzz(func(t *testing.T, method, target string, token uint8, headers string, body []byte) {
		req, ok := fuzzRequest(method, target, headers, body)
		if !ok {
			return // the HTTP server would not get this far
		}
		if tok := tokens[int(token)%len(tokens)]; tok != "" && req.Header.Get("Authorization") == "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec := httptest.NewRecorder()
		s.api.ServeHTTP(rec, req.WithContext(ctx))
		notReached := rec.Code == http.StatusServiceUnavailable && bytes.Contains(rec.Body.Bytes(), []byte("not-yet-visible"))
		if rec.Code >= 500 && !notReached {
			t.Fatalf("%s %q answered %d: %s", method, target, rec.Code, rec.Body)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" || rec.Header().Get("Content-Security-Policy") == "" {
			t.Fatalf("%s %q: security headers missing: %v", method, target, rec.Header())
		}
		if rec.Code >= 400 {
			var p Problem
			if rec.Header().Get("Content-Type") != "application/problem+json" || json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != rec.Code {
				t.Fatalf("%s %q answered %d without a problem document: %s", method, target, rec.Code, rec.Body)
			}
		}
	})
}

// fuzzRequest builds the request an HTTP/1.1 server would hand the handler,
// or reports that the server would refuse the input itself (an invalid
// method, target or header).
func fuzzRequest(method, target, headers string, body []byte) (*http.Request, bool) {
	if method == "" || len(method) > 20 || strings.ContainsFunc(method, func(r rune) bool { return !isTokenChar(r) }) {
		return nil, false
	}
	if len(target) > 8000 || !strings.HasPrefix(target, "/") || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	req := &http.Request{
		Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Host: "gcmtrack.test", RemoteAddr: "192.0.2.1:40000",
	}
	for line := range strings.Lines(headers) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		if !ok || k == "" || strings.ContainsFunc(k, func(r rune) bool { return !isTokenChar(r) }) ||
			strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
			continue
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	return req, true
}

// isTokenChar reports whether r may appear in an HTTP token (a method or a
// header name, RFC 9110 section 5.6.2).
func isTokenChar(r rune) bool {
	return r < 0x7f && r > ' ' && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
}
