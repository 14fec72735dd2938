package reports

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
)

// Scope says which records a report counts: published ones for the public
// and secretariats; submitted and published ones for IOM. Drafts and
// withdrawn records never count.
type Scope struct {
	IncludeSubmitted bool
}

// Name describes the scope in a report.
func (s Scope) Name() string {
	if s.IncludeSubmitted {
		return "submitted and published records"
	}
	return "published records"
}

func (s Scope) counts(status string) bool {
	return status == events.StatusPublished || (s.IncludeSubmitted && status == events.StatusSubmitted)
}

// Count is a number with the ISCMs behind it, so a reader can check it.
type Count struct {
	Count int      `json:"count"`
	ISCMs []string `json:"iscms"`
}

func countOf(set map[string]bool) Count {
	return Count{Count: len(set), ISCMs: sortedKeys(set)}
}

// set is a set of ISCM slugs.
type set map[string]bool

func (s set) add(k string) set {
	s[k] = true
	return s
}

// Current is, per ISCM, the record of a standing kind (position, agenda
// item, stocktaking, action plan) that states where the ISCM stands now: a
// hand-made one before one derived from answers, the most recently changed
// first; withdrawn records and those out of scope do not count.
func (snap Snapshot) Current(kind string, sc Scope) map[string]Record {
	out := map[string]Record{}
	for k, r := range snap.Tally.current {
		if k.kind == kind && k.iom == sc.IncludeSubmitted {
			out[k.iscm] = r
		}
	}
	return out
}

// ActivityObjectives is, per ISCM with activities in scope, the objectives
// they address.
func (snap Snapshot) ActivityObjectives(sc Scope) map[string]map[int]bool {
	out := map[string]map[int]bool{}
	snap.Tally.groupsIn(sc, func(k groupKey, g *group) {
		if k.kind != events.KindActivity {
			return
		}
		m := out[k.iscm]
		if m == nil {
			m = map[int]bool{}
			out[k.iscm] = m
		}
		g.addressed(func(o int) { m[o] = true })
	})
	return out
}

// KindCounts is, per ISCM, its records in scope by kind.
func (snap Snapshot) KindCounts(sc Scope) map[string]map[string]int {
	out := map[string]map[string]int{}
	snap.Tally.groupsIn(sc, func(k groupKey, g *group) {
		if out[k.iscm] == nil {
			out[k.iscm] = map[string]int{}
		}
		out[k.iscm][k.kind] += g.n
	})
	return out
}

// LatestActivity is, per ISCM with dated activities in scope, the latest
// one's date (Record.Dated).
func (snap Snapshot) LatestActivity(sc Scope) map[string]events.Date {
	type day struct{ year, day int }
	latest := map[string]day{}
	snap.Tally.groupsIn(sc, func(k groupKey, g *group) {
		if k.kind != events.KindActivity {
			return
		}
		if d := (day{k.year, g.latestDay()}); d.day >= 0 {
			if cur, ok := latest[k.iscm]; !ok || d.year > cur.year || (d.year == cur.year && d.day > cur.day) {
				latest[k.iscm] = d
			}
		}
	})
	out := make(map[string]events.Date, len(latest))
	for iscm, d := range latest {
		out[iscm] = events.DateOf(time.Date(d.year, 1, 1+d.day, 0, 0, 0, 0, time.UTC))
	}
	return out
}

func better(a, b *Record) bool {
	if (a.Source == "manual") != (b.Source == "manual") {
		return a.Source == "manual"
	}
	if a.Pos != b.Pos {
		return a.Pos > b.Pos
	}
	return a.ID > b.ID
}

// Figures are the 2019 review's figures computed from one cycle's answers.
type Figures struct {
	Cycle       int         `json:"cycle"`
	Position    uint64      `json:"position"`
	Scope       string      `json:"scope"`
	Respondents Respondents `json:"respondents"`
	Figure2     Figure2     `json:"figure_2"`
	Figure3     Figure3     `json:"figure_3"`
	Figure4     Figure4     `json:"figure_4"`
	Figure5     Figure5     `json:"figure_5"`
	Figure7     Figure7     `json:"figure_7"`
	Figure8     Figure8     `json:"figure_8"`
}

// Respondents are the ISCMs with answers in the cycle, per channel.
type Respondents struct {
	Questionnaire Count `json:"questionnaire"`
	Interview     Count `json:"interview"`
	All           Count `json:"all"`
}

// Figure2 counts formal positions among questionnaire respondents.
type Figure2 struct {
	Counts                  string `json:"counts"`
	Yes                     Count  `json:"yes"`
	No                      Count  `json:"no"`
	InProcess               Count  `json:"in_process"`
	Unanswered              Count  `json:"unanswered"`
	WithoutPositionRefining Count  `json:"without_position_planning_refinement"`
}

// Item is one theme, principle or objective with the ISCMs addressing it.
type Item struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Count
}

// Figure3 lists what the formal positions address.
type Figure3 struct {
	Counts     string `json:"counts"`
	Themes     []Item `json:"themes"`
	Principles []Item `json:"principles"`
	Objectives []Item `json:"objectives"`
}

// Split is a count split by whether the ISCM has a formal position.
type Split struct {
	Total           Count `json:"total"`
	WithPosition    Count `json:"with_position"`
	WithoutPosition Count `json:"without_position"`
}

// Figure4 counts the standard agenda item answers.
type Figure4 struct {
	Counts   string           `json:"counts"`
	ByAnswer map[string]Split `json:"by_answer"`
}

// Figure5 counts the action plan answers.
type Figure5 struct {
	Counts      string           `json:"counts"`
	ByAnswer    map[string]Count `json:"by_answer"`
	AlreadyDone Count            `json:"already_have_one"`
}

// Form is one capacity-building form with the ISCMs using it.
type Form struct {
	Form string `json:"form"`
	Count
}

// Figure7 counts ISCMs per capacity-building form.
type Figure7 struct {
	Counts string `json:"counts"`
	ByForm []Form `json:"by_form"`
}

// Category is one partner category with the ISCMs partnering in it.
type Category struct {
	Category string `json:"category"`
	Count
}

// Figure8 counts partnerships.
type Figure8 struct {
	Counts           string     `json:"counts"`
	Respondents      int        `json:"respondents"`
	WithPartnerships Count      `json:"with_partnerships"`
	ByCategory       []Category `json:"by_category"`
}

// ComputeFigures computes the review's figures for a cycle.
func ComputeFigures(snap Snapshot, cat *catalog.Catalog, cycle int, sc Scope) Figures {
	f := Figures{Cycle: cycle, Position: snap.Position, Scope: sc.Name()}
	q, iv, all := set{}, set{}, set{}
	byISCM := map[string][]events.Answers{} // both channels
	qAnswers := map[string]events.Answers{} // questionnaire channel only
	for _, a := range snap.Answers {
		if a.Cycle != cycle || !sc.counts(a.Status) {
			continue
		}
		all.add(a.ISCM)
		byISCM[a.ISCM] = append(byISCM[a.ISCM], a.Answers)
		if a.Channel == events.ChannelQuestionnaire {
			q.add(a.ISCM)
			qAnswers[a.ISCM] = a.Answers
		} else {
			iv.add(a.ISCM)
		}
	}
	f.Respondents = Respondents{Questionnaire: countOf(q), Interview: countOf(iv), All: countOf(all)}

	// Figure 2: questionnaire answers.
	yes, no, inProc, unanswered, refining := set{}, set{}, set{}, set{}, set{}
	for iscm, a := range qAnswers {
		st := ""
		if a.Position != nil {
			st = a.Position.Status
		}
		switch st {
		case "yes":
			yes.add(iscm)
		case "no":
			no.add(iscm)
		case "in_process":
			inProc.add(iscm)
		default:
			unanswered.add(iscm)
		}
		if st != "yes" && a.Position != nil && a.Position.PlansRefinement != nil && *a.Position.PlansRefinement {
			refining.add(iscm)
		}
	}
	f.Figure2 = Figure2{Counts: "questionnaire answers of the cycle: position status (q4); refining (q8) among those without a formal position",
		Yes: countOf(yes), No: countOf(no), InProcess: countOf(inProc), Unanswered: countOf(unanswered), WithoutPositionRefining: countOf(refining)}

	// Figure 3: what formal positions address, both channels.
	themes, principles, objectives := map[string]set{}, map[int]set{}, map[int]set{}
	for iscm, as := range byISCM {
		for _, a := range as {
			if a.Position == nil || a.Position.Status != "yes" {
				continue
			}
			for _, t := range a.Position.Themes {
				if themes[t] == nil {
					themes[t] = set{}
				}
				themes[t].add(iscm)
			}
			for _, p := range a.Position.Principles {
				if principles[p] == nil {
					principles[p] = set{}
				}
				principles[p].add(iscm)
			}
			for _, o := range a.Position.Objectives {
				if objectives[o] == nil {
					objectives[o] = set{}
				}
				objectives[o].add(iscm)
			}
		}
	}
	f.Figure3.Counts = "ISCMs whose formal position (status yes, either channel) addresses each theme, principle and objective"
	for _, t := range cat.Themes {
		if s := themes[t.ID]; s != nil {
			f.Figure3.Themes = append(f.Figure3.Themes, Item{ID: t.ID, Title: t.Title, Count: countOf(s)})
		}
	}
	for _, p := range cat.Principles {
		if s := principles[p.ID]; s != nil {
			f.Figure3.Principles = append(f.Figure3.Principles, Item{ID: fmt.Sprint(p.ID), Title: p.Title, Count: countOf(s)})
		}
	}
	for _, o := range cat.Objectives {
		if s := objectives[o.ID]; s != nil {
			f.Figure3.Objectives = append(f.Figure3.Objectives, Item{ID: fmt.Sprint(o.ID), Title: o.Title, Count: countOf(s)})
		}
	}
	f.Figure3.Themes, f.Figure3.Principles, f.Figure3.Objectives = orEmpty(f.Figure3.Themes), orEmpty(f.Figure3.Principles), orEmpty(f.Figure3.Objectives)

	// Figure 4: standard agenda item, questionnaire answers.
	f.Figure4 = Figure4{Counts: "questionnaire answers of the cycle: standard agenda item (q13), split by formal position (q4 yes)", ByAnswer: map[string]Split{}}
	agenda := map[string][3]set{}
	for _, ans := range []string{"yes", "planned", "no", "not_known", "unanswered"} {
		agenda[ans] = [3]set{{}, {}, {}}
	}
	for iscm, a := range qAnswers {
		ans := a.AgendaItem
		if ans == "" {
			ans = "unanswered"
		}
		sets := agenda[ans]
		sets[0].add(iscm)
		if yes[iscm] {
			sets[1].add(iscm)
		} else {
			sets[2].add(iscm)
		}
	}
	for ans, sets := range agenda {
		f.Figure4.ByAnswer[ans] = Split{Total: countOf(sets[0]), WithPosition: countOf(sets[1]), WithoutPosition: countOf(sets[2])}
	}

	// Figure 5: action plans, questionnaire answers.
	f.Figure5 = Figure5{Counts: "questionnaire answers of the cycle: action plan (q17)", ByAnswer: map[string]Count{}}
	plans := map[string]set{"yes": {}, "no": {}, "already_done": {}, "not_known": {}, "unanswered": {}}
	for iscm, a := range qAnswers {
		ans := "unanswered"
		if a.ActionPlan != nil && a.ActionPlan.Status != "" {
			ans = a.ActionPlan.Status
		}
		plans[ans].add(iscm)
	}
	for ans, s := range plans {
		f.Figure5.ByAnswer[ans] = countOf(s)
	}
	f.Figure5.AlreadyDone = countOf(plans["already_done"])

	// Figure 7: capacity-building forms, distinct ISCMs across channels.
	forms := map[string]set{}
	for iscm, as := range byISCM {
		for _, a := range as {
			for _, c := range a.CapacityBuilding {
				if forms[c.Form] == nil {
					forms[c.Form] = set{}
				}
				forms[c.Form].add(iscm)
			}
		}
	}
	f.Figure7.Counts = "ISCMs naming each capacity-building form (q20), either channel"
	for _, form := range sortedKeys(forms) {
		f.Figure7.ByForm = append(f.Figure7.ByForm, Form{Form: form, Count: countOf(forms[form])})
	}
	sort.SliceStable(f.Figure7.ByForm, func(i, j int) bool { return f.Figure7.ByForm[i].Count.Count > f.Figure7.ByForm[j].Count.Count })
	f.Figure7.ByForm = orEmpty(f.Figure7.ByForm)

	// Figure 8: partnerships, distinct ISCMs across channels.
	with, cats := set{}, map[string]set{}
	for iscm, as := range byISCM {
		for _, a := range as {
			for _, p := range a.Partnerships {
				with.add(iscm)
				if cats[p.Category] == nil {
					cats[p.Category] = set{}
				}
				cats[p.Category].add(iscm)
			}
		}
	}
	f.Figure8 = Figure8{Counts: "responding ISCMs (both channels) with partnerships (q25), and per partner category",
		Respondents: len(all), WithPartnerships: countOf(with)}
	for _, c := range []string{"iscm", "igo", "un_regional_commission", "regional_economic_organization", "ngo_civil_society", "private_sector", "academia", "migrants_diasporas"} {
		f.Figure8.ByCategory = append(f.Figure8.ByCategory, Category{Category: c, Count: countOf(orSet(cats[c]))})
	}
	return f
}

func orSet(s set) set {
	if s == nil {
		return set{}
	}
	return s
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ObjectiveCoverage is one objective across the ISCMs.
type ObjectiveCoverage struct {
	Objective    int    `json:"objective"`
	Title        string `json:"title"`
	Position     Count  `json:"position"`
	ActionPlan   Count  `json:"action_plan"`
	Activities   Count  `json:"activities"`
	Any          Count  `json:"any"`
	MemberStates int    `json:"member_states"`
}

// Objectives is the objectives x ISCMs coverage.
type Objectives struct {
	Position uint64              `json:"position"`
	Scope    string              `json:"scope"`
	Counts   string              `json:"counts"`
	Items    []ObjectiveCoverage `json:"items"`
}

// ComputeObjectives says, per objective, which ISCMs address it through
// their current position, their current action plan, or activities, and
// how many distinct member States those ISCMs have.
func ComputeObjectives(snap Snapshot, cat *catalog.Catalog, sc Scope) Objectives {
	out := Objectives{Position: snap.Position, Scope: sc.Name(),
		Counts: "ISCMs addressing each objective through their current position, current action plan, or activities; member_states counts distinct member States (not observers) of the ISCMs in any"}
	via := func(recs map[string]Record) map[int]set {
		m := map[int]set{}
		for iscm, r := range recs {
			for _, o := range r.Objectives {
				if m[o] == nil {
					m[o] = set{}
				}
				m[o].add(iscm)
			}
		}
		return m
	}
	pos := via(snap.Current(events.KindPosition, sc))
	plan := via(snap.Current(events.KindActionPlan, sc))
	acts := map[int]set{}
	for iscm, objs := range snap.ActivityObjectives(sc) {
		for o := range objs {
			if acts[o] == nil {
				acts[o] = set{}
			}
			acts[o].add(iscm)
		}
	}
	members := map[string][]string{}
	for _, m := range snap.Memberships {
		if m.Status == events.StatusMember {
			members[m.ISCM] = append(members[m.ISCM], m.State)
		}
	}
	for _, o := range cat.Objectives {
		anyISCM := set{}
		for _, s := range []set{pos[o.ID], plan[o.ID], acts[o.ID]} {
			for k := range s {
				anyISCM.add(k)
			}
		}
		states := set{}
		for iscm := range anyISCM {
			for _, st := range members[iscm] {
				states.add(st)
			}
		}
		out.Items = append(out.Items, ObjectiveCoverage{Objective: o.ID, Title: o.Title, Position: countOf(orSet(pos[o.ID])),
			ActionPlan: countOf(orSet(plan[o.ID])), Activities: countOf(orSet(acts[o.ID])), Any: countOf(anyISCM), MemberStates: len(states)})
	}
	return out
}

// Engagement is where one ISCM stands on the three commitments the States
// view counts.
type Engagement struct {
	ISCM           string `json:"iscm"`
	Status         string `json:"membership"`
	FormalPosition bool   `json:"formal_position"`
	StandardAgenda bool   `json:"standard_agenda_item"`
	ActionPlan     bool   `json:"action_plan"`
}

// StateProgress is one State's ISCM memberships and their engagement.
type StateProgress struct {
	State          string       `json:"state"`
	Name           string       `json:"name"`
	ISCMCount      int          `json:"iscm_count"`
	WithPosition   int          `json:"with_formal_position"`
	WithAgendaItem int          `json:"with_standard_agenda_item"`
	WithActionPlan int          `json:"with_action_plan"`
	ISCMs          []Engagement `json:"iscms,omitempty"`
}

// States is the member-State view (the review's Figure 1 counts ISCM
// memberships per State).
type States struct {
	Position uint64          `json:"position"`
	Scope    string          `json:"scope"`
	Counts   string          `json:"counts"`
	Items    []StateProgress `json:"items"`
}

// ComputeStates lists every State with at least one ISCM membership (member
// or observer), most memberships first.
func ComputeStates(snap Snapshot, cat *catalog.Catalog, sc Scope, detail bool) States {
	pos := snap.Current(events.KindPosition, sc)
	agenda := snap.Current(events.KindAgendaItem, sc)
	plan := snap.Current(events.KindActionPlan, sc)
	by := map[string]*StateProgress{}
	for _, m := range snap.Memberships {
		sp := by[m.State]
		if sp == nil {
			c, _ := cat.Country(m.State)
			sp = &StateProgress{State: m.State, Name: c.Name}
			by[m.State] = sp
		}
		e := Engagement{ISCM: m.ISCM, Status: m.Status,
			FormalPosition: pos[m.ISCM].Subkind == "yes",
			StandardAgenda: agenda[m.ISCM].Subkind == "standard",
			ActionPlan:     plan[m.ISCM].Subkind == "yes" || plan[m.ISCM].Subkind == "already_done"}
		sp.ISCMCount++
		if e.FormalPosition {
			sp.WithPosition++
		}
		if e.StandardAgenda {
			sp.WithAgendaItem++
		}
		if e.ActionPlan {
			sp.WithActionPlan++
		}
		if detail {
			sp.ISCMs = append(sp.ISCMs, e)
		}
	}
	out := States{Position: snap.Position, Scope: sc.Name(),
		Counts: "ISCMs each State is a member or observer of, and how many of them have a formal position (yes), the GCM as a standard agenda item, an action plan (yes or already done)"}
	for _, k := range sortedKeys(by) {
		sp := by[k]
		sort.Slice(sp.ISCMs, func(i, j int) bool { return sp.ISCMs[i].ISCM < sp.ISCMs[j].ISCM })
		out.Items = append(out.Items, *sp)
	}
	sort.SliceStable(out.Items, func(i, j int) bool { return out.Items[i].ISCMCount > out.Items[j].ISCMCount })
	out.Items = orEmpty(out.Items)
	return out
}

// Evidence is an ISCM's recorded evidence toward one recommendation.
type Evidence struct {
	Recommendation string         `json:"recommendation"`
	Status         string         `json:"status"` // none, some, strong
	Evidence       map[string]int `json:"evidence"`
}

// ISCMRecommendations is one ISCM's evidence toward (a)-(j).
type ISCMRecommendations struct {
	ISCM  string     `json:"iscm"`
	Items []Evidence `json:"items"`
}

// Recommendations is the evidence of every ISCM, with the rules applied.
type Recommendations struct {
	Position        uint64                   `json:"position"`
	Scope           string                   `json:"scope"`
	Recommendations []catalog.Recommendation `json:"recommendations"`
	Rules           map[string]string        `json:"rules"`
	ISCMs           []ISCMRecommendations    `json:"iscms"`
}

// RecommendationRules documents how evidence becomes a status.
var RecommendationRules = map[string]string{
	"a": "strong: a formal position (yes); some: one in process; none otherwise",
	"b": "strong: resource commitments of two or more kinds; some: at least one; none otherwise",
	"c": "strong: a stocktaking already done; some: one planned (yes); none otherwise",
	"d": "strong: 3 or more peer-exchange or data-exchange activities; some: 1-2; none otherwise",
	"e": "strong: 3 or more capacity-building activities; some: 1-2; none otherwise",
	"f": "strong: 2 or more of SDG-practice activities and partnerships with other ISCMs together; some: 1; none otherwise",
	"g": "strong: 2 or more whole-of-government activities; some: 1; none otherwise",
	"h": "strong: the GCM is a standard agenda item; some: planned, or an action plan with milestones; none otherwise",
	"i": "strong: partnerships in 3 or more partner categories; some: 1-2 categories; none otherwise",
	"j": "strong: 2 or more submissions to global processes or any to the IMRF or a regional review; some: 1; none otherwise",
}

func grade(n, some, strong int) string {
	switch {
	case n >= strong:
		return "strong"
	case n >= some:
		return "some"
	}
	return "none"
}

// ComputeRecommendations grades each catalog ISCM's evidence.
func ComputeRecommendations(snap Snapshot, cat *catalog.Catalog, sc Scope) Recommendations {
	out := Recommendations{Position: snap.Position, Scope: sc.Name(), Recommendations: cat.Recommendations, Rules: RecommendationRules}
	pos := snap.Current(events.KindPosition, sc)
	stock := snap.Current(events.KindStocktaking, sc)
	agenda := snap.Current(events.KindAgendaItem, sc)
	plan := snap.Current(events.KindActionPlan, sc)
	type tally struct {
		activity    map[string]int
		partnerCats map[string]int
		resources   map[string]int
		submissions int
		toReview    int
	}
	t := map[string]*tally{}
	get := func(iscm string) *tally {
		if t[iscm] == nil {
			t[iscm] = &tally{activity: map[string]int{}, partnerCats: map[string]int{}, resources: map[string]int{}}
		}
		return t[iscm]
	}
	snap.Tally.groupsIn(sc, func(k groupKey, g *group) {
		x := get(k.iscm)
		switch k.kind {
		case events.KindActivity:
			addCounts(x.activity, g.labels)
		case events.KindPartnership:
			addCounts(x.partnerCats, g.labels)
		case events.KindResource:
			addCounts(x.resources, g.labels)
		case events.KindSubmission:
			x.submissions += g.n
			x.toReview += g.labels["imrf"] + g.labels["regional_review"]
		}
	})
	for _, i := range cat.ISCMs {
		x := get(i.Slug)
		ev := func(id, status string, e map[string]int) Evidence {
			return Evidence{Recommendation: id, Status: status, Evidence: e}
		}
		a := "none"
		switch pos[i.Slug].Subkind {
		case "yes":
			a = "strong"
		case "in_process":
			a = "some"
		}
		c := "none"
		switch stock[i.Slug].Subkind {
		case "already_done":
			c = "strong"
		case "yes":
			c = "some"
		}
		h := "none"
		switch {
		case agenda[i.Slug].Subkind == "standard":
			h = "strong"
		case agenda[i.Slug].Subkind == "planned":
			h = "some"
		}
		peer := x.activity["peer_exchange"] + x.activity["data_exchange"]
		f := x.activity["sdg_practice"] + x.partnerCats["iscm"]
		j := grade(x.submissions, 1, 2)
		if x.toReview > 0 {
			j = "strong"
		}
		items := []Evidence{
			ev("a", a, map[string]int{"formal_position": b2i(a == "strong"), "position_in_process": b2i(a == "some")}),
			ev("b", grade(len(x.resources), 1, 2), x.resources),
			ev("c", c, map[string]int{"stocktaking_done": b2i(c == "strong"), "stocktaking_planned": b2i(c == "some")}),
			ev("d", grade(peer, 1, 3), map[string]int{"peer_exchange": x.activity["peer_exchange"], "data_exchange": x.activity["data_exchange"]}),
			ev("e", grade(x.activity["capacity_building"], 1, 3), map[string]int{"capacity_building": x.activity["capacity_building"]}),
			ev("f", grade(f, 1, 2), map[string]int{"sdg_practice": x.activity["sdg_practice"], "iscm_partnerships": x.partnerCats["iscm"]}),
			ev("g", grade(x.activity["whole_of_government"], 1, 2), map[string]int{"whole_of_government": x.activity["whole_of_government"]}),
			ev("h", h, map[string]int{"standard_agenda_item": b2i(h == "strong"), "planned_agenda_item": b2i(h == "some"), "action_plan": b2i(plan[i.Slug].Subkind == "already_done" || plan[i.Slug].Subkind == "yes")}),
			ev("i", grade(len(x.partnerCats), 1, 3), x.partnerCats),
			ev("j", j, map[string]int{"submissions": x.submissions, "to_imrf_or_regional_review": x.toReview}),
		}
		if items[7].Status == "none" && items[7].Evidence["action_plan"] == 1 {
			items[7].Status = "some"
		}
		out.ISCMs = append(out.ISCMs, ISCMRecommendations{ISCM: i.Slug, Items: items})
	}
	return out
}

func addCounts(to, from map[string]int) {
	for k, n := range from {
		to[k] += n
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Dated is the date a record counts under in a review: its own date, the
// year of the cycle it was answered in, or the day it was recorded.
func (r Record) Dated() events.Date {
	switch {
	case !r.From.IsZero():
		return r.From
	case r.Cycle != 0:
		return events.DateOf(time.Date(r.Cycle, 7, 1, 0, 0, 0, 0, time.UTC))
	case !r.RecordedAt.IsZero():
		return events.DateOf(r.RecordedAt)
	}
	return events.Date{}
}

// ISCMReview is one ISCM's contribution to a cycle.
type ISCMReview struct {
	ISCM           string         `json:"iscm"`
	Name           string         `json:"name"`
	Region         string         `json:"region"`
	PositionStatus string         `json:"position_status"`
	Records        map[string]int `json:"records_by_kind"`
	Activities     map[string]int `json:"activities_by_kind"`
	Objectives     []int          `json:"objectives_addressed"`
	Submissions    []string       `json:"submissions"`
	Questionnaires []string       `json:"questionnaires"`
}

// Review summarises, for one cycle and region, what the region's ISCMs
// recorded in the cycle's period.
type Review struct {
	Cycle    events.Cycle   `json:"cycle"`
	Region   string         `json:"region"`
	Position uint64         `json:"position"`
	Scope    string         `json:"scope"`
	Totals   map[string]int `json:"totals_by_kind"`
	ISCMs    []ISCMReview   `json:"iscms"`
}

// ComputeReview summarises a cycle for the ISCMs whose region names the
// given one (all when empty): "Americas" includes interregional forums such
// as "Americas - Europe".
func ComputeReview(snap Snapshot, cat *catalog.Catalog, cy events.Cycle, region string, sc Scope) Review {
	out := Review{Cycle: cy, Region: region, Position: snap.Position, Scope: sc.Name(), Totals: map[string]int{}}
	pos := snap.Current(events.KindPosition, sc)
	in := map[string]*ISCMReview{}
	for _, i := range cat.ISCMs {
		if region != "" && !strings.Contains(strings.ToLower(i.Region), strings.ToLower(region)) {
			continue
		}
		in[i.Slug] = &ISCMReview{ISCM: i.Slug, Name: i.Name, Region: i.Region, PositionStatus: pos[i.Slug].Subkind,
			Records: map[string]int{}, Activities: map[string]int{}, Objectives: []int{}, Submissions: []string{}, Questionnaires: []string{}}
	}
	objs := map[string]map[int]bool{}
	// A cycle covers whole years (events.ParseCycle), the years the tally
	// counts records by.
	first, last := cy.From.Time().Year(), cy.To.Time().Year()
	snap.Tally.groupsIn(sc, func(k groupKey, g *group) {
		ir := in[k.iscm]
		if ir == nil || k.year == 0 || k.year < first || k.year > last {
			return
		}
		ir.Records[k.kind] += g.n
		out.Totals[k.kind] += g.n
		switch k.kind {
		case events.KindActivity:
			addCounts(ir.Activities, g.labels)
		case events.KindSubmission:
			for title, n := range g.titles {
				for range n {
					ir.Submissions = append(ir.Submissions, title)
				}
			}
		}
		if objs[k.iscm] == nil {
			objs[k.iscm] = map[int]bool{}
		}
		g.addressed(func(o int) { objs[k.iscm][o] = true })
	})
	for _, a := range snap.Answers {
		ir := in[a.ISCM]
		if ir == nil || !sc.counts(a.Status) || a.Cycle < cy.From.Time().Year() || a.Cycle > cy.Year {
			continue
		}
		ir.Questionnaires = append(ir.Questionnaires, a.ID)
	}
	for _, slug := range sortedKeys(in) {
		ir := in[slug]
		for o := range objs[slug] {
			ir.Objectives = append(ir.Objectives, o)
		}
		sort.Ints(ir.Objectives)
		sort.Strings(ir.Submissions)
		sort.Strings(ir.Questionnaires)
		out.ISCMs = append(out.ISCMs, *ir)
	}
	out.ISCMs = orEmpty(out.ISCMs)
	return out
}
