package reports

import (
	"fmt"
	"strings"
	"testing"
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
