package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// process is one child process of the harness that it may kill, pause and
// start again with the same arguments. Its output goes to a log file that
// every start appends to.
type process struct {
	name    string
	bin     string
	args    []string
	env     []string
	logPath string
	// readyURL, when set, answers 200 once the process serves.
	readyURL string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
}

// start runs the process. The child is killed if the harness dies
// (Pdeathsig) and gets a process group of its own, so that a terminal's
// Ctrl-C reaches the harness alone, which then stops everything in order.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.name)
		}
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	fmt.Fprintf(logf, "\n=== %s: %s start\n", time.Now().UTC().Format(time.RFC3339Nano), p.name)
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// running reports whether the process runs (or is paused).
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the running process.
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s to %s: %w", sig, p.name, err)
	}
	return nil
}

// kill sends SIGKILL and waits until the process is gone.
func (p *process) kill() error {
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return p.wait(10 * time.Second)
}

// wait waits for the current run to exit.
func (p *process) wait(d time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %s", p.name, d)
	}
}

// stop ends the process: SIGCONT in case it is paused, SIGTERM, and SIGKILL
// if it has not exited after grace.
func (p *process) stop(grace time.Duration) {
	if !p.running() {
		return
	}
	_ = p.signal(syscall.SIGCONT)
	_ = p.signal(syscall.SIGTERM)
	if p.wait(grace) != nil {
		_ = p.kill()
	}
}

// awaitReady polls readyURL until it answers 200, the process exits, or
// the time runs out.
func (p *process) awaitReady(ctx context.Context, limit time.Duration) error {
	if p.readyURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if !p.running() {
			return fmt.Errorf("%s exited while starting (see %s)", p.name, p.logPath)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.readyURL, nil)
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (see %s)", p.name, limit, p.logPath)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// restart starts a process that was killed and waits until it is ready.
func (p *process) restart(ctx context.Context, limit time.Duration) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.awaitReady(ctx, limit)
}

// freePorts reserves n distinct loopback ports by listening on them, then
// releases them for the children to take.
func freePorts(n int) ([]int, error) {
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		closers = append(closers, l.Close)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// workDir makes a private working directory that the postgres OS user can
// traverse (PostgreSQL runs as that user when the harness runs as root).
func workDir(parent string) (string, error) {
	dir, err := os.MkdirTemp(parent, "gcmchaos-*")
	if err != nil {
		return "", fmt.Errorf("work directory: %w", err)
	}
	for p := dir; p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("work directory: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o011); err != nil {
				return "", fmt.Errorf("work directory: let PostgreSQL through %s: %w", p, err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return "", err
	}
	return dir, nil
}
