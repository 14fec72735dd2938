// Package pgcluster initialises and runs a private PostgreSQL cluster that
// belongs to the program: the data lives in a directory the program chooses,
// the server listens on a free loopback port, and the program's database and
// login role are created on demand.
//
// Layout of the cluster directory:
//
//	data/          PGDATA, created by initdb
//	postgres.log   server log
//	superuser.pw   password of the "postgres" superuser (mode 0600)
//	gcmtrack.pw    password of the "gcmtrack" login role (mode 0600)
//
// PostgreSQL refuses to run as root; a root process runs the server programs
// as the "postgres" OS user instead. The package targets Linux and other Unix
// systems.
package pgcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	appName          = "gcmtrack" // application database and login role
	superuserName    = "postgres"
	superuserPWFile  = "superuser.pw"
	appPWFile        = "gcmtrack.pw"
	serverLogFile    = "postgres.log"
	dataSubdir       = "data"
	loopbackHost     = "127.0.0.1"
	startAttempts    = 3
	attachTimeout    = 15 * time.Second
	reapTimeout      = 10 * time.Second
	pgctlWaitSeconds = "120"
)

// serverSettings are appended to postgresql.auto.conf of a new cluster. The
// port is not among them: it is chosen afresh and passed on every start.
const serverSettings = `
# Settings of the embedded gcmtrack cluster.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
password_encryption = 'scram-sha-256'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = '128MB'
max_connections = 100
`

// Config describes where a cluster lives and how to run it.
type Config struct {
	// Dir is the cluster directory; PGDATA is Dir/data.
	Dir string
	// BinDir holds initdb, pg_ctl and postgres; empty means FindBinaries("").
	BinDir string
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running PostgreSQL server, either started by this process
// (owned) or found already running on the same directory (attached).
type Cluster struct {
	dir     string
	dataDir string
	logger  *slog.Logger
	runner  *runner // nil when attached

	pid     int
	port    int
	owned   bool
	superPW string
	appPW   string

	mu      sync.Mutex
	stopped bool
}

// Start initialises the cluster when Dir holds none, starts it on a free
// loopback port and ensures the "gcmtrack" login role and database exist.
//
// When a live postmaster already serves Dir, Start attaches to it instead;
// Owned then reports false and Stop leaves the server running.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: start %s: %w", cfg.Dir, err)
	}
	return c, nil
}

// start implements Start; its errors lack the package prefix.
func start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Dir == "" {
		return nil, errors.New("config: Dir is empty")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve directory: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	acct, err := lookupServiceAccount()
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir, acct); err != nil {
		return nil, err
	}
	c := &Cluster{
		dir:     dir,
		dataDir: filepath.Join(dir, dataSubdir),
		logger:  logger.With("cluster", dir),
	}

	attached, err := c.attach(ctx)
	if err != nil {
		return nil, err
	}
	if !attached {
		binDir, err := findBinaries(cfg.BinDir)
		if err != nil {
			return nil, err
		}
		c.runner = &runner{binDir: binDir, workDir: dir, account: acct}
		if err := c.initialise(ctx, acct); err != nil {
			return nil, err
		}
		if err := c.startServer(ctx); err != nil {
			return nil, err
		}
	}

	if err := c.ensureApp(ctx); err != nil {
		if c.owned {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			err = errors.Join(err, c.Stop(stopCtx))
		}
		return nil, err
	}
	return c, nil
}

// URL returns the connection URL of the "gcmtrack" database as the
// "gcmtrack" role.
func (c *Cluster) URL() string {
	return c.URLFor(appName)
}

// URLFor returns a connection URL for another database with the credentials
// of the "gcmtrack" role, which may create databases.
func (c *Cluster) URLFor(database string) string {
	return connURL(c.port, appName, c.appPW, database)
}

// Owned reports whether this process started the server and Stop stops it.
func (c *Cluster) Owned() bool {
	return c.owned
}

// PID returns the process id of the postmaster.
func (c *Cluster) PID() int {
	return c.pid
}

// Stop shuts the server down (fast mode, waiting for completion) when this
// process started it; for an attached cluster it does nothing. Stop is
// idempotent, and it leaves alone a server that another process has since
// started on the same directory.
func (c *Cluster) Stop(ctx context.Context) error {
	if !c.owned {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	info, err := readPostmasterPID(c.dataDir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && (info.pid != c.pid || probeProcess(info.pid) != processAlive)) {
		c.stopped = true
		return nil
	}
	if err := c.runner.run(ctx, "pg_ctl", "stop", "-D", c.dataDir, "-m", "fast", "-w", "-t", pgctlWaitSeconds); err != nil {
		return fmt.Errorf("pgcluster: stop %s: %w", c.dir, err)
	}
	c.stopped = true
	c.logger.Info("stopped PostgreSQL", "pid", c.pid)
	return nil
}

// FindBinaries returns the directory holding initdb, pg_ctl and postgres.
//
// A non-empty hint is the only candidate. Otherwise the directories
// /usr/lib/postgresql/<version>/bin are tried, highest version first, followed
// by the directory of pg_ctl found on PATH (and that of its symlink target).
// The returned error wraps ErrBinariesNotFound when nothing suitable exists.
func FindBinaries(hint string) (string, error) {
	dir, err := findBinaries(hint)
	if err != nil {
		return "", fmt.Errorf("pgcluster: %w", err)
	}
	return dir, nil
}

// prepareDir creates the cluster directory if needed, hands it to the
// service account and checks that the account can reach it. It returns the
// directory with symbolic links resolved.
func prepareDir(dir string, acct *account) (string, error) {
	if acct != nil {
		// Check before creating anything; directories created here below
		// the first existing ancestor are traversable (mode 0755).
		if err := checkAncestorsSearchable(dir, acct); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("create parent directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create cluster directory: %w", err)
	}
	resolved, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("resolve cluster directory: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(resolved, &st); err != nil {
		return "", fmt.Errorf("stat cluster directory: %w", err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return "", fmt.Errorf("cluster directory %s is not a directory", resolved)
	}
	if acct == nil {
		return resolved, nil
	}
	if st.Uid != acct.uid || st.Gid != acct.gid {
		if err := os.Chown(resolved, int(acct.uid), int(acct.gid)); err != nil {
			return "", fmt.Errorf("hand cluster directory to OS user %q: %w", acct.name, err)
		}
	}
	if err := checkAncestorsSearchable(resolved, acct); err != nil {
		return "", err
	}
	return resolved, nil
}

// attach looks for a live postmaster serving the data directory and, if one
// answers, adopts it without taking ownership. It reports false when no
// server is running (including a stale postmaster.pid left by a crash).
func (c *Cluster) attach(ctx context.Context) (bool, error) {
	deadline := time.Now().Add(attachTimeout)
	for {
		info, err := readPostmasterPID(c.dataDir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return false, nil
		case err == nil && probeProcess(info.pid) != processAlive:
			c.logger.Info("found stale postmaster.pid", "pid", info.pid)
			c.awaitReaped(ctx, info.pid)
			return false, nil
		case err == nil && info.port == 0:
			err = fmt.Errorf("postmaster %d has not recorded its port yet", info.pid)
		case err == nil:
			if c.superPW == "" {
				if c.superPW, err = readSecret(filepath.Join(c.dir, superuserPWFile)); err != nil {
					return false, fmt.Errorf("attach to running server: %w", err)
				}
			}
			err = c.ping(ctx, info.port)
			if err == nil {
				c.pid, c.port = info.pid, info.port
				c.logger.Info("attached to running PostgreSQL", "pid", c.pid, "port", c.port)
				return true, nil
			}
			if !retryableConnectError(err) {
				return false, fmt.Errorf("attach to running server (pid %d, port %d): %w", info.pid, info.port, err)
			}
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("attach to running server: %s lists a live process, but no usable server answered within %s: %w",
				filepath.Join(c.dataDir, "postmaster.pid"), attachTimeout, err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return false, fmt.Errorf("attach to running server: %w", err)
		}
	}
}

// awaitReaped gives the parent of a dead postmaster a moment to reap it:
// until then its pid still looks taken, and the new postmaster would refuse
// to start over the old lock file. Where init reaps orphans promptly this
// returns at once; otherwise the start attempt reports the problem.
func (c *Cluster) awaitReaped(ctx context.Context, pid int) {
	deadline := time.Now().Add(reapTimeout)
	for probeProcess(pid) == processZombie && time.Now().Before(deadline) {
		if sleep(ctx, 50*time.Millisecond) != nil {
			return
		}
	}
}

// retryableConnectError reports whether a failed connection may succeed
// later: the server did not answer, or answered that it is starting up.
func retryableConnectError(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P03" // cannot_connect_now
	}
	return true
}

// Checkpoint runs CHECKPOINT as the superuser: it writes every dirty page
// out now rather than when the server's own schedule comes, which a
// measurement that follows a bulk load wants out of its way. The
// "gcmtrack" role may not run it (PostgreSQL 15 asks for pg_checkpoint).
func (c *Cluster) Checkpoint(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, connURL(c.port, superuserName, c.superPW, "postgres"))
	if err != nil {
		return fmt.Errorf("checkpoint: connect as superuser: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// ping proves that a server on port accepts the superuser.
func (c *Cluster) ping(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL(port, superuserName, c.superPW, "postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// initialise runs initdb unless the data directory already holds a cluster.
// initdb writes into a staging directory that is renamed into place only
// when complete, so an interrupted initialisation is simply redone.
func (c *Cluster) initialise(ctx context.Context, acct *account) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("initialise: %w", err)
	}
	if _, err := os.Stat(c.dataDir); err == nil {
		return fmt.Errorf("initialise: %s exists but holds no cluster (no PG_VERSION); move it away", c.dataDir)
	}
	staging := c.dataDir + ".initdb"
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("initialise: remove leftover %s: %w", staging, err)
	}

	superPW := randomSecret()
	if err := writeSecret(filepath.Join(c.dir, superuserPWFile), superPW); err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	pwfile, err := c.serverReadableSecret(superPW, acct)
	if err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	defer os.Remove(pwfile)

	c.logger.Info("initialising PostgreSQL cluster", "bin_dir", c.runner.binDir)
	if err := c.runner.run(ctx, "initdb",
		"-D", staging,
		"-U", superuserName,
		"--auth-local=scram-sha-256",
		"--auth-host=scram-sha-256",
		"--pwfile="+pwfile,
		"-E", "UTF8",
		"--locale=C",
	); err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	if err := appendFile(filepath.Join(staging, "postgresql.auto.conf"), serverSettings); err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	if err := os.Rename(staging, c.dataDir); err != nil {
		return fmt.Errorf("initialise: %w", err)
	}
	c.superPW = superPW
	return nil
}

// serverReadableSecret writes secret to a temporary file in the cluster
// directory that the server account can read, for initdb --pwfile. The
// caller removes it.
func (c *Cluster) serverReadableSecret(secret string, acct *account) (string, error) {
	f, err := os.CreateTemp(c.dir, ".pwfile-*")
	if err != nil {
		return "", fmt.Errorf("create password file: %w", err)
	}
	name := f.Name()
	_, err = io.WriteString(f, secret+"\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && acct != nil {
		err = os.Chown(name, int(acct.uid), int(acct.gid))
	}
	if err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("write password file: %w", err)
	}
	return name, nil
}

// startServer runs pg_ctl start on a free port, trying a new port when the
// chosen one was taken meanwhile.
func (c *Cluster) startServer(ctx context.Context) error {
	if c.superPW == "" {
		pw, err := readSecret(filepath.Join(c.dir, superuserPWFile))
		if err != nil {
			return fmt.Errorf("start server: %w", err)
		}
		c.superPW = pw
	}
	logPath := filepath.Join(c.dir, serverLogFile)
	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return fmt.Errorf("start server: %w", err)
		}
		logOffset := fileSize(logPath)
		err = c.runner.run(ctx, "pg_ctl", "start",
			"-w", "-t", pgctlWaitSeconds,
			"-D", c.dataDir,
			"-l", logPath,
			"-o", "-p "+strconv.Itoa(port),
		)
		if err == nil {
			info, err := readPostmasterPID(c.dataDir)
			if err != nil {
				return fmt.Errorf("start server: %w", err)
			}
			c.pid, c.port, c.owned = info.pid, port, true
			c.logger.Info("started PostgreSQL", "pid", c.pid, "port", c.port)
			return nil
		}
		serverLog := readFrom(logPath, logOffset)
		lastErr = fmt.Errorf("start server on port %d (attempt %d of %d): %w; server log: %s",
			port, attempt, startAttempts, err, lastLines(serverLog, 10))
		if ctx.Err() != nil {
			return lastErr
		}
		switch {
		case strings.Contains(serverLog, "could not bind") || strings.Contains(serverLog, "Address already in use"):
			c.logger.Warn("port taken, retrying with another", "port", port)
		case strings.Contains(serverLog, "shared memory block") && strings.Contains(serverLog, "still in use"):
			// Children of a crashed postmaster take a moment to exit.
			c.logger.Warn("old server processes still hold shared memory, retrying")
			if err := sleep(ctx, time.Second); err != nil {
				return lastErr
			}
		default:
			return lastErr
		}
	}
	return lastErr
}

// ensureApp makes sure the "gcmtrack" role exists with LOGIN, CREATEDB and
// the password from gcmtrack.pw, and that the "gcmtrack" database exists.
func (c *Cluster) ensureApp(ctx context.Context) error {
	appPW, err := readOrCreateSecret(filepath.Join(c.dir, appPWFile))
	if err != nil {
		return fmt.Errorf("ensure role and database: %w", err)
	}
	conn, err := pgx.Connect(ctx, connURL(c.port, superuserName, c.superPW, "postgres"))
	if err != nil {
		return fmt.Errorf("ensure role and database: connect as superuser: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	role := pgx.Identifier{appName}.Sanitize()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", appName).Scan(&exists); err != nil {
		return fmt.Errorf("ensure role: %w", err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	// Utility statements take no parameters; the password is hex, and
	// quoted as a literal regardless.
	if _, err := conn.Exec(ctx, verb+" ROLE "+role+" WITH LOGIN CREATEDB PASSWORD "+quoteLiteral(appPW)); err != nil {
		return fmt.Errorf("ensure role: %s role: %w", strings.ToLower(verb), err)
	}

	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", appName).Scan(&exists); err != nil {
		return fmt.Errorf("ensure database: %w", err)
	}
	if !exists {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{appName}.Sanitize()+" OWNER "+role)
		var pgErr *pgconn.PgError
		if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") { // duplicate_database
			return fmt.Errorf("ensure database: create database: %w", err)
		}
	}
	c.appPW = appPW
	return nil
}

// connURL builds a connection URL for a loopback server on port.
func connURL(port int, role, password, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(role, password),
		Host:     net.JoinHostPort(loopbackHost, strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// freePort asks the kernel for a currently unused loopback TCP port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopbackHost, "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomSecret returns 32 random bytes, hex encoded.
func randomSecret() string {
	return hex.EncodeToString(randomBytes(32))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

// readSecret reads a password file.
func readSecret(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("read password file: %s is empty", path)
	}
	return secret, nil
}

// readOrCreateSecret reads a password file, creating it with a random
// password when missing.
func readOrCreateSecret(path string) (string, error) {
	secret, err := readSecret(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	secret = randomSecret()
	if err := writeSecret(path, secret); err != nil {
		return "", err
	}
	return secret, nil
}

// writeSecret atomically replaces path with secret, readable only by the
// current OS user (mode 0600).
func writeSecret(path, secret string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	tmp := f.Name()
	_, err = io.WriteString(f, secret+"\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write password file %s: %w", path, err)
	}
	return nil
}

// appendFile appends text to an existing file, keeping its owner and mode.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	_, err = io.WriteString(f, text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return nil
}

// fileSize returns the size of path, or 0 when it cannot be determined.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the content of path from offset on, best effort.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(data)
}

// lastLines returns at most n trailing lines of text, joined by " | ".
func lastLines(text string, n int) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
