package events

// Record kinds: the aggregate kinds of what an ISCM secretariat records.
// Each is the third token of its records' subjects.
const (
	KindPosition        = "position"
	KindAgendaItem      = "agenda_item"
	KindStocktaking     = "stocktaking"
	KindActionPlan      = "action_plan"
	KindActivity        = "activity"
	KindPartnership     = "partnership"
	KindSubmission      = "submission"
	KindHinderingFactor = "hindering_factor"
	KindResource        = "resource"
	KindExpansion       = "expansion"
	KindQuestionnaire   = "questionnaire"
)

// RecordKinds lists the record kinds a secretariat creates one by one (the
// questionnaire is answered whole).
var RecordKinds = []string{
	KindPosition, KindAgendaItem, KindStocktaking, KindActionPlan, KindActivity,
	KindPartnership, KindSubmission, KindHinderingFactor, KindResource, KindExpansion,
}

// Lifecycle statuses of every record.
const (
	StatusDraft     = "draft"
	StatusSubmitted = "submitted"
	StatusPublished = "published"
	StatusWithdrawn = "withdrawn"
)

// Document is a text an ISCM adopted or produced.
type Document struct {
	Title       string `json:"title"`
	URL         string `json:"url,omitempty"`
	Description string `json:"description,omitempty"`
}

// Meeting is an ISCM meeting.
type Meeting struct {
	Title string `json:"title"`
	Date  Date   `json:"date"`
	Place string `json:"place,omitempty"`
}

// Position is an ISCM's position or recommendations on the GCM
// (questionnaire questions 4-12). One per ISCM, revised over time.
type Position struct {
	Status                    string    `json:"status"` // yes, no, in_process
	Document                  *Document `json:"document,omitempty"`
	Meeting                   *Meeting  `json:"meeting,omitempty"`
	RevisedAfterAgreedOutcome *bool     `json:"revised_after_agreed_outcome,omitempty"`
	PlansRefinement           *bool     `json:"plans_refinement,omitempty"`
	Themes                    []string  `json:"themes"`
	Principles                []int     `json:"principles"`
	Objectives                []int     `json:"objectives"`
	Pursuit                   string    `json:"pursuit,omitempty"`
}

// AgendaItem is a meeting at which the GCM was on the agenda.
type AgendaItem struct {
	Meeting    Meeting `json:"meeting"`
	Standing   string  `json:"standing"` // standard, planned, one_off
	Objectives []int   `json:"objectives"`
	Notes      string  `json:"notes,omitempty"`
}

// Stocktaking is an ISCM's stocktaking of its work relevant to the GCM
// (questions 15-16).
type Stocktaking struct {
	Status     string    `json:"status"` // yes, no, already_done, not_known
	Document   *Document `json:"document,omitempty"`
	PlannedFor Date      `json:"planned_for,omitzero"`
}

// Milestone is a step of an action plan.
type Milestone struct {
	ID    string `json:"id"`
	Title string `json:"title"`
	Due   Date   `json:"due,omitzero"`
}

// ActionPlan is an ISCM's plan to pursue GCM objectives (questions 17-18).
type ActionPlan struct {
	Status     string      `json:"status"` // yes, no, already_done, not_known
	Title      string      `json:"title,omitempty"`
	PeriodFrom Date        `json:"period_from,omitzero"`
	PeriodTo   Date        `json:"period_to,omitzero"`
	PlannedFor string      `json:"planned_for,omitempty"`
	Objectives []int       `json:"objectives"`
	Milestones []Milestone `json:"milestones"`
}

// Activity is something an ISCM did toward the GCM (questions 19-23).
type Activity struct {
	Kind       string   `json:"kind"` // capacity_building, data_exchange, awareness_raising, whole_of_government, peer_exchange, sdg_practice
	Form       string   `json:"form,omitempty"`
	Title      string   `json:"title"`
	StartDate  Date     `json:"start_date,omitzero"`
	EndDate    Date     `json:"end_date,omitzero"`
	States     []string `json:"states"`
	Objectives []int    `json:"objectives"`
	Principles []int    `json:"principles"`
	Partners   []string `json:"partners"`
	URL        string   `json:"url,omitempty"`
	Summary    string   `json:"summary,omitempty"`
}

// Partnership is one partner an ISCM works with toward the GCM (question 25).
type Partnership struct {
	Partner  string `json:"partner"`
	Category string `json:"category"` // one of the 8 of question 25
	Nature   string `json:"nature,omitempty"`
	Since    Date   `json:"since,omitzero"`
	Until    Date   `json:"until,omitzero"`
}

// Submission is an outcome presented to a global process (question 26).
type Submission struct {
	Forum string `json:"forum"` // gfmd, idm, imrf, regional_review, other
	Title string `json:"title"`
	Date  Date   `json:"date,omitzero"`
	URL   string `json:"url,omitempty"`
}

// HinderingFactor is something that holds an ISCM back (interview question 5).
type HinderingFactor struct {
	Factor      string `json:"factor"` // low_priority, different_speeds, no_mandate, unclear_coordination, resources, other
	Description string `json:"description,omitempty"`
}

// Resource is what an ISCM can allocate to its GCM engagement (question 24).
type Resource struct {
	Kind        string `json:"kind"` // financial, human, in_kind, other
	Description string `json:"description"`
}

// Expansion is cooperation with or expansion to another entity (q27-28).
type Expansion struct {
	Entity   string `json:"entity"`
	Modality string `json:"modality"` // observership, membership, other
	Notes    string `json:"notes,omitempty"`
}

// RecordKind implements Content.
func (Position) RecordKind() string { return KindPosition }

// RecordKind implements Content.
func (AgendaItem) RecordKind() string { return KindAgendaItem }

// RecordKind implements Content.
func (Stocktaking) RecordKind() string { return KindStocktaking }

// RecordKind implements Content.
func (ActionPlan) RecordKind() string { return KindActionPlan }

// RecordKind implements Content.
func (Activity) RecordKind() string { return KindActivity }

// RecordKind implements Content.
func (Partnership) RecordKind() string { return KindPartnership }

// RecordKind implements Content.
func (Submission) RecordKind() string { return KindSubmission }

// RecordKind implements Content.
func (HinderingFactor) RecordKind() string { return KindHinderingFactor }

// RecordKind implements Content.
func (Resource) RecordKind() string { return KindResource }

// RecordKind implements Content.
func (Expansion) RecordKind() string { return KindExpansion }

// Content is the body of a record of one kind.
type Content interface {
	RecordKind() string
}

// Recorded: a secretariat created a record (as a draft). Its type is
// "<kind>.recorded".
type Recorded[C Content] struct {
	Record C `json:"record"`
}

// EventType implements Payload.
func (Recorded[C]) EventType() string { var c C; return c.RecordKind() + ".recorded" }

// Revised: a record's content was corrected; the payload is the whole new
// content. Its type is "<kind>.revised".
type Revised[C Content] struct {
	Record C `json:"record"`
}

// EventType implements Payload.
func (Revised[C]) EventType() string { var c C; return c.RecordKind() + ".revised" }

func (r Recorded[C]) content() Content { return r.Record }
func (r Revised[C]) content() Content  { return r.Record }

// RecordSubmitted: the secretariat submitted a record for IOM's approval.
type RecordSubmitted struct {
	Note string `json:"note,omitempty"`
}

// EventType implements Payload.
func (RecordSubmitted) EventType() string { return "record.submitted" }

// RecordPublished: IOM approved a record; it reaches the public pages and
// feeds.
type RecordPublished struct {
	Note string `json:"note,omitempty"`
}

// EventType implements Payload.
func (RecordPublished) EventType() string { return "record.published" }

// RecordWithdrawn: a record was withdrawn; it leaves the public pages and
// can no longer be changed.
type RecordWithdrawn struct {
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (RecordWithdrawn) EventType() string { return "record.withdrawn" }

// MilestoneProgressed: progress on one milestone of an action plan.
type MilestoneProgressed struct {
	MilestoneID string `json:"milestone_id"`
	Progress    string `json:"progress"` // not_started, in_progress, achieved
	On          Date   `json:"on,omitzero"`
	Note        string `json:"note,omitempty"`
}

// EventType implements Payload.
func (MilestoneProgressed) EventType() string { return "action_plan.milestone_progressed" }

// Review cycles are facts of no single ISCM: they live under SystemTenant
// in one aggregate.
const (
	KindReviewCycles = "review_cycles"
	// ReviewCyclesID is the id of the one review-cycles aggregate.
	ReviewCyclesID = "all"
)

// CycleClosed: IOM closed a review cycle; records dated in its period can no
// longer change until it is reopened.
type CycleClosed struct {
	Cycle string `json:"cycle"` // regional-2024, imrf-2026
	Note  string `json:"note,omitempty"`
}

// EventType implements Payload.
func (CycleClosed) EventType() string { return "review_cycle.closed" }

// CycleReopened: IOM reopened a closed review cycle.
type CycleReopened struct {
	Cycle string `json:"cycle"`
	Note  string `json:"note,omitempty"`
}

// EventType implements Payload.
func (CycleReopened) EventType() string { return "review_cycle.reopened" }
