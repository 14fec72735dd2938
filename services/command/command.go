// Package command is the command side's shared vocabulary: the metadata every
// command carries (who, which request, which version the client saw), the
// result every write answers with, the errors commands fail with, and the
// append step that turns a decision into a stored event.
//
// HTTP status codes are not chosen here: the API maps these errors to RFC
// 9457 problems in one place.
package command

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gcmtrack/events"
	"gcmtrack/services/eventstore"
)

// Meta is what every command carries besides its own fields.
type Meta struct {
	// Actor is the identity events record ("token:<id>", or "system").
	Actor string
	// CorrelationID ties together the events of one request.
	CorrelationID string
	// MsgID makes the append idempotent; derived from the client's
	// Idempotency-Key when it sent one.
	MsgID string
	// IfMatch is the aggregate version the client saw (HTTP If-Match), or nil.
	IfMatch *uint64
}

// Result is what a write answers with.
type Result struct {
	// Position is the stream position of the event the command appended.
	Position uint64 `json:"position"`
	// Version is the aggregate's version after the command.
	Version uint64 `json:"version"`
	// ID is the aggregate's id, for commands that create one.
	ID string `json:"id,omitempty"`
}

// Errors commands fail with.
var (
	// ErrNotFound: the aggregate the command addresses does not exist.
	ErrNotFound = errors.New("not found")
	// ErrStateConflict: the command is not allowed in the aggregate's current
	// state (already a member, not a member, publishing a withdrawn record).
	ErrStateConflict = errors.New("not allowed in the current state")
	// ErrLocked: the record is dated in a closed review cycle.
	ErrLocked = errors.New("locked by a closed review cycle")
)

// PreconditionError: the client's If-Match is not the aggregate's version.
type PreconditionError struct {
	Current uint64
}

func (e *PreconditionError) Error() string {
	return fmt.Sprintf("precondition failed: the current version is %d", e.Current)
}

// FieldProblem is one invalid input field.
type FieldProblem struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// ValidationError lists what is wrong with a command's input.
type ValidationError struct {
	Problems []FieldProblem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Field + ": " + p.Detail
	}
	return "invalid input: " + strings.Join(parts, "; ")
}

// Problems collects field problems while a command is validated.
type Problems struct{ list []FieldProblem }

// Add records a problem with field.
func (p *Problems) Add(field, format string, args ...any) {
	p.list = append(p.list, FieldProblem{Field: field, Detail: fmt.Sprintf(format, args...)})
}

// Err is a *ValidationError when problems were added, else nil.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: p.list}
}

// CheckIfMatch refuses a command whose client saw another version.
func CheckIfMatch(m Meta, version uint64) error {
	if m.IfMatch != nil && *m.IfMatch != version {
		return &PreconditionError{Current: version}
	}
	return nil
}

// Append stores one event decided at version, with the command's metadata.
func Append(ctx context.Context, store *eventstore.Store, m Meta, iscm, kind, id string, p events.Payload, occurredAt time.Time, version uint64) (Result, error) {
	env, err := events.New(iscm, kind, id, p, occurredAt, time.Now())
	if err != nil {
		return Result{}, err
	}
	env.Actor = m.Actor
	env.CorrelationID = m.CorrelationID
	msgID := m.MsgID
	if msgID == "" {
		msgID = env.ID.String()
	}
	res, err := store.Append(ctx, env, version, msgID)
	if err != nil {
		return Result{}, err
	}
	return Result{Position: res.Position, Version: res.Position, ID: id}, nil
}

// Stored answers a command that was already carried out: when the
// aggregate's last event carries the command's message id, an earlier
// attempt stored it but its answer was lost (the process stopped before it
// kept the request's outcome). The retry then answers as that attempt
// would have, rather than deciding again on the state it produced.
func Stored(ctx context.Context, store *eventstore.Store, m Meta, iscm, kind, id string) (Result, bool, error) {
	if m.MsgID == "" {
		return Result{}, false, nil
	}
	seq, msgID, err := store.Last(ctx, events.Subject(iscm, kind, id))
	if err != nil || seq == 0 || msgID != m.MsgID {
		return Result{}, false, err
	}
	return Result{Position: seq, Version: seq, ID: id}, true, nil
}
