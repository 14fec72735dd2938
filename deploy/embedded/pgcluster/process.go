package pgcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// serviceUser is the OS account PostgreSQL runs as when this process is root.
const serviceUser = "postgres"

// account is an OS user the PostgreSQL programs run as.
type account struct {
	name   string
	uid    uint32
	gid    uint32
	groups []uint32
	home   string
}

// lookupServiceAccount returns the account PostgreSQL must run as, or nil
// when the programs can run as the current user. PostgreSQL refuses to run as
// root, so a root process delegates to the "postgres" user.
func lookupServiceAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return nil, fmt.Errorf("look up OS user %q (PostgreSQL refuses to run as root): %w", serviceUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of %q: %w", serviceUser, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of %q: %w", serviceUser, err)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}
	groupIDs, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("list groups of %q: %w", serviceUser, err)
	}
	for _, g := range groupIDs {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			a.groups = append(a.groups, uint32(n))
		}
	}
	return a, nil
}

// canSearch reports whether the account may traverse a directory with the
// given ownership and mode, following the owner/group/other precedence.
func (a *account) canSearch(st *syscall.Stat_t) bool {
	switch {
	case st.Uid == a.uid:
		return st.Mode&0o100 != 0
	case st.Gid == a.gid || slices.Contains(a.groups, st.Gid):
		return st.Mode&0o010 != 0
	default:
		return st.Mode&0o001 != 0
	}
}

// checkAncestorsSearchable returns an error naming the first ancestor of dir
// that the account cannot traverse. Ancestors that do not exist yet are
// skipped.
func checkAncestorsSearchable(dir string, a *account) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		var st syscall.Stat_t
		err := syscall.Stat(p, &st)
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if err == nil && !a.canSearch(&st) {
			return fmt.Errorf("directory %s cannot be traversed by OS user %q, which runs PostgreSQL: "+
				"grant it execute permission (e.g. chmod o+x %s) or choose a cluster directory elsewhere",
				p, a.name, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// runner executes PostgreSQL programs from one binary directory with a
// minimal environment, as the service account when one is set.
type runner struct {
	binDir  string
	workDir string
	account *account
}

// command prepares a PostgreSQL program invocation.
func (r *runner) command(ctx context.Context, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(r.binDir, program), args...)
	cmd.Dir = r.workDir
	cmd.Env = r.environ()
	// A process group of its own keeps terminal signals aimed at this
	// program away from the server, which is stopped explicitly instead.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if r.account != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{
			Uid:    r.account.uid,
			Gid:    r.account.gid,
			Groups: r.account.groups,
		}
	}
	return cmd
}

// run executes a program; a failure carries the program's output.
func (r *runner) run(ctx context.Context, program string, args ...string) error {
	out, err := r.command(ctx, program, args...).CombinedOutput()
	if err == nil {
		return nil
	}
	if text := strings.TrimSpace(string(out)); text != "" {
		return fmt.Errorf("%s: %w: %s", program, err, text)
	}
	return fmt.Errorf("%s: %w", program, err)
}

// environ builds the child environment: nothing inherited but a home
// directory, a search path and a neutral locale.
func (r *runner) environ() []string {
	home := "/"
	if r.account != nil {
		if r.account.home != "" {
			home = r.account.home
		}
	} else if h, err := os.UserHomeDir(); err == nil {
		home = h
	}
	return []string{
		"HOME=" + home,
		"PATH=" + r.binDir + ":/usr/local/bin:/usr/bin:/bin",
		"LANG=C",
		"LC_ALL=C",
	}
}

// postmasterInfo is what postmaster.pid says about a server.
type postmasterInfo struct {
	pid  int
	port int // 0 while the server has not written it yet
}

// readPostmasterPID parses the pid (line 1) and port (line 4) of a
// postmaster.pid file. A missing file yields an error wrapping fs.ErrNotExist.
func readPostmasterPID(dataDir string) (postmasterInfo, error) {
	path := filepath.Join(dataDir, "postmaster.pid")
	data, err := os.ReadFile(path)
	if err != nil {
		return postmasterInfo{}, fmt.Errorf("read %s: %w", path, err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) == 0 {
		return postmasterInfo{}, fmt.Errorf("parse %s: empty file", path)
	}
	var info postmasterInfo
	if info.pid, err = strconv.Atoi(lines[0]); err != nil || info.pid <= 0 {
		return postmasterInfo{}, fmt.Errorf("parse %s: bad pid %q", path, lines[0])
	}
	if len(lines) >= 4 && lines[3] != "" {
		if info.port, err = strconv.Atoi(lines[3]); err != nil {
			return postmasterInfo{}, fmt.Errorf("parse %s: bad port %q", path, lines[3])
		}
	}
	return info, nil
}

// processState classifies a process id.
type processState int

const (
	processGone   processState = iota // no such process
	processZombie                     // exited, not yet reaped by its parent
	processAlive                      // running
)

// probeProcess reports the state of pid.
func probeProcess(pid int) processState {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return processGone
	}
	// A dead process not yet reaped by its parent still answers kill(2).
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return processAlive // no procfs: trust kill(2)
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return processZombie
	}
	return processAlive
}
