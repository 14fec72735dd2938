package reports

import (
	"fmt"
	"testing"
)

func numbered(from, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{ID: fmt.Sprint(from + i)}
	}
	return out
}

func ids(rs Records) []string {
	var out []string
	for r := range rs.All() {
		out = append(out, r.ID)
	}
	return out
}

func TestRecordsEditLeavesTheOldListAsItWas(t *testing.T) {
	n := 2*recordChunk + 10
	old := NewRecords(numbered(0, n))
	if old.Len() != n || len(old.chunks) != 3 {
		t.Fatalf("%d records in %d chunks, want %d in 3", old.Len(), len(old.chunks), n)
	}
	want := ids(old)

	e := old.edit()
	e.set(5, Record{ID: "five"})
	e.set(recordChunk+1, Record{ID: "second chunk"})
	added := recordChunk - 10 + 3 // fills the last chunk and starts a fourth
	for i := range added {
		e.add(Record{ID: fmt.Sprint("new ", i)})
	}
	got := e.Records

	if after := ids(old); fmt.Sprint(after) != fmt.Sprint(want) {
		t.Fatal("the edit changed the list it was made from")
	}
	if got.Len() != n+added || len(got.chunks) != 4 {
		t.Fatalf("edited: %d records in %d chunks, want %d in 4", got.Len(), len(got.chunks), n+added)
	}
	for i, c := range got.chunks[:3] {
		if len(c) != recordChunk {
			t.Errorf("chunk %d holds %d records: every chunk but the last is full", i, len(c))
		}
	}
	all := got.Slice()
	for i, w := range map[int]string{0: "0", 5: "five", recordChunk + 1: "second chunk", n - 1: fmt.Sprint(n - 1), n: "new 0", n + added - 1: fmt.Sprint("new ", added-1)} {
		if all[i].ID != w {
			t.Errorf("record %d is %q, want %q", i, all[i].ID, w)
		}
	}
	// Chunks nothing changed in are shared; those changed are not.
	if &got.chunks[1][0] == &old.chunks[1][0] || &got.chunks[0][0] == &old.chunks[0][0] {
		t.Error("a changed chunk is shared with the old list")
	}
	if e2 := old.edit(); &e2.chunks[1][0] != &old.chunks[1][0] {
		t.Error("an edit copied a chunk it did not change")
	}
}

func TestRecordsAllStopsWhenAsked(t *testing.T) {
	rs := NewRecords(numbered(0, 3*recordChunk))
	seen := 0
	for r := range rs.All() {
		if seen++; r.ID == fmt.Sprint(recordChunk+2) {
			break
		}
	}
	if seen != recordChunk+3 {
		t.Fatalf("read %d records before stopping, want %d", seen, recordChunk+3)
	}
	if empty := NewRecords(nil); empty.Len() != 0 || len(ids(empty)) != 0 || len(empty.Slice()) != 0 {
		t.Fatal("an empty list yields records")
	}
}

// A list holds its records in chunks of their own, each freed when no
// snapshot holds it any more, whether made from a slice or record by
// record.
func TestRecordsAreHeldInChunksOfTheirOwn(t *testing.T) {
	n := 2*recordChunk + 5
	in := numbered(0, n)
	copied := NewRecords(in)
	in[0].ID, in[recordChunk].ID = "changed", "changed"
	b := buildRecords()
	for _, r := range numbered(0, n) {
		b.add(r)
	}
	for name, rs := range map[string]Records{"NewRecords": copied, "built": b.Records} {
		got := ids(rs)
		if len(got) != n || got[0] != "0" || got[recordChunk] != fmt.Sprint(recordChunk) || got[n-1] != fmt.Sprint(n-1) {
			t.Errorf("%s: %d records, first %q, chunk 2's first %q", name, len(got), got[0], got[recordChunk])
		}
		if len(rs.chunks) != 3 {
			t.Fatalf("%s: %d chunks, want 3", name, len(rs.chunks))
		}
		for i, c := range rs.chunks {
			if cap(c) != recordChunk || (i < 2 && len(c) != recordChunk) {
				t.Errorf("%s: chunk %d holds %d of %d", name, i, len(c), cap(c))
			}
		}
	}
}
