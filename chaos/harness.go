package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/events"
	"gcmtrack/events/catalog"
	"gcmtrack/services/auth"
)

// Config sets up a run.
type Config struct {
	// Gcmtrack is the binary under test.
	Gcmtrack string
	// DeployDir holds nats/nats-{1,2,3}.conf.
	DeployDir string
	// Duration is how long the load runs and faults are injected.
	Duration time.Duration
	// Rate is the writes started per second.
	Rate float64
	// FaultEvery is the time between two faults.
	FaultEvery time.Duration
	// Seed makes the choice of writes and faults repeatable.
	Seed uint64
	// WorkParent is where the work directory goes; empty is the system's
	// temporary directory.
	WorkParent string
	// Keep keeps the work directory (logs, stores) of a passing run; a
	// failing run always keeps it.
	Keep bool
	// Out receives progress lines and the summary.
	Out io.Writer
}

func (c *Config) defaults() error {
	if c.Gcmtrack == "" {
		return errors.New("chaos: no gcmtrack binary given")
	}
	abs, err := filepath.Abs(c.Gcmtrack)
	if err != nil {
		return err
	}
	c.Gcmtrack = abs
	if c.DeployDir == "" {
		c.DeployDir = "deploy"
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Minute
	}
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.FaultEvery <= 0 {
		c.FaultEvery = 15 * time.Second
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	return nil
}

// Limits that bound a run.
const (
	opDeadline      = 2 * time.Minute // a write gets a definite answer within this, or counts as unresolved
	readyTimeout    = 90 * time.Second
	catchUpTimeout  = 2 * time.Minute
	takeoverTimeout = 30 * time.Second // a standby that needs longer fails the run
)

// harness is one run: the processes, the servers and what was measured.
type harness struct {
	cfg   Config
	dir   string
	start time.Time

	mu    sync.Mutex
	procs []*process

	nats       *natsCluster
	pg         *postgres
	pool       *pgxpool.Pool
	nc         *nats.Conn
	js         jetstream.JetStream
	apis       []*process
	projectors []*process
	token      string
	actor      string
	load       *loadGen
	report     *Report
}

func (h *harness) track(p *process) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.procs = append(h.procs, p)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.cfg.Out, "%7.1fs  %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run performs a chaos run and returns its report. The error is for a run
// that could not be carried out; a run that found losses or mismatches
// returns a report that did not pass.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir, err := workDir(cfg.WorkParent)
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, dir: dir, start: time.Now(), report: &Report{Config: cfg, WorkDir: dir}}
	defer h.cleanup()
	h.logf("work directory %s", dir)
	if err := h.setUp(ctx); err != nil {
		h.report.Errors = append(h.report.Errors, err.Error())
		return h.report, fmt.Errorf("set up: %w", err)
	}
	h.report.SetupTook = time.Since(h.start)
	err = h.exercise(ctx)
	if err != nil {
		h.report.Errors = append(h.report.Errors, err.Error())
	}
	if ctx.Err() != nil {
		return h.report, ctx.Err()
	}
	if err := h.verify(ctx); err != nil {
		h.report.Errors = append(h.report.Errors, "verify: "+err.Error())
	}
	h.report.Took = time.Since(h.start)
	return h.report, nil
}

// setUp starts the NATS nodes, PostgreSQL, the migrations, an admin token,
// the two APIs and the two projectors.
func (h *harness) setUp(ctx context.Context) error {
	var err error
	if h.nats, err = startNATS(ctx, h); err != nil {
		return err
	}
	h.nc, err = nats.Connect(h.nats.url("admin"), nats.Name("gcmchaos"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connect to NATS as admin: %w", err)
	}
	if h.js, err = jetstream.New(h.nc); err != nil {
		return err
	}
	// As the runbook has operators do: the stream from stream-GCM.json, as
	// admin, once the cluster has elected its JetStream leader.
	if err := createStream(ctx, h.js, filepath.Join(h.cfg.DeployDir, "nats", "stream-GCM.json")); err != nil {
		return err
	}
	h.logf("NATS cluster up: %v on ports %v; stream %s created", h.nats.names, h.nats.ports, events.StreamName)
	if h.pg, err = startPostgres(ctx, h); err != nil {
		return err
	}
	dbURL := h.pg.url("chaos-harness")
	migrate := exec.CommandContext(ctx, h.cfg.Gcmtrack, "migrate", "--database-url", dbURL, "--log-level", "warn")
	if out, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("gcmtrack migrate: %w\n%s", err, out)
	}
	if h.pool, err = pgxpool.New(ctx, dbURL); err != nil {
		return err
	}
	secret, tok, err := auth.NewStore(h.pool).Create(ctx, auth.NewToken{Name: "chaos load", Role: auth.RoleAdmin, TTL: 24 * time.Hour})
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	h.token, h.actor = secret, "token:"+tok.ID.String()
	h.logf("PostgreSQL up, migrated; admin token %s", tok.ID)

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	rateOff := []string{"GCM_RATE_TOKEN_WRITES=0", "GCM_RATE_TOKEN_READS=0", "GCM_RATE_ANONYMOUS=0"}
	for i := range 2 {
		name := fmt.Sprintf("api-%d", i+1)
		addr := "127.0.0.1:" + strconv.Itoa(ports[i])
		p := &process{
			name: name, bin: h.cfg.Gcmtrack, env: rateOff, readyURL: "http://" + addr + "/readyz",
			logPath: filepath.Join(h.dir, "logs", name+".log"),
			args: []string{"run", "--target=api", "--nats-url", h.nats.url("api"), "--database-url", h.pg.url(name),
				"--stream-replicas", "3", "--http-addr", addr, "--data-dir", filepath.Join(h.dir, name)},
		}
		h.track(p)
		h.apis = append(h.apis, p)
	}
	for i := range 2 {
		name := fmt.Sprintf("projector-%d", i+1)
		addr := "127.0.0.1:" + strconv.Itoa(ports[2+i])
		p := &process{
			name: name, bin: h.cfg.Gcmtrack, readyURL: "http://" + addr + "/readyz",
			logPath: filepath.Join(h.dir, "logs", name+".log"),
			args: []string{"run", "--target=projector", "--nats-url", h.nats.url("projector"), "--database-url", h.pg.url(name),
				"--http-addr", addr, "--data-dir", filepath.Join(h.dir, name)},
		}
		h.track(p)
		h.projectors = append(h.projectors, p)
	}
	// One after the other: the first API creates the idempotency bucket.
	for _, p := range append(append([]*process(nil), h.apis...), h.projectors...) {
		if err := p.start(); err != nil {
			return err
		}
		if err := p.awaitReady(ctx, readyTimeout); err != nil {
			return err
		}
	}
	if err := awaitStreamHealthy(ctx, h.js, time.Minute); err != nil {
		return err
	}
	if err := h.awaitLeaders(ctx); err != nil {
		return err
	}
	h.logf("2 APIs and 2 projectors ready; stream %s at 3 replicas", events.StreamName)
	return nil
}

// exercise runs the load and the faults for the configured duration, then
// lets the writes under way finish.
func (h *harness) exercise(ctx context.Context) error {
	var apis []string
	for _, p := range h.apis {
		apis = append(apis, strings.TrimSuffix(p.readyURL, "/readyz"))
	}
	h.load = newLoadGen(newModel(catalog.Default(), h.cfg.Seed, strconv.FormatInt(time.Now().Unix(), 36), h.actor),
		apis, h.token, h.cfg.Rate, opDeadline, h.logf)
	loadCtx, stopLoad := context.WithTimeout(ctx, h.cfg.Duration)
	defer stopLoad()
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		h.load.run(loadCtx, ctx)
	}()
	h.logf("load started: %.0f writes/s for %s; a fault every %s", h.cfg.Rate, h.cfg.Duration, h.cfg.FaultEvery)
	faultErr := h.injectFaults(loadCtx, ctx)
	<-loadDone
	ops, _ := h.load.snapshot()
	h.logf("load stopped after %d writes; waiting for those under way (at most %s)", len(ops), opDeadline)
	h.load.wait()
	h.logf("all writes answered or given up")
	return faultErr
}

// cleanup stops every process and PostgreSQL, and removes the work
// directory of a passing run unless it is to be kept.
func (h *harness) cleanup() {
	if h.nc != nil {
		h.nc.Close()
	}
	if h.pool != nil {
		h.pool.Close()
	}
	h.mu.Lock()
	procs := append([]*process(nil), h.procs...)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *process) {
			defer wg.Done()
			p.stop(15 * time.Second)
		}(procs[i])
	}
	wg.Wait()
	if h.pg != nil {
		h.pg.stop()
	}
	if h.report.Passed() && !h.cfg.Keep {
		if err := os.RemoveAll(h.dir); err != nil {
			fmt.Fprintf(h.cfg.Out, "could not remove %s: %v\n", h.dir, err)
		}
		h.report.WorkDir = ""
	}
}
