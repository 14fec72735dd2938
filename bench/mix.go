package bench

import (
	"fmt"
	"time"

	"gcmtrack/events"
)

// The replay stream is what years of reporting leave behind: membership
// changes, and far more records — created as drafts, revised, submitted,
// published, now and then withdrawn — action plans' milestones, and
// questionnaire answers for several review cycles, some saved as drafts
// first. mixStep draws one such event.

// mixShares are the shares of each kind of step, in percent.
var mixShares = []struct {
	step  mixKind
	share int
}{
	{stepMembership, 15},
	{stepRecord, 24},
	{stepRevise, 13},
	{stepSubmit, 18},
	{stepPublish, 18},
	{stepWithdraw, 2},
	{stepMilestone, 7},
	{stepAnswer, 3},
}

type mixKind int

const (
	stepMembership mixKind = iota
	stepRecord
	stepRevise
	stepSubmit
	stepPublish
	stepWithdraw
	stepMilestone
	stepAnswer
)

// liveRecord is a record the mix can still act on.
type liveRecord struct {
	kind, id   string
	milestones []string // of action plans
}

// pool is a set of records to pick from at random and remove in O(1).
type pool []*liveRecord

func (p *pool) add(r *liveRecord) { *p = append(*p, r) }

// take removes and returns a random record, nil when the pool is empty.
func (p *pool) take(g *generator) *liveRecord {
	n := len(*p)
	if n == 0 {
		return nil
	}
	k := g.rng.IntN(n)
	r := (*p)[k]
	(*p)[k] = (*p)[n-1]
	*p = (*p)[:n-1]
	return r
}

// pick returns a random record without removing it.
func (p pool) pick(g *generator) *liveRecord {
	if len(p) == 0 {
		return nil
	}
	return p[g.rng.IntN(len(p))]
}

// iscmRecords is what one ISCM has recorded so far, by lifecycle status.
type iscmRecords struct {
	drafts, submitted, published pool
	plans                        pool // action plans not withdrawn
	hasPosition                  bool
	answered                     map[string]bool // questionnaire ids answered at least once
	withdrawn                    map[string]bool // questionnaire ids withdrawn: answered no more
}

// mix draws the events of the replay stream.
type mix struct {
	g     *generator
	iscms []iscmRecords
	now   time.Time
}

func newMix(g *generator) *mix {
	m := &mix{g: g, iscms: make([]iscmRecords, len(g.cat.ISCMs)), now: time.Now()}
	for i := range m.iscms {
		m.iscms[i].answered, m.iscms[i].withdrawn = map[string]bool{}, map[string]bool{}
	}
	return m
}

// next draws the next event.
func (m *mix) next() (events.Envelope, error) {
	roll := m.g.rng.IntN(100)
	step := stepMembership
	for _, s := range mixShares {
		if roll < s.share {
			step = s.step
			break
		}
		roll -= s.share
	}
	i := m.g.rng.IntN(len(m.iscms))
	rs := &m.iscms[i]
	slug := m.g.cat.ISCMs[i].Slug
	switch step {
	case stepMembership:
		return m.g.envelope(m.g.next())
	case stepRevise:
		pl := &rs.drafts
		if m.g.rng.IntN(2) == 0 {
			pl = &rs.published
		}
		if r := pl.pick(m.g); r != nil && r.kind != events.KindQuestionnaire {
			return m.envelope(slug, r.kind, r.id, m.revised(r))
		}
	case stepSubmit:
		if r := rs.drafts.take(m.g); r != nil {
			rs.submitted.add(r)
			return m.envelope(slug, r.kind, r.id, events.RecordSubmitted{})
		}
	case stepPublish:
		if r := rs.submitted.take(m.g); r != nil {
			rs.published.add(r)
			return m.envelope(slug, r.kind, r.id, events.RecordPublished{Note: "approved"})
		}
	case stepWithdraw:
		if r := rs.published.take(m.g); r != nil {
			if r.kind == events.KindQuestionnaire {
				rs.withdrawn[r.id] = true
			}
			if r.kind == events.KindActionPlan {
				for k, p := range rs.plans {
					if p == r {
						rs.plans[k] = rs.plans[len(rs.plans)-1]
						rs.plans = rs.plans[:len(rs.plans)-1]
						break
					}
				}
			}
			return m.envelope(slug, r.kind, r.id, events.RecordWithdrawn{Reason: "superseded"})
		}
	case stepMilestone:
		if r := rs.plans.pick(m.g); r != nil {
			p := events.MilestoneProgressed{
				MilestoneID: r.milestones[m.g.rng.IntN(len(r.milestones))],
				Progress:    []string{"not_started", "in_progress", "achieved"}[m.g.rng.IntN(3)],
				On:          m.g.date(),
			}
			return m.envelope(slug, r.kind, r.id, p)
		}
	case stepAnswer:
		return m.answer(slug, rs)
	}
	return m.record(slug, rs)
}

func (m *mix) envelope(slug, kind, id string, p events.Payload) (events.Envelope, error) {
	env, err := events.New(slug, kind, id, p, time.Time{}, m.now)
	if err != nil {
		return events.Envelope{}, err
	}
	env.Actor = m.g.actors[m.g.rng.IntN(len(m.g.actors))]
	env.CorrelationID = m.g.uuid().String()
	return env, nil
}

// record creates a new record, mostly activities, as a draft.
func (m *mix) record(slug string, rs *iscmRecords) (events.Envelope, error) {
	g := m.g
	r := &liveRecord{id: g.uuid().String()}
	var p events.Payload
	switch roll := g.rng.IntN(100); {
	case !rs.hasPosition:
		rs.hasPosition = true
		r.kind, r.id = events.KindPosition, slug
		p = events.Recorded[events.Position]{Record: m.position()}
	case roll < 55:
		r.kind = events.KindActivity
		p = events.Recorded[events.Activity]{Record: m.activity()}
	case roll < 67:
		r.kind = events.KindAgendaItem
		p = events.Recorded[events.AgendaItem]{Record: events.AgendaItem{
			Meeting:    events.Meeting{Title: "Ministerial conference " + g.date().String(), Date: g.date(), Place: "Geneva"},
			Standing:   []string{"standard", "planned", "one_off"}[g.rng.IntN(3)],
			Objectives: m.numbers(23, 1+g.rng.IntN(5)),
		}}
	case roll < 77:
		r.kind = events.KindPartnership
		p = events.Recorded[events.Partnership]{Record: events.Partnership{
			Partner:  "Partner organisation " + fmt.Sprint(g.rng.IntN(400)),
			Category: g.cat.PartnerCategories[g.rng.IntN(len(g.cat.PartnerCategories))],
			Nature:   "technical support and co-organised meetings",
			Since:    g.date(),
		}}
	case roll < 84:
		r.kind = events.KindSubmission
		p = events.Recorded[events.Submission]{Record: events.Submission{
			Forum: []string{"gfmd", "idm", "imrf", "regional_review", "other"}[g.rng.IntN(5)],
			Title: "Outcome statement", Date: g.date(), URL: "https://example.org/outcome",
		}}
	case roll < 90:
		r.kind = events.KindActionPlan
		plan := events.ActionPlan{Status: "yes", Title: "Regional action plan", PeriodFrom: g.date(), Objectives: m.numbers(23, 2+g.rng.IntN(6))}
		for k := range 2 + g.rng.IntN(4) {
			id := fmt.Sprintf("m%d", k+1)
			plan.Milestones = append(plan.Milestones, events.Milestone{ID: id, Title: "Milestone " + id, Due: g.date()})
			r.milestones = append(r.milestones, id)
		}
		plan.PeriodTo = events.DateOf(plan.PeriodFrom.Time().AddDate(4, 0, 0))
		p = events.Recorded[events.ActionPlan]{Record: plan}
		rs.plans.add(r)
	case roll < 94:
		r.kind = events.KindHinderingFactor
		p = events.Recorded[events.HinderingFactor]{Record: events.HinderingFactor{
			Factor: []string{"low_priority", "different_speeds", "no_mandate", "unclear_coordination", "resources", "other"}[g.rng.IntN(6)],
		}}
	case roll < 98:
		r.kind = events.KindResource
		p = events.Recorded[events.Resource]{Record: events.Resource{
			Kind: []string{"financial", "human", "in_kind", "other"}[g.rng.IntN(4)], Description: "Secretariat staff time",
		}}
	default:
		r.kind = events.KindExpansion
		p = events.Recorded[events.Expansion]{Record: events.Expansion{
			Entity: "Neighbouring process", Modality: []string{"observership", "membership", "other"}[g.rng.IntN(3)],
		}}
	}
	rs.drafts.add(r)
	return m.envelope(slug, r.kind, r.id, p)
}

// revised draws new content for a record of r's kind.
func (m *mix) revised(r *liveRecord) events.Payload {
	switch r.kind {
	case events.KindPosition:
		return events.Revised[events.Position]{Record: m.position()}
	case events.KindActivity:
		return events.Revised[events.Activity]{Record: m.activity()}
	case events.KindAgendaItem:
		return events.Revised[events.AgendaItem]{Record: events.AgendaItem{
			Meeting: events.Meeting{Title: "Senior officials meeting", Date: m.g.date()}, Standing: "standard", Objectives: m.numbers(23, 3),
		}}
	case events.KindPartnership:
		return events.Revised[events.Partnership]{Record: events.Partnership{Partner: "Renamed partner", Category: m.g.cat.PartnerCategories[0]}}
	case events.KindSubmission:
		return events.Revised[events.Submission]{Record: events.Submission{Forum: "imrf", Title: "Revised outcome statement", Date: m.g.date()}}
	case events.KindActionPlan:
		plan := events.ActionPlan{Status: "yes", Title: "Revised action plan", Objectives: m.numbers(23, 4)}
		for _, id := range r.milestones {
			plan.Milestones = append(plan.Milestones, events.Milestone{ID: id, Title: "Milestone " + id})
		}
		return events.Revised[events.ActionPlan]{Record: plan}
	case events.KindHinderingFactor:
		return events.Revised[events.HinderingFactor]{Record: events.HinderingFactor{Factor: "resources", Description: "Funding ended"}}
	case events.KindResource:
		return events.Revised[events.Resource]{Record: events.Resource{Kind: "financial", Description: "Trust fund"}}
	default:
		return events.Revised[events.Expansion]{Record: events.Expansion{Entity: "Neighbouring process", Modality: "membership"}}
	}
}

func (m *mix) position() events.Position {
	g := m.g
	return events.Position{
		Status:     []string{"yes", "no", "in_process"}[g.rng.IntN(3)],
		Document:   &events.Document{Title: "Declaration on the Global Compact", URL: "https://example.org/declaration"},
		Meeting:    &events.Meeting{Title: "Annual meeting", Date: g.date()},
		Themes:     []string{g.cat.Themes[g.rng.IntN(len(g.cat.Themes))].ID},
		Principles: m.numbers(10, 1+g.rng.IntN(4)),
		Objectives: m.numbers(23, 1+g.rng.IntN(8)),
	}
}

func (m *mix) activity() events.Activity {
	g := m.g
	kind := []string{"capacity_building", "data_exchange", "awareness_raising", "whole_of_government", "peer_exchange", "sdg_practice"}[g.rng.IntN(6)]
	a := events.Activity{
		Kind:       kind,
		Title:      "Regional workshop on labour migration governance",
		StartDate:  g.date(),
		Objectives: m.numbers(23, 1+g.rng.IntN(4)),
		Principles: m.numbers(10, g.rng.IntN(3)),
		Partners:   []string{"IOM"},
		Summary:    "Officials of member States exchanged practices and agreed on follow-up.",
	}
	if kind == "capacity_building" {
		a.Form = "training_workshop"
	}
	for range g.rng.IntN(5) {
		a.States = append(a.States, g.cat.Countries[g.rng.IntN(len(g.cat.Countries))].Alpha3)
	}
	a.EndDate = events.DateOf(a.StartDate.Time().AddDate(0, 0, g.rng.IntN(4)))
	return a
}

// numbers draws up to n distinct numbers of 1..max, ascending.
func (m *mix) numbers(max, n int) []int {
	seen := make([]bool, max+1)
	out := []int{}
	for range n {
		seen[1+m.g.rng.IntN(max)] = true
	}
	for k := 1; k <= max; k++ {
		if seen[k] {
			out = append(out, k)
		}
	}
	return out
}

// answer is an ISCM's questionnaire answers for a cycle: a draft now and
// then, else a submission that enters the lifecycle.
func (m *mix) answer(slug string, rs *iscmRecords) (events.Envelope, error) {
	g := m.g
	cycle := []int{2018, 2020, 2022, 2024, 2026}[g.rng.IntN(5)]
	channel := events.ChannelQuestionnaire
	if g.rng.IntN(4) == 0 {
		channel = events.ChannelInterview
	}
	id := events.QuestionnaireID(cycle, channel)
	if rs.withdrawn[id] {
		return m.record(slug, rs)
	}
	draft := g.rng.IntN(3) == 0
	pos := m.position()
	act := func(n int, form string) []events.QActivity {
		out := []events.QActivity{}
		for k := range n {
			out = append(out, events.QActivity{Title: fmt.Sprintf("Exchange %d", k+1), Form: form, Date: g.date()})
		}
		return out
	}
	a := events.Answers{
		Channel:           channel,
		SubmittedOn:       events.DateOf(time.Date(cycle, 11, 1, 0, 0, 0, 0, time.UTC)),
		Position:          &pos,
		AgendaItem:        "yes",
		Stocktaking:       &events.QStocktaking{Status: "already_done"},
		ActionPlan:        &events.QActionPlan{Status: "not_known"},
		DataExchange:      act(g.rng.IntN(3), ""),
		AwarenessRaising:  act(g.rng.IntN(3), ""),
		CapacityBuilding:  act(1+g.rng.IntN(3), "training_workshop"),
		WholeOfGovernment: act(g.rng.IntN(2), ""),
		SDGPractices:      []string{},
		Resources:         []events.Resource{{Kind: "human", Description: "Secretariat staff"}},
		Partnerships:      []events.QPartnership{{Partner: "IOM", Category: g.cat.PartnerCategories[0]}},
		Submissions:       []events.Submission{},
		HinderingFactors:  []string{"resources"},
	}
	if !draft && !rs.answered[id] {
		rs.answered[id] = true
		rs.submitted.add(&liveRecord{kind: events.KindQuestionnaire, id: id})
	}
	return m.envelope(slug, events.KindQuestionnaire, id, events.QuestionnaireAnswered{Cycle: cycle, Channel: channel, Draft: draft, Answers: a})
}
