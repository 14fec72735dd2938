package records

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"gcmtrack/events"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
)

// cycles caches the review-cycles aggregate. The check of a record's date
// against the closed cycles asks the stream leader for the aggregate's
// version every time and reloads it only when it moved; the cycle commands
// themselves decide on the cached aggregate first (cycleCommand).
type cycles struct {
	mu      sync.Mutex
	version uint64
	closed  map[string]events.Cycle
}

var cyclesSubject = events.Subject(events.SystemTenant, events.KindReviewCycles, events.ReviewCyclesID)

// closedCycles returns the closed review cycles and the aggregate's version.
func (s *Service) closedCycles(ctx context.Context) (map[string]events.Cycle, uint64, error) {
	v, err := s.store.Version(ctx, cyclesSubject)
	if err != nil {
		return nil, 0, err
	}
	s.cycles.mu.Lock()
	defer s.cycles.mu.Unlock()
	if s.cycles.closed != nil && s.cycles.version == v {
		return s.cycles.closed, v, nil
	}
	h, err := s.store.Load(ctx, events.SystemTenant, events.KindReviewCycles, events.ReviewCyclesID)
	if err != nil {
		return nil, 0, err
	}
	closed := map[string]events.Cycle{}
	for _, r := range h.Records {
		p, err := events.Decode(r.Envelope)
		if err != nil {
			return nil, 0, fmt.Errorf("load review cycles: %w", err)
		}
		switch p := p.(type) {
		case events.CycleClosed:
			if c, err := events.ParseCycle(p.Cycle); err == nil {
				closed[p.Cycle] = c
			}
		case events.CycleReopened:
			delete(closed, p.Cycle)
		}
	}
	s.cycles.closed, s.cycles.version = closed, h.Version
	return closed, h.Version, nil
}

// checkOpen refuses a change to a record dated in a closed review cycle.
func (s *Service) checkOpen(ctx context.Context, dates ...events.Date) error {
	closed, _, err := s.closedCycles(ctx)
	if err != nil || len(closed) == 0 {
		return err
	}
	var hit []string
	for id, c := range closed {
		for _, d := range dates {
			if c.In(d) {
				hit = append(hit, id)
				break
			}
		}
	}
	if len(hit) == 0 {
		return nil
	}
	sort.Strings(hit)
	return fmt.Errorf("%w: the record is dated in %s, which IOM has closed; an admin must reopen it first", command.ErrLocked, strings.Join(hit, ", "))
}

// dateOf is the date a record counts under in the review cycles: its own
// date, or the day it was first recorded.
func dateOf(c events.Content, firstRecorded time.Time) events.Date {
	if c != nil {
		if d := contentDate(c); !d.IsZero() {
			return d
		}
	}
	if firstRecorded.IsZero() {
		firstRecorded = time.Now()
	}
	return events.DateOf(firstRecorded)
}

// contentDate is the date a record's content states, if any.
func contentDate(c events.Content) events.Date {
	switch r := c.(type) {
	case events.Position:
		if r.Meeting != nil {
			return r.Meeting.Date
		}
	case events.AgendaItem:
		return r.Meeting.Date
	case events.Stocktaking:
		return r.PlannedFor
	case events.ActionPlan:
		return r.PeriodFrom
	case events.Activity:
		return r.StartDate
	case events.Partnership:
		return r.Since
	case events.Submission:
		return r.Date
	}
	return events.Date{}
}

// cycleDate is the date questionnaire answers of a cycle count under.
func cycleDate(cycle int) events.Date {
	return events.DateOf(time.Date(cycle, 7, 1, 0, 0, 0, 0, time.UTC))
}

// CloseCycle closes a review cycle (admin).
func (s *Service) CloseCycle(ctx context.Context, id, note string, m command.Meta) (command.Result, error) {
	return s.cycleCommand(ctx, id, note, true, m)
}

// ReopenCycle reopens a closed review cycle (admin).
func (s *Service) ReopenCycle(ctx context.Context, id, note string, m command.Meta) (command.Result, error) {
	return s.cycleCommand(ctx, id, note, false, m)
}

func (s *Service) cycleCommand(ctx context.Context, id, note string, closing bool, m command.Meta) (command.Result, error) {
	if _, err := events.ParseCycle(id); err != nil {
		return command.Result{}, fmt.Errorf("%w: %v", command.ErrNotFound, err)
	}
	if len(note) > maxText {
		return command.Result{}, &command.ValidationError{Problems: []command.FieldProblem{{Field: "note", Detail: fmt.Sprintf("is longer than %d characters", maxText)}}}
	}
	if res, done, err := command.Stored(ctx, s.store, m, events.SystemTenant, events.KindReviewCycles, events.ReviewCyclesID); err != nil || done {
		return res, err
	}
	decide := func(closed map[string]events.Cycle) (events.Payload, error) {
		_, isClosed := closed[id]
		switch {
		case closing && isClosed:
			return nil, fmt.Errorf("%w: %s is already closed", command.ErrStateConflict, id)
		case !closing && !isClosed:
			return nil, fmt.Errorf("%w: %s is not closed", command.ErrStateConflict, id)
		case closing:
			return events.CycleClosed{Cycle: id, Note: note}, nil
		default:
			return events.CycleReopened{Cycle: id, Note: note}, nil
		}
	}
	// First on the cached aggregate, with its version as the expected one:
	// if the aggregate moved on, nothing is stored and the command is
	// decided again on the leader's version below, as is a refusal, which
	// the cached aggregate alone may not justify.
	s.cycles.mu.Lock()
	closed, v, cached := s.cycles.closed, s.cycles.version, s.cycles.closed != nil
	s.cycles.mu.Unlock()
	if cached && (m.IfMatch == nil || *m.IfMatch == v) {
		if p, err := decide(closed); err == nil {
			res, err := s.appendCycles(ctx, m, closed, v, p)
			if !errors.Is(err, eventstore.ErrConflict) {
				return res, err
			}
		}
	}
	closed, v, err := s.closedCycles(ctx)
	if err != nil {
		return command.Result{}, err
	}
	if err := command.CheckIfMatch(m, v); err != nil {
		return command.Result{}, err
	}
	p, err := decide(closed)
	if err != nil {
		return command.Result{}, err
	}
	return s.appendCycles(ctx, m, closed, v, p)
}

// appendCycles appends a cycle event decided on the closed cycles at
// version v, and caches the aggregate it leads to.
func (s *Service) appendCycles(ctx context.Context, m command.Meta, closed map[string]events.Cycle, v uint64, p events.Payload) (command.Result, error) {
	res, err := command.Append(ctx, s.store, m, events.SystemTenant, events.KindReviewCycles, events.ReviewCyclesID, p, time.Time{}, v)
	if err != nil || res.Version <= v {
		// A duplicate answers the original position: reload next time.
		return res, err
	}
	next := make(map[string]events.Cycle, len(closed)+1)
	for k, c := range closed {
		next[k] = c
	}
	switch p := p.(type) {
	case events.CycleClosed:
		if c, err := events.ParseCycle(p.Cycle); err == nil {
			next[p.Cycle] = c
		}
	case events.CycleReopened:
		delete(next, p.Cycle)
	}
	s.cycles.mu.Lock()
	if s.cycles.closed == nil || s.cycles.version < res.Version {
		s.cycles.closed, s.cycles.version = next, res.Version
	}
	s.cycles.mu.Unlock()
	return res, nil
}
