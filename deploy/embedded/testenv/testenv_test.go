package testenv_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m))
}

// helperEnv selects a role for the test binary started by runHelper.
const helperEnv = "TESTENV_HELPER_MODE"

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func queryRow(t *testing.T, conn *pgx.Conn, sql string, dst any, args ...any) {
	t.Helper()
	if err := conn.QueryRow(t.Context(), sql, args...).Scan(dst); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestPostgresGivesDistinctEmptyDatabases(t *testing.T) {
	first, second := testenv.Postgres(t), testenv.Postgres(t)
	if first == second {
		t.Fatalf("both calls returned %s", first)
	}
	connA, connB := connect(t, first), connect(t, second)

	var nameA, nameB string
	queryRow(t, connA, "SELECT current_database()", &nameA)
	queryRow(t, connB, "SELECT current_database()", &nameB)
	if nameA == nameB || !strings.HasPrefix(nameA, "t_") || !strings.HasPrefix(nameB, "t_") {
		t.Fatalf("databases %q and %q, want two distinct t_* names", nameA, nameB)
	}
	for _, conn := range []*pgx.Conn{connA, connB} {
		var tables int
		queryRow(t, conn, "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')", &tables)
		if tables != 0 {
			t.Errorf("fresh database has %d tables", tables)
		}
	}

	if _, err := connA.Exec(t.Context(), "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var visible bool
	queryRow(t, connB, "SELECT to_regclass('only_in_a') IS NOT NULL", &visible)
	if visible {
		t.Error("table created in one database is visible in the other")
	}
}

func TestPostgresDropsDatabaseAfterTest(t *testing.T) {
	var inner string
	t.Run("user", func(t *testing.T) {
		inner = testenv.Postgres(t)
		// An open connection must not keep the database from being dropped.
		conn, err := pgx.Connect(t.Context(), inner)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
	})
	name := inner[strings.LastIndex(inner, "/")+1:]
	name = name[:strings.Index(name, "?")]

	conn := connect(t, testenv.Postgres(t))
	var exists bool
	queryRow(t, conn, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &exists, name)
	if exists {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestNATS(t *testing.T) {
	s, nc := testenv.NATS(t)
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream disabled")
	}
	if addr := s.Addr(); addr != nil {
		t.Errorf("server listens on %v, want in-process connections only", addr)
	}
	ctx := t.Context()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	if err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.one", []byte("payload")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, "t.one")
	if err != nil {
		t.Fatalf("GetLastMsgForSubject: %v", err)
	}
	if string(msg.Data) != "payload" {
		t.Errorf("read %q, want payload", msg.Data)
	}

	s2, _ := testenv.NATS(t, testenv.WithSyncAlways())
	if !s2.JetStreamConfig().SyncAlways {
		t.Error("WithSyncAlways not applied")
	}
	if s2.JetStreamConfig().StoreDir == s.JetStreamConfig().StoreDir {
		t.Error("two servers share a store directory")
	}
}

// TestHelperProcess is not a real test: runHelper starts the test binary
// with it to act as another test binary.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("runs only as a helper process")
	case "nats":
		testenv.NATS(t)
	case "fail", "crash":
		testenv.Postgres(t)
		pid, err := clusterPID(os.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("postmaster %d\n", pid)
		if os.Getenv(helperEnv) == "crash" {
			panic("simulated crash of a test binary")
		}
		t.Fatal("simulated test failure")
	}
}

// runHelper runs TestHelperProcess in mode with a fresh temporary directory
// of its own, which it returns with the process output.
func runHelper(t *testing.T, mode string) (tmp string, out []byte, err error) {
	t.Helper()
	tmp = t.TempDir()
	if err := os.Chmod(tmp, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(tmp), 0o711); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "TMPDIR="+tmp)
	out, err = cmd.Output()
	return tmp, out, err
}

func TestBinaryWithoutPostgresStartsNoCluster(t *testing.T) {
	tmp, out, err := runHelper(t, "nats")
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if leftovers := clusterDirs(t, tmp); len(leftovers) > 0 {
		t.Errorf("a binary that never called Postgres created %v", leftovers)
	}
}

func TestClusterStoppedWhenTestsFail(t *testing.T) {
	if os.Getenv(testenv.DatabaseURLEnv) != "" {
		t.Skipf("%s is set: no cluster is started", testenv.DatabaseURLEnv)
	}
	tmp, out, err := runHelper(t, "fail")
	if err == nil {
		t.Fatalf("helper did not fail:\n%s", out)
	}
	pid := reportedPID(t, out)
	// Main stops the cluster before the binary exits: no waiting here.
	if processRunning(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("postmaster %d still running after the failed test binary exited", pid)
	}
	if leftovers := clusterDirs(t, tmp); len(leftovers) > 0 {
		t.Errorf("leftover directories %v", leftovers)
	}
}

func TestClusterCleanedUpAfterCrash(t *testing.T) {
	if os.Getenv(testenv.DatabaseURLEnv) != "" {
		t.Skipf("%s is set: no cluster is started", testenv.DatabaseURLEnv)
	}
	tmp, out, err := runHelper(t, "crash")
	if err == nil {
		t.Fatalf("helper did not crash:\n%s", out)
	}
	pid := reportedPID(t, out)

	deadline := time.Now().Add(40 * time.Second)
	for {
		alive := processRunning(pid)
		leftovers := clusterDirs(t, tmp)
		if !alive && len(leftovers) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if alive {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("after the crash: postmaster %d running = %v, leftover directories %v", pid, alive, leftovers)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reportedPID extracts the postmaster pid a helper process printed.
func reportedPID(t *testing.T, out []byte) int {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "postmaster "); ok {
			if pid, err := strconv.Atoi(rest); err == nil {
				return pid
			}
		}
	}
	t.Fatalf("helper reported no postmaster pid:\n%s", out)
	return 0
}

// clusterDirs lists the cluster directories testenv left in tmp.
func clusterDirs(t *testing.T, tmp string) []string {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(tmp, "gcmtrack-testenv-pg-*"))
	if err != nil {
		t.Fatal(err)
	}
	return matches
}

// clusterPID reads the postmaster pid of the cluster testenv started in tmp.
func clusterPID(tmp string) (int, error) {
	files, err := filepath.Glob(filepath.Join(tmp, "gcmtrack-testenv-pg-*", "pg", "data", "postmaster.pid"))
	if err != nil || len(files) != 1 {
		return 0, fmt.Errorf("find postmaster.pid in %s: %d matches, %v", tmp, len(files), err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(data), "\n")
	return strconv.Atoi(strings.TrimSpace(first))
}

// processRunning reports whether pid is a live, non-zombie process.
func processRunning(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
