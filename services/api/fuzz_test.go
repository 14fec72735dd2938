package api

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

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
