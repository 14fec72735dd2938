package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/command"
	"gcmtrack/services/eventstore"
	"gcmtrack/services/registry"
)

// loadIterations is how many times each side reads the aggregate within one
// repetition; the repetition's figure is their median.
const loadIterations = 5

// aggregateStream writes an ISCM aggregate of size events (its
// registration, then States joining and leaving in turn) into a fresh
// stream, interleaved with as many events on the other ISCMs.
func (r *runner) aggregateStream(ctx context.Context, node *natsNode, size int) (*eventstore.Store, string, error) {
	cat := catalog.Default()
	js, err := jetstream.New(node.nc)
	if err != nil {
		return nil, "", err
	}
	store, err := eventstore.Open(ctx, js, eventstore.Config{})
	if err != nil {
		return nil, "", err
	}
	if _, err := registry.NewService(store, cat).RegisterCatalog(ctx, command.Meta{Actor: "bench"}); err != nil {
		return nil, "", err
	}
	// Each ISCM cycles through the States: join, leave, join the next, …
	count := make([]int, len(cat.ISCMs))
	k := 0
	next := func() decision {
		i := 0 // every other event goes to the measured aggregate
		if k%2 == 1 {
			i = 1 + (k/2)%(len(cat.ISCMs)-1)
		}
		k++
		c := count[i]
		count[i]++
		return decision{iscm: i, state: cat.Countries[(c/2)%len(cat.Countries)].Alpha3, join: c%2 == 0, date: events.DateOf(time.Date(2018, 12, 10, 0, 0, 0, 0, time.UTC))}
	}
	g := newGenerator(cat, r.cfg.Seed)
	if _, err := publishBulk(ctx, node.nc, store, cat, g, 2*(size-1), next, true); err != nil {
		return nil, "", err
	}
	return store, cat.ISCMs[0].Slug, nil
}

// rawAggregateRead is the baseline of the load: an ordered consumer on the
// aggregate's subject, read to its end, without decoding. It returns the
// consumer's name, for the caller to delete it once the clock is stopped.
func rawAggregateRead(ctx context.Context, stream jetstream.Stream, subject string) (int, string, error) {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return 0, "", err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return 0, "", err
	}
	defer it.Stop()
	n, err := readToEnd(ctx, it)
	return n, cons.CachedInfo().Name, err
}

// readToEnd counts messages until none is pending.
func readToEnd(ctx context.Context, it jetstream.MessagesContext) (int, error) {
	n := 0
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return n, err
		}
		n++
		md, err := msg.Metadata()
		if err != nil {
			return n, err
		}
		if md.NumPending == 0 {
			return n, nil
		}
	}
}

// loadRows measures loading one aggregate of AggregateEvents events with
// the event store and with the registry service's fold, against the raw
// read of its messages.
func (r *runner) loadRows(ctx context.Context) []Row {
	size := r.cfg.AggregateEvents
	load := Row{
		Path: fmt.Sprintf("aggregate load: store.Load of %d events", size), Unit: "ms", Target: AtMost(1.5),
		BaselineName: "ordered consumer on the aggregate's subject reading its messages to the end, no decoding",
		Notes:        []string{fmt.Sprintf("the stream holds as many events of 29 other ISCMs, interleaved; each repetition is the median of %d reads per side", loadIterations)},
	}
	fold := Row{
		Path: fmt.Sprintf("aggregate load + fold: registry.Service.Load of %d events", size), Unit: "ms",
		BaselineName: "the raw read of the row above (the same runs)",
	}
	result := func(err error) []Row {
		if err != nil {
			load.Err, fold.Err = err.Error(), err.Error()
		}
		return []Row{load, fold}
	}
	node, err := r.env.startNATS("load", false, false)
	if err != nil {
		return result(err)
	}
	defer node.close()
	store, slug, err := r.aggregateStream(ctx, node, size)
	if err != nil {
		return result(err)
	}
	svc := registry.NewService(store, catalog.Default())
	subject := events.Subject(slug, events.KindISCM, slug)
	var cpus []cpuUse
	for i := range r.cfg.Reps {
		c0 := r.cpu.now()
		var raw, ld, fl []float64
		for range loadIterations {
			start := time.Now()
			n, consumer, err := rawAggregateRead(ctx, store.Stream(), subject)
			if err != nil {
				return result(fmt.Errorf("raw read: %w", err))
			}
			raw = append(raw, Millis(time.Since(start)))
			// The baseline cleans up after itself, off the clock; the
			// product's loads remove their consumers within their time.
			if err := store.Stream().DeleteConsumer(ctx, consumer); err != nil {
				return result(fmt.Errorf("delete the raw reader's consumer: %w", err))
			}
			if n != size {
				return result(fmt.Errorf("raw read found %d events, want %d", n, size))
			}
			start = time.Now()
			h, err := store.Load(ctx, slug, events.KindISCM, slug)
			if err != nil {
				return result(err)
			}
			ld = append(ld, Millis(time.Since(start)))
			if len(h.Records) != size {
				return result(fmt.Errorf("store.Load found %d events, want %d", len(h.Records), size))
			}
			start = time.Now()
			if _, err := svc.Load(ctx, slug); err != nil {
				return result(err)
			}
			fl = append(fl, Millis(time.Since(start)))
		}
		load.Baseline = append(load.Baseline, Median(raw))
		fold.Baseline = append(fold.Baseline, Median(raw))
		load.Product = append(load.Product, Median(ld))
		fold.Product = append(fold.Product, Median(fl))
		cpus = append(cpus, r.cpu.now().since(c0))
		r.logf("aggregate load %d/%d: raw %.1f ms, store.Load %.1f ms, registry.Service.Load %.1f ms", i+1, r.cfg.Reps,
			Median(raw), Median(ld), Median(fl))
	}
	load.Notes = append(load.Notes, disturbance(cpus, nil)+" (both sides alternate within each repetition)")
	// Untimed loads under the profiler, when profiling is on.
	err = r.profile("cpu-load-product.pprof", func() error {
		for range 20 {
			if _, err := store.Load(ctx, slug, events.KindISCM, slug); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return result(fmt.Errorf("profile the load: %w", err))
	}
	return result(nil)
}
