package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// The API's memory pair and the query p99 pairs' product side: an API
// process (`gcmtrack run --target api`, as a replica is deployed) serving
// the read load over a query stack of N events, against the same over N/10:
// its peak RSS, and the p99 of each endpoint read. The process is a child
// of the harness on the stack's NATS listener and database; the stack's own
// projector keeps the read models current.

// apiReadPaths are what the child API is read at, each by queryClients
// clients for childWindow: the report endpoints of the query pairs and the
// public feed and page; then apiAsOfPath, a report as of the stack's
// halfway position.
var apiReadPaths = []string{
	"/v1/progress/objectives",
	"/v1/reports/figures?cycle=2018",
	"/v1/iscms/puebla-process",
	"/v1/progress/states",
	"/v1/feeds/published.json?limit=50",
	"/objectives",
}

const apiAsOfPath = "/v1/progress/objectives?as_of_position="

// childAPI is an API process the harness started.
type childAPI struct {
	cmd    *exec.Cmd
	url    string
	logf   string
	exited chan error
}

// startChildAPI starts `gcmtrack run --target api` on q's NATS and
// database with the rate limits off and waits until it answers /readyz.
func (r *runner) startChildAPI(ctx context.Context, q *queryStack, label string) (*childAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := filepath.Join(r.env.dir, fmt.Sprintf("child-api-%s-%d", label, r.env.next()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &childAPI{url: "http://" + addr, logf: filepath.Join(dir, "api.log"), exited: make(chan error, 1)}
	logFile, err := os.Create(c.logf)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	c.cmd = exec.CommandContext(ctx, r.cfg.Gcmtrack, "run", "--target", "api",
		"--nats-url", q.st.node.srv.ClientURL(), "--database-url", q.db.url, "--data-dir", dir,
		"--http-addr", addr, "--log-level", "warn",
		"--rate-token-writes", "0", "--rate-token-reads", "0", "--rate-anonymous", "0")
	c.cmd.Env = childEnv()
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { c.exited <- c.cmd.Wait() }()
	hc := newHTTPClient(1)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-c.exited:
			out, _ := os.ReadFile(c.logf)
			return nil, fmt.Errorf("%s run --target api exited: %v: %s", r.cfg.Gcmtrack, err, lastLine(string(out)))
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if res, err := hc.Get(c.url + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("the child API did not answer /readyz within 2 minutes")
		}
	}
}

// peakRSS is the child's VmHWM in MiB.
func (c *childAPI) peakRSS() (float64, error) {
	kb, ok := vmHWM(c.cmd.Process.Pid)
	if !ok {
		return 0, fmt.Errorf("could not read VmHWM of the child API")
	}
	return float64(kb) / 1024, nil
}

// stop ends the child as an orchestrator would (SIGTERM, then SIGKILL).
func (c *childAPI) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// childReads is what apiMemory measured of a child API: its peak RSS in
// MiB and the p99 in ms of each of apiReadPaths.
type childReads struct {
	peakMiB float64
	p99     map[string]float64
}

// apiMemory starts a child API on q, reads it as apiReadPaths say, then
// writes and reads back queryWrites times (each write's read catches the
// snapshot up), and returns the child's peak RSS and the p99 of each read
// path.
func (r *runner) apiMemory(ctx context.Context, q *queryStack, label string) (childReads, error) {
	c, err := r.startChildAPI(ctx, q, label)
	if err != nil {
		return childReads{}, err
	}
	defer c.stop()
	reads := childReads{p99: map[string]float64{}}
	paths := append(apiReadPaths, apiAsOfPath+strconv.FormatUint(q.half, 10))
	// A fresh process first grows its heap, its connection pool and its
	// kept pages: a second of the read load, not counted, before the
	// windows.
	if err := readFor(ctx, c.url, paths, childWarmUp); err != nil {
		return childReads{}, fmt.Errorf("child API: %w", err)
	}
	for _, p := range paths {
		v, _, _, err := p99Of(ctx, func() string { return c.url + p }, nil, childWindow)
		if err != nil {
			return childReads{}, fmt.Errorf("child API: %w", err)
		}
		reads.p99[p] = v
	}
	cst := *q.st
	cst.url = c.url
	cq := *q
	cq.st = &cst
	if _, err := readAfterWrite(ctx, &cq); err != nil {
		return childReads{}, fmt.Errorf("child API: %w", err)
	}
	reads.peakMiB, err = c.peakRSS()
	return reads, err
}

const (
	// childWarmUp is how long a child API is read before its windows.
	childWarmUp = time.Second
	// childWindow is how long each of its paths is read. Longer than the
	// in-process windows: the pairs with a target take their p99 from
	// these, and on a loaded machine one stall in a two-second window
	// decided a pair (a p99 of 15.6 ms against 4.9 and 7.9 in the others).
	childWindow = 5 * time.Second
)

// readFor reads the paths in turn with queryClients clients for d.
func readFor(ctx context.Context, base string, paths []string, d time.Duration) error {
	c := newHTTPClient(queryClients)
	deadline := time.Now().Add(d)
	errs := make(chan error, queryClients)
	for k := range queryClients {
		go func() {
			for i := k; time.Now().Before(deadline); i++ {
				if _, _, err := timedGet(ctx, c, base+paths[i%len(paths)]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range queryClients {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
