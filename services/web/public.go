package web

import (
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gcmtrack/events"
	"gcmtrack/projections/reports"
)

// snapshot reads the data a page shows: live, or as of the date the
// visitor picked (the end of that day, UTC).
func (s *Server) snapshot(r *http.Request) (reports.Snapshot, string, error) {
	ctx := r.Context()
	if v := r.URL.Query().Get("as_of"); v != "" {
		d, err := events.ParseDate(v)
		if err != nil {
			return reports.Snapshot{}, "", &errPage{http.StatusBadRequest, "The date must be YYYY-MM-DD."}
		}
		pos, err := s.d.PositionAt(ctx, d.Time().Add(24*time.Hour-time.Nanosecond))
		if err != nil {
			return reports.Snapshot{}, "", err
		}
		have, err := s.d.Reports.Position(ctx)
		if err != nil {
			return reports.Snapshot{}, "", err
		}
		snap, err := s.d.Reports.AsOf(ctx, min(pos, have))
		return snap, d.String(), err
	}
	snap, err := s.d.Reports.Live(ctx)
	return snap, "", err
}

// memo computes what a page shows once per snapshot and scope (see
// reports.Store.Memo); the result is shared, so a page that changes it
// changes a copy.
func memo[T any](s *Server, key string, snap reports.Snapshot, sc reports.Scope, compute func() T) T {
	return s.d.Reports.Memo(fmt.Sprintf("web:%s:%t", key, sc.IncludeSubmitted), snap, func() any { return compute() }).(T)
}

// asOf is the date picker's state on every report page.
type asOf struct {
	Date     string
	Position uint64
	Scope    string
}

func (s *Server) asOfOf(snap reports.Snapshot, date string, u *user) asOf {
	sc := s.t("scope.public")
	if u.IOM() {
		sc = s.t("scope.iom")
	}
	return asOf{Date: date, Position: snap.Position, Scope: sc}
}

// iscmRow is one ISCM at a glance.
type iscmRow struct {
	Slug, Name, Short, Kind, Region           string
	Members, Observers                        int
	Position, Agenda, Stocktaking, ActionPlan string
	Activities, Partnerships                  int
	LastActivity                              string
}

// overview computes every ISCM's status at a glance from a snapshot.
func (s *Server) overview(snap reports.Snapshot, sc reports.Scope) []iscmRow {
	cur := func(kind string) map[string]reports.Record { return snap.Current(kind, sc) }
	pos, ag, st, ap := cur(events.KindPosition), cur(events.KindAgendaItem), cur(events.KindStocktaking), cur(events.KindActionPlan)
	rows := map[string]*iscmRow{}
	for _, i := range s.d.Catalog.ISCMs {
		rows[i.Slug] = &iscmRow{Slug: i.Slug, Name: i.Name, Short: i.ShortName, Kind: i.Kind, Region: i.Region,
			Position: pos[i.Slug].Subkind, Agenda: ag[i.Slug].Subkind, Stocktaking: st[i.Slug].Subkind, ActionPlan: ap[i.Slug].Subkind}
	}
	for _, m := range snap.Memberships {
		if r := rows[m.ISCM]; r != nil {
			if m.Status == events.StatusMember {
				r.Members++
			} else {
				r.Observers++
			}
		}
	}
	latest := snap.LatestActivity(sc)
	for iscm, kinds := range snap.KindCounts(sc) {
		if r := rows[iscm]; r != nil {
			r.Activities, r.Partnerships = kinds[events.KindActivity], kinds[events.KindPartnership]
			r.LastActivity = latest[iscm].String()
		}
	}
	out := make([]iscmRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Short < out[j].Short })
	return out
}

// sortRows orders the overview by a column the visitor picked.
func sortRows(rows []iscmRow, by string, desc bool) {
	key := func(r iscmRow) string {
		switch by {
		case "kind":
			return r.Kind
		case "region":
			return r.Region
		case "position":
			return r.Position
		case "agenda":
			return r.Agenda
		case "plan":
			return r.ActionPlan
		case "members":
			return fmt.Sprintf("%05d", r.Members)
		case "activities":
			return fmt.Sprintf("%05d", r.Activities)
		case "partnerships":
			return fmt.Sprintf("%05d", r.Partnerships)
		case "last":
			return r.LastActivity
		}
		return strings.ToLower(r.Short)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if desc {
			return key(rows[i]) > key(rows[j])
		}
		return key(rows[i]) < key(rows[j])
	})
}

type overviewPage struct {
	AsOf   asOf
	Rows   []iscmRow
	Sort   string
	Desc   bool
	Public bool
}

func (s *Server) overviewData(r *http.Request, u *user) (overviewPage, error) {
	snap, date, err := s.snapshot(r)
	if err != nil {
		return overviewPage{}, err
	}
	// Sorted in place below: a copy of the kept rows.
	rows := slices.Clone(memo(s, "overview", snap, u.scope(), func() []iscmRow { return s.overview(snap, u.scope()) }))
	by, desc := r.URL.Query().Get("sort"), r.URL.Query().Get("dir") == "desc"
	sortRows(rows, by, desc)
	return overviewPage{AsOf: s.asOfOf(snap, date, u), Rows: rows, Sort: by, Desc: desc}, nil
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	d, err := s.overviewData(r, u)
	if err != nil {
		return view{}, err
	}
	d.Public = true
	return view{Template: "home", Title: s.t("app.name"), Data: d}, nil
}

func (s *Server) iscmPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	slug := r.PathValue("slug")
	if _, ok := s.d.Catalog.ISCM(slug); !ok {
		return view{}, s.notFound()
	}
	prof, sum, sections, err := s.iscmRecords(r.Context(), u, slug, true)
	if err != nil {
		return view{}, err
	}
	return view{Template: "iscm", Title: prof.ShortName, Data: map[string]any{"Profile": prof, "Summary": sum, "Sections": sections, "CanWrite": u.CanWrite(slug)}}, nil
}

func (s *Server) figuresPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	cycle := 2018
	if v := r.URL.Query().Get("cycle"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2000 || n > 2100 {
			return view{}, &errPage{http.StatusBadRequest, "The cycle must be a year such as 2018."}
		}
		cycle = n
	}
	snap, date, err := s.snapshot(r)
	if err != nil {
		return view{}, err
	}
	f := memo(s, fmt.Sprintf("figures:%d", cycle), snap, u.scope(), func() reports.Figures { return reports.ComputeFigures(snap, s.d.Catalog, cycle, u.scope()) })
	charts := figureCharts(s, f)
	return view{Template: "figures", Title: s.t("figures.title"), Data: map[string]any{"AsOf": s.asOfOf(snap, date, u), "Figures": f, "Charts": charts, "Cycle": cycle}}, nil
}

// figureChart is one chart with its table.
type figureChart struct {
	Title string
	Bars  []bar
}

func figureCharts(s *Server, f reports.Figures) []figureChart {
	c2 := figureChart{Title: s.t("figures.f2"), Bars: []bar{
		{"yes", f.Figure2.Yes.Count, strings.Join(f.Figure2.Yes.ISCMs, ", ")},
		{"no", f.Figure2.No.Count, strings.Join(f.Figure2.No.ISCMs, ", ")},
		{"in process", f.Figure2.InProcess.Count, strings.Join(f.Figure2.InProcess.ISCMs, ", ")},
		{"without a position, planning to refine", f.Figure2.WithoutPositionRefining.Count, strings.Join(f.Figure2.WithoutPositionRefining.ISCMs, ", ")},
	}}
	c3 := figureChart{Title: s.t("figures.f3")}
	for _, o := range f.Figure3.Objectives {
		c3.Bars = append(c3.Bars, bar{"Objective " + o.ID + ": " + o.Title, o.Count.Count, strings.Join(o.ISCMs, ", ")})
	}
	c4 := figureChart{Title: s.t("figures.f4")}
	for _, a := range []string{"yes", "planned", "no", "not_known"} {
		sp := f.Figure4.ByAnswer[a]
		c4.Bars = append(c4.Bars,
			bar{a + ", with a position", sp.WithPosition.Count, strings.Join(sp.WithPosition.ISCMs, ", ")},
			bar{a + ", without a position", sp.WithoutPosition.Count, strings.Join(sp.WithoutPosition.ISCMs, ", ")})
	}
	c5 := figureChart{Title: s.t("figures.f5")}
	for _, a := range []string{"yes", "already_done", "no", "not_known"} {
		c := f.Figure5.ByAnswer[a]
		c5.Bars = append(c5.Bars, bar{strings.ReplaceAll(a, "_", " "), c.Count, strings.Join(c.ISCMs, ", ")})
	}
	c7 := figureChart{Title: s.t("figures.f7")}
	for _, fm := range f.Figure7.ByForm {
		c7.Bars = append(c7.Bars, bar{strings.ReplaceAll(fm.Form, "_", " "), fm.Count.Count, strings.Join(fm.ISCMs, ", ")})
	}
	c8 := figureChart{Title: s.t("figures.f8")}
	c8.Bars = append(c8.Bars, bar{"with any partnership", f.Figure8.WithPartnerships.Count, strings.Join(f.Figure8.WithPartnerships.ISCMs, ", ")})
	for _, c := range f.Figure8.ByCategory {
		c8.Bars = append(c8.Bars, bar{strings.ReplaceAll(c.Category, "_", " "), c.Count.Count, strings.Join(c.ISCMs, ", ")})
	}
	return []figureChart{c2, c3, c4, c5, c7, c8}
}

// figuresCSV serves every chart's numbers as CSV.
func (s *Server) figuresCSV(w http.ResponseWriter, r *http.Request) error {
	u, err := s.current(r)
	if err != nil {
		return err
	}
	cycle, err := strconv.Atoi(r.URL.Query().Get("cycle"))
	if err != nil || cycle < 2000 || cycle > 2100 {
		cycle = 2018
	}
	snap, _, err := s.snapshot(r)
	if err != nil {
		return err
	}
	f := memo(s, fmt.Sprintf("figures:%d", cycle), snap, u.scope(), func() reports.Figures { return reports.ComputeFigures(snap, s.d.Catalog, cycle, u.scope()) })
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="figures-%d.csv"`, cycle))
	return writeChartsCSV(w, figureCharts(s, f))
}

func (s *Server) objectivesPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	snap, date, err := s.snapshot(r)
	if err != nil {
		return view{}, err
	}
	o := memo(s, "objectives", snap, u.scope(), func() reports.Objectives { return reports.ComputeObjectives(snap, s.d.Catalog, u.scope()) })
	heat := memo(s, "objectives-map", snap, u.scope(), func() template.HTML { return s.objectivesMap(snap, u.scope()) })
	return view{Template: "objectives", Title: s.t("objectives.title"), Data: map[string]any{
		"AsOf": s.asOfOf(snap, date, u), "Objectives": o, "Map": heat}}, nil
}

// objectivesMap draws the objectives x ISCMs map: each ISCM's current
// position and action plan, and its activities, per objective.
func (s *Server) objectivesMap(snap reports.Snapshot, sc reports.Scope) template.HTML {
	pos, plan := snap.Current(events.KindPosition, sc), snap.Current(events.KindActionPlan, sc)
	acts := snap.ActivityObjectives(sc)
	has := func(ob int, list []int) bool {
		for _, x := range list {
			if x == ob {
				return true
			}
		}
		return false
	}
	var cols, slugs []string
	for _, i := range s.d.Catalog.ISCMs {
		cols, slugs = append(cols, i.ShortName), append(slugs, i.Slug)
	}
	var rows []string
	cells := make([][]heatCell, len(s.d.Catalog.Objectives))
	for i, ob := range s.d.Catalog.Objectives {
		rows = append(rows, strconv.Itoa(ob.ID))
		cells[i] = make([]heatCell, len(slugs))
		for j, slug := range slugs {
			cells[i][j] = heatCell{Position: has(ob.ID, pos[slug].Objectives), Plan: has(ob.ID, plan[slug].Objectives), Activities: acts[slug][ob.ID]}
		}
	}
	return heatMap(s.t("objectives.title"), rows, cols, cells)
}

func (s *Server) statesPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	snap, date, err := s.snapshot(r)
	if err != nil {
		return view{}, err
	}
	st := memo(s, "states", snap, u.scope(), func() reports.States { return reports.ComputeStates(snap, s.d.Catalog, u.scope(), false) })
	st.Items = slices.Clone(st.Items) // sorted in place below
	max := 0
	for _, it := range st.Items {
		if it.ISCMCount > max {
			max = it.ISCMCount
		}
	}
	switch r.URL.Query().Get("sort") {
	case "name":
		sort.SliceStable(st.Items, func(i, j int) bool { return st.Items[i].Name < st.Items[j].Name })
	case "position":
		sort.SliceStable(st.Items, func(i, j int) bool { return st.Items[i].WithPosition > st.Items[j].WithPosition })
	}
	type row struct {
		reports.StateProgress
		Meter any
	}
	rows := make([]row, len(st.Items))
	for i, it := range st.Items {
		rows[i] = row{it, meter(it.ISCMCount, max)}
	}
	return view{Template: "states", Title: s.t("states.title"), Data: map[string]any{"AsOf": s.asOfOf(snap, date, u), "Rows": rows, "Count": len(rows)}}, nil
}

func (s *Server) recommendationsPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	snap, date, err := s.snapshot(r)
	if err != nil {
		return view{}, err
	}
	rec := memo(s, "recommendations", snap, u.scope(), func() reports.Recommendations {
		return reports.ComputeRecommendations(snap, s.d.Catalog, u.scope())
	})
	return view{Template: "recommendations", Title: s.t("rec.title"), Data: map[string]any{"AsOf": s.asOfOf(snap, date, u), "Rec": rec}}, nil
}

func (s *Server) reviewPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	id := r.URL.Query().Get("cycle")
	if id == "" {
		id = "imrf-2026"
	}
	cy, err := events.ParseCycle(id)
	if err != nil {
		return view{}, &errPage{http.StatusBadRequest, err.Error()}
	}
	snap, date, err := s.snapshot(r)
	if err != nil {
		return view{}, err
	}
	region := r.URL.Query().Get("region")
	rv := memo(s, fmt.Sprintf("review:%s:%q", cy.ID, region), snap, u.scope(), func() reports.Review {
		return reports.ComputeReview(snap, s.d.Catalog, cy, region, u.scope())
	})
	states, err := s.d.RecordsQ.Cycles(r.Context())
	if err != nil {
		return view{}, err
	}
	return view{Template: "review", Title: s.t("review.title"), Data: map[string]any{"AsOf": s.asOfOf(snap, date, u), "Review": rv,
		"Cycles": events.Cycles(2030), "Closed": states, "Regions": []string{"Africa", "Americas", "Asia", "Europe", "Middle East", "Pacific", "Global"}}}, nil
}
