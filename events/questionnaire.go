package events

import (
	"fmt"
	"strings"
)

// Questionnaire channels: an ISCM may answer the written questionnaire and
// also be interviewed in the same cycle.
const (
	ChannelQuestionnaire = "questionnaire"
	ChannelInterview     = "interview"
)

// Answers is one ISCM's complete answers to the questionnaire (IOM review
// 2019, Annex 3; interview questions of Annex 4) for one cycle and channel.
// Its JSON is the public contract of PUT
// /v1/iscms/{slug}/questionnaires/{cycle}/{channel}: field names and enums
// follow the published example. Optional fields may be omitted or null.
type Answers struct {
	Channel           string         `json:"channel,omitempty"`
	SubmittedOn       Date           `json:"submitted_on,omitzero"`
	Respondent        *Respondent    `json:"respondent,omitempty"`
	Position          *Position      `json:"position,omitempty"`
	AgendaItem        string         `json:"agenda_item,omitempty"` // q13: yes, no, planned, not_known
	Influence         string         `json:"influence,omitempty"`   // q14
	Stocktaking       *QStocktaking  `json:"stocktaking,omitempty"`
	ActionPlan        *QActionPlan   `json:"action_plan,omitempty"`
	DataExchange      []QActivity    `json:"data_exchange"`
	AwarenessRaising  []QActivity    `json:"awareness_raising"`
	CapacityBuilding  []QActivity    `json:"capacity_building"`
	Assistance        string         `json:"assistance,omitempty"` // q21
	WholeOfGovernment []QActivity    `json:"whole_of_government"`
	SDGPractices      []string       `json:"sdg_practices"`
	Resources         []Resource     `json:"resources"`
	Partnerships      []QPartnership `json:"partnerships"`
	Submissions       []Submission   `json:"submissions"`
	Expansion         *QExpansion    `json:"expansion,omitempty"`
	HinderingFactors  []string       `json:"hindering_factors"`
}

// Respondent names who answered (questions 2-3).
type Respondent struct {
	Chair           *Person `json:"chair,omitempty"`
	SecretariatHead *Person `json:"secretariat_head,omitempty"`
}

// Person is a named office holder.
type Person struct {
	Country string `json:"country,omitempty"`
	Name    string `json:"name,omitempty"`
	Title   string `json:"title,omitempty"`
}

// QStocktaking is the answer to questions 15-16.
type QStocktaking struct {
	Status   string    `json:"status"`
	Document *Document `json:"document,omitempty"`
}

// QActionPlan is the answer to questions 17-18.
type QActionPlan struct {
	Status     string `json:"status"`
	PlannedFor string `json:"planned_for,omitempty"`
}

// QActivity is one activity listed in answer to questions 19, 20 or 22.
type QActivity struct {
	Title string `json:"title"`
	Form  string `json:"form,omitempty"` // capacity_building only
	Date  Date   `json:"date,omitzero"`
	URL   string `json:"url,omitempty"`
}

// QPartnership is one partnership of question 25.
type QPartnership struct {
	Partner  string `json:"partner"`
	Category string `json:"category"`
	Nature   string `json:"nature,omitempty"`
}

// QExpansion is the answer to questions 27-28.
type QExpansion struct {
	Status string           `json:"status"`
	With   []QExpansionWith `json:"with"`
}

// QExpansionWith is one entity of question 28.
type QExpansionWith struct {
	Entity   string `json:"entity"`
	Modality string `json:"modality"`
}

// QuestionnaireAnswered: an ISCM answered the questionnaire for a cycle
// through a channel. The whole answer set is one event, so it is atomic; a
// new answer replaces the previous one of the same cycle and channel. A
// draft is saved between the steps of a form and derives nothing public.
type QuestionnaireAnswered struct {
	Cycle   int     `json:"cycle"`
	Channel string  `json:"channel"`
	Draft   bool    `json:"draft,omitempty"`
	Answers Answers `json:"answers"`
}

// EventType implements Payload.
func (QuestionnaireAnswered) EventType() string { return "questionnaire.answered" }

// QuestionnaireID is the aggregate id of one ISCM's answers for a cycle and
// channel.
func QuestionnaireID(cycle int, channel string) string {
	return fmt.Sprintf("%d-%s", cycle, channel)
}

// Derived is a record the projections derive from questionnaire answers.
type Derived struct {
	// Part identifies the record within the answers, stable across
	// re-submissions of the same shape ("position", "activity-3").
	Part    string
	Content Content
}

// Derive turns answers into the records they state: the position, the
// agenda item, stocktaking, action plan, activities, partnerships,
// submissions, resources, expansion and hindering factors.
func (a Answers) Derive() []Derived {
	var out []Derived
	add := func(part string, c Content) { out = append(out, Derived{Part: part, Content: c}) }
	if a.Position != nil {
		add("position", *a.Position)
	}
	if a.AgendaItem != "" {
		standing := map[string]string{"yes": "standard", "planned": "planned", "no": "none", "not_known": "not_known"}[a.AgendaItem]
		add("agenda_item", AgendaItem{Standing: standing, Notes: a.Influence})
	}
	if a.Stocktaking != nil {
		add("stocktaking", Stocktaking{Status: a.Stocktaking.Status, Document: a.Stocktaking.Document})
	}
	if a.ActionPlan != nil {
		add("action_plan", ActionPlan{Status: a.ActionPlan.Status, PlannedFor: a.ActionPlan.PlannedFor})
	}
	n := 0
	activity := func(kind string, q QActivity) {
		n++
		add(fmt.Sprintf("activity-%d", n), Activity{Kind: kind, Form: q.Form, Title: q.Title, StartDate: q.Date, URL: q.URL})
	}
	for _, q := range a.DataExchange {
		activity("data_exchange", q)
	}
	for _, q := range a.AwarenessRaising {
		activity("awareness_raising", q)
	}
	for _, q := range a.CapacityBuilding {
		activity("capacity_building", q)
	}
	for _, q := range a.WholeOfGovernment {
		activity("whole_of_government", q)
	}
	for _, s := range a.SDGPractices {
		activity("sdg_practice", QActivity{Title: s})
	}
	for i, p := range a.Partnerships {
		add(fmt.Sprintf("partnership-%d", i+1), Partnership{Partner: p.Partner, Category: p.Category, Nature: p.Nature})
	}
	for i, s := range a.Submissions {
		add(fmt.Sprintf("submission-%d", i+1), s)
	}
	for i, r := range a.Resources {
		add(fmt.Sprintf("resource-%d", i+1), r)
	}
	if a.Expansion != nil {
		for i, w := range a.Expansion.With {
			add(fmt.Sprintf("expansion-%d", i+1), Expansion{Entity: w.Entity, Modality: w.Modality, Notes: "status: " + a.Expansion.Status})
		}
	}
	for i, f := range a.HinderingFactors {
		add(fmt.Sprintf("hindering_factor-%d", i+1), HinderingFactor{Factor: f})
	}
	return out
}

// DerivedID is the id of a record derived from an ISCM's questionnaire: the
// questionnaire's id and the record's part, so the same part of a
// re-submission keeps its id.
func DerivedID(questionnaireID, part string) string {
	return "q-" + questionnaireID + "-" + strings.ReplaceAll(part, "_", "-")
}
