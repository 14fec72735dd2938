package reports

import (
	"hash/maphash"
	"iter"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"gcmtrack/events"
)

// Records are a snapshot's records, held in chunks of recordChunk. A
// snapshot never changes once read, and is shared by every request that
// reads it; the live snapshot refreshed after a write shares with the one
// before it every chunk in which nothing changed. A refresh after one
// write at a million events then copies one chunk, not the whole list.
//
// A chunk holds its records packed, without pointers: the few distinct
// values most columns take (ISCMs, kinds, statuses, subkinds, lists of
// objectives…) as numbers into a table the process shares, ids and titles
// in one byte array per chunk. A chunk is then two objects the collector
// does not look into, however many records it holds, and a record takes
// its packed size (packedSize) plus its id and title. All reads a record
// back as a Record.
//
// Every chunk but the last is full, so record i is in chunk i/recordChunk.
type Records struct {
	chunks []*chunk
	n      int
}

// recordChunk records make a chunk.
const recordChunk = 1024

// chunk is up to recordChunk packed records. A chunk shared by a snapshot
// never changes: an edit copies it first (recordsEdit.chunk).
type chunk struct {
	recs []packed
	// text holds each record's id followed by its title, and is only ever
	// appended to: the strings All hands out point into it.
	text []byte
	// extra holds the values and lists the shared table does not (see
	// valueTable); rare, it is the only part of a chunk with pointers.
	extra      []string
	extraLists [][]int
}

// packed is a record in a chunk. The string columns and the objectives are
// refs (see ref); dates are days since 1970-01-01.
type packed struct {
	pos        uint64
	recordedAt int64 // Unix nanoseconds, noTime when unset
	text       uint32
	idLen      uint32
	titleLen   uint32
	iscm       ref
	kind       ref
	status     ref
	source     ref
	quest      ref
	subkind    ref
	category   ref
	objectives ref
	from       int32
	cycle      int32
}

// packedSize is a packed record's size in bytes.
const packedSize = unsafe.Sizeof(packed{})

const noTime = math.MinInt64

// ref names a value: 0 the empty one (or a nil list), n the shared table's
// value n-1, n|extraRef the chunk's extra value n.
type ref uint32

const extraRef ref = 1 << 31

// NewRecords holds a copy of rs.
func NewRecords(rs []Record) Records {
	e := buildRecords()
	for i := range rs {
		e.add(rs[i])
	}
	return e.Records
}

// buildRecords starts an empty list to add to: records read one by one go
// straight into chunks.
func buildRecords() *recordsEdit { return Records{}.edit() }

// Len is the number of records.
func (rs Records) Len() int { return rs.n }

// All yields each record, in the list's order. The Record yielded is read
// back from its chunk into one variable that the next record overwrites:
// a caller keeps a copy (*r), not the pointer. Its strings and lists are
// shared with every other reader: they are to be read, not changed.
func (rs Records) All() iter.Seq[*Record] {
	return func(yield func(*Record) bool) {
		t := values.view()
		var r Record
		for _, c := range rs.chunks {
			for i := range c.recs {
				c.read(i, t, &r)
				if !yield(&r) {
					return
				}
			}
		}
	}
}

// OfKind yields the records of one kind, as All does; the others are
// passed over without being read back. Every record of a kind names it the
// same way: by the table's ref if the table held the kind when the first
// of them was packed (it never drops a value), else from its chunk.
func (rs Records) OfKind(kind string) iter.Seq[*Record] {
	return func(yield func(*Record) bool) {
		k, inTable := values.lookup(kind)
		t := values.view()
		var r Record
		for _, c := range rs.chunks {
			for i := range c.recs {
				if p := c.recs[i].kind; inTable && p != k || !inTable && c.str(t, p) != kind {
					continue
				}
				c.read(i, t, &r)
				if !yield(&r) {
					return
				}
			}
		}
	}
}

// at is record i.
func (rs Records) at(i int) Record {
	var r Record
	rs.chunks[i/recordChunk].read(i%recordChunk, values.view(), &r)
	return r
}

// Slice is a copy of the records in one slice.
func (rs Records) Slice() []Record {
	out := make([]Record, 0, rs.n)
	for r := range rs.All() {
		out = append(out, *r)
	}
	return out
}

// read unpacks record i into r.
func (c *chunk) read(i int, t tableView, r *Record) {
	p := &c.recs[i]
	r.ISCM, r.Kind, r.Status = c.str(t, p.iscm), c.str(t, p.kind), c.str(t, p.status)
	r.Source, r.Questionnaire = c.str(t, p.source), c.str(t, p.quest)
	r.Subkind, r.Category = c.str(t, p.subkind), c.str(t, p.category)
	r.Objectives = c.list(t, p.objectives)
	r.ID, r.Title = c.textAt(p.text, p.idLen), c.textAt(p.text+p.idLen, p.titleLen)
	r.From = events.DateOfUnixDays(p.from)
	r.Cycle, r.Pos = int(p.cycle), p.pos
	if p.recordedAt == noTime {
		r.RecordedAt = time.Time{}
	} else {
		r.RecordedAt = time.Unix(0, p.recordedAt).UTC()
	}
}

func (c *chunk) str(t tableView, v ref) string {
	switch {
	case v == 0:
		return ""
	case v&extraRef != 0:
		return c.extra[v&^extraRef]
	}
	return t.strs[v-1]
}

func (c *chunk) list(t tableView, v ref) []int {
	switch {
	case v == 0:
		return nil
	case v&extraRef != 0:
		return c.extraLists[v&^extraRef]
	}
	return t.lists[v-1]
}

// textAt is a string of the chunk's text. The text is never changed where
// it was written, so the string can share its bytes.
func (c *chunk) textAt(off, n uint32) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&c.text[off], int(n))
}

// pack is r packed, its id, title and extra values added to the chunk.
func (c *chunk) pack(r *Record) packed {
	p := packed{
		pos: r.Pos, text: uint32(len(c.text)), idLen: uint32(len(r.ID)), titleLen: uint32(len(r.Title)),
		from: r.From.UnixDays(), cycle: int32(r.Cycle), recordedAt: noTime,
	}
	c.text = append(append(c.text, r.ID...), r.Title...)
	if !r.RecordedAt.IsZero() {
		p.recordedAt = r.RecordedAt.UnixNano()
	}
	strs := [...]string{r.ISCM, r.Kind, r.Status, r.Source, r.Questionnaire, r.Subkind, r.Category}
	refs := p.strRefs()
	list, inTable := values.refs(&strs, &refs, r.Objectives)
	for i, v := range strs {
		if *refs[i] == 0 && v != "" {
			c.extra = append(c.extra, v)
			*refs[i] = ref(len(c.extra)-1) | extraRef
		}
	}
	switch {
	case inTable:
		p.objectives = list
	case r.Objectives != nil:
		c.extraLists = append(c.extraLists, slices.Clone(r.Objectives))
		p.objectives = ref(len(c.extraLists)-1) | extraRef
	}
	return p
}

// strRefs are the refs of the record's string columns, in the order pack
// lists them.
func (p *packed) strRefs() [7]*ref {
	return [...]*ref{&p.iscm, &p.kind, &p.status, &p.source, &p.quest, &p.subkind, &p.category}
}

// copy is a copy of the chunk with room for recordChunk records, its text
// and extra values holding only what its records use.
func (c *chunk) copy() *chunk {
	out := &chunk{recs: make([]packed, len(c.recs), recordChunk), text: make([]byte, 0, len(c.text))}
	copy(out.recs, c.recs)
	for i := range out.recs {
		p := &out.recs[i]
		n := p.idLen + p.titleLen
		out.text = append(out.text, c.text[p.text:p.text+n]...)
		p.text = uint32(len(out.text)) - n
		for _, v := range p.strRefs() {
			if *v&extraRef != 0 {
				out.extra = append(out.extra, c.extra[*v&^extraRef])
				*v = ref(len(out.extra)-1) | extraRef
			}
		}
		if p.objectives&extraRef != 0 {
			out.extraLists = append(out.extraLists, c.extraLists[p.objectives&^extraRef])
			p.objectives = ref(len(out.extraLists)-1) | extraRef
		}
	}
	return out
}

// recordIndex finds a record of a list by its key. It holds a number per
// record, not the key's strings: the index of each key by its hash, with
// each hit checked against the record, and apart the rare keys whose hash
// another key has.
type recordIndex struct {
	at      map[uint64]int32
	collide map[recordKey]int32
}

var indexSeed = maphash.MakeSeed()

func newRecordIndex(n int) *recordIndex {
	return &recordIndex{at: make(map[uint64]int32, n), collide: map[recordKey]int32{}}
}

func (k recordKey) hash() uint64 {
	var h maphash.Hash
	h.SetSeed(indexSeed)
	h.WriteString(k.iscm)
	h.WriteByte(0)
	h.WriteString(k.kind)
	h.WriteByte(0)
	h.WriteString(k.id)
	return h.Sum64()
}

// is reports whether record i of rs has key k.
func (k recordKey) is(rs Records, i int) bool {
	r := rs.at(i)
	return r.ISCM == k.iscm && r.Kind == k.kind && r.ID == k.id
}

// get is where rs holds the record of key k.
func (x *recordIndex) get(rs Records, k recordKey) (int, bool) { return x.getAt(rs, k, k.hash()) }

// put notes that rs holds the record of key k at i.
func (x *recordIndex) put(rs Records, k recordKey, i int) { x.putAt(rs, k, k.hash(), i) }

func (x *recordIndex) getAt(rs Records, k recordKey, h uint64) (int, bool) {
	if i, ok := x.collide[k]; ok {
		return int(i), true
	}
	i, ok := x.at[h]
	if !ok || !k.is(rs, int(i)) {
		return 0, false
	}
	return int(i), true
}

func (x *recordIndex) putAt(rs Records, k recordKey, h uint64, i int) {
	if _, ok := x.collide[k]; ok {
		x.collide[k] = int32(i)
		return
	}
	if j, ok := x.at[h]; ok && !k.is(rs, int(j)) {
		x.collide[k] = int32(i)
		return
	}
	x.at[h] = int32(i)
}

// recordsEdit makes a new list from an old one, which stays as it was: a
// chunk is copied the first time the edit changes it.
type recordsEdit struct {
	Records
	own []bool // the chunks this edit made or copied
}

func (rs Records) edit() *recordsEdit {
	return &recordsEdit{Records: Records{chunks: slices.Clone(rs.chunks), n: rs.n}, own: make([]bool, len(rs.chunks))}
}

// set replaces record i. The chunk's text keeps the bytes of the id and
// title replaced until the chunk is next copied.
func (e *recordsEdit) set(i int, r Record) {
	c := e.chunk(i / recordChunk)
	c.recs[i%recordChunk] = c.pack(&r)
}

// add appends r.
func (e *recordsEdit) add(r Record) {
	ci := e.n / recordChunk
	if ci == len(e.chunks) {
		e.chunks, e.own = append(e.chunks, &chunk{recs: make([]packed, 0, recordChunk)}), append(e.own, true)
	}
	c := e.chunk(ci)
	c.recs = append(c.recs, c.pack(&r))
	e.n++
}

// chunk is chunk ci, copied first unless this edit made or copied it.
func (e *recordsEdit) chunk(ci int) *chunk {
	if !e.own[ci] {
		e.chunks[ci], e.own[ci] = e.chunks[ci].copy(), true
	}
	return e.chunks[ci]
}

// valueTable holds the values records share, for the whole process:
// strings up to internMax bytes and lists of objectives, each once, up to
// internLimit of each. Others are kept by the chunk of the record that
// has them (chunk.extra), so odd data cannot grow the table without bound.
// The table only grows; a reader takes a view of it (the values so far)
// without a lock.
type valueTable struct {
	mu     sync.Mutex
	strAt  map[string]ref
	listAt map[string]ref
	cur    atomic.Pointer[tableView]
}

// tableView is the values a table held at one moment.
type tableView struct {
	strs  []string
	lists [][]int
}

const (
	internMax   = 64
	internLimit = 1 << 16
)

var values = newValueTable()

func newValueTable() *valueTable {
	t := &valueTable{strAt: map[string]ref{}, listAt: map[string]ref{}}
	t.cur.Store(&tableView{})
	return t
}

// view is the table's values so far: every ref handed out before the call
// is in it.
func (t *valueTable) view() tableView { return *t.cur.Load() }

// lookup is the ref of v, if the table holds it.
func (t *valueTable) lookup(v string) (ref, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.strAt[v]
	return n, ok
}

// refs sets the ref of each of strs the table holds or can take, leaving
// the others 0, and says which is the list's, if the table holds it or
// can take it. Lists are keyed by their values, a byte each. One lock for
// a record's values.
func (t *valueTable) refs(strs *[7]string, refs *[7]*ref, list []int) (ref, bool) {
	var key [internMax]byte
	listOK := list != nil && len(list) <= internMax
	for i, x := range list {
		if !listOK || x < 0 || x > 255 {
			listOK = false
			break
		}
		key[i] = byte(x)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	next := *cur
	for i, v := range strs {
		if v == "" || len(v) > internMax {
			continue
		}
		if n, ok := t.strAt[v]; ok {
			*refs[i] = n
		} else if len(next.strs) < internLimit {
			next.strs = append(next.strs, v)
			*refs[i] = ref(len(next.strs))
			t.strAt[v] = *refs[i]
		}
	}
	var lr ref
	if listOK {
		k := key[:len(list)]
		if n, ok := t.listAt[string(k)]; ok {
			lr = n
		} else if len(next.lists) < internLimit {
			next.lists = append(next.lists, slices.Clip(slices.Clone(list)))
			lr = ref(len(next.lists))
			t.listAt[string(k)] = lr
		} else {
			listOK = false
		}
	}
	if len(next.strs) != len(cur.strs) || len(next.lists) != len(cur.lists) {
		grown := next
		t.cur.Store(&grown)
	}
	return lr, listOK
}
