package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real binary as a user would: gcmtrack run on an
// embedded NATS and a PostgreSQL cluster it starts itself, the CLI beside it.

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gcmtrack")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// dataDir is a data directory the postgres user can reach when the tests
// run as root.
func dataDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != "."; p = filepath.Dir(p) {
		if st, err := os.Stat(p); err == nil && st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(p, st.Mode().Perm()|0o011); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

type instance struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  strings.Builder
	done chan error
}

func (in *instance) output() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.log.String()
}

// start runs `gcmtrack run` on addr and waits until it is ready. addr comes
// from freeAddr, which frees its port again: should something else bind it
// meanwhile (the process's own loopback listeners take ports the same way),
// the instance starts again on another free address.
func start(t *testing.T, bin, dir, addr string, extraEnv ...string) *instance {
	t.Helper()
	for attempt := 1; ; attempt++ {
		in, err := startOn(t, bin, dir, addr, extraEnv...)
		if err == nil {
			return in
		}
		if attempt == 3 || !strings.Contains(in.output(), "address already in use") {
			t.Fatalf("%v\n%s", err, in.output())
		}
		t.Logf("%s was taken before gcmtrack could bind it; starting again on another port", addr)
		addr = freeAddr(t)
	}
}

func startOn(t *testing.T, bin, dir, addr string, extraEnv ...string) (*instance, error) {
	t.Helper()
	in := &instance{addr: addr, done: make(chan error, 1)}
	in.cmd = exec.Command(bin, "run", "--data-dir", dir, "--http-addr", addr)
	in.cmd.Env = append(os.Environ(), extraEnv...)
	pr, pw := io.Pipe()
	in.cmd.Stdout, in.cmd.Stderr = pw, pw
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			in.mu.Lock()
			in.log.WriteString(sc.Text() + "\n")
			in.mu.Unlock()
		}
	}()
	go func() { in.done <- in.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if in.cmd.ProcessState == nil {
			_ = in.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-in.done:
			case <-time.After(30 * time.Second):
				_ = in.cmd.Process.Kill()
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return in, nil
			}
		}
		select {
		case err := <-in.done:
			return in, fmt.Errorf("gcmtrack run exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return in, errors.New("gcmtrack run not ready after 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (in *instance) stop(t *testing.T) {
	t.Helper()
	if err := in.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-in.done:
		if err != nil {
			t.Fatalf("gcmtrack run exited with %v after Ctrl-C\n%s", err, in.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("gcmtrack run did not stop within 30 s of Ctrl-C\n%s", in.output())
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res.StatusCode
}

func runCLI(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gcmtrack %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// postmasterAlive reports whether the cluster of a data directory runs.
func postmasterAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "postgres", "data", "postmaster.pid"))
	if err != nil {
		return false
	}
	var pid int
	if _, err := fmt.Sscan(strings.SplitN(string(b), "\n", 2)[0], &pid); err != nil {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

func TestRunServesStopsAndRestartsOnTheSameData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and the binary")
	}
	bin := buildBinary(t)
	dir := dataDir(t)
	const admin = "gcm_bootstrap_admin_token_for_the_test"
	env := []string{"GCM_BOOTSTRAP_ADMIN_TOKEN=" + admin, "GCM_LOG_LEVEL=warn"}
	a := start(t, bin, dir, freeAddr(t), env...)

	var list struct {
		Items []map[string]any `json:"items"`
	}
	if getJSON(t, "http://"+a.addr+"/v1/iscms?min_position=30", &list); len(list.Items) != 30 {
		t.Fatalf("%d ISCMs after the first start, want the catalog's 30", len(list.Items))
	}

	// A second instance on its own data directory runs beside the first.
	b := start(t, bin, dataDir(t), freeAddr(t), env...)
	var other struct {
		Items []map[string]any `json:"items"`
	}
	if getJSON(t, "http://"+b.addr+"/v1/iscms?min_position=30", &other); len(other.Items) != 30 {
		t.Fatalf("second instance lists %d ISCMs", len(other.Items))
	}
	b.stop(t)

	// The CLI works beside the running system, on the same settings.
	sec := strings.TrimSpace(runCLI(t, bin, nil, "token", "create", "--data-dir", dir, "--role", "secretariat", "--iscm", "sacm", "--name", "SACM secretariat"))
	if !strings.HasPrefix(sec, "gcm_") {
		t.Fatalf("token create printed %q", sec)
	}
	answers := filepath.Join(t.TempDir(), "sacm.json")
	if err := os.WriteFile(answers, []byte(`{"channel":"interview","position":{"status":"no","plans_refinement":true},"agenda_item":"yes"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLI(t, bin, []string{"GCM_TOKEN=" + sec}, "import", "questionnaire", answers, "--iscm", "sacm", "--cycle", "2018", "--channel", "interview", "--http-addr", a.addr)
	var q map[string]any
	if st := getJSON(t, "http://"+a.addr+"/v1/iscms/sacm/questionnaires/2018/interview", &q); st != 404 {
		t.Fatalf("unpublished answers visible to the public: %d", st)
	}
	runCLI(t, bin, nil, "rebuild", "--data-dir", dir)
	if getJSON(t, "http://"+a.addr+"/v1/iscms", &list); len(list.Items) != 30 {
		t.Fatalf("%d ISCMs after a rebuild beside the running system", len(list.Items))
	}
	a.stop(t)
	if postmasterAlive(dir) {
		t.Fatal("PostgreSQL still runs after gcmtrack run stopped")
	}

	// A second start reuses the data and registers nothing new.
	c := start(t, bin, dir, freeAddr(t), env...)
	if getJSON(t, "http://"+c.addr+"/v1/iscms", &list); len(list.Items) != 30 {
		t.Fatalf("%d ISCMs after restart", len(list.Items))
	}
	res, err := http.Get("http://" + c.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	c.stop(t)
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, `gcm_eventstore_appends_total{type="iscm.registered"}`) {
			t.Fatalf("the second start registered ISCMs again: %s", line)
		}
	}
	if !strings.Contains(string(metrics), "gcm_projection_lag_events") {
		t.Fatal("metrics lack the projection lag")
	}
}
