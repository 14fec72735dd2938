package bench

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"gcmtrack/events/catalog"
	"gcmtrack/projections/engine"
)

// pollEvery is how often the freshness watcher asks how far the read
// models are: the resolution of the freshness figures.
const pollEvery = time.Millisecond

// defaultLinger is the engine's linger when its Config leaves it zero; the
// freshness figure is compared with it.
const defaultLinger = 5 * time.Millisecond

// sample is one reading of the read models' position.
type sample struct {
	at  time.Time
	pos uint64
}

// written is one acknowledged write: when its 2xx arrived and where it
// landed.
type written struct {
	at  time.Time
	pos uint64
}

// visibleAfter is, for each write, the time from its 2xx to the first
// reading taken after it that shows the read models at or past its
// position; samples must be in time order with non-decreasing positions.
// Writes never seen are left out.
func visibleAfter(ws []written, samples []sample) []float64 {
	var out []float64
	for _, w := range ws {
		i := sort.Search(len(samples), func(i int) bool { return !samples[i].at.Before(w.at) })
		j := i + sort.Search(len(samples)-i, func(k int) bool { return samples[i+k].pos >= w.pos })
		if j < len(samples) {
			out = append(out, Millis(samples[j].at.Sub(w.at)))
		}
	}
	return out
}

// freshnessRun writes at the configured rate through the API of a full
// stack (API and projector, as `gcmtrack run`) and measures how long each
// write takes to show in the read models.
func (r *runner) freshnessRun(ctx context.Context) (lat []float64, rate float64, err error) {
	db, err := r.newAPIDatabase(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer db.close()
	st, err := r.startStack(ctx, db, stackOptions{syncAlways: true, engine: true})
	if err != nil {
		return nil, 0, err
	}
	defer st.stop()
	last, err := st.store.LastPosition(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := waitPosition(ctx, db, st.names, last, 30*time.Second); err != nil {
		return nil, 0, err
	}

	// The watcher reads the position on a connection of its own.
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Release()
	var samples []sample
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() {
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			pos, err := engine.ActivePosition(wctx, conn, st.names)
			if err != nil {
				if wctx.Err() != nil {
					err = nil
				}
				watched <- err
				return
			}
			samples = append(samples, sample{at: time.Now(), pos: pos})
			select {
			case <-wctx.Done():
				watched <- nil
				return
			case <-tick.C:
			}
		}
	}()

	// Writers: one per ISCM, each joining and removing States in turn, fed
	// by a schedule of WriteRate writes a second spread over the ISCMs.
	cat := catalog.Default()
	hc := newHTTPClient(len(cat.ISCMs))
	defer hc.CloseIdleConnections()
	var (
		mu     sync.Mutex
		writes []written
		failed int
		first  string
	)
	var w window
	var wg sync.WaitGroup
	queues := make([]chan struct{}, len(cat.ISCMs))
	for i, a := range assign(cat, len(cat.ISCMs)) {
		queues[i] = make(chan struct{}, 1024)
		m := &member{http: hc, base: st.url, token: db.admin, slug: a.slug, states: a.states}
		wg.Go(func() {
			k, joined := 0, false
			for range queues[i] {
				a, err := m.write(ctx, m.states[k%len(m.states)], !joined)
				at := time.Now()
				pos, perr := strconv.ParseUint(a.position, 10, 64)
				mu.Lock()
				switch {
				case err != nil || a.status >= 300 || perr != nil:
					failed++
					if first == "" {
						first = fmt.Sprintf("%v %d %s %s", err, a.status, a.problem, a.detail)
					}
				case w.measuring():
					writes = append(writes, written{at: at, pos: pos})
				}
				mu.Unlock()
				if err == nil && a.status < 300 {
					if joined {
						k++
					}
					joined = !joined
				}
			}
		})
	}
	interval := time.Second / time.Duration(r.cfg.WriteRate)
	scheduled := 0
	go func() { w.run(ctx, r.cfg.FreshnessDuration) }()
	start := time.Now()
	for !w.over() && ctx.Err() == nil {
		time.Sleep(time.Until(start.Add(time.Duration(scheduled) * interval)))
		queues[scheduled%len(queues)] <- struct{}{}
		scheduled++
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	elapsed := time.Since(start)

	var maxPos uint64
	for _, wr := range writes {
		maxPos = max(maxPos, wr.pos)
	}
	werr := waitPosition(ctx, db, st.names, maxPos, 30*time.Second)
	time.Sleep(10 * pollEvery)
	stopWatch()
	if err := <-watched; err != nil {
		return nil, 0, fmt.Errorf("watch position: %w", err)
	}
	if werr != nil {
		return nil, 0, werr
	}
	if failed > 0 {
		return nil, 0, fmt.Errorf("%d writes failed; first: %s", failed, first)
	}
	lat = visibleAfter(writes, samples)
	if len(lat) != len(writes) {
		return nil, 0, fmt.Errorf("%d of %d writes never showed in the read models", len(writes)-len(lat), len(writes))
	}
	return lat, float64(scheduled) / elapsed.Seconds(), nil
}

// waitPosition waits until the named projections have applied pos.
func waitPosition(ctx context.Context, db *apiDatabase, names []string, pos uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		have, err := engine.ActivePosition(ctx, db.pool, names)
		if err == nil && have >= pos {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("read models at %d, not at %d after %s (%v)", have, pos, limit, err)
		}
		sleepCtx(ctx, 10*time.Millisecond)
	}
}

// freshnessRows measures the p99 time from a write's 2xx to the read model
// reflecting it, against the engine's linger.
func (r *runner) freshnessRows(ctx context.Context) []Row {
	row := Row{
		Path: fmt.Sprintf("freshness: p99 write 2xx → read model, %d writes/s", r.cfg.WriteRate), Unit: "ms", Target: Below(10),
		Baseline: []float64{Millis(defaultLinger)}, BaselineConfigured: true,
		BaselineName: "the engine's linger (engine.Config default), a configured value",
		Extra:        map[string]any{},
	}
	var p50, maxes, rates []float64
	var cpus []cpuUse
	for i := range r.cfg.Reps {
		c0 := r.cpu.now()
		lat, rate, err := r.freshnessRun(ctx)
		if err != nil {
			row.Err = err.Error()
			return []Row{row}
		}
		cpus = append(cpus, r.cpu.now().since(c0))
		row.Product = append(row.Product, Percentile(lat, 99))
		p50 = append(p50, Percentile(lat, 50))
		_, hi := MinMax(lat)
		maxes = append(maxes, hi)
		rates = append(rates, rate)
		r.logf("freshness %d/%d: %d writes at %.0f/s, p50 %.1f ms, p99 %.1f ms, max %.1f ms", i+1, r.cfg.Reps, len(lat), rate,
			p50[i], row.Product[i], hi)
	}
	row.Extra["p50_ms"], row.Extra["max_ms"], row.Extra["write_rate"] = p50, maxes, rates
	row.Extra["cpu"] = cpus
	row.Notes = append(row.Notes, fmt.Sprintf(
		"full stack as `gcmtrack run` (API + projector, fsync always), writes spread over the 30 ISCMs; the read models' position polled every %s with engine.ActivePosition, "+
			"latency = first poll after the 2xx showing the write; median p50 %.1f ms, max %.1f ms, achieved %.0f writes/s",
		pollEvery, Median(p50), Median(maxes), Median(rates)))
	row.Notes = append(row.Notes, disturbance(cpus, nil))
	for i, rate := range rates {
		if rate < 0.95*float64(r.cfg.WriteRate) {
			row.Notes = append(row.Notes, fmt.Sprintf("run %d reached only %.0f of the %d writes/s asked for: the machine could not keep up", i+1, rate, r.cfg.WriteRate))
		}
	}
	return []Row{row}
}
