package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/registry"
)

// asyncWindow is how many asynchronous publishes may await their ack while
// the bulk of a data set is written.
const asyncWindow = 4000

// decision is one membership change the generator chose: a State joins or
// leaves an ISCM.
type decision struct {
	iscm  int // index into the catalog's ISCMs
	state string
	join  bool
	date  events.Date // since (join) or until (leave)
}

// generator chooses a realistic sequence of membership changes over the
// catalog's 30 ISCMs and ~250 States. Every change is valid where it
// happens: a State joins only an ISCM it is not part of and leaves only one
// it is. The sequence depends on the seed alone.
type generator struct {
	rng     *rand.Rand
	cat     *catalog.Catalog
	members []map[string]bool // per ISCM
	lists   [][]string        // the same members, for picking one at random
	// actors and correlation ids give the envelopes the shape of events
	// written through the API by a handful of tokens.
	actors []string
}

func newGenerator(cat *catalog.Catalog, seed uint64) *generator {
	g := &generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), cat: cat}
	g.members = make([]map[string]bool, len(cat.ISCMs))
	g.lists = make([][]string, len(cat.ISCMs))
	for i := range g.members {
		g.members[i] = map[string]bool{}
	}
	for range 8 {
		g.actors = append(g.actors, "token:"+g.uuid().String())
	}
	return g
}

// uuid draws a version 4 UUID from the generator's source, so that data
// sets repeat exactly for a seed.
func (g *generator) uuid() uuid.UUID {
	var u uuid.UUID
	for i := range u {
		u[i] = byte(g.rng.UintN(256))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// date is a day between 1990 and 2024.
func (g *generator) date() events.Date {
	start := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	return events.DateOf(start.AddDate(0, 0, g.rng.IntN(35*365)))
}

// next chooses the next change: joins outweigh leaves below about 40
// participants and leaves outweigh joins above, so an ISCM's membership
// stays near the size of real ones however long the history grows (a
// plain random walk above 40 made the current state, and with it every
// report, grow with the length of the log).
func (g *generator) next() decision {
	i := g.rng.IntN(len(g.cat.ISCMs))
	n := len(g.lists[i])
	pJoin := min(0.95, max(0.05, 0.5+0.3*float64(40-n)/40))
	join := n == 0 || (n < len(g.cat.Countries) && g.rng.Float64() < pJoin)
	d := decision{iscm: i, join: join, date: g.date()}
	if join {
		for {
			c := g.cat.Countries[g.rng.IntN(len(g.cat.Countries))].Alpha3
			if !g.members[i][c] {
				d.state = c
				break
			}
		}
		g.members[i][d.state] = true
		g.lists[i] = append(g.lists[i], d.state)
		return d
	}
	k := g.rng.IntN(n)
	d.state = g.lists[i][k]
	g.lists[i][k] = g.lists[i][n-1]
	g.lists[i] = g.lists[i][:n-1]
	delete(g.members[i], d.state)
	return d
}

// envelope builds the event of a decision as the registry service would,
// with an actor, a correlation id and a causation id.
func (g *generator) envelope(d decision) (events.Envelope, error) {
	slug := g.cat.ISCMs[d.iscm].Slug
	var p events.Payload = events.MemberLeft{State: d.state, Until: d.date}
	if d.join {
		status := events.StatusMember
		if g.rng.IntN(5) == 0 {
			status = events.StatusObserver
		}
		p = events.MemberJoined{State: d.state, Status: status, Since: d.date}
	}
	env, err := events.New(slug, events.KindISCM, slug, p, d.date.Time(), time.Now())
	if err != nil {
		return events.Envelope{}, err
	}
	env.Actor = g.actors[g.rng.IntN(len(g.actors))]
	env.CorrelationID = g.uuid().String()
	env.CausationID = g.uuid().String()
	return env, nil
}

// dataSet describes a generated stream.
type dataSet struct {
	Events      int           `json:"events"`
	ViaCommands int           `json:"via_commands"` // registration and membership commands of the registry service
	ViaAsync    int           `json:"via_async_publish"`
	AvgBytes    float64       `json:"avg_event_bytes"` // of the asynchronously published envelopes
	Took        time.Duration `json:"-"`
}

// generate writes a stream of n events into the server behind nc: the
// catalog's registrations and the first viaCommands membership changes
// through the registry service (the product's command path), the rest as
// envelopes published asynchronously with the headers the event store
// sets, chaining each aggregate's expected last sequence. The rest are
// membership changes only, or with mixed the whole mix of what ISCMs
// record (see mix).
func generate(ctx context.Context, nc *nats.Conn, n, viaCommands int, seed uint64, mixed bool) (dataSet, error) {
	return generateWith(ctx, nc, n, viaCommands, seed, mixed, true)
}

// generateHistory is generate for a stack that stands for years of
// reporting: the bulk is published without Nats-Msg-Id. Ids published in the
// last ten minutes (the stream's duplicate window) are kept by the server,
// about 100 bytes each; a log written over years holds none of them, while
// a million written in seconds would leave about 100 MiB the server keeps
// and its collector scans for ten minutes after.
func generateHistory(ctx context.Context, nc *nats.Conn, n int, seed uint64) (dataSet, error) {
	return generateWith(ctx, nc, n, 0, seed, true, false)
}

func generateWith(ctx context.Context, nc *nats.Conn, n, viaCommands int, seed uint64, mixed, msgIDs bool) (dataSet, error) {
	start := time.Now()
	cat := catalog.Default()
	js, err := jetstream.New(nc)
	if err != nil {
		return dataSet{}, err
	}
	store, err := eventstore.Open(ctx, js, eventstore.Config{})
	if err != nil {
		return dataSet{}, err
	}
	before, err := store.LastPosition(ctx)
	if err != nil {
		return dataSet{}, err
	}
	svc := registry.NewService(store, cat)
	registered, err := svc.RegisterCatalog(ctx, command.Meta{Actor: "bench", CorrelationID: "bench-setup"})
	if err != nil {
		return dataSet{}, fmt.Errorf("register catalog: %w", err)
	}
	ds := dataSet{Events: registered}
	g := newGenerator(cat, seed)
	viaCommands = max(0, min(viaCommands, n-registered))
	if err := runCommands(ctx, svc, cat, g, viaCommands); err != nil {
		return dataSet{}, err
	}
	ds.ViaCommands = registered + viaCommands
	bulk := n - registered - viaCommands
	if bulk > 0 {
		var bytes int64
		if mixed {
			bytes, err = publishEnvelopes(ctx, nc, store, cat, bulk, newMix(g).next, msgIDs)
		} else {
			bytes, err = publishBulk(ctx, nc, store, cat, g, bulk, nil, msgIDs)
		}
		if err != nil {
			return dataSet{}, err
		}
		ds.ViaAsync = bulk
		ds.AvgBytes = float64(bytes) / float64(bulk)
	}
	last, err := store.LastPosition(ctx)
	if err != nil {
		return dataSet{}, err
	}
	ds.Events = int(last - before)
	if ds.Events != n {
		return dataSet{}, fmt.Errorf("generated %d events, want %d", ds.Events, n)
	}
	ds.Took = time.Since(start)
	return ds, nil
}

// runCommands applies the next count decisions through the registry
// service's Join and Leave, one worker per ISCM so that each aggregate sees
// its changes in order.
func runCommands(ctx context.Context, svc *registry.Service, cat *catalog.Catalog, g *generator, count int) error {
	perISCM := make([][]decision, len(cat.ISCMs))
	for range count {
		d := g.next()
		perISCM[d.iscm] = append(perISCM[d.iscm], d)
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.SetLimit(8)
	for i, ds := range perISCM {
		slug := cat.ISCMs[i].Slug
		eg.Go(func() error {
			for _, d := range ds {
				m := command.Meta{Actor: "bench", CorrelationID: uuid.NewString()}
				var err error
				if d.join {
					_, err = svc.Join(ctx, slug, registry.AddMember{State: d.state, Status: events.StatusMember, Since: d.date.String()}, m)
				} else {
					_, err = svc.Leave(ctx, slug, d.state, d.date.String(), m)
				}
				if err != nil {
					return fmt.Errorf("command on %s for %s: %w", slug, d.state, err)
				}
			}
			return nil
		})
	}
	return eg.Wait()
}

// publishBulk publishes count more membership decisions, from next or else
// from the generator, as publishEnvelopes does.
func publishBulk(ctx context.Context, nc *nats.Conn, store *eventstore.Store, cat *catalog.Catalog, g *generator, count int, next func() decision, msgIDs bool) (int64, error) {
	if next == nil {
		next = g.next
	}
	return publishEnvelopes(ctx, nc, store, cat, count, func() (events.Envelope, error) { return g.envelope(next()) }, msgIDs)
}

// publishEnvelopes publishes count envelopes drawn from next asynchronously
// with the event type, message id (unless msgIDs is false), expected stream
// and expected last subject sequence headers of eventstore.Store.Append. Nothing else writes
// to the stream meanwhile, so each message's position is known in advance
// and the chain of expected sequences holds: the ISCM aggregates start at
// their version in the stream, every other subject at 0 (new). It returns
// the bytes of payload written.
func publishEnvelopes(ctx context.Context, nc *nats.Conn, store *eventstore.Store, cat *catalog.Catalog, count int, next func() (events.Envelope, error), msgIDs bool) (int64, error) {
	var (
		mu       sync.Mutex
		firstErr error
	)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(asyncWindow),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			mu.Lock()
			defer mu.Unlock()
			if firstErr == nil {
				firstErr = fmt.Errorf("async publish on %s: %w", m.Subject, err)
			}
		}))
	if err != nil {
		return 0, err
	}
	pos, err := store.LastPosition(ctx)
	if err != nil {
		return 0, err
	}
	lastOf := map[string]uint64{}
	for _, c := range cat.ISCMs {
		subject := events.Subject(c.Slug, events.KindISCM, c.Slug)
		if lastOf[subject], err = store.Version(ctx, subject); err != nil {
			return 0, err
		}
	}
	var bytes int64
	for k := range count {
		if k%asyncWindow == 0 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			mu.Lock()
			err := firstErr
			mu.Unlock()
			if err != nil {
				return 0, err
			}
		}
		env, err := next()
		if err != nil {
			return 0, err
		}
		data, err := env.Marshal()
		if err != nil {
			return 0, err
		}
		bytes += int64(len(data))
		subject := env.Subject()
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(events.HeaderEventType, env.Type)
		opts := []jetstream.PublishOpt{
			jetstream.WithExpectStream(events.StreamName),
			jetstream.WithExpectLastSequencePerSubject(lastOf[subject]),
			// A stack's projector consumes while the stream is written:
			// acks may lag the window for a while.
			jetstream.WithStallWait(30 * time.Second),
		}
		if msgIDs {
			opts = append(opts, jetstream.WithMsgID(env.ID.String()))
		}
		_, err = js.PublishMsgAsync(msg, opts...)
		if err != nil {
			return 0, fmt.Errorf("async publish: %w", err)
		}
		pos++
		lastOf[subject] = pos
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return 0, errors.New("async publish: acks did not arrive within a minute")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	return bytes, firstErr
}
