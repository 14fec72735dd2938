package reports

import (
	"iter"
	"slices"
)

// Records are a snapshot's records, held in chunks of recordChunk. A
// snapshot never changes once read, and is shared by every request that
// reads it; the live snapshot refreshed after a write shares with the one
// before it every chunk in which nothing changed. A refresh after one
// write at a million events then copies one chunk, not the whole list.
//
// Every chunk but the last is full, so record i is in chunk i/recordChunk.
type Records struct {
	chunks [][]Record
	n      int
}

// recordChunk records make a chunk: 328 KiB, a Record's own fields being
// 328 bytes (what its strings and slices point to is held apart).
const recordChunk = 1024

// NewRecords holds a copy of rs, in chunks of its own: a chunk a later
// edit replaces is then freed with the last snapshot that holds it, which
// it would not be as part of one array holding every record.
func NewRecords(rs []Record) Records {
	out := Records{n: len(rs), chunks: make([][]Record, 0, (len(rs)+recordChunk-1)/recordChunk)}
	for i := 0; i < len(rs); i += recordChunk {
		c := make([]Record, min(recordChunk, len(rs)-i), recordChunk)
		copy(c, rs[i:])
		out.chunks = append(out.chunks, c)
	}
	return out
}

// buildRecords starts an empty list to add to: records read one by one go
// straight into chunks, not into one array as large as them all.
func buildRecords() *recordsEdit { return Records{}.edit() }

// Len is the number of records.
func (rs Records) Len() int { return rs.n }

// All yields each record, in the list's order. The records are shared with
// every other reader of the snapshot: they are to be read, not changed.
func (rs Records) All() iter.Seq[*Record] {
	return func(yield func(*Record) bool) {
		for _, c := range rs.chunks {
			for i := range c {
				if !yield(&c[i]) {
					return
				}
			}
		}
	}
}

// Slice is a copy of the records in one slice.
func (rs Records) Slice() []Record {
	out := make([]Record, 0, rs.n)
	for _, c := range rs.chunks {
		out = append(out, c...)
	}
	return out
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

// set replaces record i.
func (e *recordsEdit) set(i int, r Record) { e.chunk(i / recordChunk)[i%recordChunk] = r }

// add appends r.
func (e *recordsEdit) add(r Record) {
	ci := e.n / recordChunk
	if ci == len(e.chunks) {
		e.chunks, e.own = append(e.chunks, make([]Record, 0, recordChunk)), append(e.own, true)
	}
	e.chunks[ci] = append(e.chunk(ci), r)
	e.n++
}

// chunk is chunk ci, copied first unless this edit made or copied it.
func (e *recordsEdit) chunk(ci int) []Record {
	if !e.own[ci] {
		c := make([]Record, len(e.chunks[ci]), recordChunk)
		copy(c, e.chunks[ci])
		e.chunks[ci], e.own[ci] = c, true
	}
	return e.chunks[ci]
}
