package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childRun is one `gcmtrack rebuild` in a child process.
type childRun struct {
	peakRSS float64 // MiB, the largest VmHWM read while the child ran
	// rusageMaxRSS is ru_maxrss of the child in MiB. It is not the figure:
	// the Go runtime starts children with clone(CLONE_VM|CLONE_VFORK), and
	// at exec the kernel folds the high-water mark of the shared address
	// space, the harness's, into the child's maxrss.
	rusageMaxRSS float64
	wall         time.Duration
}

// hwmEvery is how often the child's VmHWM is read.
const hwmEvery = 20 * time.Millisecond

// vmHWM reads the peak resident set of a process from /proc, in KiB.
func vmHWM(pid int) (int64, bool) {
	v := procField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM")
	n, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	return n, err == nil
}

// childRebuild runs the product binary's rebuild against a NATS server and
// a fresh database and follows its peak RSS (VmHWM, which counts from the
// exec on) until it exits.
func (r *runner) childRebuild(ctx context.Context, natsURL, label string) (childRun, error) {
	url, drop, err := r.env.newDatabase(ctx, "memory")
	if err != nil {
		return childRun{}, err
	}
	defer drop()
	dir := filepath.Join(r.env.dir, fmt.Sprintf("child-%s-%d", label, r.env.next()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return childRun{}, err
	}
	logPath := filepath.Join(dir, "rebuild.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return childRun{}, err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, r.cfg.Gcmtrack, "rebuild",
		"--nats-url", natsURL, "--database-url", url, "--data-dir", dir, "--log-level", "warn")
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return childRun{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var peak int64
	tick := time.NewTicker(hwmEvery)
	defer tick.Stop()
wait:
	for {
		// VmHWM only grows: the last reading before the exit is the peak,
		// short of growth in the child's last hwmEvery.
		if kb, ok := vmHWM(cmd.Process.Pid); ok {
			peak = max(peak, kb)
		}
		select {
		case err = <-exited:
			break wait
		case <-tick.C:
		}
	}
	wall := time.Since(start)
	if err != nil {
		out, _ := os.ReadFile(logPath)
		return childRun{}, fmt.Errorf("%s rebuild: %w: %s", r.cfg.Gcmtrack, err, lastLine(string(out)))
	}
	if peak == 0 {
		return childRun{}, fmt.Errorf("could not read VmHWM of the child process")
	}
	run := childRun{peakRSS: float64(peak) / 1024, wall: wall}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		run.rusageMaxRSS = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return run, nil
}

// missingProduct says why the product binary the child-process rows run
// cannot be found, or "".
func (r *runner) missingProduct() string {
	if _, err := os.Stat(r.cfg.Gcmtrack); err != nil {
		return fmt.Sprintf("product binary: %v (build it with `make build`)", err)
	}
	return ""
}

// childEnv is the harness's environment without GCM_* settings, so that the
// child uses only the flags given.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GCM_") {
			env = append(env, kv)
		}
	}
	return env
}

// lastLine is the last non-empty line of s, progress carriage returns
// included.
func lastLine(s string) string {
	s = strings.TrimSpace(strings.ReplaceAll(s, "\r", "\n"))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// memoryRows measures the peak RSS of `gcmtrack rebuild` at N events against
// the same at N/10.
func (r *runner) memoryRows(ctx context.Context, node, small *natsNode) []Row {
	n := r.cfg.Events
	row := Row{
		Path: fmt.Sprintf("rebuild memory: peak RSS at N=%d vs N/10", n), Unit: "MiB", Target: AtMost(1.3),
		BaselineName: fmt.Sprintf("peak RSS of the same `gcmtrack rebuild` over a stream of N/10=%d events", n/10),
		Notes: []string{"`gcmtrack rebuild` (all product projections) as a child process, --nats-url to the harness's NATS listener, a fresh database each run; " +
			"peak RSS = the child's VmHWM from /proc, read every 20 ms until it exits (its rusage maxrss is not used: with Go's clone(CLONE_VM) start it includes the harness's own peak)"},
		Extra: map[string]any{},
	}
	if row.Err = r.missingProduct(); row.Err != "" {
		return []Row{row}
	}
	var wallN, wallTenth, ruN, ruTenth []float64
	var cpuN, cpuTenth []cpuUse
	for i := range r.cfg.Reps {
		for k := range 2 {
			big := (i+k)%2 == 0
			srv, label := small, "tenth"
			if big {
				srv, label = node, "n"
			}
			c0 := r.cpu.now()
			run, err := r.childRebuild(ctx, srv.srv.ClientURL(), label)
			if err != nil {
				row.Err = err.Error()
				return []Row{row}
			}
			if big {
				cpuN = append(cpuN, r.cpu.now().since(c0))
			} else {
				cpuTenth = append(cpuTenth, r.cpu.now().since(c0))
			}
			if big {
				row.Product = append(row.Product, run.peakRSS)
				wallN = append(wallN, run.wall.Seconds())
				ruN = append(ruN, run.rusageMaxRSS)
			} else {
				row.Baseline = append(row.Baseline, run.peakRSS)
				wallTenth = append(wallTenth, run.wall.Seconds())
				ruTenth = append(ruTenth, run.rusageMaxRSS)
			}
		}
		r.logf("rebuild memory %d/%d: peak RSS %s MiB at N, %s MiB at N/10", i+1, r.cfg.Reps,
			FormatValue(row.Product[i]), FormatValue(row.Baseline[i]))
	}
	row.Extra["child_wall_s_n"] = wallN
	row.Extra["child_wall_s_tenth"] = wallTenth
	row.Extra["rusage_maxrss_mib_n"], row.Extra["rusage_maxrss_mib_tenth"] = ruN, ruTenth
	row.Extra["cpu_n"], row.Extra["cpu_tenth"] = cpuN, cpuTenth
	row.Notes = append(row.Notes, fmt.Sprintf("child process wall time (start, migrate, rebuild, stop): median %.1f s at N, %.1f s at N/10",
		Median(wallN), Median(wallTenth)))
	return []Row{row}
}
