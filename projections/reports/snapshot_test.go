package reports

import (
	"fmt"
	"strings"
	"testing"
)

func TestKeepPastKeepsTheMostRecentlyUsed(t *testing.T) {
	for _, n := range []int{1, pastSnapshots, pastSnapshots + 4} {
		past := make([]*Snapshot, n)
		for i := range past {
			past[i] = &Snapshot{Position: uint64(i)}
		}
		got := keepPast(past)
		if len(got) != min(n, pastSnapshots) {
			t.Errorf("%d snapshots: kept %d, want %d", n, len(got), min(n, pastSnapshots))
		}
		for i, p := range got {
			if p.Position != uint64(i) {
				t.Errorf("%d snapshots: kept #%d at position %d, want the first ones in order", n, i, p.Position)
			}
		}
		for i := len(got); i < n; i++ {
			if past[:cap(past)][i] != nil {
				t.Errorf("%d snapshots: dropped snapshot %d still referenced", n, i)
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
