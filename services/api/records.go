package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gcmtrack/events"
	projrecords "gcmtrack/projections/records"
	"gcmtrack/services/command"
	"gcmtrack/services/records"
)

// recordType is one kind of record as the API names it.
type recordType struct {
	segment string // URL segment: positions, agenda-items, …
	kind    string // aggregate kind: position, agenda_item, …
	title   string // for documentation
	decode  func(body []byte) (events.Content, error)
}

// zero is an empty value of the type's content.
func (rt recordType) zero() events.Content {
	c, err := rt.decode([]byte("{}"))
	if err != nil {
		panic(err) // an empty object always decodes
	}
	return c
}

func decodeAs[C events.Content](body []byte) (events.Content, error) {
	var c C
	if err := decodeStrict(body, &c); err != nil {
		return nil, err
	}
	return c, nil
}

// recordTypes are the kinds of record a secretariat keeps.
var recordTypes = []recordType{
	{"positions", events.KindPosition, "Position on the GCM (one per ISCM)", decodeAs[events.Position]},
	{"agenda-items", events.KindAgendaItem, "Agenda item", decodeAs[events.AgendaItem]},
	{"stocktakings", events.KindStocktaking, "Stocktaking", decodeAs[events.Stocktaking]},
	{"action-plans", events.KindActionPlan, "Action plan", decodeAs[events.ActionPlan]},
	{"activities", events.KindActivity, "Activity", decodeAs[events.Activity]},
	{"partnerships", events.KindPartnership, "Partnership", decodeAs[events.Partnership]},
	{"submissions", events.KindSubmission, "Submission to a global process", decodeAs[events.Submission]},
	{"hindering-factors", events.KindHinderingFactor, "Hindering factor", decodeAs[events.HinderingFactor]},
	{"resources", events.KindResource, "Resource commitment", decodeAs[events.Resource]},
	{"expansions", events.KindExpansion, "Expansion", decodeAs[events.Expansion]},
}

func (s *Server) recordRoutes() {
	for _, rt := range recordTypes {
		base := "/v1/iscms/{slug}/" + rt.segment
		s.handle("GET /v1/"+rt.segment, s.listRecords(rt, false))
		s.handle("GET "+base, s.listRecords(rt, true))
		s.handle("POST "+base, s.createRecord(rt))
		s.handle("GET "+base+"/{id}", s.getRecord(rt))
		s.handle("PUT "+base+"/{id}", s.reviseRecord(rt))
		s.handle("GET "+base+"/{id}/history", s.recordHistory(rt.kind))
		for _, a := range []string{records.ActionSubmit, records.ActionPublish, records.ActionWithdraw} {
			s.handle("POST "+base+"/{id}/"+a, s.transition(rt.kind, a))
		}
	}
	s.handle("POST /v1/iscms/{slug}/action-plans/{id}/milestones/{milestone}/progress", s.reportProgress)
	s.handle("GET /v1/iscms/{slug}/timeline", s.timeline)
	q := "/v1/iscms/{slug}/questionnaires/{cycle}/{channel}"
	s.handle("PUT "+q, s.answerQuestionnaire)
	s.handle("GET "+q, s.getQuestionnaire)
	s.handle("GET "+q+"/history", s.questionnaireHistory)
	for _, a := range []string{records.ActionSubmit, records.ActionPublish, records.ActionWithdraw} {
		s.handle("POST "+q+"/"+a, s.questionnaireTransition(a))
	}
}

// readModels are the projections a record read waits for.
var readModels = []string{projrecords.Name}

func notFoundProblem(what string) *Problem {
	return problem(http.StatusNotFound, "not-found", what+" does not exist or is not visible to you")
}

func (s *Server) createRecord(rt recordType) handlerFunc {
	return s.writeRecord(rt, rt.kind+".record", http.StatusCreated, func(ctx context.Context, slug, _ string, c events.Content, m command.Meta) (command.Result, error) {
		return s.d.Records.Create(ctx, slug, c, m)
	})
}

func (s *Server) reviseRecord(rt recordType) handlerFunc {
	return s.writeRecord(rt, rt.kind+".revise", http.StatusOK, func(ctx context.Context, slug, id string, c events.Content, m command.Meta) (command.Result, error) {
		return s.d.Records.Revise(ctx, slug, rt.kind, id, c, m)
	})
}

// writeRecord is a write of a record's whole content: authorized for the
// ISCM of the path, the body read, checked for server-owned fields and
// decoded strictly; a revision must say which version it revises.
func (s *Server) writeRecord(rt recordType, name string, status int,
	do func(ctx context.Context, slug, id string, c events.Content, m command.Meta) (command.Result, error)) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		slug, id := r.PathValue("slug"), r.PathValue("id")
		c, err := s.authorize(w, r, actWrite, slug)
		if err != nil {
			return err
		}
		if id != "" && r.Header.Get("If-Match") == "" {
			return problem(http.StatusPreconditionRequired, "if-match-required", `a revision needs If-Match with the version (ETag) it revises, such as "42"`)
		}
		body, err := readBody(r)
		if err != nil {
			return err
		}
		if err := refuseServerFields(body, rt.zero()); err != nil {
			return err
		}
		content, err := rt.decode(body)
		if err != nil {
			return err
		}
		return s.command(w, r, c.Identity, name, body, status, func(ctx context.Context, m command.Meta) (command.Result, error) {
			return do(ctx, slug, id, content, m)
		})
	}
}

// note is the optional body of a lifecycle transition.
type note struct {
	Note string `json:"note"`
}

func (s *Server) readNote(r *http.Request) ([]byte, string, error) {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil, "", nil
	}
	body, err := readBody(r)
	if err != nil {
		return nil, "", err
	}
	var n note
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := refuseServerFields(body, n); err != nil {
			return nil, "", err
		}
		if err := decodeStrict(body, &n); err != nil {
			return nil, "", err
		}
	}
	return body, n.Note, nil
}

func (s *Server) transition(kind, act string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		slug, id := r.PathValue("slug"), r.PathValue("id")
		need := actWrite
		if act == records.ActionPublish {
			need = actPublish
		}
		c, err := s.authorize(w, r, need, slug)
		if err != nil {
			return err
		}
		body, n, err := s.readNote(r)
		if err != nil {
			return err
		}
		return s.command(w, r, c.Identity, kind+"."+act, body, http.StatusOK, func(ctx context.Context, m command.Meta) (command.Result, error) {
			return s.d.Records.Transition(ctx, slug, kind, id, act, n, m)
		})
	}
}

func (s *Server) reportProgress(w http.ResponseWriter, r *http.Request) error {
	slug, id, ms := r.PathValue("slug"), r.PathValue("id"), r.PathValue("milestone")
	c, err := s.authorize(w, r, actWrite, slug)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in records.Progress
	if err := refuseServerFields(body, in); err != nil {
		return err
	}
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	return s.command(w, r, c.Identity, "action_plan.progress", body, http.StatusCreated, func(ctx context.Context, m command.Meta) (command.Result, error) {
		return s.d.Records.ReportProgress(ctx, slug, id, ms, in, m)
	})
}

func (s *Server) getRecord(rt recordType) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		slug, id := r.PathValue("slug"), r.PathValue("id")
		c, err := s.authorize(w, r, actRead, slug)
		if err != nil {
			return err
		}
		if err := s.awaitPosition(r, readModels...); err != nil {
			return err
		}
		rec, err := s.d.RecordsQ.Get(r.Context(), c.visibility(), slug, rt.kind, id)
		if errors.Is(err, projrecords.ErrNotFound) {
			return notFoundProblem("the " + rt.kind + " " + strconv.Quote(id) + " of " + slug)
		}
		if err != nil {
			return err
		}
		return s.writeVersioned(w, r, rec.Version, rec)
	}
}

// writeVersioned answers a versioned document with its ETag, or 304.
func (s *Server) writeVersioned(w http.ResponseWriter, r *http.Request, version uint64, v any) error {
	tag := etag(version)
	w.Header().Set("ETag", tag)
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) recordHistory(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		slug, id := r.PathValue("slug"), r.PathValue("id")
		c, err := s.authorize(w, r, actRead, slug)
		if err != nil {
			return err
		}
		if err := s.awaitPosition(r, readModels...); err != nil {
			return err
		}
		es, err := s.d.RecordsQ.History(r.Context(), c.visibility(), slug, kind, id)
		if errors.Is(err, projrecords.ErrNotFound) {
			return notFoundProblem("the " + kind + " " + strconv.Quote(id) + " of " + slug)
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, map[string]any{"items": es})
	}
}

// maxCursor bounds the length of a pagination cursor: the server's own are
// far shorter, and a longer one is refused before it reaches a query.
const maxCursor = 200

func checkCursor(name, v string) error {
	if len(v) > maxCursor {
		return problem(http.StatusBadRequest, "bad-parameter", name+" is not a cursor this server handed out")
	}
	return nil
}

// listFilter reads the list endpoints' query parameters.
func listFilter(r *http.Request) (projrecords.Filter, error) {
	q := r.URL.Query()
	f := projrecords.Filter{
		Theme: q.Get("theme"), Subkind: q.Get("kind"), Category: q.Get("category"), Status: q.Get("status"),
		Source: q.Get("source"), State: q.Get("state"), Cursor: q.Get("cursor"), ISCM: q.Get("iscm"),
	}
	if err := checkCursor("cursor", f.Cursor); err != nil {
		return f, err
	}
	var err error
	num := func(name string, max int) int {
		v := q.Get(name)
		if v == "" || err != nil {
			return 0
		}
		n, e := strconv.Atoi(v)
		if e != nil || n < 1 || n > max {
			err = problem(http.StatusBadRequest, "bad-parameter", name+" must be an integer from 1 to "+strconv.Itoa(max))
		}
		return n
	}
	f.Objective = num("objective", 23)
	f.Principle = num("principle", 10)
	f.Limit = num("limit", projrecords.MaxLimit)
	date := func(name string) *time.Time {
		v := q.Get(name)
		if v == "" || err != nil {
			return nil
		}
		d, e := events.ParseDate(v)
		if e != nil {
			err = problem(http.StatusBadRequest, "bad-parameter", name+" must be a date YYYY-MM-DD")
			return nil
		}
		t := d.Time()
		return &t
	}
	f.From, f.To = date("from"), date("to")
	if err != nil {
		return f, err
	}
	if f.Theme != "" && (len(f.Theme) != 2 || f.Theme[0] != 'T' || f.Theme[1] < '1' || f.Theme[1] > '6') {
		return f, problem(http.StatusBadRequest, "bad-parameter", "theme must be one of T1-T6")
	}
	switch f.Status {
	case "", events.StatusDraft, events.StatusSubmitted, events.StatusPublished, events.StatusWithdrawn:
	default:
		return f, problem(http.StatusBadRequest, "bad-parameter", "status must be draft, submitted, published or withdrawn")
	}
	switch f.Source {
	case "", "manual", "questionnaire":
	default:
		return f, problem(http.StatusBadRequest, "bad-parameter", "source must be manual or questionnaire")
	}
	if f.From != nil && f.To != nil && f.To.Before(*f.From) {
		return f, problem(http.StatusBadRequest, "bad-parameter", "to is before from")
	}
	return f, nil
}

func (s *Server) listRecords(rt recordType, inISCM bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		f, err := listFilter(r)
		if err != nil {
			return err
		}
		if inISCM {
			f.ISCM = r.PathValue("slug")
			if _, ok := s.d.Catalog.ISCM(f.ISCM); !ok {
				return notFoundProblem("the ISCM " + strconv.Quote(f.ISCM))
			}
		}
		c, err := s.authorize(w, r, actRead, f.ISCM)
		if err != nil {
			return err
		}
		if err := s.awaitPosition(r, readModels...); err != nil {
			return err
		}
		f.Kind = rt.kind
		page, err := s.d.RecordsQ.List(r.Context(), c.visibility(), f)
		if errors.Is(err, projrecords.ErrBadCursor) {
			return problem(http.StatusBadRequest, "bad-parameter", "cursor is not one this server handed out")
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, page)
	}
}

func (s *Server) timeline(w http.ResponseWriter, r *http.Request) error {
	slug := r.PathValue("slug")
	if _, ok := s.d.Catalog.ISCM(slug); !ok {
		return notFoundProblem("the ISCM " + strconv.Quote(slug))
	}
	c, err := s.authorize(w, r, actRead, slug)
	if err != nil {
		return err
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > projrecords.MaxLimit {
			return problem(http.StatusBadRequest, "bad-parameter", "limit must be an integer from 1 to "+strconv.Itoa(projrecords.MaxLimit))
		}
		limit = n
	}
	cursor := r.URL.Query().Get("cursor")
	if err := checkCursor("cursor", cursor); err != nil {
		return err
	}
	if err := s.awaitPosition(r, readModels...); err != nil {
		return err
	}
	page, err := s.d.RecordsQ.Timeline(r.Context(), c.visibility(), slug, cursor, limit)
	if errors.Is(err, projrecords.ErrBadCursor) {
		return problem(http.StatusBadRequest, "bad-parameter", "cursor is not one this server handed out")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

// questionnairePath reads and checks the cycle and channel of the path.
func questionnairePath(r *http.Request) (int, string, error) {
	cycle, err := strconv.Atoi(r.PathValue("cycle"))
	if err != nil || cycle < 2000 || cycle > 2100 {
		return 0, "", problem(http.StatusNotFound, "not-found", "the cycle must be a reporting year such as 2018, 2022 or 2026")
	}
	ch := r.PathValue("channel")
	if ch != events.ChannelQuestionnaire && ch != events.ChannelInterview {
		return 0, "", problem(http.StatusNotFound, "not-found", "the channel must be questionnaire or interview")
	}
	return cycle, ch, nil
}

func (s *Server) answerQuestionnaire(w http.ResponseWriter, r *http.Request) error {
	slug := r.PathValue("slug")
	cycle, channel, err := questionnairePath(r)
	if err != nil {
		return err
	}
	c, err := s.authorize(w, r, actWrite, slug)
	if err != nil {
		return err
	}
	draft := false
	switch r.URL.Query().Get("draft") {
	case "", "false":
	case "true":
		draft = true
	default:
		return problem(http.StatusBadRequest, "bad-parameter", "draft must be true or false")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var a events.Answers
	if err := refuseServerFields(body, a); err != nil {
		return err
	}
	if err := decodeAnswers(body, &a); err != nil {
		return err
	}
	return s.command(w, r, c.Identity, "questionnaire.answer", body, http.StatusOK, func(ctx context.Context, m command.Meta) (command.Result, error) {
		return s.d.Records.Answer(ctx, slug, cycle, channel, a, draft, m)
	})
}

// decodeAnswers decodes a questionnaire response; a missing channel is
// named, as the contract requires it.
func decodeAnswers(body []byte, a *events.Answers) error {
	if err := decodeStrict(body, a); err != nil {
		return err
	}
	if a.Channel == "" {
		return &command.ValidationError{Problems: []command.FieldProblem{{Field: "channel", Detail: "is required: questionnaire or interview, matching the path"}}}
	}
	return nil
}

func (s *Server) getQuestionnaire(w http.ResponseWriter, r *http.Request) error {
	slug := r.PathValue("slug")
	cycle, channel, err := questionnairePath(r)
	if err != nil {
		return err
	}
	c, err := s.authorize(w, r, actRead, slug)
	if err != nil {
		return err
	}
	if err := s.awaitPosition(r, readModels...); err != nil {
		return err
	}
	q, err := s.d.RecordsQ.Questionnaire(r.Context(), c.visibility(), slug, cycle, channel)
	if errors.Is(err, projrecords.ErrNotFound) {
		return notFoundProblem("answers of " + slug + " for " + strconv.Itoa(cycle) + " (" + channel + ")")
	}
	if err != nil {
		return err
	}
	return s.writeVersioned(w, r, q.Version, q)
}

func (s *Server) questionnaireHistory(w http.ResponseWriter, r *http.Request) error {
	cycle, channel, err := questionnairePath(r)
	if err != nil {
		return err
	}
	r.SetPathValue("id", events.QuestionnaireID(cycle, channel))
	return s.recordHistory(events.KindQuestionnaire)(w, r)
}

func (s *Server) questionnaireTransition(act string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		cycle, channel, err := questionnairePath(r)
		if err != nil {
			return err
		}
		r.SetPathValue("id", events.QuestionnaireID(cycle, channel))
		return s.transition(events.KindQuestionnaire, act)(w, r)
	}
}
