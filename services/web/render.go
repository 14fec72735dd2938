package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"html/template"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"gcmtrack/services/api"
	"gcmtrack/services/pagecache"
)

// view is what a page handler returns: a template and its data, or a
// redirect.
type view struct {
	Template string
	Title    string
	Data     any
	Redirect string
	Status   int
}

// pageData is what every template gets.
type pageData struct {
	Title string
	User  *user
	CSRF  string
	Path  string
	Data  any
}

type pageHandler func(w http.ResponseWriter, r *http.Request, u *user) (view, error)

// errPage is a page-level refusal with its status.
type errPage struct {
	status int
	msg    string
}

func (e *errPage) Error() string { return e.msg }

func (s *Server) notFound() error  { return &errPage{http.StatusNotFound, s.t("error.notfound")} }
func (s *Server) forbidden() error { return &errPage{http.StatusForbidden, s.t("error.forbidden")} }

func (s *Server) page(pattern string, h pageHandler) { s.register(pattern, h, false) }

// publicPage registers a page of published progress: answered to visitors
// who are not signed in with an ETag of the read models' state, the query
// and the build, and with 304 Not Modified when they send it back. The page
// is rendered once per ETag and kept: until the read models move, a visit
// costs one query and no rendering.
func (s *Server) publicPage(pattern string, h pageHandler) { s.register(pattern, h, true) }

func (s *Server) register(pattern string, h pageHandler, public bool) {
	s.mux.HandleFunc(pattern, s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.current(r)
		if err != nil {
			return err
		}
		var tag string
		if public && u == nil && r.Method == http.MethodGet {
			if tag, err = s.publicTag(r); err != nil {
				return err
			}
			if r.Header.Get("If-None-Match") == tag {
				s.cacheHeaders(w, tag)
				w.WriteHeader(http.StatusNotModified)
				return nil
			}
			if p, ok := s.public.Get(tag); ok {
				s.cacheHeaders(w, tag)
				return writePage(w, 0, p.Body)
			}
		}
		if u != nil {
			api.SignedIn(r, u.Identity) // the audit log names the user
		}
		if r.Method == http.MethodPost && r.URL.Path != "/signin" {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if err := r.ParseForm(); err != nil {
				return &errPage{http.StatusBadRequest, "The form could not be read."}
			}
			if !checkCSRF(r, u) {
				return &errPage{http.StatusForbidden, s.t("error.csrf")}
			}
		}
		v, err := h(w, r, u)
		if err != nil {
			return err
		}
		if v.Redirect != "" {
			http.Redirect(w, r, v.Redirect, http.StatusSeeOther)
			return nil
		}
		d := pageData{Title: v.Title, User: u, Path: r.URL.Path, Data: v.Data, CSRF: csrfOf(u)}
		if tag == "" || v.Status != 0 {
			return s.render(w, v, d)
		}
		// The state was read for the tag before the handler read the
		// page's data: what is kept under a tag may be ahead of it, never
		// behind.
		body, err := s.renderPage(v, d)
		if err != nil {
			return err
		}
		s.public.Add(tag, &pagecache.Page{ETag: tag, Body: body})
		s.cacheHeaders(w, tag)
		return writePage(w, 0, body)
	}))
}

// publicTag is the ETag of a public page for a visitor not signed in.
func (s *Server) publicTag(r *http.Request) (string, error) {
	state, err := s.d.Reports.Version(r.Context())
	if err != nil {
		return "", err
	}
	h := fnv.New64a()
	h.Write([]byte(r.URL.Path + "?" + r.URL.RawQuery))
	return fmt.Sprintf(`W/"%s-%s-%s-%x"`, state, s.build, s.d.Lang, h.Sum64()), nil
}

func (s *Server) cacheHeaders(w http.ResponseWriter, tag string) {
	w.Header().Set("ETag", tag)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Vary", "Cookie")
}

// buildID names the binary's pages: its VCS revision when it was built
// from a clean checkout, else a value of this process alone (a restart
// then changes every page's ETag).
func buildID() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev string
		modified := true
		for _, st := range bi.Settings {
			switch st.Key {
			case "vcs.revision":
				rev = st.Value
			case "vcs.modified":
				modified = st.Value == "true"
			}
		}
		if rev != "" && !modified {
			return rev[:min(len(rev), 12)]
		}
	}
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}

func csrfOf(u *user) string {
	if u == nil {
		return ""
	}
	return u.csrf
}

// wrap turns handler errors into an error page.
func (s *Server) wrap(h func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := h(w, r)
		if err == nil || errors.Is(err, context.Canceled) {
			return // done, or the visitor went away
		}
		status, msg := http.StatusInternalServerError, s.t("error.title")
		var ep *errPage
		if errors.As(err, &ep) {
			status, msg = ep.status, ep.msg
		} else if p := api.ProblemFor(err); p.Status < 500 {
			status, msg = p.Status, p.Detail
		} else {
			s.d.Logger.Error("page failed", "path", r.URL.Path, "err", err)
		}
		u, _ := s.current(r)
		_ = s.render(w, view{Template: "error", Title: s.t("error.title"), Status: status}, pageData{Title: s.t("error.title"), User: u, Path: r.URL.Path, Data: msg, CSRF: csrfOf(u)})
	}
}

func (s *Server) render(w http.ResponseWriter, v view, d pageData) error {
	body, err := s.renderPage(v, d)
	if err != nil {
		return err
	}
	if d.User != nil {
		w.Header().Set("Cache-Control", "no-store")
	}
	return writePage(w, v.Status, body)
}

// renderPage renders a view in the layout.
func (s *Server) renderPage(v view, d pageData) ([]byte, error) {
	t, ok := s.pages[v.Template]
	if !ok {
		return nil, fmt.Errorf("no template %q", v.Template)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		return nil, fmt.Errorf("render %s: %w", v.Template, err)
	}
	return buf.Bytes(), nil
}

// writePage answers a rendered page (status 0: 200).
func writePage(w http.ResponseWriter, status int, body []byte) error {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if status != 0 {
		w.WriteHeader(status)
	}
	_, err := w.Write(body)
	return err
}

func (s *Server) funcs() template.FuncMap {
	return template.FuncMap{
		"t":      s.t,
		"status": func(st string) string { return s.t("status." + st) },
		"field":  func(name string) string { return s.t("field." + name) },
		"join":   strings.Join,
		"date": func(t time.Time) string {
			if t.IsZero() {
				return s.t("none")
			}
			return t.UTC().Format("2 Jan 2006")
		},
		"datetime": func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") },
		"lower":    lower,
		"chart":    func(c figureChart) template.HTML { return barChart(c.Title, c.Bars) },
		"add":      func(a, b int) int { return a + b },
		"seq": func(n int) []int {
			out := make([]int, n)
			for i := range out {
				out[i] = i + 1
			}
			return out
		},
		"contains": func(list []string, v string) bool {
			for _, x := range list {
				if x == v {
					return true
				}
			}
			return false
		},
		"containsInt": func(list []int, v int) bool {
			for _, x := range list {
				if x == v {
					return true
				}
			}
			return false
		},
		"dict": func(kv ...any) map[string]any {
			m := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				m[fmt.Sprint(kv[i])] = kv[i+1]
			}
			return m
		},
	}
}

func (s *Server) parseTemplates() error {
	s.pages = map[string]*template.Template{}
	base, err := template.New("base").Funcs(s.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return fmt.Errorf("web: templates: %w", err)
	}
	names, err := templateFS.ReadDir("templates")
	if err != nil {
		return err
	}
	for _, n := range names {
		name := strings.TrimSuffix(n.Name(), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+n.Name())
		if err != nil {
			return fmt.Errorf("web: template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return nil
}
