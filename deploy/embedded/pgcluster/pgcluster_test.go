package pgcluster_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"gcmtrack/deploy/embedded/pgcluster"
)

// clusterDir returns a not yet existing cluster directory inside a test
// temporary directory that the postgres OS user can traverse.
func clusterDir(t *testing.T) string {
	t.Helper()
	parent := t.TempDir()
	// t.TempDir creates mode 0700 directories; when the tests run as root
	// the server runs as "postgres" and must be able to traverse them.
	for _, d := range []string{filepath.Dir(parent), parent} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(parent, "pg")
	// Registered before any Start so that it runs after every Stop: kill
	// whatever a failed test may have left running.
	t.Cleanup(func() { killServer(t, dir) })
	return dir
}

// killServer kills a postmaster still serving dir and reports it as an error.
func killServer(t *testing.T, dir string) {
	t.Helper()
	pid, ok := postmasterPID(filepath.Join(dir, "data"))
	if !ok || syscall.Kill(pid, 0) != nil {
		return
	}
	t.Errorf("postmaster %d still running after the test; killing it", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func postmasterPID(dataDir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	return pid, err == nil
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// start starts a cluster on dir and stops it when the test ends.
func start(t *testing.T, dir string) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(testContext(t), pgcluster.Config{
		Dir:    dir,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return c
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(testContext(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryString(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(testContext(t), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestStartStopRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)

	c := start(t, dir)
	if !c.Owned() {
		t.Fatal("Owned() = false for a cluster this process started")
	}
	if !strings.HasPrefix(c.URL(), "postgres://gcmtrack:") || !strings.HasSuffix(c.URL(), "/gcmtrack?sslmode=disable") {
		t.Errorf("URL() = %q, want postgres://gcmtrack:<pw>@127.0.0.1:<port>/gcmtrack?sslmode=disable", c.URL())
	}
	for _, name := range []string{"superuser.pw", "gcmtrack.pw"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", name, fi.Mode().Perm())
		}
	}

	conn := connect(t, c.URL())
	if user := queryString(t, conn, "SELECT current_user"); user != "gcmtrack" {
		t.Errorf("current_user = %q, want gcmtrack", user)
	}
	mustExec(t, conn, "CREATE TABLE items (name text PRIMARY KEY)")
	mustExec(t, conn, "INSERT INTO items VALUES ('kept')")
	// The role may create further databases, reachable through URLFor.
	mustExec(t, conn, "CREATE DATABASE other")
	other := connect(t, c.URLFor("other"))
	if db := queryString(t, other, "SELECT current_database()"); db != "other" {
		t.Errorf("current_database() = %q, want other", db)
	}
	_ = other.Close(context.Background())
	_ = conn.Close(context.Background())

	if err := c.Stop(testContext(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(testContext(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("postmaster.pid after Stop: %v, want not exist", err)
	}

	c2 := start(t, dir)
	if !c2.Owned() {
		t.Error("Owned() = false after restart")
	}
	conn2 := connect(t, c2.URL())
	if got := queryString(t, conn2, "SELECT name FROM items"); got != "kept" {
		t.Errorf("row after restart = %q, want kept", got)
	}
}

func TestTwoClustersSideBySide(t *testing.T) {
	t.Parallel()
	a := start(t, clusterDir(t))
	b := start(t, clusterDir(t))
	if a.URL() == b.URL() {
		t.Fatalf("both clusters share URL %s", a.URL())
	}
	connA, connB := connect(t, a.URL()), connect(t, b.URL())
	mustExec(t, connA, "CREATE TABLE only_in_a (id int)")
	var exists bool
	if err := connB.QueryRow(testContext(t), "SELECT to_regclass('only_in_a') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("table created in cluster A is visible in cluster B")
	}
}

func TestAttachToRunningCluster(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	owner := start(t, dir)

	attached := start(t, dir)
	if attached.Owned() {
		t.Fatal("Owned() = true for a cluster found running")
	}
	if attached.URL() != owner.URL() {
		t.Errorf("attached URL %q differs from owner URL %q", attached.URL(), owner.URL())
	}
	if attached.PID() != owner.PID() {
		t.Errorf("attached PID %d differs from owner PID %d", attached.PID(), owner.PID())
	}
	if err := attached.Stop(testContext(t)); err != nil {
		t.Fatalf("Stop of attached cluster: %v", err)
	}
	conn := connect(t, owner.URL())
	if err := conn.Ping(testContext(t)); err != nil {
		t.Fatalf("server gone after Stop of an attached cluster: %v", err)
	}
}

func TestStartAfterKill(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	c := start(t, dir)
	conn := connect(t, c.URL())
	mustExec(t, conn, "CREATE TABLE survivors (n int)")
	mustExec(t, conn, "INSERT INTO survivors VALUES (42)")
	_ = conn.Close(context.Background())

	pid, ok := postmasterPID(filepath.Join(dir, "data"))
	if !ok || pid != c.PID() {
		t.Fatalf("postmaster.pid names %d (ok=%v), want %d", pid, ok, c.PID())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill postmaster: %v", err)
	}
	waitGone(t, pid)

	c2 := start(t, dir)
	if !c2.Owned() {
		t.Error("Owned() = false for a cluster restarted after a crash")
	}
	conn2 := connect(t, c2.URL())
	if got := queryString(t, conn2, "SELECT n::text FROM survivors"); got != "42" {
		t.Errorf("row after crash recovery = %q, want 42", got)
	}
}

// waitGone waits until pid has exited (a zombie counts as exited).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d still alive", pid)
}

func TestFindBinaries(t *testing.T) {
	dir, err := pgcluster.FindBinaries("")
	if err != nil {
		t.Fatalf("FindBinaries: %v", err)
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("FindBinaries returned %s without %s: %v", dir, name, err)
		}
	}
	if got, err := pgcluster.FindBinaries(dir); err != nil || got != dir {
		t.Errorf("FindBinaries(%q) = %q, %v; want the hint back", dir, got, err)
	}
	_, err = pgcluster.FindBinaries(t.TempDir())
	if !errors.Is(err, pgcluster.ErrBinariesNotFound) {
		t.Errorf("FindBinaries(empty dir) error = %v, want ErrBinariesNotFound", err)
	}
	if err != nil && !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("error %q does not say how to install PostgreSQL", err)
	}
}

func TestStartRejectsUntraversableAncestor(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the ancestor check applies when running as root")
	}
	locked := t.TempDir() // mode 0700, owned by root
	_, err := pgcluster.Start(testContext(t), pgcluster.Config{Dir: filepath.Join(locked, "pg")})
	if err == nil {
		t.Fatal("Start succeeded below a directory the postgres user cannot traverse")
	}
	if !strings.Contains(err.Error(), locked) {
		t.Errorf("error %q does not name %s", err, locked)
	}
	if _, err := os.Stat(filepath.Join(locked, "pg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cluster directory created despite the error (stat: %v)", err)
	}
}

func TestStartRequiresDir(t *testing.T) {
	if _, err := pgcluster.Start(testContext(t), pgcluster.Config{}); err == nil {
		t.Fatal("Start with empty Dir succeeded")
	}
}

// The application role may not run CHECKPOINT; Checkpoint runs it as the
// superuser, and the server counts it as a requested checkpoint.
func TestCheckpoint(t *testing.T) {
	t.Parallel()
	c := start(t, clusterDir(t))
	conn := connect(t, c.URL())
	if _, err := conn.Exec(testContext(t), "CHECKPOINT"); err == nil {
		t.Fatal("the application role ran CHECKPOINT; Checkpoint would not be needed")
	}
	requested := func() int64 {
		n, err := strconv.ParseInt(queryString(t, conn, "SELECT checkpoints_req::text FROM pg_stat_bgwriter"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := requested()
	if err := c.Checkpoint(testContext(t)); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	// The checkpointer reports its counts once the checkpoint is done,
	// which may be just after CHECKPOINT returns.
	deadline := time.Now().Add(10 * time.Second)
	for requested() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoints requested: still %d after Checkpoint", before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
