package api

import (
	"errors"
	"net/http"

	projrecords "gcmtrack/projections/records"
	"gcmtrack/services/auth"
)

// Actions a route performs, for the one authorization decision below.
type action int

const (
	actRead    action = iota // anyone; what they see depends on the role
	actWrite                 // record and revise an ISCM's records
	actPublish               // approve records for the public
	actAdmin                 // registry and other IOM-only changes
)

// caller is who is asking: an authenticated identity or the anonymous public.
type caller struct {
	auth.Identity
	authenticated bool
}

// visibility is what a caller may read: all statuses for IOM (admin,
// monitor), all statuses of its own ISCM for a secretariat, and published
// records for everyone.
func (c caller) visibility() projrecords.Visibility {
	if !c.authenticated {
		return projrecords.Visibility{}
	}
	switch c.Role {
	case auth.RoleAdmin, auth.RoleMonitor:
		return projrecords.Visibility{All: true}
	case auth.RoleSecretariat:
		return projrecords.Visibility{ISCM: c.ISCM}
	}
	return projrecords.Visibility{}
}

// authorize is the one place where a request's caller is checked against
// what the route does and the ISCM of the object it touches (taken from the
// path, under which the object is stored; a record of another ISCM is not
// found there).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, act action, iscm string) (caller, error) {
	ex := exchangeOf(r)
	s.authenticate(r, ex)
	id, ok, err := ex.id, ex.authenticated, ex.authErr
	if err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gcmtrack", error="invalid_token"`)
		}
		return caller{}, err
	}
	c := caller{Identity: id, authenticated: ok}
	if act == actRead {
		return c, nil
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gcmtrack"`)
		return caller{}, unauthenticated("this request needs Authorization: Bearer <token>")
	}
	switch {
	case id.Role == auth.RoleAdmin:
		return c, nil
	case act == actWrite && id.Role == auth.RoleSecretariat && id.ISCM == iscm:
		return c, nil
	case act == actWrite && id.Role == auth.RoleSecretariat:
		return caller{}, problem(http.StatusForbidden, "forbidden", "this token writes for "+id.ISCM+" only")
	case act == actPublish:
		return caller{}, problem(http.StatusForbidden, "forbidden", "publishing needs the admin role")
	default:
		return caller{}, problem(http.StatusForbidden, "forbidden", "this request needs the admin role")
	}
}
