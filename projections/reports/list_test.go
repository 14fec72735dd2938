package reports

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"gcmtrack/events"
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
		if len(c.recs) != recordChunk {
			t.Errorf("chunk %d holds %d records: every chunk but the last is full", i, len(c.recs))
		}
	}
	all := got.Slice()
	for i, w := range map[int]string{0: "0", 5: "five", recordChunk + 1: "second chunk", n - 1: fmt.Sprint(n - 1), n: "new 0", n + added - 1: fmt.Sprint("new ", added-1)} {
		if all[i].ID != w {
			t.Errorf("record %d is %q, want %q", i, all[i].ID, w)
		}
	}
	// Chunks nothing changed in are shared; those changed are not.
	if got.chunks[1] == old.chunks[1] || got.chunks[0] == old.chunks[0] {
		t.Error("a changed chunk is shared with the old list")
	}
	e2 := old.edit()
	e2.set(5, Record{ID: "five"})
	if e2.chunks[0] == old.chunks[0] || e2.chunks[1] != old.chunks[1] || e2.chunks[2] != old.chunks[2] {
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
			if cap(c.recs) != recordChunk || (i < 2 && len(c.recs) != recordChunk) {
				t.Errorf("%s: chunk %d holds %d of %d", name, i, len(c.recs), cap(c.recs))
			}
		}
	}
}

// A record reads back from its chunk as it was added, every field, the
// values the shared table does not take included, and still after the
// edits that copy its chunk.
func TestRecordsReadBackAsAdded(t *testing.T) {
	long := strings.Repeat("x", internMax+1)
	recorded := time.Date(2019, 3, 4, 5, 6, 7, 8, time.UTC)
	in := []Record{
		{ISCM: "puebla-process", Kind: "activity", ID: "a1", Status: "published", Source: "manual", Title: "Workshop on data",
			Subkind: "capacity_building", Category: "training_workshop", From: events.DateOf(recorded), Objectives: []int{1, 23},
			Pos: 1 << 40, RecordedAt: recorded},
		{ISCM: "colombo-process", Kind: "position", ID: "q-2019-position", Status: "submitted", Source: "questionnaire",
			Questionnaire: "2019-questionnaire", Cycle: 2019, Subkind: long, Category: long + "y", Objectives: []int{}},
		{ISCM: "x", Kind: "partnership", ID: "p", Title: long, From: events.DateOf(time.Date(1950, 1, 2, 0, 0, 0, 0, time.UTC)),
			Objectives: []int{1, 300, -1}},
		{},
	}
	check := func(what string, rs Records) {
		t.Helper()
		if got := rs.Slice(); !reflect.DeepEqual(got, in) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", what, got, in)
		}
	}
	rs := NewRecords(in)
	check("added", rs)
	objs := []int{1, 300}
	held := NewRecords([]Record{{Objectives: objs}})
	if objs[0] = 99; held.at(0).Objectives[0] != 1 {
		t.Error("a list the table does not take is shared with the record added")
	}
	if c := rs.chunks[0]; len(c.extra) != 2 || len(c.extraLists) != 1 {
		t.Errorf("the chunk holds %d values and %d lists apart, want 2 and 1 (those over %d bytes, the list with numbers over 255)", len(c.extra), len(c.extraLists), internMax)
	}
	e := rs.edit()
	e.set(3, Record{ID: "replaced", Title: "replaced too"})
	e.set(3, Record{})
	check("edited back", e.Records)
	// Each edit copies the chunk, holding only the text and extra values
	// its records use: a record set again and again does not grow it.
	var sizes []string
	for i := range 50 {
		e2 := e.Records.edit()
		r := in[1]
		r.Category, r.Objectives = long+fmt.Sprint(i%10), []int{1, 300 + i}
		e2.set(1, r)
		e = e2
		c := e.chunks[0]
		sizes = append(sizes, fmt.Sprint(len(c.text), len(c.extra), len(c.extraLists)))
	}
	if sizes[49] != sizes[1] {
		t.Errorf("the chunk grew with edits: %s after the second, %s after the 50th (text bytes, values and lists apart)", sizes[1], sizes[49])
	}
	e.set(1, in[1])
	check("edited 50 times", e.Records)
}

// A chunk's records hold no pointers, so the collector does not look into
// them however many there are.
func TestPackedRecordsHoldNoPointers(t *testing.T) {
	typ := reflect.TypeFor[packed]()
	for i := range typ.NumField() {
		switch f := typ.Field(i); f.Type.Kind() {
		case reflect.Bool, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		default:
			t.Errorf("packed.%s is a %s", f.Name, f.Type)
		}
	}
	if packedSize > 80 {
		t.Errorf("a packed record takes %d bytes", packedSize)
	}
}

// The shared table takes each value once, and no more than internLimit.
func TestValueTableSharesValuesAndStaysBounded(t *testing.T) {
	tb := newValueTable()
	refsOf := func(v string, list []int) (ref, ref, bool) {
		strs := [7]string{v}
		var r ref
		refs := [7]*ref{&r, new(ref), new(ref), new(ref), new(ref), new(ref), new(ref)}
		l, ok := tb.refs(&strs, &refs, list)
		return r, l, ok
	}
	a, la, oka := refsOf("puebla-process", []int{3, 17})
	b, lb, okb := refsOf(strings.Clone("puebla-process"), []int{3, 17})
	_, lc, okc := refsOf("", []int{17, 3})
	_, ld, okd := refsOf("", []int{})
	if a == 0 || a != b || !oka || !okb || la != lb {
		t.Errorf("equal values are not shared: %d %d, lists %d %d", a, b, la, lb)
	}
	if !okc || !okd || lc == la || ld == la || ld == lc {
		t.Errorf("different lists share a ref: %d %d %d", la, lc, ld)
	}
	v := tb.view()
	if v.strs[a-1] != "puebla-process" || !reflect.DeepEqual(v.lists[lc-1], []int{17, 3}) || v.lists[ld-1] == nil {
		t.Errorf("the table holds %q, %v, %v", v.strs[a-1], v.lists[lc-1], v.lists[ld-1])
	}
	if r, _, _ := refsOf(strings.Repeat("x", internMax+1), nil); r != 0 {
		t.Error("a value longer than internMax was taken")
	}
	if _, _, ok := refsOf("", []int{1, 300}); ok {
		t.Error("a list with a number over 255 was taken")
	}
	for i := range internLimit + 10 {
		refsOf(fmt.Sprint("v", i), []int{i % 200, i / 200 % 200, i / 40000})
	}
	if v := tb.view(); len(v.strs) != internLimit || len(v.lists) != internLimit {
		t.Errorf("the table holds %d values and %d lists, want at most %d", len(v.strs), len(v.lists), internLimit)
	}
	if r, _, ok := refsOf("one more", []int{9, 9, 9, 9}); r != 0 || ok {
		t.Error("a full table took a value")
	}
}

// The index finds records by key, keys whose hash another key has
// included, and finds no record for a key it was not given.
func TestRecordIndexFindsEveryKey(t *testing.T) {
	rs := NewRecords([]Record{{ISCM: "a", Kind: "k", ID: "1"}, {ISCM: "a", Kind: "k", ID: "2"}, {ISCM: "b", Kind: "k", ID: "1"}})
	x := newRecordIndex(3)
	keys := []recordKey{{"a", "k", "1"}, {"a", "k", "2"}, {"b", "k", "1"}}
	// The first two keys as if they had the same hash.
	x.putAt(rs, keys[0], 7, 0)
	x.putAt(rs, keys[1], 7, 1)
	x.putAt(rs, keys[1], 7, 1)
	x.put(rs, keys[2], 2)
	if len(x.collide) != 1 {
		t.Errorf("%d keys kept apart, want 1", len(x.collide))
	}
	get := func(k recordKey) (int, bool) {
		if k == keys[0] || k == keys[1] {
			return x.getAt(rs, k, 7)
		}
		return x.get(rs, k)
	}
	for i, k := range keys {
		if got, ok := get(k); !ok || got != i {
			t.Errorf("%v: %d %v, want %d", k, got, ok, i)
		}
	}
	if _, ok := x.get(rs, recordKey{"a", "k", "3"}); ok {
		t.Error("found a key that was not put")
	}
	// A key whose hash a record of another key has is not found.
	if _, ok := x.getAt(rs, recordKey{"c", "k", "9"}, 7); ok {
		t.Error("a hash hit on another record's key was taken as found")
	}
}

// OfKind yields the records of one kind and only those, in the list's
// order, whether the table or the chunk holds the kind's name.
func TestRecordsOfKind(t *testing.T) {
	long := "kind-" + strings.Repeat("k", internMax)
	var in []Record
	for i := range 3*recordChunk + 7 {
		kind := []string{"activity", "position", long}[i%3]
		in = append(in, Record{ISCM: "x", Kind: kind, ID: fmt.Sprint(i)})
	}
	rs := NewRecords(in)
	for _, kind := range []string{"activity", "position", long, "none"} {
		var got, want []string
		for r := range rs.OfKind(kind) {
			got = append(got, r.Kind+" "+r.ID)
		}
		for _, r := range in {
			if r.Kind == kind {
				want = append(want, r.Kind+" "+r.ID)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%.12s: %d records, want %d", kind, len(got), len(want))
		}
	}
	n := 0
	for range rs.OfKind("activity") {
		if n++; n == 5 {
			break
		}
	}
	if n != 5 {
		t.Errorf("stopped after %d records, want 5", n)
	}
}

// ActivityObjectives gathers, per ISCM, the objectives of its activities
// in scope, numbers beyond the bits it gathers most in included.
func TestActivityObjectives(t *testing.T) {
	snap := Snapshot{Records: NewRecords([]Record{
		{ISCM: "a", Kind: events.KindActivity, ID: "1", Status: events.StatusPublished, Objectives: []int{3, 17}},
		{ISCM: "a", Kind: events.KindActivity, ID: "2", Status: events.StatusPublished, Objectives: []int{17, 70}},
		{ISCM: "a", Kind: events.KindActivity, ID: "3", Status: events.StatusSubmitted, Objectives: []int{5}},
		{ISCM: "a", Kind: events.KindPosition, ID: "4", Status: events.StatusPublished, Objectives: []int{9}},
		{ISCM: "b", Kind: events.KindActivity, ID: "5", Status: events.StatusPublished, Objectives: []int{}},
		{ISCM: "c", Kind: events.KindActivity, ID: "6", Status: events.StatusDraft, Objectives: []int{1}},
	})}
	for _, c := range []struct {
		sc   Scope
		want string
	}{
		{Scope{}, "map[a:map[3:true 17:true 70:true] b:map[]]"},
		{Scope{IncludeSubmitted: true}, "map[a:map[3:true 5:true 17:true 70:true] b:map[]]"},
	} {
		if got := fmt.Sprint(snap.ActivityObjectives(c.sc)); got != c.want {
			t.Errorf("%+v: %s, want %s", c.sc, got, c.want)
		}
	}
}
