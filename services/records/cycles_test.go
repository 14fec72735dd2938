package records_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Two instances close and reopen review cycles; each decides first on its
// cached aggregate, and on the leader's version when that is stale.
func TestCycleCommandsOnAStaleCache(t *testing.T) {
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := eventstore.Open(ctx, js, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.Default()
	reg := registry.NewService(store, cat)
	a, b := records.NewService(store, cat, reg), records.NewService(store, cat, reg)
	m := command.Meta{Actor: "test", CorrelationID: "test"}

	if _, err := b.CloseCycle(ctx, "imrf-2022", "", m); err != nil { // b caches the aggregate
		t.Fatal(err)
	}
	moved, err := a.CloseCycle(ctx, "imrf-2026", "", m) // b's copy is stale
	if err != nil {
		t.Fatal(err)
	}
	// A decision the stale copy allows and the current state allows too.
	res, err := b.CloseCycle(ctx, "regional-2024", "", m)
	if err != nil || res.Version <= moved.Version {
		t.Fatalf("close on the stale instance = %+v, %v", res, err)
	}
	// One the stale copy refuses and the current state allows: b believes
	// imrf-2022 is closed, but a reopened it.
	if _, err := a.ReopenCycle(ctx, "imrf-2022", "", m); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CloseCycle(ctx, "imrf-2022", "", m); err != nil {
		t.Errorf("closing a cycle another instance reopened: %v", err)
	}
	// One the stale copy allows and the current state refuses: b believes
	// regional-2028 is open, but a closed it.
	if _, err := a.CloseCycle(ctx, "regional-2028", "", m); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CloseCycle(ctx, "regional-2028", "", m); !errors.Is(err, command.ErrStateConflict) {
		t.Errorf("closing a cycle another instance closed = %v, want a state conflict", err)
	}
}
