package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"gcmtrack/events"
	"gcmtrack/projections/reports"
	"gcmtrack/services/auth"
	"gcmtrack/services/command"
)

func (s *Server) reportRoutes() {
	s.handle("GET /v1/reports/figures", s.figures)
	s.handle("GET /v1/reports/review", s.review)
	s.handle("GET /v1/progress/objectives", s.report("objectives", func(snap reports.Snapshot, c caller) any {
		return reports.ComputeObjectives(snap, s.d.Catalog, c.scope())
	}))
	s.handle("GET /v1/progress/states", s.report("states", func(snap reports.Snapshot, c caller) any {
		return reports.ComputeStates(snap, s.d.Catalog, c.scope(), false)
	}))
	s.handle("GET /v1/progress/states/{iso3}", s.stateProgress)
	s.handle("GET /v1/progress/recommendations", s.report("recommendations", func(snap reports.Snapshot, c caller) any {
		return reports.ComputeRecommendations(snap, s.d.Catalog, c.scope())
	}))
	s.handle("GET /v1/review-cycles", s.listCycles)
	s.handle("POST /v1/review-cycles/{cycle}/close", s.cycleAction(true))
	s.handle("POST /v1/review-cycles/{cycle}/reopen", s.cycleAction(false))
}

// scope is what a caller's reports count: IOM sees submitted records too.
func (c caller) scope() reports.Scope {
	return reports.Scope{IncludeSubmitted: c.authenticated && (c.Role == auth.RoleAdmin || c.Role == auth.RoleMonitor)}
}

// snapshot returns the read models as the request asks: live, or as of a
// date (as_of=YYYY-MM-DD, the end of that day UTC) or a stream position
// (as_of_position=N).
func (s *Server) snapshot(r *http.Request) (reports.Snapshot, error) {
	q := r.URL.Query()
	asOf, asOfPos := q.Get("as_of"), q.Get("as_of_position")
	if asOf != "" && asOfPos != "" {
		return reports.Snapshot{}, problem(http.StatusBadRequest, "bad-parameter", "give as_of or as_of_position, not both")
	}
	if err := s.awaitPosition(r, reports.Sources...); err != nil {
		return reports.Snapshot{}, err
	}
	ctx := r.Context()
	var at uint64
	switch {
	case asOf != "":
		d, err := events.ParseDate(asOf)
		if err != nil {
			return reports.Snapshot{}, problem(http.StatusBadRequest, "bad-parameter", "as_of must be a date YYYY-MM-DD")
		}
		if at, err = s.d.Store.PositionAt(ctx, d.Time().Add(24*time.Hour-time.Nanosecond)); err != nil {
			return reports.Snapshot{}, err
		}
	case asOfPos != "":
		n, err := parseUint("as_of_position", asOfPos)
		if err != nil {
			return reports.Snapshot{}, err
		}
		at = n
	default:
		return s.d.Reports.Live(ctx)
	}
	have, err := s.d.Reports.Position(ctx)
	if err != nil {
		return reports.Snapshot{}, err
	}
	if at > have {
		return reports.Snapshot{}, problem(http.StatusConflict, "position-not-reached",
			fmt.Sprintf("the read models are at position %d; as_of_position %d is not reached yet (pass min_position=%d to wait)", have, at, at))
	}
	return s.d.Reports.AsOf(ctx, at)
}

// writeReport answers a report with an ETag of the position and scope it
// was computed at, so a repeated poll answers 304.
func (s *Server) writeReport(w http.ResponseWriter, r *http.Request, c caller, position uint64, v any) error {
	tag := fmt.Sprintf(`W/"%d-%t"`, position, c.scope().IncludeSubmitted)
	w.Header().Set("ETag", tag)
	w.Header().Set("Gcm-Position", strconv.FormatUint(position, 10))
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Vary", "Authorization")
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if b, ok := v.(encodedReport); ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, err := w.Write(b)
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

// encodedReport is a report's JSON document as writeJSON writes it.
type encodedReport []byte

// memoJSON is memo for a report served whole: its encoded document is
// kept, so a poll between writes neither computes nor encodes it.
func (s *Server) memoJSON(key string, snap reports.Snapshot, c caller, compute func() any) (encodedReport, error) {
	v := s.memo("json:"+key, snap, c, func() any {
		b, err := json.Marshal(compute())
		if err != nil {
			return err
		}
		return encodedReport(append(b, '\n'))
	})
	if err, ok := v.(error); ok {
		return nil, err
	}
	return v.(encodedReport), nil
}

// memo computes a report once per snapshot, scope and key (the report and
// its parameters): polls between writes cost no computation.
func (s *Server) memo(key string, snap reports.Snapshot, c caller, compute func() any) any {
	return s.d.Reports.Memo(fmt.Sprintf("api:%s:%t", key, c.scope().IncludeSubmitted), snap, compute)
}

// report serves a report without parameters of its own: the caller's
// scope, live or as of the position asked.
func (s *Server) report(name string, compute func(reports.Snapshot, caller) any) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.authorize(w, r, actRead, "")
		if err != nil {
			return err
		}
		snap, err := s.snapshot(r)
		if err != nil {
			return err
		}
		body, err := s.memoJSON(name, snap, c, func() any { return compute(snap, c) })
		if err != nil {
			return err
		}
		return s.writeReport(w, r, c, snap.Position, body)
	}
}

func (s *Server) figures(w http.ResponseWriter, r *http.Request) error {
	c, err := s.authorize(w, r, actRead, "")
	if err != nil {
		return err
	}
	cycle, err := strconv.Atoi(r.URL.Query().Get("cycle"))
	if err != nil || cycle < 2000 || cycle > 2100 {
		return problem(http.StatusBadRequest, "bad-parameter", "cycle must be a reporting year such as 2018")
	}
	snap, err := s.snapshot(r)
	if err != nil {
		return err
	}
	body, err := s.memoJSON(fmt.Sprintf("figures:%d", cycle), snap, c, func() any {
		return reports.ComputeFigures(snap, s.d.Catalog, cycle, c.scope())
	})
	if err != nil {
		return err
	}
	return s.writeReport(w, r, c, snap.Position, body)
}

func (s *Server) stateProgress(w http.ResponseWriter, r *http.Request) error {
	code := r.PathValue("iso3")
	country, ok := s.d.Catalog.Country(code)
	if !ok {
		return problem(http.StatusNotFound, "not-found", strconv.Quote(code)+" is not a known ISO 3166-1 alpha-3 code")
	}
	c, err := s.authorize(w, r, actRead, "")
	if err != nil {
		return err
	}
	snap, err := s.snapshot(r)
	if err != nil {
		return err
	}
	all := s.memo("states-detail", snap, c, func() any { return reports.ComputeStates(snap, s.d.Catalog, c.scope(), true) }).(reports.States)
	out := reports.StateProgress{State: country.Alpha3, Name: country.Name, ISCMs: []reports.Engagement{}}
	for _, sp := range all.Items {
		if sp.State == code {
			out = sp
		}
	}
	return s.writeReport(w, r, c, snap.Position, struct {
		Position uint64 `json:"position"`
		Scope    string `json:"scope"`
		reports.StateProgress
	}{snap.Position, all.Scope, out})
}

func (s *Server) review(w http.ResponseWriter, r *http.Request) error {
	c, err := s.authorize(w, r, actRead, "")
	if err != nil {
		return err
	}
	cy, err := events.ParseCycle(r.URL.Query().Get("cycle"))
	if err != nil {
		return problem(http.StatusBadRequest, "bad-parameter", err.Error())
	}
	region := r.URL.Query().Get("region")
	if len(region) > 100 {
		return problem(http.StatusBadRequest, "bad-parameter", "region is too long")
	}
	snap, err := s.snapshot(r)
	if err != nil {
		return err
	}
	body, err := s.memoJSON(fmt.Sprintf("review:%s:%q", cy.ID, region), snap, c, func() any {
		return reports.ComputeReview(snap, s.d.Catalog, cy, region, c.scope())
	})
	if err != nil {
		return err
	}
	return s.writeReport(w, r, c, snap.Position, body)
}

// cycleDoc is a review cycle with whether IOM closed it.
type cycleDoc struct {
	events.Cycle
	Closed    bool       `json:"closed"`
	Note      string     `json:"note,omitempty"`
	ChangedAt *time.Time `json:"changed_at,omitempty"`
}

func (s *Server) listCycles(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r, readModels...); err != nil {
		return err
	}
	states, err := s.d.RecordsQ.Cycles(r.Context())
	if err != nil {
		return err
	}
	out := []cycleDoc{}
	for _, cy := range events.Cycles(max(time.Now().Year()+4, 2030)) {
		st := states[cy.ID]
		out = append(out, cycleDoc{Cycle: cy, Closed: st.Closed, Note: st.Note, ChangedAt: st.ChangedAt})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"items": out})
}

func (s *Server) cycleAction(closing bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.authorize(w, r, actPublish, "")
		if err != nil {
			return err
		}
		id := r.PathValue("cycle")
		if _, err := events.ParseCycle(id); err != nil {
			return problem(http.StatusNotFound, "not-found", err.Error())
		}
		body, n, err := s.readNote(r)
		if err != nil {
			return err
		}
		name := "review_cycle.reopen"
		if closing {
			name = "review_cycle.close"
		}
		return s.command(w, r, c.Identity, name, body, http.StatusOK, func(ctx context.Context, m command.Meta) (command.Result, error) {
			if closing {
				return s.d.Records.CloseCycle(ctx, id, n, m)
			}
			return s.d.Records.ReopenCycle(ctx, id, n, m)
		})
	}
}
