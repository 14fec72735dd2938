package reports

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"gcmtrack/events"
)

// Tally is what the reports count of the records, held as counts instead
// of the records themselves:
//   - per counted status, ISCM, kind and year (of Record.Dated), how many
//     records there are, by subkind (by partner category for
//     partnerships), by objective addressed, for submissions by "forum:
//     title" and for activities by day;
//   - per scope, ISCM and standing kind (position, agenda item,
//     stocktaking, action plan), the record that says where the ISCM
//     stands now (Snapshot.Current).
//
// Its size follows the catalog and the calendar (the years and days
// records are dated in), not the number of records, so what a process
// serving reports holds does not grow with the log.
//
// A tally is built by adding records one by one as they are read, and
// changed by taking away the earlier versions of the records that changed
// and adding their new ones. Taking away the current standing record
// leaves the next one unknown: the entry is marked stale and found again
// among the records added in the same edit and the best of the others,
// which the caller reads (tallyEdit.repair). A Tally is shared by the
// readers of its snapshot and never changes once built; an edit copies
// what it changes.
type Tally struct {
	records int // of any status
	groups  map[groupKey]*group
	current map[currentKey]Record
}

// Counted statuses: drafts and withdrawn records never count.
const (
	stPublished uint8 = iota
	stSubmitted
)

var statusNames = [...]string{stPublished: events.StatusPublished, stSubmitted: events.StatusSubmitted}

func statusIndex(s string) (uint8, bool) {
	switch s {
	case events.StatusPublished:
		return stPublished, true
	case events.StatusSubmitted:
		return stSubmitted, true
	}
	return 0, false
}

type groupKey struct {
	status     uint8
	iscm, kind string
	year       int // 0 when the record has no date
}

// group counts the records of one groupKey.
type group struct {
	n      int
	labels map[string]int // by subkind, or partner category
	objs   [24]int32      // by objective, 0–23
	more   map[int]int    // by objective, beyond 23
	titles map[string]int // submissions by "forum: title"
	days   *[366]int32    // activities by day of the year
}

type currentKey struct {
	iom        bool // Scope.IncludeSubmitted
	iscm, kind string
}

// standing are the kinds a Current record is kept for.
var standing = map[string]bool{events.KindPosition: true, events.KindAgendaItem: true, events.KindStocktaking: true, events.KindActionPlan: true}

func newTally() *Tally {
	return &Tally{groups: map[groupKey]*group{}, current: map[currentKey]Record{}}
}

func yearOf(d events.Date) int {
	if d.IsZero() {
		return 0
	}
	return d.Time().Year()
}

// labelOf is what a record is counted by within its group: its subkind,
// or its partner category for a partnership.
func labelOf(r *Record) string {
	if r.Kind == events.KindPartnership {
		return r.Category
	}
	return r.Subkind
}

// bump adds d to m[k], dropping the entry at zero, and returns m (made when
// nil).
func bump[K comparable](m map[K]int, k K, d int) map[K]int {
	if m == nil {
		m = map[K]int{}
	}
	if m[k] += d; m[k] == 0 {
		delete(m, k)
	}
	return m
}

func (g *group) clone() *group {
	c := *g
	c.labels, c.more, c.titles = maps.Clone(g.labels), maps.Clone(g.more), maps.Clone(g.titles)
	if g.days != nil {
		days := *g.days
		c.days = &days
	}
	return &c
}

// tallyEdit changes a copy of a tally: the maps are copied, and a group is
// copied the first time the edit changes it.
type tallyEdit struct {
	*Tally
	owned map[*group]bool
	// stale are the current entries whose record was taken away; found is
	// the best record added for each since.
	stale map[currentKey]bool
	found map[currentKey]Record
}

func (t *Tally) edit() *tallyEdit {
	return &tallyEdit{
		Tally: &Tally{records: t.records, groups: maps.Clone(t.groups), current: maps.Clone(t.current)},
		owned: map[*group]bool{},
		stale: map[currentKey]bool{},
		found: map[currentKey]Record{},
	}
}

// add counts r in (d = 1) or takes it away (d = -1). A record taken away
// must be the version that was added. An edit takes away before it adds.
func (e *tallyEdit) add(r *Record, d int) {
	e.records += d
	st, ok := statusIndex(r.Status)
	if !ok {
		return
	}
	dated := r.Dated()
	k := groupKey{st, r.ISCM, r.Kind, yearOf(dated)}
	g := e.groups[k]
	switch {
	case g == nil:
		g = &group{}
		e.groups[k] = g
		e.owned[g] = true
	case !e.owned[g]:
		g = g.clone()
		e.groups[k] = g
		e.owned[g] = true
	}
	g.n += d
	g.labels = bump(g.labels, labelOf(r), d)
	for _, o := range r.Objectives {
		if o >= 0 && o < len(g.objs) {
			g.objs[o] += int32(d)
		} else {
			g.more = bump(g.more, o, d)
		}
	}
	if r.Kind == events.KindSubmission {
		g.titles = bump(g.titles, r.Subkind+": "+r.Title, d)
	}
	if r.Kind == events.KindActivity && !dated.IsZero() {
		if g.days == nil {
			g.days = new([366]int32)
		}
		g.days[dated.Time().YearDay()-1] += int32(d)
	}
	if g.n == 0 {
		delete(e.groups, k)
	}
	if standing[r.Kind] {
		for _, iom := range []bool{false, true} {
			if (Scope{IncludeSubmitted: iom}).counts(r.Status) {
				e.setCurrent(currentKey{iom, r.ISCM, r.Kind}, r, d)
			}
		}
	}
}

func (e *tallyEdit) setCurrent(k currentKey, r *Record, d int) {
	if e.stale[k] {
		if f, ok := e.found[k]; d > 0 && (!ok || better(r, &f)) {
			e.found[k] = clone(r)
		}
		return
	}
	cur, ok := e.current[k]
	if d > 0 {
		if !ok || better(r, &cur) {
			e.current[k] = clone(r)
		}
		return
	}
	if ok && cur.ID == r.ID {
		delete(e.current, k)
		e.stale[k] = true
	}
}

func clone(r *Record) Record {
	c := *r
	c.Objectives = slices.Clone(r.Objectives)
	return c
}

// repair sets each stale entry to the better of the best record added to
// it since it went stale and rest(k): the best of the records the edit did
// not add, in k's scope, as the tally stands for (now, or as of a past
// position); nil when there is none.
func (e *tallyEdit) repair(rest func(k currentKey) (*Record, error)) error {
	for k := range e.stale {
		r, err := rest(k)
		if err != nil {
			return fmt.Errorf("current %s of %s: %w", k.kind, k.iscm, err)
		}
		if f, ok := e.found[k]; ok && (r == nil || better(&f, r)) {
			r = &f
		}
		if r != nil {
			e.current[k] = *r
		}
	}
	clear(e.stale)
	clear(e.found)
	return nil
}

// latestDay is the latest day of the year (0-based) g counts activities
// on, or -1.
func (g *group) latestDay() int {
	if g.days != nil {
		for d := len(g.days) - 1; d >= 0; d-- {
			if g.days[d] != 0 {
				return d
			}
		}
	}
	return -1
}

// groupsIn calls f for each group counted in the scope.
func (t *Tally) groupsIn(sc Scope, f func(k groupKey, g *group)) {
	for k, g := range t.groups {
		if sc.counts(statusNames[k.status]) {
			f(k, g)
		}
	}
}

// addressed calls f for each objective g's records address.
func (g *group) addressed(f func(o int)) {
	for o, n := range g.objs {
		if n != 0 {
			f(o)
		}
	}
	for o := range g.more {
		f(o)
	}
}

// String lists the tally's entries in a stable order, one a line.
func (t *Tally) String() string {
	if t == nil {
		return ""
	}
	var lines []string
	for k, g := range t.groups {
		objs := map[int]int{}
		for o, n := range g.objs {
			if n != 0 {
				objs[o] = int(n)
			}
		}
		maps.Copy(objs, g.more)
		days := map[int]int{}
		if g.days != nil {
			for d, n := range g.days {
				if n != 0 {
					days[d+1] = int(n)
				}
			}
		}
		lines = append(lines, fmt.Sprintf("group %s %s %s %d: %d labels %v objectives %v titles %v days %v",
			statusNames[k.status], k.iscm, k.kind, k.year, g.n, g.labels, objs, g.titles, days))
	}
	for k, r := range t.current {
		lines = append(lines, fmt.Sprintf("current iom=%t %s %s: %s %s %s %d %s %v", k.iom, k.iscm, k.kind, r.ID, r.Status, r.Source, r.Pos, r.Subkind, r.Objectives))
	}
	sort.Strings(lines)
	return fmt.Sprintf("%d records\n", t.records) + strings.Join(lines, "\n")
}
