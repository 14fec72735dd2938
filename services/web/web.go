// Package web is GCM Tracker's web application, served by gcmtrack itself:
// public review pages, the secretariat workspace with forms for every
// record and the questionnaire, and IOM's monitoring dashboard. Pages are
// rendered on the server from Go templates; charts are SVG drawn on the
// server, each with its numbers as a table and a CSV link. No JavaScript
// build step; forms work without scripts.
//
// Users sign in with a token issued by the CLI; the session lives in an
// HttpOnly, SameSite cookie whose id is stored hashed with the token's id,
// so revoking the token ends the session at once. Every form carries the
// session's CSRF token. Writes go through the same command services as the
// API, and refusals are shown next to the fields the API's problem names.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
	"gcmtrack/projections/migrations"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/projections/reports"
	"gcmtrack/services/auth"
	"gcmtrack/services/pagecache"
	"gcmtrack/services/records"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

//go:embed sql/*.sql
var sqlFS embed.FS

// Migrations is the web's migration set (sessions).
func Migrations() migrations.Set {
	sub, _ := fs.Sub(sqlFS, "sql") // a fixed, valid path
	return migrations.Set{Name: "web", Files: sub}
}

// Verifier checks a token a user signs in with.
type Verifier interface {
	Verify(ctx context.Context, secret string) (auth.Identity, error)
}

// Deps are what the pages read and write through.
type Deps struct {
	Catalog   *catalog.Catalog
	Pool      *pgxpool.Pool
	Tokens    Verifier
	Records   *records.Service
	RecordsQ  *projrecords.Queries
	RegistryQ *projregistry.Queries
	Reports   *reports.Store
	Logger    *slog.Logger
	// PositionAt finds the stream position at a time, for "as of" views.
	PositionAt func(ctx context.Context, t time.Time) (uint64, error)
	// Lang picks the message catalog; "en" by default.
	Lang string
	// Registerer, when set, receives the metrics of the kept public pages.
	Registerer prometheus.Registerer
}

// Server serves the pages.
type Server struct {
	d     Deps
	mux   *http.ServeMux
	pages map[string]*template.Template
	msgs  map[string]string
	build string // names the binary in public pages' ETags
	// public keeps public pages rendered for visitors not signed in, by
	// ETag (register).
	public *pagecache.Cache
}

// Rendered public pages are kept: up to publicPages of them, publicBytes
// together, the pages of the latest state in their variants (an ISCM, a
// cycle).
const (
	publicPages = 64
	publicBytes = 8 << 20
)

// New builds the web application.
func New(d Deps) (*Server, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Lang == "" {
		d.Lang = "en"
	}
	s := &Server{d: d, mux: http.NewServeMux(), msgs: messages[d.Lang], build: buildID()}
	s.public = pagecache.New(publicPages, publicBytes)
	if d.Registerer != nil {
		d.Registerer.MustRegister(s.public.Collectors("public")...)
	}
	if s.msgs == nil {
		return nil, fmt.Errorf("web: no message catalog for %q", d.Lang)
	}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.publicPage("GET /{$}", s.home)
	s.publicPage("GET /iscms/{slug}", s.iscmPage)
	s.publicPage("GET /figures", s.figuresPage)
	s.mux.HandleFunc("GET /figures.csv", s.wrap(s.figuresCSV))
	s.mux.HandleFunc("GET /objectives.csv", s.wrap(s.tableCSV("objectives")))
	s.mux.HandleFunc("GET /states.csv", s.wrap(s.tableCSV("states")))
	s.mux.HandleFunc("GET /recommendations.csv", s.wrap(s.tableCSV("recommendations")))
	s.publicPage("GET /objectives", s.objectivesPage)
	s.publicPage("GET /states", s.statesPage)
	s.publicPage("GET /recommendations", s.recommendationsPage)
	s.publicPage("GET /review", s.reviewPage)
	s.page("GET /signin", s.signinPage)
	s.page("POST /signin", s.signin)
	s.page("POST /signout", s.signout)
	s.page("GET /workspace", s.workspaceHome)
	s.page("GET /workspace/{slug}", s.workspace)
	s.page("GET /workspace/{slug}/timeline", s.timelinePage)
	s.page("GET /workspace/{slug}/{segment}/new", s.recordForm)
	s.page("POST /workspace/{slug}/{segment}/new", s.recordSave)
	s.page("GET /workspace/{slug}/{segment}/{id}", s.recordPage)
	s.page("GET /workspace/{slug}/{segment}/{id}/edit", s.recordForm)
	s.page("POST /workspace/{slug}/{segment}/{id}/edit", s.recordSave)
	s.page("POST /workspace/{slug}/{segment}/{id}/{action}", s.recordAction)
	s.page("GET /workspace/{slug}/questionnaire/{cycle}/{channel}/{step}", s.questionnaireStep)
	s.page("POST /workspace/{slug}/questionnaire/{cycle}/{channel}/{step}", s.questionnaireSave)
	s.page("GET /dashboard", s.dashboard)
	s.page("POST /dashboard/cycles/{cycle}/{action}", s.cycleAction)
}

// ServeHTTP sets the pages' security headers and serves them.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	s.mux.ServeHTTP(w, r)
}

// user is who is signed in, if anyone.
type user struct {
	auth.Identity
	csrf string
}

func (u *user) IOM() bool {
	return u != nil && (u.Role == auth.RoleAdmin || u.Role == auth.RoleMonitor)
}

func (u *user) Admin() bool { return u != nil && u.Role == auth.RoleAdmin }

// CanWrite reports whether the user may write an ISCM's records.
func (u *user) CanWrite(iscm string) bool {
	return u != nil && (u.Role == auth.RoleAdmin || (u.Role == auth.RoleSecretariat && u.ISCM == iscm))
}

// visibility is what the user may read.
func (u *user) visibility() projrecords.Visibility {
	switch {
	case u == nil:
		return projrecords.Visibility{}
	case u.IOM():
		return projrecords.Visibility{All: true}
	case u.Role == auth.RoleSecretariat:
		return projrecords.Visibility{ISCM: u.ISCM}
	}
	return projrecords.Visibility{}
}

func (u *user) scope() reports.Scope { return reports.Scope{IncludeSubmitted: u.IOM()} }

const (
	cookieName = "gcm_session"
	sessionTTL = 12 * time.Hour
)

func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// current finds the signed-in user: a live session whose token is neither
// revoked nor expired.
func (s *Server) current(r *http.Request) (*user, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, nil
	}
	var u user
	var tokenID uuid.UUID
	var iscm *string
	err = s.d.Pool.QueryRow(r.Context(), `
SELECT s.csrf, t.id, t.name, t.role, t.iscm
FROM web.sessions s JOIN auth.tokens t ON t.id = s.token_id
WHERE s.id_hash = $1 AND s.expires_at > now() AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())`,
		hashID(c.Value)).Scan(&u.csrf, &tokenID, &u.Name, &u.Role, &iscm)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	u.TokenID = tokenID
	if iscm != nil {
		u.ISCM = *iscm
	}
	return &u, nil
}

func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, id auth.Identity) error {
	sid := randomToken()
	_, err := s.d.Pool.Exec(ctx, `INSERT INTO web.sessions (id_hash, token_id, csrf, expires_at) VALUES ($1, $2, $3, $4)`,
		hashID(sid), id.TokenID, randomToken(), time.Now().Add(sessionTTL))
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	// Sessions that ended are removed now and then, here.
	_, _ = s.d.Pool.Exec(ctx, `DELETE FROM web.sessions WHERE expires_at < now()`)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: sid, Path: "/", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteLaxMode, MaxAge: int(sessionTTL.Seconds())})
	return nil
}

// checkCSRF compares the form's token with the session's.
func checkCSRF(r *http.Request, u *user) bool {
	if u == nil {
		return false
	}
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(u.csrf)) == 1
}

// waitFor waits (bounded) until the read models have reached a position,
// so a page shown after a write reflects it.
func (s *Server) waitFor(ctx context.Context, pos uint64) {
	if pos == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		have, err := engine.ActivePosition(ctx, s.d.Pool, reports.Sources)
		if err == nil && have >= pos {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// t looks up a message.
func (s *Server) t(key string, args ...any) string {
	m, ok := s.msgs[key]
	if !ok {
		m = key
	}
	if len(args) > 0 {
		return fmt.Sprintf(m, args...)
	}
	return m
}

func lower(s string) string { return strings.ToLower(s) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
