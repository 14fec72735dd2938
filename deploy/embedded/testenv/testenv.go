// Package testenv gives integration tests real servers: an embedded NATS
// server with JetStream per test, and a fresh PostgreSQL database per test.
//
// Databases come from the server named by GCM_TEST_DATABASE_URL when set;
// otherwise from one private PostgreSQL cluster per test binary, started on
// first use and stopped by Main:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gcmtrack/deploy/embedded/natsnode"
	"gcmtrack/deploy/embedded/pgcluster"
)

// DatabaseURLEnv names the environment variable holding the URL of an
// existing PostgreSQL server whose user may create databases. When set,
// Postgres creates its databases there instead of starting a cluster.
const DatabaseURLEnv = "GCM_TEST_DATABASE_URL"

const (
	clusterStartTimeout = 2 * time.Minute
	clusterStopTimeout  = time.Minute
	statementTimeout    = time.Minute
)

// shared is the test binary's PostgreSQL source, set up by the first
// Postgres call and torn down by Main. It is package state because Main and
// Postgres have no other way to meet.
var shared sharedPostgres

// Main runs the package's tests and then stops the PostgreSQL cluster that
// Postgres may have started, whatever the outcome of the tests. It returns
// the exit code for os.Exit:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// Should the test binary die without returning here (a panicking test, a
// timeout), a watchdog process shuts the cluster down and removes its files.
func Main(m *testing.M) (code int) {
	defer func() {
		if err := shared.shutdown(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	return m.Run()
}

// NATSOption adjusts the configuration of the server NATS starts.
type NATSOption func(*natsnode.Config)

// WithSyncAlways makes the server fsync every JetStream write.
func WithSyncAlways() NATSOption {
	return func(cfg *natsnode.Config) { cfg.SyncAlways = true }
}

// NATS starts a fresh JetStream-enabled server that accepts in-process
// connections only, storing into a temporary directory, and returns it with
// a connection. Both are shut down when the test ends. Writes are not synced
// to disk unless WithSyncAlways is given.
func NATS(t testing.TB, opts ...NATSOption) (*server.Server, *nats.Conn) {
	t.Helper()
	cfg := natsnode.Config{StoreDir: t.TempDir()}
	for _, opt := range opts {
		opt(&cfg)
	}
	s, err := natsnode.Start(cfg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	nc, err := natsnode.Connect(s)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(nc.Close) // runs before the server shuts down
	return s, nc
}

// Postgres creates an empty database for the test and returns its
// connection URL. The database is dropped, with any remaining connections,
// when the test ends. The test fails if no PostgreSQL server is available,
// for instance because PostgreSQL is not installed.
func Postgres(t testing.TB) string {
	t.Helper()
	baseURL, err := shared.url()
	if err != nil {
		t.Fatalf("testenv: PostgreSQL unavailable: %v", err)
	}
	name := "t_" + hex.EncodeToString(randomBytes(8))
	dbURL, err := withDatabase(baseURL, name)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := execStatement(baseURL, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := execStatement(baseURL, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// sharedPostgres is the lazily prepared PostgreSQL source of a test binary.
type sharedPostgres struct {
	once     sync.Once
	err      error
	baseURL  string             // databases are created through this URL
	cluster  *pgcluster.Cluster // nil when using DatabaseURLEnv
	tmpDir   string             // holds the cluster directory
	watchdog *watchdog
}

// url returns the administrative URL, preparing the source on first use.
func (p *sharedPostgres) url() (string, error) {
	p.once.Do(p.prepare)
	return p.baseURL, p.err
}

// prepare selects the server named by DatabaseURLEnv or starts a cluster in
// a new temporary directory.
func (p *sharedPostgres) prepare() {
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		if _, err := withDatabase(u, "postgres"); err != nil {
			p.err = fmt.Errorf("%s: %w", DatabaseURLEnv, err)
			return
		}
		p.baseURL = u
		return
	}
	p.err = p.startCluster()
}

func (p *sharedPostgres) startCluster() error {
	tmp, err := os.MkdirTemp("", "gcmtrack-testenv-pg-*")
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	// MkdirTemp creates mode 0700, but the server may run as another OS
	// user (postgres, when the tests run as root) that must traverse it.
	if err := os.Chmod(tmp, 0o711); err != nil {
		return errors.Join(fmt.Errorf("start cluster: %w", err), os.RemoveAll(tmp))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterStartTimeout)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(tmp, "pg")})
	if err != nil {
		return errors.Join(err, os.RemoveAll(tmp))
	}
	p.cluster, p.tmpDir, p.baseURL = c, tmp, c.URL()
	if p.watchdog, err = startWatchdog(c.PID(), tmp); err != nil {
		return errors.Join(err, p.stopCluster())
	}
	return nil
}

// shutdown stops the cluster, if one was started, and removes its files.
// Afterwards Postgres fails instead of starting another cluster.
func (p *sharedPostgres) shutdown() error {
	p.once.Do(func() { p.err = errors.New("Postgres called after Main finished") })
	var errs []error
	if p.watchdog != nil {
		errs = append(errs, p.watchdog.dismiss())
		p.watchdog = nil
	}
	if p.cluster != nil {
		errs = append(errs, p.stopCluster())
	}
	return errors.Join(errs...)
}

// stopCluster stops the cluster, killing it should an orderly stop fail,
// and removes the temporary directory.
func (p *sharedPostgres) stopCluster() error {
	ctx, cancel := context.WithTimeout(context.Background(), clusterStopTimeout)
	defer cancel()
	err := p.cluster.Stop(ctx)
	if err != nil {
		err = errors.Join(err, killPostmaster(p.cluster.PID()))
	}
	p.cluster = nil
	if rmErr := os.RemoveAll(p.tmpDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("remove cluster directory: %w", rmErr))
	}
	return err
}

// execStatement runs one statement on a short-lived connection.
func execStatement(connURL, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), statementTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return nil
}

// withDatabase returns base with its database replaced by name.
func withDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", errors.New("parse database URL: want a postgres:// URL")
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}
