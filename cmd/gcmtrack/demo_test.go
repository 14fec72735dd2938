package main

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/records"
	"gcmtrack/services/registry"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// demoEnv is the command side as `gcmtrack run` wires it, on a fresh
// embedded NATS server, with the catalog's ISCMs registered.
type demoEnv struct {
	store *eventstore.Store
	reg   *registry.Service
	rec   *records.Service
	cat   *catalog.Catalog
}

func newDemoEnv(t *testing.T, cat *catalog.Catalog) demoEnv {
	t.Helper()
	ctx := t.Context()
	_, nc := testenv.NATS(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store, err := eventstore.Open(ctx, js, eventstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.NewService(store, cat)
	if _, err := reg.RegisterCatalog(ctx, command.Meta{Actor: "system", CorrelationID: "test"}); err != nil {
		t.Fatal(err)
	}
	return demoEnv{store: store, reg: reg, rec: records.NewService(store, cat, reg), cat: cat}
}

func (e demoEnv) load(t *testing.T) demoStats {
	t.Helper()
	st, err := loadDemo(t.Context(), e.reg, e.rec, e.cat, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("loadDemo: %v", err)
	}
	return st
}

func (e demoEnv) position(t *testing.T) uint64 {
	t.Helper()
	p, err := e.store.LastPosition(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// reviewRespondents are the review's eleven respondents (section 3): eight
// questionnaires and three telephone interviews.
var reviewRespondents = []struct{ iscm, channel string }{
	{"arcp", events.ChannelQuestionnaire},
	{"cmc", events.ChannelQuestionnaire},
	{"eap-panel", events.ChannelQuestionnaire},
	{"rabat-process", events.ChannelQuestionnaire},
	{"igad-rcp", events.ChannelQuestionnaire},
	{"igc", events.ChannelQuestionnaire},
	{"puebla-process", events.ChannelQuestionnaire},
	{"sacm", events.ChannelQuestionnaire},
	{"abu-dhabi-dialogue", events.ChannelInterview},
	{"pafom", events.ChannelInterview},
	{"sacm", events.ChannelInterview},
}

// demoMemberships counts the distinct States of the catalog's
// demonstration lists: what a first load joins.
func demoMemberships(cat *catalog.Catalog) int {
	n := 0
	for _, m := range cat.DemoMembers {
		seen := map[string]bool{}
		for _, s := range append(slices.Clone(m.Members), m.Observers...) {
			seen[s] = true
		}
		n += len(seen)
	}
	return n
}

func TestDemoLoadsOnce(t *testing.T) {
	e := newDemoEnv(t, catalog.Default())
	before := e.position(t)

	first := e.load(t)
	want := demoStats{MembersJoined: demoMemberships(e.cat), AnswerSets: len(reviewRespondents), RecordsCreated: len(demoRecords())}
	if first != want {
		t.Errorf("first load: %+v, want %+v", first, want)
	}
	afterFirst := e.position(t)
	if afterFirst == before {
		t.Fatal("the first load appended nothing")
	}

	if second := e.load(t); second != (demoStats{}) {
		t.Errorf("second load: %+v, want nothing added", second)
	}
	if p := e.position(t); p != afterFirst {
		t.Errorf("the second load appended %d events", p-afterFirst)
	}

	checkDemoData(t, e)
}

func TestDemoConcurrentLoads(t *testing.T) {
	// Two full loads at once would load more aggregates within minutes
	// than the stream has consumers (every load reads through an ordered
	// consumer that the server keeps for a while), so this test joins the
	// members of the respondents only.
	cat := *catalog.Default()
	cat.DemoMembers = map[string]catalog.Members{}
	for _, r := range reviewRespondents {
		cat.DemoMembers[r.iscm] = catalog.Default().DemoMembers[r.iscm]
	}
	single := newDemoEnv(t, &cat)
	from := single.position(t)
	single.load(t)
	want := single.position(t) - from

	e := newDemoEnv(t, &cat)
	from = e.position(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = loadDemo(t.Context(), e.reg, e.rec, e.cat, slog.New(slog.DiscardHandler))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("load %d: %v", i, err)
		}
	}
	at := e.position(t)
	if at-from != want {
		t.Errorf("two concurrent loads appended %d events, one load alone %d", at-from, want)
	}
	if st := e.load(t); st != (demoStats{}) {
		t.Errorf("a load after two concurrent ones: %+v, want nothing added", st)
	}
	if p := e.position(t); p != at {
		t.Errorf("a load after two concurrent ones appended %d events", p-at)
	}
	checkDemoData(t, e)
}

// checkDemoData checks the loaded aggregates against what the review
// reports.
func checkDemoData(t *testing.T, e demoEnv) {
	t.Helper()
	ctx := t.Context()

	for slug, m := range e.cat.DemoMembers {
		a, err := e.reg.Load(ctx, slug)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range append(slices.Clone(m.Members), m.Observers...) {
			if _, ok := a.Members[s]; !ok {
				t.Errorf("%s is not a member or observer of %s", s, slug)
			}
		}
	}

	positions := 0
	var actionPlans []string
	partnered := map[string]bool{}
	hindering := map[string]bool{}
	for _, r := range reviewRespondents {
		got := loadRecord(ctx, t, e.rec, r.iscm, events.KindQuestionnaire, events.QuestionnaireID(demoCycle, r.channel))
		if got.Status != events.StatusPublished || got.Answers == nil {
			t.Errorf("%s %s answers: status %q, want published", r.iscm, r.channel, got.Status)
			continue
		}
		a := got.Answers.Answers
		if r.channel == events.ChannelQuestionnaire {
			if a.Position != nil && a.Position.Status == "yes" {
				positions++
				if a.AgendaItem != "yes" && a.AgendaItem != "planned" {
					t.Errorf("%s has a position but agenda item %q", r.iscm, a.AgendaItem)
				}
			}
			if a.ActionPlan != nil && a.ActionPlan.Status == "already_done" {
				actionPlans = append(actionPlans, r.iscm)
			}
		}
		if len(a.Partnerships) > 0 {
			partnered[r.iscm] = true
		}
		for _, h := range a.HinderingFactors {
			hindering[h] = true
		}
	}
	if positions != 5 {
		t.Errorf("%d questionnaires state a formal position, want 5", positions)
	}
	slices.Sort(actionPlans)
	if want := []string{"cmc", "puebla-process"}; !slices.Equal(actionPlans, want) {
		t.Errorf("action plans already done: %v, want %v", actionPlans, want)
	}
	if len(partnered) != 8 {
		t.Errorf("%d ISCMs have partnerships, want 8", len(partnered))
	}
	for _, h := range []string{"low_priority", "different_speeds", "no_mandate", "unclear_coordination"} {
		if !hindering[h] {
			t.Errorf("no interview names the hindering factor %s", h)
		}
	}

	for _, d := range demoRecords() {
		got := loadRecord(ctx, t, e.rec, d.iscm, d.content.RecordKind(), demoRecordID("demo:record:"+d.iscm+":"+d.key))
		if got.Status != d.status {
			t.Errorf("%s record %s: status %q, want %q", d.iscm, d.key, got.Status, d.status)
		}
	}
}

func loadRecord(ctx context.Context, t *testing.T, rec *records.Service, iscm, kind, id string) records.Record {
	t.Helper()
	r, err := rec.Load(ctx, iscm, kind, id)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Exists {
		t.Errorf("%s %s %s does not exist", iscm, kind, id)
	}
	return r
}
