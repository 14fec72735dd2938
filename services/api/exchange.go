package api

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gcmtrack/services/audit"
	"gcmtrack/services/auth"
)

// exchange is what the server learns about one request while serving it:
// who sent it, and how it ended, for the access log and the audit log.
// ServeHTTP creates it; the request's goroutine alone fills it in.
type exchange struct {
	start  time.Time
	cid    string // correlation id
	client string // client address

	// bearer is the secret the request carried, kept only to mask it in
	// log records (see redactingHandler).
	bearer string
	// The request's credentials, once authenticate has run.
	resolved      bool
	id            auth.Identity
	authenticated bool
	authErr       error // a bad token (a 401 problem) or a failed lookup

	// position is the stream position a successful write reached.
	position uint64
	// reason is the short name of the problem answered, if any.
	reason string
	// unaudited marks a refusal the audit log skips (repeated 429s).
	unaudited bool
}

type ctxKey int

const exchangeKey ctxKey = 1

func withExchange(ctx context.Context, ex *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey, ex)
}

// exchangeOf returns the request's exchange; a request that did not come
// through ServeHTTP gets a fresh one.
func exchangeOf(r *http.Request) *exchange {
	if ex, ok := r.Context().Value(exchangeKey).(*exchange); ok {
		return ex
	}
	return &exchange{start: time.Now()}
}

// maskable is what of an Authorization header the logs must never show:
// its secret, or the whole value when it is not of the Bearer scheme. Very
// short values are left alone; masking them would garble the record.
func maskable(h string) string {
	secret, ok := bearer(h)
	if !ok {
		secret = strings.TrimSpace(h)
	}
	if len(secret) < 8 {
		return ""
	}
	return secret
}

func correlationID(ctx context.Context) string {
	if ex, ok := ctx.Value(exchangeKey).(*exchange); ok {
		return ex.cid
	}
	return ""
}

// authenticate resolves the request's bearer token once.
func (s *Server) authenticate(r *http.Request, ex *exchange) {
	if ex.resolved {
		return
	}
	ex.resolved = true
	ex.id, ex.authenticated, ex.authErr = s.identity(r)
}

// clientAddr is the address of the client: the peer's, or, when the peer is
// a trusted proxy, the last address in X-Forwarded-For that is not one.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap()
	if !s.trusted(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // a malformed hop: trust nothing before it
		}
		peer = a.Unmap()
		if !s.trusted(peer) {
			break
		}
	}
	return peer.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.d.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// auditable reports whether the audit log records a request: every write,
// and every refusal that says something about the caller.
func auditable(method string, status int) bool {
	if isWrite(method) {
		return true
	}
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict, http.StatusPreconditionFailed,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity,
		http.StatusLocked, http.StatusTooManyRequests:
		return true
	}
	return false
}

// recordAudit records the request in the audit log when it is auditable.
func (s *Server) recordAudit(r *http.Request, ex *exchange, route string, status int) {
	if s.d.Audit == nil || ex.unaudited || !auditable(r.Method, status) {
		return
	}
	e := audit.Entry{
		At: ex.start, Actor: audit.RoleAnonymous, Role: audit.RoleAnonymous,
		Method: r.Method, Path: redactSecrets(r.URL.Path), Route: route, Status: status,
		Outcome: audit.OutcomeOf(status), Reason: ex.reason, CorrelationID: ex.cid, ClientAddr: ex.client,
	}
	if ex.authenticated {
		e.TokenID, e.Actor, e.Role, e.ISCM = ex.id.TokenID.String(), ex.id.Name, ex.id.Role, ex.id.ISCM
	}
	if status < 400 { // a page's form write answers 303 See Other
		e.Position = ex.position
	}
	s.d.Audit.Record(e)
}

// noteProblem remembers the problem a request answered, for the audit log.
func noteProblem(r *http.Request, p *Problem) {
	exchangeOf(r).reason = strings.TrimPrefix(p.Type, problemTypeBase)
}

// notePosition remembers the position a write reached, from the
// Gcm-Position header of its answer.
func notePosition(r *http.Request, header string) {
	if n, err := strconv.ParseUint(header, 10, 64); err == nil {
		exchangeOf(r).position = n
	}
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// SignedIn tells the API who a request served by the web pages comes from
// (a session, not a bearer token), so its audit entry names the user.
func SignedIn(r *http.Request, id auth.Identity) {
	if ex, ok := r.Context().Value(exchangeKey).(*exchange); ok {
		ex.resolved, ex.authenticated, ex.id = true, true, id
	}
}

// Wrote tells the API the stream position a write from the web pages
// reached, for its audit entry.
func Wrote(r *http.Request, position uint64) {
	if ex, ok := r.Context().Value(exchangeKey).(*exchange); ok {
		ex.position = position
	}
}
