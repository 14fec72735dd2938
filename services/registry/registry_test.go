package registry_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/registry"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// twoInstances returns two registry services on one event store, as two
// API processes are: each keeps its own cache of the ISCM aggregates.
func twoInstances(t *testing.T) (*eventstore.Store, *registry.Service, *registry.Service) {
	t.Helper()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := eventstore.Open(context.Background(), js, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := registry.NewService(store, catalog.Default()), registry.NewService(store, catalog.Default())
	if _, err := a.RegisterCatalog(context.Background(), command.Meta{Actor: "system"}); err != nil {
		t.Fatal(err)
	}
	return store, a, b
}

func meta() command.Meta { return command.Meta{Actor: "test", CorrelationID: "test"} }

func join(t *testing.T, s *registry.Service, state string) command.Result {
	t.Helper()
	res, err := s.Join(context.Background(), "sacm", registry.AddMember{State: state}, meta())
	if err != nil {
		t.Fatalf("join %s: %v", state, err)
	}
	return res
}

// memberEvents counts the membership events of sacm in the stream.
func memberEvents(t *testing.T, store *eventstore.Store) map[string]int {
	t.Helper()
	h, err := store.Load(context.Background(), "sacm", events.KindISCM, "sacm")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, r := range h.Records {
		n[r.Envelope.Type]++
	}
	return n
}

// A command decided on a cached aggregate that another instance moved on
// meets a version conflict, reloads from the stream and succeeds: the
// client sees no 409.
func TestStaleCacheConflictsOnceThenDecidesOnTheLeader(t *testing.T) {
	_, a, b := twoInstances(t)
	ctx := context.Background()
	if _, err := b.Load(ctx, "sacm"); err != nil { // b caches sacm
		t.Fatal(err)
	}
	moved := join(t, a, "ARG") // b's copy is now stale
	res := join(t, b, "BRA")
	if res.Version <= moved.Version {
		t.Errorf("join on the stale instance at version %d, after %d", res.Version, moved.Version)
	}
	if got := b.StaleDecisions(); got != 1 {
		t.Errorf("stale decisions = %d, want 1", got)
	}
	// b's cache now holds its own append: the next command needs no reload.
	join(t, b, "CHL")
	if got := b.StaleDecisions(); got != 1 {
		t.Errorf("stale decisions after a command on a current cache = %d, want 1", got)
	}
	got, err := a.Load(ctx, "sacm")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"ARG", "BRA", "CHL"} {
		if got.Members[s] != events.StatusMember {
			t.Errorf("%s is not a member: %v", s, got.Members)
		}
	}
}

// When what another instance wrote changes the decision, the client gets
// the refusal it would have got without the cache.
func TestStaleCacheConflictThatChangesTheDecision(t *testing.T) {
	store, a, b := twoInstances(t)
	ctx := context.Background()
	if _, err := b.Load(ctx, "sacm"); err != nil {
		t.Fatal(err)
	}
	join(t, a, "ARG")
	_, err := b.Join(ctx, "sacm", registry.AddMember{State: "ARG"}, meta())
	if !errors.Is(err, command.ErrStateConflict) {
		t.Fatalf("joining a State another instance joined = %v, want a state conflict", err)
	}
	if n := memberEvents(t, store)[events.MemberJoined{}.EventType()]; n != 1 {
		t.Errorf("%d member.joined events, want 1", n)
	}
}

// A refusal is never answered from a stale cache: b believes MEX is a
// member, but a had it leave, so joining it again succeeds; and b believes
// PER is not a member, but a joined it, so PER may leave.
func TestRefusalsAreConfirmedOnTheLeader(t *testing.T) {
	store, a, b := twoInstances(t)
	ctx := context.Background()
	join(t, b, "MEX") // b caches MEX as a member
	if _, err := a.Leave(ctx, "sacm", "MEX", "", meta()); err != nil {
		t.Fatal(err)
	}
	join(t, b, "MEX")
	join(t, a, "PER")
	if _, err := b.Leave(ctx, "sacm", "PER", "", meta()); err != nil {
		t.Errorf("leave of a State another instance joined: %v", err)
	}
	if got := memberEvents(t, store); got[events.MemberJoined{}.EventType()] != 3 || got[events.MemberLeft{}.EventType()] != 2 {
		t.Errorf("events = %v, want 3 member.joined and 2 member.left", got)
	}
	// An unknown ISCM is refused as before.
	if _, err := b.Join(ctx, "no-such-iscm", registry.AddMember{State: "MEX"}, meta()); !errors.Is(err, command.ErrNotFound) {
		t.Errorf("join to an unknown ISCM = %v, want not found", err)
	}
}

// If-Match is checked against the leader's version, not a stale copy.
func TestIfMatchAgainstAStaleCache(t *testing.T) {
	_, a, b := twoInstances(t)
	ctx := context.Background()
	stale := join(t, b, "ARG")
	current := join(t, a, "BRA")
	m := meta()
	m.IfMatch = &current.Version
	if _, err := b.Join(ctx, "sacm", registry.AddMember{State: "CHL"}, m); err != nil {
		t.Errorf("If-Match of the current version on a stale instance: %v", err)
	}
	m.IfMatch = &stale.Version
	var pre *command.PreconditionError
	if _, err := b.Join(ctx, "sacm", registry.AddMember{State: "URY"}, m); !errors.As(err, &pre) || pre.Current <= current.Version {
		t.Errorf("If-Match of an old version = %v, want a precondition failure at the current version", err)
	}
}

// A retry whose first attempt was stored, but whose answer was lost, still
// answers with that event when the retry reaches an instance whose cache
// is stale.
func TestRetryOfAStoredCommandOnAStaleInstance(t *testing.T) {
	store, a, b := twoInstances(t)
	ctx := context.Background()
	if _, err := b.Load(ctx, "sacm"); err != nil {
		t.Fatal(err)
	}
	m := meta()
	m.MsgID = "retry-key"
	first, err := a.Join(ctx, "sacm", registry.AddMember{State: "ARG"}, m)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.Join(ctx, "sacm", registry.AddMember{State: "ARG"}, m)
	if err != nil || again.Position != first.Position {
		t.Errorf("retry on the stale instance = %+v, %v; want position %d", again, err, first.Position)
	}
	if n := memberEvents(t, store)[events.MemberJoined{}.EventType()]; n != 1 {
		t.Errorf("%d member.joined events, want 1", n)
	}
}
