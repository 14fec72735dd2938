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

// The API's memory pair: the peak RSS of an API process (`gcmtrack run
// --target api`, as a replica is deployed) serving the read load over a
// query stack of N events, against the same over N/10. The process is a
// child of the harness on the stack's NATS listener and database; the
// stack's own projector keeps the read models current.

// apiReadPaths are what the child API is read at, each by queryClients
// clients for queryWindow: the report endpoints of the query pairs and the
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

// apiMemory starts a child API on q, reads it as apiReadPaths say, then
// writes and reads back queryWrites times (each write's read catches the
// snapshot up), and returns the child's peak RSS in MiB.
func (r *runner) apiMemory(ctx context.Context, q *queryStack, label string) (float64, error) {
	c, err := r.startChildAPI(ctx, q, label)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	for _, p := range append(apiReadPaths, apiAsOfPath+strconv.FormatUint(q.half, 10)) {
		if _, _, _, err := p99(ctx, c.url+p, nil); err != nil {
			return 0, fmt.Errorf("child API: %w", err)
		}
	}
	cst := *q.st
	cst.url = c.url
	cq := *q
	cq.st = &cst
	if _, err := readAfterWrite(ctx, &cq); err != nil {
		return 0, fmt.Errorf("child API: %w", err)
	}
	return c.peakRSS()
}
