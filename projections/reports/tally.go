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
//     partnerships), by objective addressed and, for submissions, by
//     "forum: title";
//   - per scope, ISCM and standing kind (position, agenda item,
//     stocktaking, action plan), the record that says where the ISCM
//     stands now (Snapshot.Current);
//   - per counted status and ISCM, the latest activity's date.
//
// Its size follows the catalog and the years records are dated in, not
// the number of records, so what a process serving reports holds does not
// grow with the log.
//
// A tally is built by adding records one by one as they are read, and
// changed by taking away the earlier versions of the records that changed
// and adding their new ones. Taking away the current standing record, or
// the latest activity, leaves the next one unknown: the entry is marked
// stale and read again from the records table (tallyEdit.repair). A Tally
// is shared by the readers of its snapshot and never changes once built;
// an edit copies what it changes.
type Tally struct {
	records int // of any status
	groups  map[groupKey]*group
	current map[currentKey]Record
	latest  map[latestKey]int32 // days since 1970 (events.Date.UnixDays)
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
}

type currentKey struct {
	iom        bool // Scope.IncludeSubmitted
	iscm, kind string
}

type latestKey struct {
	status uint8
	iscm   string
}

// standing are the kinds a Current record is kept for.
var standing = map[string]bool{events.KindPosition: true, events.KindAgendaItem: true, events.KindStocktaking: true, events.KindActionPlan: true}

func newTally() *Tally {
	return &Tally{groups: map[groupKey]*group{}, current: map[currentKey]Record{}, latest: map[latestKey]int32{}}
}

func yearOf(d events.Date) int {
	if d.IsZero() {
		return 0
	}
	return d.Time().Year()
}

func (g *group) label(r *Record) string {
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
	return &c
}

// tallyEdit changes a copy of a tally: the maps are copied, and a group is
// copied the first time the edit changes it.
type tallyEdit struct {
	*Tally
	owned       map[*group]bool
	stale       map[currentKey]bool
	staleLatest map[latestKey]bool
}

func (t *Tally) edit() *tallyEdit {
	return &tallyEdit{
		Tally:       &Tally{records: t.records, groups: maps.Clone(t.groups), current: maps.Clone(t.current), latest: maps.Clone(t.latest)},
		owned:       map[*group]bool{},
		stale:       map[currentKey]bool{},
		staleLatest: map[latestKey]bool{},
	}
}

// add counts r in (d = 1) or takes it away (d = -1). A record taken away
// must be the version that was added.
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
	g.labels = bump(g.labels, g.label(r), d)
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
	if r.Kind == events.KindActivity && !dated.IsZero() {
		e.setLatest(latestKey{st, r.ISCM}, dated.UnixDays(), d)
	}
}

func (e *tallyEdit) setCurrent(k currentKey, r *Record, d int) {
	if e.stale[k] {
		return
	}
	cur, ok := e.current[k]
	if d > 0 {
		if !ok || better(r, &cur) {
			c := *r
			c.Objectives = slices.Clone(r.Objectives)
			e.current[k] = c
		}
		return
	}
	if ok && cur.ID == r.ID {
		delete(e.current, k)
		e.stale[k] = true
	}
}

func (e *tallyEdit) setLatest(k latestKey, day int32, d int) {
	if e.staleLatest[k] {
		return
	}
	cur, ok := e.latest[k]
	if d > 0 {
		if !ok || day > cur {
			e.latest[k] = day
		}
		return
	}
	if ok && day == cur {
		delete(e.latest, k)
		e.staleLatest[k] = true
	}
}

// repair finds again the entries whose record was taken away, among the
// records pair yields: every record of one ISCM and kind, whatever its
// status, as the tally stands for (now, or as of a past position).
func (e *tallyEdit) repair(pair func(iscm, kind string, f func(*Record)) error) error {
	for k := range e.stale {
		sc := Scope{IncludeSubmitted: k.iom}
		var best *Record
		err := pair(k.iscm, k.kind, func(r *Record) {
			if sc.counts(r.Status) && (best == nil || better(r, best)) {
				best = r
			}
		})
		if err != nil {
			return fmt.Errorf("current %s of %s: %w", k.kind, k.iscm, err)
		}
		if best != nil {
			e.current[k] = *best
		}
	}
	for k := range e.staleLatest {
		var latest int32
		found := false
		err := pair(k.iscm, events.KindActivity, func(r *Record) {
			if d := r.Dated(); r.Status == statusNames[k.status] && !d.IsZero() && (!found || d.UnixDays() > latest) {
				latest, found = d.UnixDays(), true
			}
		})
		if err != nil {
			return fmt.Errorf("latest activity of %s: %w", k.iscm, err)
		}
		if found {
			e.latest[k] = latest
		}
	}
	clear(e.stale)
	clear(e.staleLatest)
	return nil
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
		lines = append(lines, fmt.Sprintf("group %s %s %s %d: %d labels %v objectives %v titles %v",
			statusNames[k.status], k.iscm, k.kind, k.year, g.n, g.labels, objs, g.titles))
	}
	for k, r := range t.current {
		lines = append(lines, fmt.Sprintf("current iom=%t %s %s: %s %s %s %d %s %v", k.iom, k.iscm, k.kind, r.ID, r.Status, r.Source, r.Pos, r.Subkind, r.Objectives))
	}
	for k, d := range t.latest {
		lines = append(lines, fmt.Sprintf("latest activity %s %s: %s", statusNames[k.status], k.iscm, events.DateOfUnixDays(d)))
	}
	sort.Strings(lines)
	return fmt.Sprintf("%d records\n", t.records) + strings.Join(lines, "\n")
}
