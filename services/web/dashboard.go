package web

import (
	"context"
	"net/http"

	"gcmtrack/events"
	projrecords "gcmtrack/projections/records"
	"gcmtrack/projections/reports"
	"gcmtrack/services/api"
	"gcmtrack/services/command"
)

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	if !u.IOM() {
		return view{}, s.forbidden()
	}
	s.waitFor(r.Context(), minPos(r))
	d, err := s.overviewData(r, u)
	if err != nil {
		return view{}, err
	}
	snap, _, err := s.snapshot(r)
	if err != nil {
		return view{}, err
	}
	f := memo(s, "figures:2018", snap, u.scope(), func() reports.Figures { return reports.ComputeFigures(snap, s.d.Catalog, 2018, u.scope()) })
	queue, err := s.queue(r.Context(), u)
	if err != nil {
		return view{}, err
	}
	states, err := s.d.RecordsQ.Cycles(r.Context())
	if err != nil {
		return view{}, err
	}
	return view{Template: "dashboard", Title: s.t("dash.title"), Data: map[string]any{
		"Overview": d, "Charts": figureCharts(s, f)[:1], "Queue": queue, "Admin": u.Admin(),
		"Cycles": events.Cycles(2030), "Closed": states}}, nil
}

// queue lists submitted records awaiting IOM's approval.
func (s *Server) queue(ctx context.Context, u *user) ([]recordRow, error) {
	page, err := s.d.RecordsQ.List(ctx, u.visibility(), projrecords.Filter{Status: events.StatusSubmitted, Source: "manual", Limit: projrecords.MaxLimit})
	if err != nil {
		return nil, err
	}
	out := make([]recordRow, 0, len(page.Items))
	for _, it := range page.Items {
		out = append(out, recordRow{Record: it, Segment: segmentOf(it.Kind), Title: titleOf(it)})
	}
	return out, nil
}

func (s *Server) cycleAction(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if !u.Admin() {
		return view{}, s.forbidden()
	}
	id, act := r.PathValue("cycle"), r.PathValue("action")
	m := command.Meta{Actor: u.Actor(), CorrelationID: "web"}
	var err error
	var res command.Result
	switch act {
	case "close":
		res, err = s.d.Records.CloseCycle(r.Context(), id, r.PostFormValue("note"), m)
	case "reopen":
		res, err = s.d.Records.ReopenCycle(r.Context(), id, r.PostFormValue("note"), m)
	default:
		return view{}, s.notFound()
	}
	if err != nil {
		return view{}, err
	}
	api.Wrote(r, res.Position)
	s.waitFor(r.Context(), res.Position)
	return view{Redirect: "/dashboard"}, nil
}
