package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// Config tunes the engine.
type Config struct {
	// BatchSize is the most events applied in one transaction.
	BatchSize int
	// Linger is how long a batch waits for more events once it has one.
	Linger time.Duration
	// Standby is how often a replica without the lock tries to take it.
	Standby time.Duration
	// Metrics receive the engine's figures; nil keeps them unregistered.
	Metrics *Metrics
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 1000
	}
	if c.Linger <= 0 {
		c.Linger = 5 * time.Millisecond
	}
	if c.Standby <= 0 {
		c.Standby = time.Second
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine runs a set of projections against one stream and one database.
type Engine struct {
	pool        *pgxpool.Pool
	stream      jetstream.Stream
	cfg         Config
	projections map[string]Projection
	order       []string

	mu      sync.Mutex
	runners map[buildKey]*runner
	// activated wakes Rebuild when a runner has switched a generation in,
	// so a rebuild ends when its last build does, not at its next poll.
	activated chan struct{}
}

type buildKey struct {
	name       string
	generation int
}

// New prepares an engine; call Prepare, then Run.
func New(pool *pgxpool.Pool, stream jetstream.Stream, cfg Config, ps ...Projection) *Engine {
	cfg.defaults()
	e := &Engine{pool: pool, stream: stream, cfg: cfg, projections: map[string]Projection{}, runners: map[buildKey]*runner{},
		activated: make(chan struct{}, 1)}
	for _, p := range ps {
		e.projections[p.Name()] = p
		e.order = append(e.order, p.Name())
	}
	return e
}

// Names lists the engine's projections in the order given to New.
func (e *Engine) Names() []string { return append([]string(nil), e.order...) }

// Prepare makes sure every projection has an active build and, where the
// code's version differs from the active build's, a build of the new
// version in progress. It also drops the schemas of retired builds.
func (e *Engine) Prepare(ctx context.Context) error {
	for _, name := range e.order {
		p := e.projections[name]
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('gcm.projection_builds'))`); err != nil {
				return err
			}
			builds, err := listBuilds(ctx, tx, name)
			if err != nil {
				return err
			}
			var active *build
			building := false
			for i := range builds {
				b := &builds[i]
				switch {
				case b.status == statusActive:
					active = b
				case b.status == statusBuilding && b.version == p.Version():
					building = true
				}
			}
			switch {
			case active == nil:
				b, err := createBuild(ctx, tx, p, statusActive)
				if err != nil {
					return err
				}
				return pointViews(ctx, tx, name, b.schema)
			case active.version < p.Version() && !building:
				e.cfg.Logger.Info("projection version changed: building a new generation while the old one serves",
					"projection", name, "active_version", active.version, "new_version", p.Version())
				_, err := createBuild(ctx, tx, p, statusBuilding)
				return err
			case active.version > p.Version():
				e.cfg.Logger.Warn("projection is served by a newer version than this binary; not applying it",
					"projection", name, "active_version", active.version, "binary_version", p.Version())
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("prepare projection %s: %w", name, err)
		}
	}
	return dropRetired(ctx, e.pool, e.cfg.Logger)
}

// Run applies the stream to every build of this binary's versions, active
// or building, until ctx ends. Builds whose lock another replica holds wait
// as standbys. New builds (from a rebuild elsewhere) are picked up.
func (e *Engine) Run(ctx context.Context) error {
	go e.watchLag(ctx)
	tick := time.NewTicker(e.cfg.Standby)
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		if err := e.superviseOnce(ctx, &wg); err != nil && ctx.Err() == nil {
			e.cfg.Logger.Warn("projection supervisor", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (e *Engine) superviseOnce(ctx context.Context, wg *sync.WaitGroup) error {
	for _, name := range e.order {
		p := e.projections[name]
		builds, err := listBuilds(ctx, e.pool, name)
		if err != nil {
			return err
		}
		for _, b := range builds {
			if b.version != p.Version() || b.status == statusRetired {
				continue
			}
			e.startRunner(ctx, wg, p, b)
		}
	}
	return nil
}

func (e *Engine) startRunner(ctx context.Context, wg *sync.WaitGroup, p Projection, b build) *runner {
	key := buildKey{b.name, b.generation}
	e.mu.Lock()
	defer e.mu.Unlock()
	if r, ok := e.runners[key]; ok {
		return r
	}
	r := &runner{e: e, p: p, b: b, label: b.label(), done: make(chan struct{})}
	e.runners[key] = r
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.done)
		r.run(ctx)
		e.mu.Lock()
		delete(e.runners, key)
		e.mu.Unlock()
	}()
	return r
}

// RebuildGCPercent is the garbage collector's target percentage for a
// process that only rebuilds (`gcmtrack rebuild`) when GOGC is not set. Its
// live heap is small (a few batches of events and rows) and it allocates
// fast, so at Go's default of 100 the collector ran about a quarter of the
// process's CPU time. At 400 the heap stays bounded, a few times the live
// one, and the product's projections rebuilt 100,000 events of the bench's
// mix at 17,000 events/s instead of 14,900.
const RebuildGCPercent = 400

// Progress reports a rebuild's advance.
type Progress struct {
	Name     string
	Position uint64
	Last     uint64
	Done     bool
}

// Rebuild builds a new generation of each named projection (all when names
// is empty) from position 1, in parallel, and switches the views to it once
// it has caught up with the stream. The old generation serves until then.
func (e *Engine) Rebuild(ctx context.Context, names []string, progress func(Progress)) error {
	if len(names) == 0 {
		names = e.order
	}
	var builds []build
	for _, name := range names {
		p, ok := e.projections[name]
		if !ok {
			return fmt.Errorf("rebuild: unknown projection %q (have %v)", name, e.order)
		}
		var b build
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('gcm.projection_builds'))`); err != nil {
				return err
			}
			var err error
			b, err = createBuild(ctx, tx, p, statusBuilding)
			return err
		})
		if err != nil {
			return fmt.Errorf("rebuild %s: %w", name, err)
		}
		builds = append(builds, b)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.watchLag(ctx)
	var wg sync.WaitGroup
	for _, b := range builds {
		e.startRunner(ctx, &wg, e.projections[b.name], b)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		all := true
		for _, b := range builds {
			var pos int64
			var status string
			err := e.pool.QueryRow(ctx, `SELECT position, status FROM gcm.projection_builds WHERE name = $1 AND generation = $2`, b.name, b.generation).Scan(&pos, &status)
			if err != nil {
				if ctx.Err() != nil {
					wg.Wait()
					return ctx.Err()
				}
				return fmt.Errorf("rebuild %s: %w", b.name, err)
			}
			if progress != nil {
				progress(Progress{Name: b.name, Position: uint64(pos), Last: e.cfg.Metrics.lastSeq.Load(), Done: status == statusActive})
			}
			if status != statusActive {
				all = false
			}
		}
		if all {
			cancel()
			wg.Wait()
			return dropRetired(context.WithoutCancel(ctx), e.pool, e.cfg.Logger)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		case <-tick.C:
		case <-e.activated:
		}
	}
}

// watchLag keeps the stream's last position current for lag figures and
// for deciding when a building generation has caught up.
func (e *Engine) watchLag(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		if info, err := e.stream.Info(ctx); err == nil {
			e.cfg.Metrics.lastSeq.Store(info.State.LastSeq)
			e.mu.Lock()
			for _, r := range e.runners {
				// A standby knows no position of its own: only the leader
				// reports the build's lag.
				if r.state.Load() != runnerWaiting {
					r.reportLag()
				}
			}
			e.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// errFenced: the build's checkpoint moved or the build was retired by
// someone else; this runner must stop writing.
var errFenced = errors.New("checkpoint fenced")

type runnerState = int32

const (
	runnerWaiting runnerState = iota
	runnerLeading
	runnerActivated
)

// runner applies the stream to one build.
type runner struct {
	e        *Engine
	p        Projection
	b        build
	label    string // the build's generation, for metrics; b changes as the runner goes
	position atomic.Uint64
	state    atomic.Int32
	done     chan struct{}
}

func (r *runner) reportLag() {
	last := r.e.cfg.Metrics.lastSeq.Load()
	pos := r.position.Load()
	lag := float64(0)
	if last > pos {
		lag = float64(last - pos)
	}
	r.e.cfg.Metrics.lag.WithLabelValues(r.b.name, r.label).Set(lag)
}
