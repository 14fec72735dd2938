package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"context"
	"gcmtrack/events/catalog"
	projrecords "gcmtrack/projections/records"
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
	slug := r.PathValue("slug")
	c, err := s.authorize(w, r, actRead, slug)
	if err != nil {
		return err
	}
	names := []string{projregistry.Name}
	if s.d.RecordsQ != nil {
		names = append(names, readModels...)
	}
	if err := s.awaitPosition(r, names...); err != nil {
		return err
	}
	vis := c.visibility()
	build := func() (any, error) {
		p, err := s.d.RegistryQ.Get(r.Context(), slug)
		if err != nil {
			return nil, err
		}
		out := iscmProfile{Profile: p}
		if s.d.RecordsQ != nil {
			sum, err := s.d.RecordsQ.Summary(r.Context(), vis, slug)
			if err != nil {
				return nil, err
			}
			out.Engagement = &sum
		}
		return out, nil
	}
	var v any
	if s.d.Reports != nil {
		// Kept until the read models move: a profile polled between
		// writes costs no query.
		v, err = s.d.Reports.MemoNow(r.Context(), fmt.Sprintf("profile:%s:%t:%s", slug, vis.All, vis.ISCM), build)
	} else {
		v, err = build()
	}
	if errors.Is(err, projregistry.ErrNotFound) {
		return problem(http.StatusNotFound, "not-found", "no ISCM with slug "+strconv.Quote(slug))
	}
	if err != nil {
		return err
	}
	out := v.(iscmProfile)
	// The ETag is the registry aggregate's version, what If-Match on a
	// membership change compares. The engagement summary changes without
	// it, so this document is never answered with 304.
	w.Header().Set("ETag", etag(out.Version))
	return writeJSON(w, http.StatusOK, out)
}

// iscmProfile is an ISCM with its members and its engagement summary.
type iscmProfile struct {
	projregistry.Profile
	Engagement *projrecords.Summary `json:"engagement,omitempty"`
}

func (s *Server) addMember(w http.ResponseWriter, r *http.Request) error {
	slug := r.PathValue("slug")
	c, err := s.authorize(w, r, actAdmin, slug)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in registry.AddMember
	if err := refuseServerFields(body, in); err != nil {
		return err
	}
	if err := decodeStrict(body, &in); err != nil {
		return err
	}
	return s.command(w, r, c.Identity, "member.join", body, http.StatusCreated, func(ctx context.Context, m command.Meta) (command.Result, error) {
		return s.d.Registry.Join(ctx, slug, in, m)
	})
}

func (s *Server) removeMember(w http.ResponseWriter, r *http.Request) error {
	slug, state := r.PathValue("slug"), r.PathValue("state")
	c, err := s.authorize(w, r, actAdmin, slug)
	if err != nil {
		return err
	}
	until := r.URL.Query().Get("until")
	return s.command(w, r, c.Identity, "member.leave", nil, http.StatusOK, func(ctx context.Context, m command.Meta) (command.Result, error) {
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
	return writeJSON(w, http.StatusOK, stateDoc{State: country.Alpha3, Name: country.Name, ISCMCount: len(ps), ISCMs: ps})
}
