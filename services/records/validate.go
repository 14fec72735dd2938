package records

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
)

// Enumerations of the questionnaire and the records (the published contract).
var (
	positionStatuses   = []string{"yes", "no", "in_process"}
	agendaAnswers      = []string{"yes", "no", "planned", "not_known"}
	agendaStandings    = []string{"standard", "planned", "one_off"}
	fourWayStatuses    = []string{"yes", "no", "already_done", "not_known"}
	expansionStatuses  = []string{"yes", "no", "existing", "not_known"}
	expansionModality  = []string{"observership", "membership", "other"}
	partnerCategories  = []string{"iscm", "igo", "un_regional_commission", "regional_economic_organization", "ngo_civil_society", "private_sector", "academia", "migrants_diasporas"}
	forums             = []string{"gfmd", "idm", "imrf", "regional_review", "other"}
	capacityForms      = []string{"dialogue_facilitation", "technical_secretariat", "civil_society_participation", "information_note", "training_workshop", "special_session", "data_support", "technical_support", "awareness_raising", "online_meeting", "other"}
	resourceKinds      = []string{"financial", "human", "in_kind", "other"}
	hinderingFactors   = []string{"low_priority", "different_speeds", "no_mandate", "unclear_coordination", "resources", "other"}
	activityKinds      = []string{"capacity_building", "data_exchange", "awareness_raising", "whole_of_government", "peer_exchange", "sdg_practice"}
	milestoneProgress  = []string{"not_started", "in_progress", "achieved"}
	questionnaireChans = []string{events.ChannelQuestionnaire, events.ChannelInterview}
)

// Enums lists every enumeration by the field it constrains, for the API's
// schema.
func Enums() map[string][]string {
	return map[string][]string{
		"position.status": positionStatuses, "agenda_item": agendaAnswers, "agenda_item.standing": agendaStandings,
		"stocktaking.status": fourWayStatuses, "action_plan.status": fourWayStatuses, "expansion.status": expansionStatuses,
		"expansion.modality": expansionModality, "partnership.category": partnerCategories, "submission.forum": forums,
		"capacity_building.form": capacityForms, "resource.kind": resourceKinds, "hindering_factor": hinderingFactors,
		"activity.kind": activityKinds, "milestone.progress": milestoneProgress, "channel": questionnaireChans,
	}
}

// Limits on text and lists, so one record stays small.
const (
	maxTitle = 500
	maxText  = 10000
	maxList  = 200
)

// checker validates one command's input, collecting every problem with the
// path of the field it concerns.
type checker struct {
	cat     *catalog.Catalog
	members map[string]string // the ISCM's member and observer States
	ps      command.Problems
}

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

func (c *checker) enum(field, v string, allowed []string, required bool) {
	if v == "" {
		if required {
			c.ps.Add(field, "is required: one of %s", strings.Join(allowed, ", "))
		}
		return
	}
	if !slices.Contains(allowed, v) {
		c.ps.Add(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

func (c *checker) text(field, v string, max int, required bool) {
	switch {
	case required && strings.TrimSpace(v) == "":
		c.ps.Add(field, "is required")
	case !utf8.ValidString(v):
		c.ps.Add(field, "is not valid UTF-8")
	case strings.ContainsRune(v, 0):
		c.ps.Add(field, "contains a NUL character")
	case utf8.RuneCountInString(v) > max:
		c.ps.Add(field, "is longer than %d characters", max)
	}
}

func (c *checker) url(field, v string) {
	if v == "" {
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(v) > 2000 {
		c.ps.Add(field, "%q is not an http(s) URL", truncate(v))
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (c *checker) order(fromField string, from, to events.Date, toField string) {
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		c.ps.Add(toField, "%s is before %s %s", to, fromField, from)
	}
}

func (c *checker) ints(field string, vs []int, valid func(int) bool, what string) {
	if len(vs) > maxList {
		c.ps.Add(field, "lists more than %d items", maxList)
		return
	}
	seen := map[int]bool{}
	for i, v := range vs {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !valid(v):
			c.ps.Add(f, "%d is not a GCM %s", v, what)
		case seen[v]:
			c.ps.Add(f, "%d is listed twice", v)
		}
		seen[v] = true
	}
}

func (c *checker) objectives(prefix string, vs []int) {
	c.ints(join(prefix, "objectives"), vs, c.cat.ValidObjective, "objective (1-23)")
}

func (c *checker) principles(prefix string, vs []int) {
	c.ints(join(prefix, "principles"), vs, c.cat.ValidPrinciple, "guiding principle (1-10)")
}

func (c *checker) themes(prefix string, vs []string) {
	field := join(prefix, "themes")
	if len(vs) > maxList {
		c.ps.Add(field, "lists more than %d items", maxList)
		return
	}
	seen := map[string]bool{}
	for i, v := range vs {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case !c.cat.ValidTheme(v):
			c.ps.Add(f, "%q is not a GCM theme (T1-T6)", truncate(v))
		case seen[v]:
			c.ps.Add(f, "%q is listed twice", v)
		}
		seen[v] = true
	}
}

func (c *checker) strs(field string, vs []string, max int) {
	if len(vs) > maxList {
		c.ps.Add(field, "lists more than %d items", maxList)
		return
	}
	for i, v := range vs {
		c.text(fmt.Sprintf("%s[%d]", field, i), v, max, true)
	}
}

func (c *checker) document(prefix string, d *events.Document) {
	if d == nil {
		return
	}
	c.text(join(prefix, "title"), d.Title, maxTitle, false)
	c.url(join(prefix, "url"), d.URL)
	c.text(join(prefix, "description"), d.Description, maxText, false)
}

// content validates one record's content; prefix is the JSON path of the
// content in the request ("" at the top level).
func (c *checker) content(prefix string, ct events.Content) {
	switch r := ct.(type) {
	case events.Position:
		c.enum(join(prefix, "status"), r.Status, positionStatuses, true)
		c.document(join(prefix, "document"), r.Document)
		if r.Meeting != nil {
			c.text(join(prefix, "meeting.title"), r.Meeting.Title, maxTitle, false)
			c.text(join(prefix, "meeting.place"), r.Meeting.Place, maxTitle, false)
		}
		c.themes(prefix, r.Themes)
		c.principles(prefix, r.Principles)
		c.objectives(prefix, r.Objectives)
		c.text(join(prefix, "pursuit"), r.Pursuit, maxText, false)
	case events.AgendaItem:
		c.text(join(prefix, "meeting.title"), r.Meeting.Title, maxTitle, true)
		if r.Meeting.Date.IsZero() {
			c.ps.Add(join(prefix, "meeting.date"), "is required (YYYY-MM-DD)")
		}
		c.text(join(prefix, "meeting.place"), r.Meeting.Place, maxTitle, false)
		c.enum(join(prefix, "standing"), r.Standing, agendaStandings, true)
		c.objectives(prefix, r.Objectives)
		c.text(join(prefix, "notes"), r.Notes, maxText, false)
	case events.Stocktaking:
		c.enum(join(prefix, "status"), r.Status, fourWayStatuses, true)
		c.document(join(prefix, "document"), r.Document)
	case events.ActionPlan:
		c.enum(join(prefix, "status"), r.Status, fourWayStatuses, true)
		c.text(join(prefix, "title"), r.Title, maxTitle, false)
		c.text(join(prefix, "planned_for"), r.PlannedFor, maxTitle, false)
		c.order("period_from", r.PeriodFrom, r.PeriodTo, join(prefix, "period_to"))
		c.objectives(prefix, r.Objectives)
		if len(r.Milestones) > maxList {
			c.ps.Add(join(prefix, "milestones"), "lists more than %d items", maxList)
		}
		ids := map[string]bool{}
		for i, m := range r.Milestones {
			f := fmt.Sprintf("%s[%d]", join(prefix, "milestones"), i)
			if m.ID != "" && (!events.ValidToken(m.ID) || len(m.ID) > 64) {
				c.ps.Add(f+".id", "%q must be 1-64 printable characters without spaces or dots", truncate(m.ID))
			}
			if m.ID != "" && ids[m.ID] {
				c.ps.Add(f+".id", "%q is used twice", m.ID)
			}
			ids[m.ID] = true
			c.text(f+".title", m.Title, maxTitle, true)
		}
	case events.Activity:
		c.enum(join(prefix, "kind"), r.Kind, activityKinds, true)
		c.enum(join(prefix, "form"), r.Form, capacityForms, false)
		c.text(join(prefix, "title"), r.Title, maxTitle, true)
		c.order("start_date", r.StartDate, r.EndDate, join(prefix, "end_date"))
		c.states(join(prefix, "states"), r.States)
		c.objectives(prefix, r.Objectives)
		c.principles(prefix, r.Principles)
		c.strs(join(prefix, "partners"), r.Partners, maxTitle)
		c.url(join(prefix, "url"), r.URL)
		c.text(join(prefix, "summary"), r.Summary, maxText, false)
	case events.Partnership:
		c.text(join(prefix, "partner"), r.Partner, maxTitle, true)
		c.enum(join(prefix, "category"), r.Category, partnerCategories, true)
		c.text(join(prefix, "nature"), r.Nature, maxText, false)
		c.order("since", r.Since, r.Until, join(prefix, "until"))
	case events.Submission:
		c.enum(join(prefix, "forum"), r.Forum, forums, true)
		c.text(join(prefix, "title"), r.Title, maxTitle, true)
		c.url(join(prefix, "url"), r.URL)
	case events.HinderingFactor:
		c.enum(join(prefix, "factor"), r.Factor, hinderingFactors, true)
		c.text(join(prefix, "description"), r.Description, maxText, false)
	case events.Resource:
		c.enum(join(prefix, "kind"), r.Kind, resourceKinds, true)
		c.text(join(prefix, "description"), r.Description, maxText, true)
	case events.Expansion:
		c.text(join(prefix, "entity"), r.Entity, maxTitle, true)
		c.enum(join(prefix, "modality"), r.Modality, expansionModality, true)
		c.text(join(prefix, "notes"), r.Notes, maxText, false)
	default:
		c.ps.Add(prefix, "unknown record kind")
	}
}

func (c *checker) states(field string, vs []string) {
	if len(vs) > maxList {
		c.ps.Add(field, "lists more than %d items", maxList)
		return
	}
	seen := map[string]bool{}
	for i, v := range vs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if _, ok := c.cat.Country(v); !ok {
			c.ps.Add(f, "%q is not an ISO 3166-1 alpha-3 code", truncate(v))
			continue
		}
		if seen[v] {
			c.ps.Add(f, "%q is listed twice", v)
		}
		seen[v] = true
		if _, ok := c.members[v]; !ok {
			c.ps.Add(f, "%s is not a member or observer of this ISCM", v)
		}
	}
}

// answers validates a questionnaire's answers.
func (c *checker) answers(a events.Answers) {
	c.enum("channel", a.Channel, questionnaireChans, false)
	if a.Respondent != nil {
		for _, np := range []struct {
			name string
			p    *events.Person
		}{{"respondent.chair", a.Respondent.Chair}, {"respondent.secretariat_head", a.Respondent.SecretariatHead}} {
			if name, p := np.name, np.p; p != nil {
				c.text(name+".country", p.Country, maxTitle, false)
				c.text(name+".name", p.Name, maxTitle, false)
				c.text(name+".title", p.Title, maxTitle, false)
			}
		}
	}
	if a.Position != nil {
		c.content("position", *a.Position)
	}
	c.enum("agenda_item", a.AgendaItem, agendaAnswers, false)
	c.text("influence", a.Influence, maxText, false)
	if a.Stocktaking != nil {
		c.enum("stocktaking.status", a.Stocktaking.Status, fourWayStatuses, true)
		c.document("stocktaking.document", a.Stocktaking.Document)
	}
	if a.ActionPlan != nil {
		c.enum("action_plan.status", a.ActionPlan.Status, fourWayStatuses, true)
		c.text("action_plan.planned_for", a.ActionPlan.PlannedFor, maxTitle, false)
	}
	for _, nl := range []struct {
		name string
		list []events.QActivity
	}{{"data_exchange", a.DataExchange}, {"awareness_raising", a.AwarenessRaising}, {"capacity_building", a.CapacityBuilding}, {"whole_of_government", a.WholeOfGovernment}} {
		name, list := nl.name, nl.list
		if len(list) > maxList {
			c.ps.Add(name, "lists more than %d items", maxList)
			continue
		}
		for i, q := range list {
			f := fmt.Sprintf("%s[%d]", name, i)
			c.text(f+".title", q.Title, maxTitle, true)
			c.url(f+".url", q.URL)
			if name == "capacity_building" {
				c.enum(f+".form", q.Form, capacityForms, true)
			} else if q.Form != "" {
				c.ps.Add(f+".form", "applies to capacity_building only")
			}
		}
	}
	c.text("assistance", a.Assistance, maxText, false)
	c.strs("sdg_practices", a.SDGPractices, maxText)
	for i, r := range a.Resources {
		c.content(fmt.Sprintf("resources[%d]", i), r)
	}
	for i, p := range a.Partnerships {
		f := fmt.Sprintf("partnerships[%d]", i)
		c.text(f+".partner", p.Partner, maxTitle, true)
		c.enum(f+".category", p.Category, partnerCategories, true)
		c.text(f+".nature", p.Nature, maxText, false)
	}
	for i, s := range a.Submissions {
		c.content(fmt.Sprintf("submissions[%d]", i), s)
	}
	if a.Expansion != nil {
		c.enum("expansion.status", a.Expansion.Status, expansionStatuses, true)
		for i, w := range a.Expansion.With {
			f := fmt.Sprintf("expansion.with[%d]", i)
			c.text(f+".entity", w.Entity, maxTitle, true)
			c.enum(f+".modality", w.Modality, expansionModality, true)
		}
	}
	for i, h := range a.HinderingFactors {
		c.enum(fmt.Sprintf("hindering_factors[%d]", i), h, hinderingFactors, true)
	}
	for _, n := range []struct {
		name string
		l    int
	}{{"resources", len(a.Resources)}, {"partnerships", len(a.Partnerships)}, {"submissions", len(a.Submissions)}, {"hindering_factors", len(a.HinderingFactors)}} {
		if n.l > maxList {
			c.ps.Add(n.name, "lists more than %d items", maxList)
		}
	}
}
