package api

import (
	"net/http"
	"strconv"

	"gcmtrack/services/audit"
)

func (s *Server) auditRoutes() {
	s.handle("GET /v1/audit", s.listAudit)
}

// listAudit answers the audit log, newest first: GET /v1/audit with the
// filters actor (a token id, a token name or anonymous), status (4xx or
// 403), outcome (ok, refused, error) and route (a route pattern), and
// cursor and limit. Admin only.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.authorize(w, r, actAdmin, ""); err != nil {
		return err
	}
	q := r.URL.Query()
	aq := audit.Query{Actor: q.Get("actor"), Status: q.Get("status"), Outcome: q.Get("outcome"),
		Route: q.Get("route"), Cursor: q.Get("cursor")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > audit.MaxLimit {
			return problem(http.StatusBadRequest, "bad-parameter", "limit must be an integer from 1 to "+strconv.Itoa(audit.MaxLimit))
		}
		aq.Limit = n
	}
	page, err := s.d.Audit.List(r.Context(), aq)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}
