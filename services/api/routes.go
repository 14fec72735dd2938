package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"context"
	"gcmtrack/events/catalog"
	projregistry "gcmtrack/projections/registry"
	"gcmtrack/services/command"
	"gcmtrack/services/registry"
)

func marshalLine(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// catalogDoc is the public shape of the embedded catalog.
type catalogDoc struct {
	Version           string                   `json:"catalog_version"`
	Source            string                   `json:"source"`
	Themes            []catalog.Theme          `json:"themes"`
	Principles        []catalog.Principle      `json:"guiding_principles"`
	Objectives        []catalog.Objective      `json:"objectives"`
	Kinds             map[string]string        `json:"iscm_kinds"`
	ISCMs             []catalog.ISCM           `json:"iscms"`
	PartnerCategories []string                 `json:"partner_categories"`
	Recommendations   []catalog.Recommendation `json:"recommendations"`
	ReviewCycles      map[string]string        `json:"review_cycles"`
}

func (s *Server) getCatalog(w http.ResponseWriter, r *http.Request) error {
	c := s.d.Catalog
	w.Header().Set("Cache-Control", "public, max-age=3600")
	return writeJSON(w, http.StatusOK, catalogDoc{
		Version: c.Version, Source: c.Source, Themes: c.Themes, Principles: c.Principles, Objectives: c.Objectives,
		Kinds: c.Kinds, ISCMs: c.ISCMs, PartnerCategories: c.PartnerCategories, Recommendations: c.Recommendations,
		ReviewCycles: c.ReviewCycles,
	})
}

func (s *Server) listISCMs(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r, projregistry.Name); err != nil {
		return err
	}
	items, err := s.d.RegistryQ.List(r.Context())
	if err != nil {
		return err
	}
	if items == nil {
		items = []projregistry.ISCM{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) getISCM(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r, projregistry.Name); err != nil {
		return err
	}
	slug := r.PathValue("slug")
	p, err := s.d.RegistryQ.Get(r.Context(), slug)
	if errors.Is(err, projregistry.ErrNotFound) {
		return problem(http.StatusNotFound, "not-found", "no ISCM with slug "+strconv.Quote(slug))
	}
	if err != nil {
		return err
	}
	tag := etag(p.Version)
	w.Header().Set("ETag", tag)
	if r.Header.Get("If-None-Match") == tag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) error {
	id, err := s.requireAdmin(w, r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in registry.AddMember
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	slug := r.PathValue("slug")
	return s.command(w, r, id, "member.join", body, http.StatusCreated, func(ctx context.Context, m command.Meta) (command.Result, error) {
		return s.d.Registry.Join(ctx, slug, in, m)
	})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) error {
	id, err := s.requireAdmin(w, r)
	if err != nil {
		return err
	}
	slug, state := r.PathValue("slug"), r.PathValue("state")
	until := r.URL.Query().Get("until")
	return s.command(w, r, id, "member.leave", nil, http.StatusOK, func(ctx context.Context, m command.Meta) (command.Result, error) {
		return s.d.Registry.Leave(ctx, slug, state, until, m)
	})
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request) error {
	code := r.PathValue("iso3")
	country, ok := s.d.Catalog.Country(code)
	if !ok {
		return problem(http.StatusNotFound, "not-found", strconv.Quote(code)+" is not a known ISO 3166-1 alpha-3 code")
	}
	if err := s.awaitPosition(r, projregistry.Name); err != nil {
		return err
	}
	ps, err := s.d.RegistryQ.State(r.Context(), code)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"state": country.Alpha3, "name": country.Name, "iscm_count": len(ps), "iscms": ps})
}
