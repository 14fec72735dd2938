package reports

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"gcmtrack/events"
)

func testRecords() []Record {
	d := func(s string) events.Date {
		t, err := time.Parse(time.DateOnly, s)
		if err != nil {
			panic(err)
		}
		return events.DateOf(t)
	}
	return []Record{
		{ISCM: "a", Kind: events.KindActivity, ID: "1", Status: events.StatusPublished, Source: "manual", Subkind: "capacity_building", From: d("2019-05-01"), Objectives: []int{3, 7}, Pos: 10},
		{ISCM: "a", Kind: events.KindActivity, ID: "2", Status: events.StatusSubmitted, Source: "manual", Subkind: "peer_exchange", From: d("2021-01-02"), Objectives: []int{3, 99}, Pos: 11},
		{ISCM: "a", Kind: events.KindActivity, ID: "3", Status: events.StatusDraft, Source: "manual", Subkind: "peer_exchange", From: d("2022-01-02"), Pos: 12},
		{ISCM: "a", Kind: events.KindPartnership, ID: "4", Status: events.StatusPublished, Source: "manual", Category: "igo", Pos: 13},
		{ISCM: "a", Kind: events.KindSubmission, ID: "5", Status: events.StatusPublished, Source: "manual", Subkind: "imrf", Title: "Statement", RecordedAt: time.Date(2022, 3, 1, 0, 0, 0, 0, time.UTC), Pos: 14},
		{ISCM: "a", Kind: events.KindPosition, ID: "a", Status: events.StatusPublished, Source: "manual", Subkind: "yes", Objectives: []int{1}, Pos: 15},
		{ISCM: "a", Kind: events.KindPosition, ID: "q#position", Status: events.StatusPublished, Source: "questionnaire", Subkind: "no", Cycle: 2018, Pos: 30},
		{ISCM: "b", Kind: events.KindPosition, ID: "b", Status: events.StatusSubmitted, Source: "manual", Subkind: "in_process", Pos: 16},
		{ISCM: "b", Kind: events.KindAgendaItem, ID: "x", Status: events.StatusPublished, Source: "manual", Subkind: "standard", Pos: 17},
		{ISCM: "b", Kind: events.KindAgendaItem, ID: "y", Status: events.StatusPublished, Source: "manual", Subkind: "planned", Pos: 18},
		{ISCM: "b", Kind: events.KindActivity, ID: "6", Status: events.StatusPublished, Source: "manual", Subkind: "capacity_building", Pos: 19},
	}
}

func tallyOf(rs []Record) *Tally {
	e := newTally().edit()
	for i := range rs {
		e.add(&rs[i], 1)
	}
	return e.Tally
}

func TestTallyCountsWhatReportsRead(t *testing.T) {
	snap := Snapshot{Tally: tallyOf(testRecords())}
	pub, iom := Scope{}, Scope{IncludeSubmitted: true}

	if got := snap.Current(events.KindPosition, pub); got["a"].ID != "a" || len(got) != 1 {
		t.Errorf("public positions: %+v, want a's hand-made one only", got)
	}
	if got := snap.Current(events.KindPosition, iom); got["b"].Subkind != "in_process" || got["a"].ID != "a" {
		t.Errorf("IOM positions: %+v", got)
	}
	if got := snap.Current(events.KindAgendaItem, pub); got["b"].ID != "y" {
		t.Errorf("agenda item: %+v, want the most recently changed (y)", got)
	}
	acts := snap.ActivityObjectives(iom)
	if !acts["a"][3] || !acts["a"][7] || !acts["a"][99] || len(acts["a"]) != 3 || acts["b"] == nil || len(acts["b"]) != 0 {
		t.Errorf("IOM activity objectives: %v", acts)
	}
	if got := snap.ActivityObjectives(pub)["a"]; got[99] || !got[7] {
		t.Errorf("public activity objectives of a: %v", got)
	}
	if got := snap.KindCounts(iom)["a"]; got[events.KindActivity] != 2 || got[events.KindPartnership] != 1 || got[events.KindPosition] != 2 {
		t.Errorf("IOM kinds of a: %v (a draft never counts)", got)
	}
	if got := snap.LatestActivity(pub)["a"].String(); got != "2019-05-01" {
		t.Errorf("public latest activity of a: %s", got)
	}
	if got := snap.LatestActivity(iom)["a"].String(); got != "2021-01-02" {
		t.Errorf("IOM latest activity of a: %s", got)
	}
	if _, ok := snap.LatestActivity(pub)["b"]; ok {
		t.Error("b's only activity has no date, yet it has a latest one")
	}
}

func TestTallyTakesAwayWhatItAdded(t *testing.T) {
	rs := testRecords()
	full := tallyOf(rs)
	before := full.String()
	e := full.edit()
	for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(len(rs)) {
		e.add(&rs[i], -1)
	}
	if full.String() != before {
		t.Fatal("taking records away from an edit changed the tally it was made from")
	}
	if len(e.groups) != 0 || len(e.current) != 0 || e.records != 0 {
		t.Errorf("every record taken away, yet the tally holds:\n%s", e.String())
	}
	// What was current is stale: the next one must be read again.
	for _, k := range []currentKey{{false, "a", events.KindPosition}, {true, "b", events.KindPosition}, {false, "b", events.KindAgendaItem}} {
		if !e.stale[k] {
			t.Errorf("%v not stale after its current record was taken away", k)
		}
	}
}

func TestTallyKeepsTheCurrentRecordWhenAnotherGoes(t *testing.T) {
	rs := testRecords()
	e := tallyOf(rs).edit()
	e.add(&rs[8], -1) // b's agenda item x; y is current
	if e.stale[currentKey{false, "b", events.KindAgendaItem}] || e.current[currentKey{false, "b", events.KindAgendaItem}].ID != "y" {
		t.Errorf("taking away a record that is not current changed the current one: %+v", e.current)
	}
	// x revised: it comes back changed later than y, and is current.
	x := rs[8]
	x.Pos, x.Subkind = 40, "one_off"
	e.add(&x, 1)
	if got := e.current[currentKey{false, "b", events.KindAgendaItem}]; got.ID != "x" || got.Subkind != "one_off" {
		t.Errorf("revised agenda item not current: %+v", got)
	}
}

func TestTallyRepairTakesTheBetterOfWhatWasAddedAndTheRest(t *testing.T) {
	rs := testRecords()
	// Published records are current in both scopes: both go stale.
	keys := []currentKey{{false, "b", events.KindAgendaItem}, {true, "b", events.KindAgendaItem}}
	for _, c := range []struct {
		name    string
		added   uint64 // Pos of x added back after y went; 0: none
		restPos uint64 // Pos of the record rest returns; 0: none
		want    string
	}{
		{"added is better", 40, 17, "x@40"},
		{"rest is better", 20, 35, "rest@35"},
		{"only rest", 0, 17, "rest@17"},
		{"only added", 40, 0, "x@40"},
		{"neither", 0, 0, ""},
	} {
		e := tallyOf(rs).edit()
		e.add(&rs[8], -1) // x
		e.add(&rs[9], -1) // y, the current one
		if !e.stale[keys[0]] || !e.stale[keys[1]] {
			t.Fatalf("%s: the current agenda item went, yet it is not stale in each scope: %v", c.name, e.stale)
		}
		if c.added > 0 {
			x := rs[8]
			x.Pos = c.added
			e.add(&x, 1)
		}
		err := e.repair(func(got currentKey) (*Record, error) {
			if got != keys[0] && got != keys[1] {
				t.Errorf("%s: repair asked for %v", c.name, got)
			}
			if c.restPos == 0 {
				return nil, nil
			}
			return &Record{ISCM: "b", Kind: events.KindAgendaItem, ID: "rest", Status: events.StatusPublished, Source: "manual", Pos: c.restPos}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			got := ""
			if r, ok := e.current[k]; ok {
				got = fmt.Sprintf("%s@%d", r.ID, r.Pos)
			}
			if got != c.want || len(e.stale) != 0 {
				t.Errorf("%s, %v: current %q (stale %v), want %q", c.name, k, got, e.stale, c.want)
			}
		}
	}
}

func TestTallyCopiesOnlyTheGroupsAnEditChanges(t *testing.T) {
	rs := testRecords()
	full := tallyOf(rs)
	e := full.edit()
	e.add(&rs[0], -1)
	changed := groupKey{stPublished, "a", events.KindActivity, 2019}
	if _, ok := e.groups[changed]; ok {
		t.Error("the group of the only record taken away is still there")
	}
	if full.groups[changed] == nil || full.groups[changed].n != 1 {
		t.Error("the edit changed the group of the tally it was made from")
	}
	same := groupKey{stPublished, "a", events.KindPartnership, 0}
	if e.groups[same] != full.groups[same] {
		t.Error("a group the edit did not change was copied")
	}
	if s := e.String(); strings.Contains(s, "capacity_building:1] objectives map[3:1 7:1]") {
		t.Errorf("the edit still counts the record taken away:\n%s", s)
	}
}
