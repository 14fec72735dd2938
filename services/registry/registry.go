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
	"sync/atomic"
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

	// cache holds each ISCM aggregate as this process last loaded or
	// changed it. Commands decide on it without asking the stream, and the
	// append's expected version is the cached one: should another writer
	// have moved the aggregate, the append is refused, nothing is stored,
	// and the command reloads from the stream leader and decides again
	// (execute). Load, which other services use for checks outside the
	// aggregate's own append, always asks the leader.
	mu    sync.Mutex
	cache map[string]ISCM

	staleDecisions atomic.Int64
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

// Load folds an ISCM's events into its current state, as the stream leader
// holds it: one request to the leader for the version, and a read of the
// events newer than the cached copy, if any.
func (s *Service) Load(ctx context.Context, slug string) (ISCM, error) {
	s.mu.Lock()
	cached, ok := s.cache[slug]
	s.mu.Unlock()
	a, from := ISCM{Members: map[string]string{}}, uint64(1)
	if ok {
		a, from = cached.clone(), cached.Version+1
	}
	recs, version, err := s.store.LoadFrom(ctx, slug, events.KindISCM, slug, from)
	if err != nil {
		return ISCM{}, err
	}
	reset := version < a.Version
	if reset {
		// The stream holds less than this process saw (restored from an
		// older backup): fold it again from the start.
		a = ISCM{Members: map[string]string{}}
		if recs, version, err = s.store.LoadFrom(ctx, slug, events.KindISCM, slug, 1); err != nil {
			return ISCM{}, err
		}
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
	// A command may have cached a newer version meanwhile: keep that one.
	if cur, ok := s.cache[slug]; !ok || cur.Version < a.Version || reset {
		s.cache[slug] = a.clone()
	}
	s.mu.Unlock()
	return a, nil
}

// cached is the ISCM as this process last saw it, without asking the
// stream; ok is false when it has not seen it yet. Its Members map is the
// cache's own, which is never changed once cached (a change caches a new
// map): the caller must only read it.
func (s *Service) cached(slug string) (ISCM, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.cache[slug]
	return a, ok
}

// decision is what a command makes of the aggregate: the event to append,
// or the refusal. It must not change the aggregate.
type decision func(a ISCM) (events.Payload, error)

// execute decides a command on an ISCM and appends its event. It decides
// first on the cached aggregate and appends with the cached version as the
// expected one, which costs no request to the stream leader. When that
// append is refused because the aggregate moved on (another instance, or a
// concurrent command here, wrote to it), nothing was stored: the command
// loads the aggregate from the leader and decides once more, as it would
// have without the cache. A refusal decided on the cached aggregate (a
// state conflict, a failed If-Match, an unknown ISCM) is never answered
// from the cache either: it may be stale, so the refusal is confirmed on
// what the leader holds. The answers are thus those of deciding on the
// leader's version, save for fewer version conflicts.
func (s *Service) execute(ctx context.Context, m command.Meta, slug string, occurred time.Time, decide decision) (command.Result, error) {
	if !events.ValidToken(slug) {
		return command.Result{}, fmt.Errorf("%w: ISCM %q", command.ErrNotFound, slug)
	}
	if a, ok := s.cached(slug); ok && a.Registered && (m.IfMatch == nil || *m.IfMatch == a.Version) {
		if p, err := decide(a); err == nil {
			res, err := s.appendAndRemember(ctx, m, slug, a, p, occurred)
			if !errors.Is(err, eventstore.ErrConflict) {
				return res, err
			}
			s.staleDecisions.Add(1)
		}
	}
	a, err := s.loadRegistered(ctx, slug)
	if err != nil {
		return command.Result{}, err
	}
	if err := command.CheckIfMatch(m, a.Version); err != nil {
		return command.Result{}, err
	}
	p, err := decide(a)
	if err != nil {
		return command.Result{}, err
	}
	return s.appendAndRemember(ctx, m, slug, a, p, occurred)
}

// StaleDecisions counts the commands whose decision on the cached aggregate
// met a version conflict and were decided again on the leader's version.
func (s *Service) StaleDecisions() int64 { return s.staleDecisions.Load() }

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
	return s.execute(ctx, m, slug, since.Time(), func(a ISCM) (events.Payload, error) {
		switch cur, ok := a.Members[in.State]; {
		case !ok:
			return events.MemberJoined{State: in.State, Status: in.Status, Since: since}, nil
		case cur == in.Status:
			return nil, fmt.Errorf("%w: %s is already a %s of %s", command.ErrStateConflict, in.State, cur, slug)
		default:
			return events.MemberStatusChanged{State: in.State, Status: in.Status, Since: since}, nil
		}
	})
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
	return s.execute(ctx, m, slug, u.Time(), func(a ISCM) (events.Payload, error) {
		if _, ok := a.Members[state]; !ok {
			return nil, fmt.Errorf("%w: %s is not a member or observer of %s", command.ErrStateConflict, state, slug)
		}
		return events.MemberLeft{State: state, Until: u}, nil
	})
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
