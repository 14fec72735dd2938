package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// watchdogScript waits until its standard input reaches end of file, which
// happens when the test binary exits however it exits, then asks the
// postmaster ($1) for a fast shutdown, waits up to 30 s for it to go and
// removes the cluster's temporary directory ($2).
const watchdogScript = `read -r _
kill -INT "$1" 2>/dev/null
i=0
while kill -0 "$1" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
rm -rf -- "$2"
`

// watchdog is a helper process that cleans up after a test binary that died
// before Main could stop the cluster.
type watchdog struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser // held open for the life of the test binary
}

// startWatchdog starts the watchdog for the postmaster pid and directory dir.
func startWatchdog(pid int, dir string) (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "testenv-watchdog", strconv.Itoa(pid), dir)
	// Its own process group keeps a terminal interrupt aimed at the test
	// binary from killing the watchdog too; no inherited output keeps the
	// test driver from waiting on it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start watchdog: %w", err)
	}
	return &watchdog{cmd: cmd, stdin: stdin}, nil
}

// dismiss ends the watchdog without letting it act, so that it cannot
// signal a process that later reuses the postmaster's pid.
func (w *watchdog) dismiss() error {
	killErr := w.cmd.Process.Kill()
	_ = w.cmd.Wait() // reports the kill
	_ = w.stdin.Close()
	if killErr != nil && !errors.Is(killErr, os.ErrProcessDone) {
		return fmt.Errorf("dismiss watchdog: %w", killErr)
	}
	return nil
}

// killPostmaster requests an immediate shutdown of a postmaster.
func killPostmaster(pid int) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill postmaster %d: %w", pid, err)
	}
	return nil
}
