package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"gcmtrack/services/audit"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type     string                 `json:"type"`
	Title    string                 `json:"title"`
	Status   int                    `json:"status"`
	Detail   string                 `json:"detail,omitempty"`
	Instance string                 `json:"instance,omitempty"`
	Errors   []command.FieldProblem `json:"errors,omitempty"`
	// Version is the aggregate's current version, on conflicts.
	Version *uint64 `json:"version,omitempty"`
}

const problemTypeBase = "https://gcmtrack.example/problems/"

// problem builds a Problem with a type URI derived from its short name.
func problem(status int, short, detail string) *Problem {
	return &Problem{Type: problemTypeBase + short, Title: http.StatusText(status), Status: status, Detail: detail}
}

// errProblem maps an error to the problem the client sees. This is the one
// place where command and store errors become HTTP statuses; unknown errors
// are a 500 whose detail says nothing about the inside.
func errProblem(err error) *Problem {
	var (
		p        *Problem
		valid    *command.ValidationError
		pre      *command.PreconditionError
		conflict *eventstore.ConflictError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &valid):
		p := problem(http.StatusUnprocessableEntity, "validation", valid.Error())
		p.Errors = valid.Problems
		return p
	case errors.As(err, &pre):
		p := problem(http.StatusPreconditionFailed, "precondition-failed",
			fmt.Sprintf("If-Match does not match: the current version is %d", pre.Current))
		v := pre.Current
		p.Version = &v
		return p
	case errors.As(err, &conflict):
		p := problem(http.StatusConflict, "version-conflict",
			fmt.Sprintf("the record changed while the request was decided: the current version is %d; read it again and retry", conflict.Current))
		v := conflict.Current
		p.Version = &v
		return p
	case errors.Is(err, command.ErrNotFound):
		return problem(http.StatusNotFound, "not-found", err.Error())
	case errors.Is(err, command.ErrLocked):
		return problem(http.StatusLocked, "cycle-closed", err.Error())
	case errors.Is(err, command.ErrStateConflict):
		return problem(http.StatusConflict, "state-conflict", err.Error())
	case errors.Is(err, audit.ErrInvalidQuery):
		return problem(http.StatusBadRequest, "bad-parameter", strings.TrimPrefix(err.Error(), audit.ErrInvalidQuery.Error()+": "))
	case errors.Is(err, eventstore.ErrUnavailable):
		return problem(http.StatusServiceUnavailable, "unavailable", "the event store is not reachable; retry later")
	}
	return problem(http.StatusInternalServerError, "internal", "an internal error occurred; it has been logged")
}

func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	noteProblem(r, p)
	p.Instance = r.URL.Path
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status == http.StatusServiceUnavailable || p.Status == http.StatusTooManyRequests {
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", strconv.Itoa(1))
		}
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Error lets a Problem travel as an error to the handler's caller.
func (p *Problem) Error() string { return p.Title + ": " + p.Detail }
