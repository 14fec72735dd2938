// Package registry decides the commands on the ISCM registry: registering
// the catalog's mechanisms and recording which States are their members or
// observers. Decisions are made from the ISCM aggregate's own events.
package registry

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
)

// Service handles registry commands.
type Service struct {
	store *eventstore.Store
	cat   *catalog.Catalog

	// cache holds each ISCM aggregate as last loaded. Every load checks
	// the aggregate's version in the stream and reads only what is newer,
	// so a command pays one direct read when nothing changed; the append's
	// expected version still guards against a race.
	mu    sync.Mutex
	cache map[string]ISCM
}

// NewService returns the registry's command handler.
func NewService(store *eventstore.Store, cat *catalog.Catalog) *Service {
	return &Service{store: store, cat: cat, cache: map[string]ISCM{}}
}

// ISCM is the aggregate: what the registry's decisions depend on.
type ISCM struct {
	Registered bool
	Members    map[string]string // State -> member or observer
	Version    uint64
}

// Load folds an ISCM's events into its current state.
func (s *Service) Load(ctx context.Context, slug string) (ISCM, error) {
	subject := events.Subject(slug, events.KindISCM, slug)
	v, err := s.store.Version(ctx, subject)
	if err != nil {
		return ISCM{}, err
	}
	s.mu.Lock()
	cached, ok := s.cache[slug]
	s.mu.Unlock()
	if ok && cached.Version == v {
		return cached.clone(), nil
	}
	a := ISCM{Members: map[string]string{}}
	from := uint64(1)
	if ok && cached.Version < v {
		a, from = cached.clone(), cached.Version+1
	}
	recs, version, err := s.store.LoadFrom(ctx, slug, events.KindISCM, slug, from)
	if err != nil {
		return ISCM{}, err
	}
	for _, r := range recs {
		p, err := events.Decode(r.Envelope)
		if err != nil {
			return ISCM{}, fmt.Errorf("load iscm %s: %w", slug, err)
		}
		switch p := p.(type) {
		case events.ISCMRegistered:
			a.Registered = true
		case events.MemberJoined:
			a.Members[p.State] = p.Status
		case events.MemberStatusChanged:
			a.Members[p.State] = p.Status
		case events.MemberLeft:
			delete(a.Members, p.State)
		}
	}
	a.Version = version
	s.mu.Lock()
	if cur, ok := s.cache[slug]; !ok || cur.Version < a.Version {
		s.cache[slug] = a.clone()
	}
	s.mu.Unlock()
	return a, nil
}

// appendAndRemember appends an event decided on a and keeps the resulting
// state in the cache, so the next command on the ISCM needs no reload.
func (s *Service) appendAndRemember(ctx context.Context, m command.Meta, slug string, a ISCM, p events.Payload, occurred time.Time) (command.Result, error) {
	res, err := command.Append(ctx, s.store, m, slug, events.KindISCM, slug, p, occurred, a.Version)
	if err != nil {
		return res, err
	}
	next := a.clone()
	switch p := p.(type) {
	case events.MemberJoined:
		next.Members[p.State] = p.Status
	case events.MemberStatusChanged:
		next.Members[p.State] = p.Status
	case events.MemberLeft:
		delete(next.Members, p.State)
	}
	// A retried append that JetStream found already stored has the
	// original position, not a new one after a.Version: reload next time.
	if res.Version > a.Version {
		next.Version = res.Version
		s.mu.Lock()
		if cur, ok := s.cache[slug]; !ok || cur.Version < next.Version {
			s.cache[slug] = next
		}
		s.mu.Unlock()
	}
	return res, nil
}

func (a ISCM) clone() ISCM {
	m := make(map[string]string, len(a.Members))
	for k, v := range a.Members {
		m[k] = v
	}
	a.Members = m
	return a
}

// RegisterCatalog registers every catalog ISCM not registered yet and
// reports how many it registered. Running it again registers nothing.
func (s *Service) RegisterCatalog(ctx context.Context, m command.Meta) (int, error) {
	n := 0
	for _, c := range s.cat.ISCMs {
		a, err := s.Load(ctx, c.Slug)
		if err != nil {
			return n, err
		}
		if a.Registered {
			continue
		}
		meta := m
		meta.MsgID = "register-" + c.Slug
		p := events.ISCMRegistered{Slug: c.Slug, Name: c.Name, ShortName: c.ShortName, Kind: c.Kind, Region: c.Region}
		_, err = command.Append(ctx, s.store, meta, c.Slug, events.KindISCM, c.Slug, p, time.Time{}, 0)
		var conflict *eventstore.ConflictError
		if errors.As(err, &conflict) {
			continue // another instance registered it first
		}
		if err != nil {
			return n, fmt.Errorf("register %s: %w", c.Slug, err)
		}
		n++
	}
	return n, nil
}

// AddMember is the input of the add-member command.
type AddMember struct {
	State  string `json:"state"`
	Status string `json:"status"`
	Since  string `json:"since"`
}

var iso3 = regexp.MustCompile(`^[A-Z]{3}$`)

func (s *Service) validState(ps *command.Problems, field, code string) {
	switch {
	case code == "":
		ps.Add(field, "is required (an ISO 3166-1 alpha-3 code such as MEX)")
	case !iso3.MatchString(code):
		ps.Add(field, "%q is not an ISO 3166-1 alpha-3 code (three upper-case letters, such as MEX)", code)
	default:
		if _, ok := s.cat.Country(code); !ok {
			ps.Add(field, "%q is not a known ISO 3166-1 alpha-3 code", code)
		}
	}
}

// Join records that a State joined an ISCM as member or observer, or moved
// between the two.
func (s *Service) Join(ctx context.Context, slug string, in AddMember, m command.Meta) (command.Result, error) {
	var ps command.Problems
	s.validState(&ps, "state", in.State)
	if in.Status == "" {
		in.Status = events.StatusMember
	}
	if in.Status != events.StatusMember && in.Status != events.StatusObserver {
		ps.Add("status", "%q is not one of member, observer", in.Status)
	}
	var since events.Date
	if in.Since != "" {
		d, err := events.ParseDate(in.Since)
		if err != nil {
			ps.Add("since", "%v", err)
		}
		since = d
	}
	if err := ps.Err(); err != nil {
		return command.Result{}, err
	}
	if res, done, err := command.Stored(ctx, s.store, m, slug, events.KindISCM, slug); err != nil || done {
		return res, err
	}
	a, err := s.loadRegistered(ctx, slug)
	if err != nil {
		return command.Result{}, err
	}
	if err := command.CheckIfMatch(m, a.Version); err != nil {
		return command.Result{}, err
	}
	var p events.Payload
	switch cur, ok := a.Members[in.State]; {
	case !ok:
		p = events.MemberJoined{State: in.State, Status: in.Status, Since: since}
	case cur == in.Status:
		return command.Result{}, fmt.Errorf("%w: %s is already a %s of %s", command.ErrStateConflict, in.State, cur, slug)
	default:
		p = events.MemberStatusChanged{State: in.State, Status: in.Status, Since: since}
	}
	return s.appendAndRemember(ctx, m, slug, a, p, since.Time())
}

// Leave records that a State stopped taking part in an ISCM.
func (s *Service) Leave(ctx context.Context, slug, state, until string, m command.Meta) (command.Result, error) {
	var ps command.Problems
	s.validState(&ps, "state", state)
	var u events.Date
	if until != "" {
		d, err := events.ParseDate(until)
		if err != nil {
			ps.Add("until", "%v", err)
		}
		u = d
	}
	if err := ps.Err(); err != nil {
		return command.Result{}, err
	}
	if res, done, err := command.Stored(ctx, s.store, m, slug, events.KindISCM, slug); err != nil || done {
		return res, err
	}
	a, err := s.loadRegistered(ctx, slug)
	if err != nil {
		return command.Result{}, err
	}
	if err := command.CheckIfMatch(m, a.Version); err != nil {
		return command.Result{}, err
	}
	if _, ok := a.Members[state]; !ok {
		return command.Result{}, fmt.Errorf("%w: %s is not a member or observer of %s", command.ErrStateConflict, state, slug)
	}
	return s.appendAndRemember(ctx, m, slug, a, events.MemberLeft{State: state, Until: u}, u.Time())
}

func (s *Service) loadRegistered(ctx context.Context, slug string) (ISCM, error) {
	if !events.ValidToken(slug) {
		return ISCM{}, fmt.Errorf("%w: ISCM %q", command.ErrNotFound, slug)
	}
	a, err := s.Load(ctx, slug)
	if err != nil {
		return ISCM{}, err
	}
	if !a.Registered {
		return ISCM{}, fmt.Errorf("%w: ISCM %q", command.ErrNotFound, slug)
	}
	return a, nil
}
