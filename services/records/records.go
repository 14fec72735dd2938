// Package records decides the commands on what an ISCM secretariat records:
// its position on the GCM, agenda items, stocktaking, action plans,
// activities, partnerships, submissions, hindering factors, resources and
// expansion, each an aggregate with a lifecycle (draft, submitted,
// published, withdrawn), and its answers to the questionnaire, stored whole
// as one event.
package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/registry"
)

// Service handles record and questionnaire commands.
type Service struct {
	store    *eventstore.Store
	cat      *catalog.Catalog
	registry *registry.Service
	cycles   cycles
}

// NewService returns the records' command handler.
func NewService(store *eventstore.Store, cat *catalog.Catalog, reg *registry.Service) *Service {
	return &Service{store: store, cat: cat, registry: reg}
}

// Record is the aggregate: a record's current content, status and version.
type Record struct {
	Kind       string
	ID         string
	ISCM       string
	Exists     bool
	Status     string
	Content    events.Content
	Answers    *events.QuestionnaireAnswered // questionnaires only
	Milestones map[string]string             // action plans: milestone id -> progress
	Version    uint64
	// FirstRecorded is when the record was created.
	FirstRecorded time.Time
}

// date is the date the record counts under in the review cycles.
func (r Record) date() events.Date {
	if r.Answers != nil {
		return cycleDate(r.Answers.Cycle)
	}
	return dateOf(r.Content, r.FirstRecorded)
}

// Load folds a record's events.
func (s *Service) Load(ctx context.Context, iscm, kind, id string) (Record, error) {
	r := Record{Kind: kind, ID: id, ISCM: iscm}
	if !events.ValidToken(iscm) || !events.ValidToken(id) || !events.ValidToken(kind) {
		return r, nil
	}
	h, err := s.store.Load(ctx, iscm, kind, id)
	if err != nil {
		return Record{}, err
	}
	r.Version = h.Version
	for _, rec := range h.Records {
		p, err := events.Decode(rec.Envelope)
		if err != nil {
			return Record{}, fmt.Errorf("load %s %s: %w", kind, id, err)
		}
		apply(&r, p)
		if r.FirstRecorded.IsZero() {
			r.FirstRecorded = rec.RecordedAt
		}
	}
	return r, nil
}

func apply(r *Record, p events.Payload) {
	if c, ok := events.RecordedContent(p); ok {
		if !r.Exists {
			r.Exists, r.Status = true, events.StatusDraft
		}
		r.Content = c
		if ap, ok := c.(events.ActionPlan); ok {
			ms := map[string]string{}
			for _, m := range ap.Milestones {
				ms[m.ID] = r.Milestones[m.ID]
			}
			r.Milestones = ms
		}
		return
	}
	switch p := p.(type) {
	case events.QuestionnaireAnswered:
		if !r.Exists {
			r.Exists, r.Status = true, events.StatusDraft
		}
		if !p.Draft && r.Status == events.StatusDraft {
			r.Status = events.StatusSubmitted
		}
		r.Answers = &p
	case events.RecordSubmitted:
		r.Status = events.StatusSubmitted
	case events.RecordPublished:
		r.Status = events.StatusPublished
	case events.RecordWithdrawn:
		r.Status = events.StatusWithdrawn
	case events.MilestoneProgressed:
		if r.Milestones != nil {
			r.Milestones[p.MilestoneID] = p.Progress
		}
	}
}

// iscmMembers loads the ISCM the command is for: it must be registered.
func (s *Service) iscmMembers(ctx context.Context, slug string) (map[string]string, error) {
	if !events.ValidToken(slug) {
		return nil, fmt.Errorf("%w: ISCM %q", command.ErrNotFound, slug)
	}
	a, err := s.registry.Load(ctx, slug)
	if err != nil {
		return nil, err
	}
	if !a.Registered {
		return nil, fmt.Errorf("%w: ISCM %q", command.ErrNotFound, slug)
	}
	return a.Members, nil
}

// Singleton reports whether an ISCM has at most one record of a kind (its
// position), whose id is then the ISCM's slug.
func Singleton(kind string) bool { return kind == events.KindPosition }

// newID picks a new record's id: deterministic from the request's
// idempotency key, so a retry lands on the same aggregate.
func newID(m command.Meta) string {
	if m.MsgID != "" {
		return uuid.NewSHA1(uuid.NameSpaceURL, []byte("gcmtrack:record:"+m.MsgID)).String()
	}
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// occurred is when a record's fact happened, when it says so.
func occurred(c events.Content) time.Time {
	switch r := c.(type) {
	case events.AgendaItem:
		return r.Meeting.Date.Time()
	case events.Activity:
		return r.StartDate.Time()
	case events.Submission:
		return r.Date.Time()
	case events.Position:
		if r.Meeting != nil {
			return r.Meeting.Date.Time()
		}
	}
	return time.Time{}
}

// Create records a new draft for an ISCM.
func (s *Service) Create(ctx context.Context, iscm string, c events.Content, m command.Meta) (command.Result, error) {
	members, err := s.iscmMembers(ctx, iscm)
	if err != nil {
		return command.Result{}, err
	}
	c = normalise(c)
	chk := checker{cat: s.cat, members: members}
	chk.content("", c)
	if err := chk.ps.Err(); err != nil {
		return command.Result{}, err
	}
	if err := s.checkOpen(ctx, dateOf(c, time.Time{})); err != nil {
		return command.Result{}, err
	}
	kind := c.RecordKind()
	id := newID(m)
	if Singleton(kind) {
		id = iscm
	}
	if res, done, err := command.Stored(ctx, s.store, m, iscm, kind, id); err != nil || done {
		return res, err
	}
	res, err := command.Append(ctx, s.store, m, iscm, kind, id, events.NewRecorded(c), occurred(c), 0)
	var conflict *eventstore.ConflictError
	if errors.As(err, &conflict) && Singleton(kind) {
		return command.Result{}, fmt.Errorf("%w: %s already has a %s (id %s); revise it instead", command.ErrStateConflict, iscm, kind, id)
	}
	return res, err
}

// Revise replaces a record's content. A withdrawn record cannot change.
func (s *Service) Revise(ctx context.Context, iscm, kind, id string, c events.Content, m command.Meta) (command.Result, error) {
	members, err := s.iscmMembers(ctx, iscm)
	if err != nil {
		return command.Result{}, err
	}
	r, err := s.existing(ctx, iscm, kind, id, m)
	if err != nil {
		return storedOr(err)
	}
	if r.Status == events.StatusWithdrawn {
		return command.Result{}, fmt.Errorf("%w: the %s is withdrawn and can no longer change", command.ErrStateConflict, kind)
	}
	c = normalise(c)
	chk := checker{cat: s.cat, members: members}
	chk.content("", c)
	if err := chk.ps.Err(); err != nil {
		return command.Result{}, err
	}
	if err := s.checkOpen(ctx, r.date(), dateOf(c, r.FirstRecorded)); err != nil {
		return command.Result{}, err
	}
	return command.Append(ctx, s.store, m, iscm, kind, id, events.NewRevised(c), occurred(c), r.Version)
}

// errStored carries the answer of a command an earlier attempt stored.
type errStored struct{ res command.Result }

func (e *errStored) Error() string { return "already stored" }

// storedOr answers an earlier attempt's result, or fails with err.
func storedOr(err error) (command.Result, error) {
	var st *errStored
	if errors.As(err, &st) {
		return st.res, nil
	}
	return command.Result{}, err
}

func (s *Service) existing(ctx context.Context, iscm, kind, id string, m command.Meta) (Record, error) {
	if res, done, err := command.Stored(ctx, s.store, m, iscm, kind, id); err != nil || done {
		if err == nil {
			err = &errStored{res}
		}
		return Record{}, err
	}
	r, err := s.Load(ctx, iscm, kind, id)
	if err != nil {
		return Record{}, err
	}
	if !r.Exists {
		return Record{}, fmt.Errorf("%w: no %s %q in %s", command.ErrNotFound, kind, id, iscm)
	}
	if err := command.CheckIfMatch(m, r.Version); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Lifecycle actions.
const (
	ActionSubmit   = "submit"
	ActionPublish  = "publish"
	ActionWithdraw = "withdraw"
)

// allowed lists, per action, the statuses it may start from.
var allowed = map[string][]string{
	ActionSubmit:   {events.StatusDraft},
	ActionPublish:  {events.StatusSubmitted},
	ActionWithdraw: {events.StatusDraft, events.StatusSubmitted, events.StatusPublished},
}

// Transition moves a record (or a questionnaire) through its lifecycle.
// Who may do it is the API's decision; the service checks the state.
func (s *Service) Transition(ctx context.Context, iscm, kind, id, action, note string, m command.Meta) (command.Result, error) {
	var ps command.Problems
	if len(note) > maxText {
		ps.Add("note", "is longer than %d characters", maxText)
	}
	from, ok := allowed[action]
	if !ok {
		ps.Add("action", "%q is not one of submit, publish, withdraw", action)
	}
	if err := ps.Err(); err != nil {
		return command.Result{}, err
	}
	if _, err := s.iscmMembers(ctx, iscm); err != nil {
		return command.Result{}, err
	}
	r, err := s.existing(ctx, iscm, kind, id, m)
	if err != nil {
		return storedOr(err)
	}
	okFrom := false
	for _, st := range from {
		okFrom = okFrom || r.Status == st
	}
	if !okFrom {
		return command.Result{}, fmt.Errorf("%w: cannot %s a %s record (allowed from: %v)", command.ErrStateConflict, action, r.Status, from)
	}
	if err := s.checkOpen(ctx, r.date()); err != nil {
		return command.Result{}, err
	}
	var p events.Payload
	switch action {
	case ActionSubmit:
		p = events.RecordSubmitted{Note: note}
	case ActionPublish:
		p = events.RecordPublished{Note: note}
	default:
		p = events.RecordWithdrawn{Reason: note}
	}
	return command.Append(ctx, s.store, m, iscm, kind, id, p, time.Time{}, r.Version)
}

// Progress is the input of a milestone progress report.
type Progress struct {
	Progress string `json:"progress"`
	On       string `json:"on"`
	Note     string `json:"note"`
}

// ReportProgress records progress on one milestone of an action plan.
func (s *Service) ReportProgress(ctx context.Context, iscm, id, milestone string, in Progress, m command.Meta) (command.Result, error) {
	chk := checker{cat: s.cat}
	chk.enum("progress", in.Progress, milestoneProgress, true)
	chk.text("note", in.Note, maxText, false)
	var on events.Date
	if in.On != "" {
		d, err := events.ParseDate(in.On)
		if err != nil {
			chk.ps.Add("on", "%v", err)
		}
		on = d
	}
	if err := chk.ps.Err(); err != nil {
		return command.Result{}, err
	}
	if _, err := s.iscmMembers(ctx, iscm); err != nil {
		return command.Result{}, err
	}
	r, err := s.existing(ctx, iscm, events.KindActionPlan, id, m)
	if err != nil {
		return storedOr(err)
	}
	if r.Status == events.StatusWithdrawn {
		return command.Result{}, fmt.Errorf("%w: the action plan is withdrawn", command.ErrStateConflict)
	}
	if _, ok := r.Milestones[milestone]; !ok {
		return command.Result{}, fmt.Errorf("%w: the action plan has no milestone %q", command.ErrNotFound, milestone)
	}
	if err := s.checkOpen(ctx, r.date()); err != nil {
		return command.Result{}, err
	}
	return command.Append(ctx, s.store, m, iscm, events.KindActionPlan, id,
		events.MilestoneProgressed{MilestoneID: milestone, Progress: in.Progress, On: on, Note: in.Note}, on.Time(), r.Version)
}

// Answer stores one ISCM's answers for a cycle and channel as one event.
// The answers replace earlier ones of the same cycle and channel.
func (s *Service) Answer(ctx context.Context, iscm string, cycle int, channel string, a events.Answers, draft bool, m command.Meta) (command.Result, error) {
	if err := ValidateAnswers(s.cat, nil, cycle, channel, a); err != nil {
		return command.Result{}, err
	}
	members, err := s.iscmMembers(ctx, iscm)
	if err != nil {
		return command.Result{}, err
	}
	if err := ValidateAnswers(s.cat, members, cycle, channel, a); err != nil {
		return command.Result{}, err
	}
	a.Channel = channel
	id := events.QuestionnaireID(cycle, channel)
	if res, done, err := command.Stored(ctx, s.store, m, iscm, events.KindQuestionnaire, id); err != nil || done {
		return res, err
	}
	r, err := s.Load(ctx, iscm, events.KindQuestionnaire, id)
	if err != nil {
		return command.Result{}, err
	}
	if err := command.CheckIfMatch(m, r.Version); err != nil {
		return command.Result{}, err
	}
	if r.Status == events.StatusWithdrawn {
		return command.Result{}, fmt.Errorf("%w: these answers were withdrawn and can no longer change", command.ErrStateConflict)
	}
	if err := s.checkOpen(ctx, cycleDate(cycle)); err != nil {
		return command.Result{}, err
	}
	if draft && r.Exists && r.Status != events.StatusDraft {
		return command.Result{}, fmt.Errorf("%w: the answers are %s; a draft can no longer replace them", command.ErrStateConflict, r.Status)
	}
	p := events.QuestionnaireAnswered{Cycle: cycle, Channel: channel, Draft: draft, Answers: a}
	return command.Append(ctx, s.store, m, iscm, events.KindQuestionnaire, id, p, a.SubmittedOn.Time(), r.Version)
}

// ValidateAnswers checks a questionnaire's answers for a cycle and channel
// without I/O. members are the ISCM's States; nil skips the checks that
// need them.
func ValidateAnswers(cat *catalog.Catalog, members map[string]string, cycle int, channel string, a events.Answers) error {
	chk := checker{cat: cat, members: members}
	if cycle < 2000 || cycle > 2100 {
		chk.ps.Add("cycle", "%d is not a reporting year (2000-2100)", cycle)
	}
	chk.enum("channel", channel, questionnaireChans, true)
	if a.Channel != "" && a.Channel != channel {
		chk.ps.Add("channel", "%q in the body does not match %q in the path", a.Channel, channel)
	}
	if err := chk.ps.Err(); err != nil {
		return err
	}
	chk.answers(a)
	return chk.ps.Err()
}

// normalise gives list fields a non-nil value, so stored content is the
// same whether a client omitted a list or sent [].
func normalise(c events.Content) events.Content {
	switch r := c.(type) {
	case events.Position:
		r.Themes, r.Principles, r.Objectives = orEmpty(r.Themes), orEmpty(r.Principles), orEmpty(r.Objectives)
		return r
	case events.AgendaItem:
		r.Objectives = orEmpty(r.Objectives)
		return r
	case events.ActionPlan:
		r.Objectives, r.Milestones = orEmpty(r.Objectives), orEmpty(r.Milestones)
		for i := range r.Milestones {
			if r.Milestones[i].ID == "" {
				r.Milestones[i].ID = fmt.Sprintf("m%d", i+1)
			}
		}
		return r
	case events.Activity:
		r.States, r.Objectives, r.Principles, r.Partners = orEmpty(r.States), orEmpty(r.Objectives), orEmpty(r.Principles), orEmpty(r.Partners)
		return r
	}
	return c
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ValidateContent checks a record's content without I/O; members are the
// ISCM's States (activities may name only them).
func ValidateContent(cat *catalog.Catalog, members map[string]string, c events.Content) error {
	chk := checker{cat: cat, members: members}
	chk.content("", normalise(c))
	return chk.ps.Err()
}
