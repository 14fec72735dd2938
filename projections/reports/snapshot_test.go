package reports

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestKeepPastBoundsSnapshotsAndRecords(t *testing.T) {
	snap := func(records int) *Snapshot { return &Snapshot{Records: NewRecords(make([]Record, records))} }
	many := func(n, records int) []*Snapshot {
		out := make([]*Snapshot, n)
		for i := range out {
			out[i] = snap(records)
		}
		return out
	}
	for _, c := range []struct {
		name       string
		past       []*Snapshot
		live, want int
	}{
		{"small ones: at most pastSnapshots", many(12, 10), 100, pastSnapshots},
		{"within twice the live records", many(8, 50_000), 100_000, 4},
		{"the floor when the live snapshot is small", many(8, 10_000), 10, 2},
		{"the newest always, however large", many(3, 1_000_000), 10, 1},
		{"none to drop", many(2, 10), 10, 2},
	} {
		got := keepPast(c.past, c.live)
		if len(got) != c.want {
			t.Errorf("%s: kept %d, want %d", c.name, len(got), c.want)
		}
		for i := len(got); i < len(c.past); i++ {
			if c.past[:cap(c.past)][i] != nil {
				t.Errorf("%s: dropped snapshot %d still referenced", c.name, i)
			}
		}
	}
}

func TestInternerSharesShortValuesAndStaysBounded(t *testing.T) {
	in := &interner{m: map[string]string{}, ints: map[uint64][]int{}}
	newRecord := func() Record {
		r := Record{ISCM: strings.Clone("puebla-process")}
		r.Themes, r.Title = []string{strings.Clone("labour")}, strings.Repeat("t", internMax+1)
		return r
	}
	a, b := newRecord(), newRecord()
	in.record(&a)
	in.record(&b)
	if unsafe.StringData(a.ISCM) != unsafe.StringData(b.ISCM) || unsafe.StringData(a.Themes[0]) != unsafe.StringData(b.Themes[0]) {
		t.Error("equal short values are not shared")
	}
	if a.ISCM != "puebla-process" || b.Themes[0] != "labour" {
		t.Errorf("values changed: %q %q", a.ISCM, b.Themes[0])
	}
	if _, ok := in.m[a.Title]; ok {
		t.Error("a value longer than internMax was kept")
	}
	// A record's id and title are held in one allocation, values intact.
	r := Record{ID: strings.Clone("act-1")}
	r.Title = strings.Clone("Workshop")
	in.record(&r)
	if r.ID != "act-1" || r.Title != "Workshop" || unsafe.Pointer(unsafe.StringData(r.Title)) != unsafe.Add(unsafe.Pointer(unsafe.StringData(r.ID)), len(r.ID)) {
		t.Errorf("id %q and title %q not held together", r.ID, r.Title)
	}
	// Lists of numbers are shared whole when equal, in the same order.
	lists := func(objs ...int) Record {
		r := Record{}
		r.Objectives, r.Principles = slices.Clone(objs), []int{}
		return r
	}
	c, d, e, f := lists(3, 17), lists(3, 17), lists(17, 3), lists(3, 17, 0)
	for _, r := range []*Record{&c, &d, &e, &f} {
		in.record(r)
	}
	if &c.Objectives[0] != &d.Objectives[0] {
		t.Error("equal lists are not shared")
	}
	if &c.Objectives[0] == &e.Objectives[0] || &c.Objectives[0] == &f.Objectives[0] || e.Objectives[0] != 17 || len(f.Objectives) != 3 {
		t.Errorf("different lists are shared: %v %v", e.Objectives, f.Objectives)
	}
	if big := in.internInts([]int{1, 300}); len(in.ints) != 3 || big[1] != 300 {
		t.Errorf("a list of numbers over 255 was kept (%d lists kept)", len(in.ints))
	}
	for i := range internLimit + 10 {
		in.intern(fmt.Sprintf("v%d", i))
		in.internInts([]int{i % 200, i / 200})
	}
	if len(in.ints) != internLimit {
		t.Errorf("table holds %d lists, want at most %d", len(in.ints), internLimit)
	}
	if len(in.m) != internLimit {
		t.Errorf("table holds %d values, want at most %d", len(in.m), internLimit)
	}
}

func TestRefreshAnswersReplacesAndAddsWithoutChangingPrev(t *testing.T) {
	prev := []Answer{{ISCM: "a", ID: "2018/q", Status: "draft"}, {ISCM: "b", ID: "2018/q", Status: "published"}}
	if got := refreshAnswers(prev, nil); &got[0] != &prev[0] {
		t.Error("nothing changed, yet the answers were copied")
	}
	got := refreshAnswers(prev, []Answer{{ISCM: "a", ID: "2018/q", Status: "submitted"}, {ISCM: "a", ID: "2022/q", Status: "draft"}})
	if want := "[a 2018/q submitted] [b 2018/q published] [a 2022/q draft]"; answersText(got) != want {
		t.Errorf("refreshed: %s, want %s", answersText(got), want)
	}
	if want := "[a 2018/q draft] [b 2018/q published]"; answersText(prev) != want {
		t.Errorf("prev changed: %s, want %s", answersText(prev), want)
	}
}

func answersText(as []Answer) string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("[%s %s %s]", a.ISCM, a.ID, a.Status))
	}
	return strings.Join(out, " ")
}
