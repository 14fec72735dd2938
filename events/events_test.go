package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func mustDate(s string) Date {
	d, err := ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

func yes() *bool { b := true; return &b }

// examples holds one payload of every registered type: the golden files lock
// their JSON, the public contract of the stream.
func examples() []Payload {
	act := Activity{Kind: "capacity_building", Form: "training_workshop", Title: "Regional workshop on migration data",
		StartDate: mustDate("2019-03-01"), EndDate: mustDate("2019-03-02"), States: []string{"GTM", "MEX"},
		Objectives: []int{1, 3}, Principles: []int{9}, Partners: []string{"IOM"}, URL: "https://example.org/w"}
	pos := Position{Status: "yes", Document: &Document{Title: "Declaration", URL: "https://example.org/d.pdf"},
		Meeting: &Meeting{Title: "XXII meeting", Date: mustDate("2017-11-16")}, PlansRefinement: yes(),
		Themes: []string{"T2"}, Principles: []int{2}, Objectives: []int{1, 23}, Pursuit: "Follow-up group"}
	agenda := AgendaItem{Meeting: Meeting{Title: "Vice-ministerial meeting", Date: mustDate("2019-06-12"), Place: "Guatemala City"}, Standing: "standard", Objectives: []int{1}}
	stock := Stocktaking{Status: "already_done", Document: &Document{Title: "Stocktaking"}}
	plan := ActionPlan{Status: "yes", Title: "Plan", PeriodFrom: mustDate("2020-01-01"), PeriodTo: mustDate("2022-12-31"),
		Objectives: []int{5}, Milestones: []Milestone{{ID: "m1", Title: "Adopt", Due: mustDate("2020-06-30")}}}
	part := Partnership{Partner: "ECLAC", Category: "un_regional_commission", Nature: "data", Since: mustDate("2018-01-01")}
	sub := Submission{Forum: "gfmd", Title: "Outcome", Date: mustDate("2018-12-05")}
	hf := HinderingFactor{Factor: "no_mandate", Description: "no mandate yet"}
	res := Resource{Kind: "human", Description: "Secretariat staff time"}
	exp := Expansion{Entity: "CARICOM", Modality: "observership"}
	return []Payload{
		ISCMRegistered{Slug: "puebla-process", Name: "Regional Conference on Migration", ShortName: "RCM (Puebla Process)", Kind: "rcp", Region: "Americas"},
		MemberJoined{State: "MEX", Status: StatusMember, Since: mustDate("1996-03-13")},
		MemberStatusChanged{State: "MEX", Status: StatusObserver, Since: mustDate("2020-01-01")},
		MemberLeft{State: "MEX", Until: mustDate("2021-01-01")},
		Recorded[Position]{pos}, Revised[Position]{pos},
		Recorded[AgendaItem]{agenda}, Revised[AgendaItem]{agenda},
		Recorded[Stocktaking]{stock}, Revised[Stocktaking]{stock},
		Recorded[ActionPlan]{plan}, Revised[ActionPlan]{plan},
		MilestoneProgressed{MilestoneID: "m1", Progress: "achieved", On: mustDate("2020-06-01")},
		Recorded[Activity]{act}, Revised[Activity]{act},
		Recorded[Partnership]{part}, Revised[Partnership]{part},
		Recorded[Submission]{sub}, Revised[Submission]{sub},
		Recorded[HinderingFactor]{hf}, Revised[HinderingFactor]{hf},
		Recorded[Resource]{res}, Revised[Resource]{res},
		Recorded[Expansion]{exp}, Revised[Expansion]{exp},
		CycleClosed{Cycle: "imrf-2026", Note: "report submitted"}, CycleReopened{Cycle: "imrf-2026", Note: "late correction"},
		RecordSubmitted{Note: "ready"}, RecordPublished{Note: "approved"}, RecordWithdrawn{Reason: "duplicate"},
		QuestionnaireAnswered{Cycle: 2018, Channel: ChannelQuestionnaire, Answers: Answers{Channel: ChannelQuestionnaire,
			SubmittedOn: mustDate("2018-11-09"), Position: &pos, AgendaItem: "yes", ActionPlan: &QActionPlan{Status: "already_done"},
			CapacityBuilding: []QActivity{{Title: "Technical secretariat", Form: "technical_secretariat"}},
			Partnerships:     []QPartnership{{Partner: "IOM", Category: "igo"}}, Submissions: []Submission{sub}}},
	}
}

func TestEveryTypeHasAGoldenExample(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range examples() {
		seen[p.EventType()] = true
	}
	for _, name := range Types() {
		if !seen[name] {
			t.Errorf("event type %s has no example in this test (and so no golden file)", name)
		}
	}
}

func TestEventJSONIsLockedByGoldenFiles(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, p := range examples() {
		t.Run(p.EventType(), func(t *testing.T) {
			env, err := New("puebla-process", "example", "id-1", p, at.Add(-time.Hour), at)
			if err != nil {
				t.Fatal(err)
			}
			env.ID = uuid.MustParse("01900000-0000-7000-8000-000000000001")
			env.Actor, env.CorrelationID = "token:00000000-0000-4000-8000-000000000000", "c-1"
			got, err := json.MarshalIndent(env, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", p.EventType()+".golden")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./events -update to create it)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(want), got) {
				t.Fatalf("encoding of %s changed; if intended, bump its schema version (with an upcaster) or run -update\n got: %s\nwant: %s", p.EventType(), got, want)
			}
			// The golden file decodes back to the same payload.
			back, err := Unmarshal(want)
			if err != nil {
				t.Fatal(err)
			}
			dec, err := Decode(back)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(dec, p) {
				t.Fatalf("round trip changed the payload:\n got %#v\nwant %#v", dec, p)
			}
		})
	}
}

// joinedV2 is a test type at schema version 2; version 1 lacked "status",
// which the upcaster fills in.
type joinedV2 struct {
	State  string `json:"state"`
	Status string `json:"status"`
}

func (joinedV2) EventType() string { return "test.joined" }

func TestUpcastersBringOldEventsToTheCurrentSchema(t *testing.T) {
	reg := buildRegistry([]definition{{payload: joinedV2{}, version: 2, upcasters: map[int]Upcaster{
		1: func(raw json.RawMessage) (json.RawMessage, error) {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				return nil, err
			}
			m["status"] = StatusMember
			return json.Marshal(m)
		},
	}}})
	old := Envelope{Type: "test.joined", SchemaVersion: 1, Payload: json.RawMessage(`{"state":"MEX"}`)}
	p, err := decodeWith(reg, old)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(joinedV2); got.Status != StatusMember || got.State != "MEX" {
		t.Fatalf("upcast = %+v", got)
	}
	future := Envelope{Type: "test.joined", SchemaVersion: 3, Payload: json.RawMessage(`{}`)}
	if _, err := decodeWith(reg, future); !errors.Is(err, ErrFutureSchema) {
		t.Fatalf("future schema: %v", err)
	}
	if _, err := Decode(Envelope{Type: "no.such", SchemaVersion: 1}); !errors.Is(err, ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
}

func TestUnmarshalRefusesIncompleteEnvelopes(t *testing.T) {
	_, err := Unmarshal([]byte(`{"type":"iscm.registered","payload":{}}`))
	if err == nil || !strings.Contains(err.Error(), "missing id") {
		t.Fatalf("incomplete envelope: %v", err)
	}
	if _, err := New("bad.tenant", KindISCM, "x", MemberLeft{}, time.Time{}, time.Now()); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a dot in a subject token: %v", err)
	}
}

func TestDerive(t *testing.T) {
	a := Answers{Position: &Position{Status: "no"}, AgendaItem: "planned",
		DataExchange:     []QActivity{{Title: "a"}},
		CapacityBuilding: []QActivity{{Title: "b", Form: "information_note"}},
		SDGPractices:     []string{"c"}, Partnerships: []QPartnership{{Partner: "IOM", Category: "igo"}},
		Expansion:        &QExpansion{Status: "yes", With: []QExpansionWith{{Entity: "X", Modality: "membership"}}},
		HinderingFactors: []string{"no_mandate"}}
	var parts []string
	for _, d := range a.Derive() {
		parts = append(parts, d.Part+":"+d.Content.RecordKind())
	}
	want := "position:position agenda_item:agenda_item activity-1:activity activity-2:activity activity-3:activity partnership-1:partnership expansion-1:expansion hindering_factor-1:hindering_factor"
	if strings.Join(parts, " ") != want {
		t.Fatalf("derived %v\nwant %s", parts, want)
	}
}

// TestUnmarshalCopiesThePayload: a decoded envelope owns its payload, so a
// reader may reuse the message buffer it decoded from.
func TestUnmarshalCopiesThePayload(t *testing.T) {
	env, err := New("puebla-process", KindISCM, "puebla-process", MemberJoined{State: "MEX", Status: StatusMember}, time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	want := string(got.Payload)
	for i := range data {
		data[i] = ' '
	}
	if string(got.Payload) != want {
		t.Fatalf("the payload changed with the buffer it was decoded from: %q", got.Payload)
	}
	if got.ISCM != "puebla-process" || got.Type != "iscm.member_joined" {
		t.Fatalf("decoded %+v", got)
	}
}

// A date kept as days since 1970 reads back as the same Date, the zero
// one and those before 1970 included.
func TestDateUnixDaysRoundTrip(t *testing.T) {
	for _, s := range []string{"1969-12-31", "1970-01-01", "1950-01-02", "2019-03-04", "2030-12-31"} {
		d, err := ParseDate(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := DateOfUnixDays(d.UnixDays()); got != d || got.String() != s {
			t.Errorf("%s: %d days read back as %s", s, d.UnixDays(), got)
		}
	}
	if d := DateOfUnixDays(Date{}.UnixDays()); d != (Date{}) || !d.IsZero() {
		t.Errorf("the zero date read back as %v", d)
	}
	if n := DateOf(time.Date(1970, 1, 2, 23, 0, 0, 0, time.UTC)).UnixDays(); n != 1 {
		t.Errorf("1970-01-02 is day %d", n)
	}
}
