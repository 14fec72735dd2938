package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"gcmtrack/events"
	projrecords "gcmtrack/projections/records"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/services/api"
	"gcmtrack/services/auth"
	"gcmtrack/services/command"
)

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	return view{Template: "signin", Title: s.t("signin.title"), Data: map[string]any{"Next": r.URL.Query().Get("next")}}, nil
}

// safeNext keeps a post-sign-in redirect on this site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return ""
	}
	return next
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<16)
	if err := r.ParseForm(); err != nil {
		return view{}, &errPage{http.StatusBadRequest, "The form could not be read."}
	}
	id, err := s.d.Tokens.Verify(r.Context(), strings.TrimSpace(r.PostFormValue("token")))
	if errors.Is(err, auth.ErrInvalidToken) {
		return view{Template: "signin", Title: s.t("signin.title"), Status: http.StatusUnauthorized,
			Data: map[string]any{"Error": s.t("signin.bad"), "Next": r.PostFormValue("next")}}, nil
	}
	if err != nil {
		return view{}, err
	}
	if err := s.startSession(r.Context(), w, r, id); err != nil {
		return view{}, err
	}
	next := safeNext(r.PostFormValue("next"))
	switch {
	case next != "":
	case id.Role == auth.RoleSecretariat:
		next = "/workspace/" + id.ISCM
	default:
		next = "/dashboard"
	}
	return view{Redirect: next}, nil
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if c, err := r.Cookie(cookieName); err == nil {
		_, _ = s.d.Pool.Exec(r.Context(), `DELETE FROM web.sessions WHERE id_hash = $1`, hashID(c.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	return view{Redirect: "/"}, nil
}

func requireUser(u *user, r *http.Request) (view, bool) {
	if u == nil {
		return view{Redirect: "/signin?next=" + url.QueryEscape(r.URL.RequestURI())}, false
	}
	return view{}, true
}

func (s *Server) workspaceHome(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	if u.Role == auth.RoleSecretariat {
		return view{Redirect: "/workspace/" + u.ISCM}, nil
	}
	return view{Template: "choose", Title: s.t("ws.choose"), Data: s.d.Catalog.ISCMs}, nil
}

// recordRow is one record in a list.
type recordRow struct {
	projrecords.Record
	Segment string
	Title   string
}

func (s *Server) recordRows(ctx context.Context, u *user, slug, kind string, publishedOnly bool) ([]recordRow, error) {
	f := projrecords.Filter{ISCM: slug, Kind: kind, Limit: projrecords.MaxLimit}
	if publishedOnly {
		f.Status = events.StatusPublished
	}
	page, err := s.d.RecordsQ.List(ctx, u.visibility(), f)
	if err != nil {
		return nil, err
	}
	seg := segmentOf(kind)
	out := make([]recordRow, 0, len(page.Items))
	for _, it := range page.Items {
		out = append(out, recordRow{Record: it, Segment: seg, Title: titleOf(it)})
	}
	return out, nil
}

func segmentOf(kind string) string {
	for _, rt := range recordTypes {
		if rt.kind == kind {
			return rt.segment
		}
	}
	return kind
}

// titleOf names a record in a list.
func titleOf(r projrecords.Record) string {
	var m map[string]any
	_ = jsonUnmarshal(r.Record, &m)
	for _, k := range []string{"title", "partner", "entity", "description", "status", "factor"} {
		if v, ok := m[k].(string); ok && v != "" {
			return v
		}
	}
	if mt, ok := m["meeting"].(map[string]any); ok {
		if v, ok := mt["title"].(string); ok && v != "" {
			return v
		}
	}
	return r.ID
}

func (s *Server) workspace(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	slug := r.PathValue("slug")
	if _, ok := s.d.Catalog.ISCM(slug); !ok {
		return view{}, s.notFound()
	}
	if !u.IOM() && !u.CanWrite(slug) {
		return view{}, s.forbidden()
	}
	s.waitFor(r.Context(), minPos(r))
	prof, sum, sections, err := s.iscmRecords(r.Context(), u, slug, false)
	if err != nil {
		return view{}, err
	}
	return view{Template: "workspace", Title: s.t("ws.title", prof.ShortName), Data: map[string]any{
		"Profile": prof, "Summary": sum, "Sections": sections, "CanWrite": u.CanWrite(slug), "Admin": u.Admin(),
		"Flash": r.URL.Query().Get("saved") != ""}}, nil
}

// section is one record type's records on an ISCM's page.
type section struct {
	Segment, Kind, Title string
	Items                []recordRow
}

// iscmRecords reads an ISCM's profile, engagement summary and records by
// type, as the user may see them; the public page lists published records
// of the types that have some, the workspace every type.
func (s *Server) iscmRecords(ctx context.Context, u *user, slug string, public bool) (projregistry.Profile, projrecords.Summary, []section, error) {
	prof, err := s.d.RegistryQ.Get(ctx, slug)
	if err != nil {
		return prof, projrecords.Summary{}, nil, err
	}
	sum, err := s.d.RecordsQ.Summary(ctx, u.visibility(), slug)
	if err != nil {
		return prof, sum, nil, err
	}
	var sections []section
	for _, rt := range recordTypes {
		rows, err := s.recordRows(ctx, u, slug, rt.kind, public)
		if err != nil {
			return prof, sum, nil, err
		}
		if public && len(rows) == 0 {
			continue
		}
		sections = append(sections, section{Segment: rt.segment, Kind: rt.kind, Title: s.t("kind." + rt.kind), Items: rows})
	}
	return prof, sum, sections, nil
}

func minPos(r *http.Request) uint64 {
	n, _ := strconv.ParseUint(r.URL.Query().Get("min_position"), 10, 64)
	return n
}

// formPage is a record form with its values and errors.
type formPage struct {
	Slug, Segment, Kind, ID string
	Fields                  []input
	Values                  formValues
	Errors                  map[string]string
	Message                 string
	States                  []string
	Version                 uint64
	Themes                  []string
}

func (s *Server) formFor(r *http.Request, slug string, rt recordType) (formPage, error) {
	prof, err := s.d.RegistryQ.Get(r.Context(), slug)
	if err != nil {
		return formPage{}, err
	}
	members := map[string]string{}
	for _, m := range prof.Members {
		members[m.State] = m.Status
	}
	var themes []string
	for _, t := range s.d.Catalog.Themes {
		themes = append(themes, t.ID)
	}
	return formPage{Slug: slug, Segment: rt.segment, Kind: rt.kind, Fields: withOptions(rt.fields), Values: formValues{},
		States: sortedStates(members), Themes: themes}, nil
}

func (s *Server) recordForm(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	slug := r.PathValue("slug")
	rt, ok := typeBySegment(r.PathValue("segment"))
	if _, known := s.d.Catalog.ISCM(slug); !ok || !known {
		return view{}, s.notFound()
	}
	if !u.CanWrite(slug) {
		return view{}, s.forbidden()
	}
	fp, err := s.formFor(r, slug, rt)
	if err != nil {
		return view{}, err
	}
	if id := r.PathValue("id"); id != "" {
		s.waitFor(r.Context(), minPos(r))
		rec, err := s.d.RecordsQ.Get(r.Context(), u.visibility(), slug, rt.kind, id)
		if errors.Is(err, projrecords.ErrNotFound) {
			return view{}, s.notFound()
		}
		if err != nil {
			return view{}, err
		}
		fp.ID, fp.Version, fp.Values = id, rec.Version, fromContent(rec.Record, rt.fields)
	}
	return view{Template: "form", Title: s.t("kind." + rt.kind), Data: fp}, nil
}

func (s *Server) recordSave(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	slug := r.PathValue("slug")
	rt, ok := typeBySegment(r.PathValue("segment"))
	if _, known := s.d.Catalog.ISCM(slug); !ok || !known {
		return view{}, s.notFound()
	}
	if !u.CanWrite(slug) {
		return view{}, s.forbidden()
	}
	fp, err := s.formFor(r, slug, rt)
	if err != nil {
		return view{}, err
	}
	fp.ID = r.PathValue("id")
	vals, body, err := fromForm(r.PostForm, rt.fields)
	if err != nil {
		return view{}, err
	}
	fp.Values = vals
	m := command.Meta{Actor: u.Actor(), CorrelationID: "web"}
	var res command.Result
	content, err := rt.decode(body)
	if err == nil {
		if fp.ID == "" {
			res, err = s.d.Records.Create(r.Context(), slug, content, m)
		} else {
			v, perr := strconv.ParseUint(r.PostFormValue("version"), 10, 64)
			if perr != nil {
				return view{}, &errPage{http.StatusBadRequest, "The form lacks the version it revises."}
			}
			fp.Version, m.IfMatch = v, &v
			res, err = s.d.Records.Revise(r.Context(), slug, rt.kind, fp.ID, content, m)
		}
	}
	if err != nil {
		if fe, ok := fieldErrors(err); ok {
			fp.Errors, fp.Message = fe, s.t("ws.errors")
			return view{Template: "form", Title: s.t("kind." + rt.kind), Data: fp, Status: http.StatusUnprocessableEntity}, nil
		}
		return view{}, err
	}
	api.Wrote(r, res.Position)
	return view{Redirect: "/workspace/" + slug + "/" + rt.segment + "/" + url.PathEscape(res.ID) + "?min_position=" + strconv.FormatUint(res.Position, 10)}, nil
}

func (s *Server) recordPage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	slug, id := r.PathValue("slug"), r.PathValue("id")
	rt, ok := typeBySegment(r.PathValue("segment"))
	if !ok {
		return view{}, s.notFound()
	}
	s.waitFor(r.Context(), minPos(r))
	rec, err := s.d.RecordsQ.Get(r.Context(), u.visibility(), slug, rt.kind, id)
	if errors.Is(err, projrecords.ErrNotFound) {
		return view{}, s.notFound()
	}
	if err != nil {
		return view{}, err
	}
	hist, err := s.d.RecordsQ.History(r.Context(), u.visibility(), slug, rt.kind, id)
	if err != nil && !errors.Is(err, projrecords.ErrNotFound) {
		return view{}, err
	}
	return view{Template: "record", Title: s.t("kind."+rt.kind) + ": " + titleOf(rec), Data: map[string]any{
		"Record": rec, "Segment": rt.segment, "Values": fromContent(rec.Record, rt.fields), "Fields": rt.fields, "History": hist,
		"CanWrite": u.CanWrite(slug) && rec.Source.Type == "manual", "Admin": u.Admin(), "Title": titleOf(rec)}}, nil
}

func (s *Server) recordAction(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	slug, id, act := r.PathValue("slug"), r.PathValue("id"), r.PathValue("action")
	rt, ok := typeBySegment(r.PathValue("segment"))
	if !ok {
		return view{}, s.notFound()
	}
	switch act {
	case "submit", "withdraw":
		if !u.CanWrite(slug) {
			return view{}, s.forbidden()
		}
	case "publish":
		if !u.Admin() {
			return view{}, s.forbidden()
		}
	default:
		return view{}, s.notFound()
	}
	res, err := s.d.Records.Transition(r.Context(), slug, rt.kind, id, act, r.PostFormValue("note"), command.Meta{Actor: u.Actor(), CorrelationID: "web"})
	if err != nil {
		return view{}, err
	}
	api.Wrote(r, res.Position)
	back := safeNext(r.PostFormValue("back"))
	if back == "" {
		back = "/workspace/" + slug + "/" + rt.segment + "/" + url.PathEscape(id)
	}
	sep := "?"
	if strings.Contains(back, "?") {
		sep = "&"
	}
	return view{Redirect: back + sep + "min_position=" + strconv.FormatUint(res.Position, 10)}, nil
}

func (s *Server) timelinePage(w http.ResponseWriter, r *http.Request, u *user) (view, error) {
	if v, ok := requireUser(u, r); !ok {
		return v, nil
	}
	slug := r.PathValue("slug")
	if _, ok := s.d.Catalog.ISCM(slug); !ok {
		return view{}, s.notFound()
	}
	page, err := s.d.RecordsQ.Timeline(r.Context(), u.visibility(), slug, r.URL.Query().Get("cursor"), 50)
	if errors.Is(err, projrecords.ErrBadCursor) {
		return view{}, &errPage{http.StatusBadRequest, "This page link is not valid."}
	}
	if err != nil {
		return view{}, err
	}
	return view{Template: "timeline", Title: s.t("ws.timeline"), Data: map[string]any{"Slug": slug, "Page": page}}, nil
}
