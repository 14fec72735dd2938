package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"

	"gcmtrack/services/api"
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

func (s *Server) page(pattern string, h pageHandler) {
	s.mux.HandleFunc(pattern, s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		u, err := s.current(r)
		if err != nil {
			return err
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
		return s.render(w, v, pageData{Title: v.Title, User: u, Path: r.URL.Path, Data: v.Data, CSRF: csrfOf(u)})
	}))
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
	t, ok := s.pages[v.Template]
	if !ok {
		return fmt.Errorf("no template %q", v.Template)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", d); err != nil {
		return fmt.Errorf("render %s: %w", v.Template, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if d.User != nil {
		w.Header().Set("Cache-Control", "no-store")
	}
	if v.Status != 0 {
		w.WriteHeader(v.Status)
	}
	_, err := w.Write(buf.Bytes())
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
