package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
	"gcmtrack/projections/engine"
)

// Scenarios the harness knows, in the order it runs them.
var Scenarios = []string{"replay", "memory", "append", "load", "freshness", "queries"}

// Config is what a run measures and how long.
type Config struct {
	// Events is the size N of the replay stream.
	Events int
	// Reps is how many repetitions each figure takes; the median counts.
	Reps int
	// NaiveEvents is the prefix of the stream the naive projector replays.
	NaiveEvents int
	// CommandEvents is how many membership changes of the replay stream go
	// through the registry service; the rest are published directly.
	CommandEvents int
	// Clients is the number of concurrent HTTP clients and raw publishers.
	Clients int
	// AppendDuration is how long each append measurement runs, after a
	// warm-up of a second.
	AppendDuration time.Duration
	// WriteRate is the API write rate of the freshness measurement, per
	// second, and FreshnessDuration how long each of its runs lasts.
	WriteRate         int
	FreshnessDuration time.Duration
	// AggregateEvents is the size of the aggregate the load pair reads.
	AggregateEvents int
	// Gcmtrack is the product binary, run as a child process for the
	// memory figures.
	Gcmtrack string
	// ProfileDir, when set, receives CPU profiles of extra, untimed runs of
	// the rebuild and append paths.
	ProfileDir string
	// Only lists the scenarios to run; empty runs all of them.
	Only []string
	// Seed makes the generated data repeatable.
	Seed uint64
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
}

func (c *Config) defaults() {
	if c.Events <= 0 {
		c.Events = 100_000
	}
	if c.Reps <= 0 {
		c.Reps = 3
	}
	if c.NaiveEvents <= 0 {
		c.NaiveEvents = 20_000
	}
	if c.CommandEvents < 0 {
		c.CommandEvents = 0
	}
	if c.Clients <= 0 {
		c.Clients = 32
	}
	if c.AppendDuration <= 0 {
		c.AppendDuration = 5 * time.Second
	}
	if c.WriteRate <= 0 {
		c.WriteRate = 200
	}
	if c.FreshnessDuration <= 0 {
		c.FreshnessDuration = 5 * time.Second
	}
	if c.AggregateEvents <= 0 {
		c.AggregateEvents = 10_000
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

func (c *Config) runs(scenario string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, scenario)
}

// runner carries one run's state.
type runner struct {
	cfg  Config
	env  *env
	cpu  cpuClock
	rep  *Report
	logf func(format string, args ...any)
}

// Run measures every selected scenario and returns the report. A scenario
// that fails is reported in its rows and does not stop the others; the
// returned error then says which failed. An error with a nil report means
// the run could not start at all.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	for _, s := range cfg.Only {
		if !slices.Contains(Scenarios, s) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(Scenarios, ", "))
		}
	}
	r := &runner{cfg: cfg, rep: &Report{Started: time.Now(), Events: cfg.Events, Reps: cfg.Reps}}
	r.logf = func(format string, args ...any) {
		fmt.Fprintf(cfg.Progress, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	r.logf("starting PostgreSQL")
	e, err := startEnv(ctx, r.logf)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r.env, r.cpu = e, cpuClock{postmaster: e.cluster.PID()}
	r.rep.Machine = describeMachine(ctx, e.admin)
	r.conditions(ctx)
	c0 := r.cpu.now()

	var failed []string
	step := func(name string, f func(context.Context) []Row) {
		if !cfg.runs(name) || ctx.Err() != nil {
			return
		}
		rows := f(ctx)
		for _, row := range rows {
			if row.Err != "" {
				failed = append(failed, row.Path)
			}
		}
		r.rep.Rows = append(r.rep.Rows, rows...)
	}

	if cfg.runs("replay") || cfg.runs("memory") {
		node, small, err := r.replayStreams(ctx)
		if err != nil {
			r.rep.Rows = append(r.rep.Rows, Row{Path: "replay stream (replay and memory pairs)", Err: err.Error()})
			failed = append(failed, "replay stream")
		} else {
			step("replay", func(ctx context.Context) []Row { return r.replayRows(ctx, node) })
			step("memory", func(ctx context.Context) []Row { return r.memoryRows(ctx, node, small) })
			node.close()
			small.close()
		}
	}
	step("append", r.appendRows)
	step("load", r.loadRows)
	step("freshness", r.freshnessRows)
	step("queries", r.queryRows)
	r.rep.Duration = time.Since(r.rep.Started)
	r.machineLoad(c0)
	if err := ctx.Err(); err != nil {
		return r.rep, err
	}
	if len(failed) > 0 {
		return r.rep, fmt.Errorf("measurements failed: %s", strings.Join(failed, "; "))
	}
	return r.rep, nil
}

// conditions records the settings every figure is measured under.
func (r *runner) conditions(ctx context.Context) {
	c := r.cfg
	pg := map[string]string{}
	for _, s := range []string{"fsync", "synchronous_commit", "shared_buffers", "wal_level"} {
		var v string
		if err := r.env.admin.QueryRow(ctx, "SHOW "+s).Scan(&v); err == nil {
			pg[s] = v
		}
	}
	r.rep.Conditions = append(r.rep.Conditions,
		fmt.Sprintf("%d repetitions per figure; the median of each side counts, ratios are of medians; product and baseline alternate within each repetition", c.Reps),
		fmt.Sprintf("PostgreSQL: one private cluster on 127.0.0.1, a fresh database per measurement; fsync=%s, synchronous_commit=%s, shared_buffers=%s, wal_level=%s",
			pg["fsync"], pg["synchronous_commit"], pg["shared_buffers"], pg["wal_level"]),
		"NATS: embedded in the harness process, file storage, in-process client connections (as `gcmtrack run`); a listener on 127.0.0.1 only for the child process of the memory figures",
		"everything shares the machine's CPUs: the harness (NATS, API, load generators), PostgreSQL and any child process",
		fmt.Sprintf("rebuild pairs: engine.Config{BatchSize: %d} (linger: the default %s), product and baselines alike at the collector setting `gcmtrack rebuild` takes (%s); freshness: the engine with the product's defaults, as `gcmtrack run` starts it", replayBatch, defaultLinger, rebuildGC()),
		fmt.Sprintf("append pairs: %d keep-alive HTTP clients in the harness process over 127.0.0.1, %s warm-up then a %s window, a fresh NATS server per run "+
			"(so aggregates start empty and grow during the run); the API logs JSON at info level to a file, as `gcmtrack run` logs to stderr", c.Clients, warmUp, c.AppendDuration),
	)
}

// machineLoad records how busy the machine was with other processes
// during the run: the figures are only as good as the machine was quiet.
func (r *runner) machineLoad(c0 cpuSample) {
	c1 := r.cpu.now()
	capacity := c1.at.Sub(c0.at).Seconds() * float64(runtime.NumCPU())
	others := c1.others(c0).Seconds()
	load, _ := os.ReadFile("/proc/loadavg")
	line := fmt.Sprintf("processes other than the harness, its children and PostgreSQL used %.0f CPU-seconds, %.0f%% of the machine's %.0f during the run; load average at the end: %s",
		others, 100*others/capacity, capacity, strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	r.rep.Conditions = append(r.rep.Conditions, line)
	r.rep.OthersShare = others / capacity
}

// replayStreams starts the servers holding the replay stream of N events
// and, for the memory figures, one of N/10 events, and generates both.
// They listen on loopback so that a child gcmtrack can read them.
func (r *runner) replayStreams(ctx context.Context) (*natsNode, *natsNode, error) {
	n := r.cfg.Events
	node, err := r.env.startNATS("replay", true, false)
	if err != nil {
		return nil, nil, err
	}
	r.logf("generating the replay stream: %d events", n)
	ds, err := generate(ctx, node.nc, n, min(r.cfg.CommandEvents, n/10), r.cfg.Seed, true)
	if err != nil {
		node.close()
		return nil, nil, fmt.Errorf("generate the replay stream: %w", err)
	}
	r.logf("generated in %s: %d through the registry service, %d published asynchronously, %.0f bytes per envelope",
		ds.Took.Round(time.Millisecond), ds.ViaCommands, ds.ViaAsync, ds.AvgBytes)
	small, err := r.env.startNATS("replay-tenth", true, false)
	if err != nil {
		node.close()
		return nil, nil, err
	}
	if _, err := generate(ctx, small.nc, n/10, min(r.cfg.CommandEvents, n/100), r.cfg.Seed, true); err != nil {
		node.close()
		small.close()
		return nil, nil, fmt.Errorf("generate the N/10 stream: %w", err)
	}
	r.rep.Conditions = append(r.rep.Conditions, fmt.Sprintf(
		"replay stream: N=%d events over the catalog's 30 ISCMs and ~250 States: iscm.registered, then about 15%% membership changes, 24%% records created "+
			"(55%% activities, one position per ISCM, agenda items, partnerships, submissions, action plans, hindering factors, resources, expansions), 13%% revisions, "+
			"18%% submissions, 18%% publications, 2%% withdrawals, 7%% milestone progress, 3%% questionnaire answers for the 2018–2026 cycles (a third saved as drafts); "+
			"%d written through the registry service (RegisterCatalog, Join, Leave), %d as envelopes published asynchronously (window %d) with the event store's headers; "+
			"%.0f bytes per envelope on average; written with default sync (it is setup), read through in-process connections",
		ds.Events, ds.ViaCommands, ds.ViaAsync, asyncWindow, ds.AvgBytes))
	return node, small, nil
}

// streamOf opens the event stream on a node.
func streamOf(ctx context.Context, n *natsNode) (jetstream.Stream, uint64, error) {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, 0, err
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, 0, fmt.Errorf("event stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	return s, info.State.LastSeq, nil
}

// profile runs f with the CPU profiler writing to dir/name, when profiling
// is on, and reports where the profile went.
func (r *runner) profile(name string, f func() error) error {
	if r.cfg.ProfileDir == "" {
		return nil
	}
	if err := os.MkdirAll(r.cfg.ProfileDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(r.cfg.ProfileDir, name)
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		return errors.Join(err, out.Close())
	}
	ferr := f()
	pprof.StopCPUProfile()
	if err := out.Close(); err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	r.logf("CPU profile written to %s", path)
	return nil
}

// engineNames lists the names of projections.
func engineNames(ps []engine.Projection) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name()
	}
	return names
}

// rebuildGC describes the collector setting of the rebuild pairs.
func rebuildGC() string {
	if v := os.Getenv("GOGC"); v != "" {
		return "GOGC=" + v + ", from the environment"
	}
	return fmt.Sprintf("GOGC=%d", engine.RebuildGCPercent)
}
