package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gcmtrack/deploy/embedded/natsnode"
	"gcmtrack/deploy/embedded/pgcluster"
	"gcmtrack/projections/migrations"
	"gcmtrack/services/auth"
	"gcmtrack/services/web"
)

// platform is the infrastructure one process runs on: a NATS connection and
// a PostgreSQL pool, embedded or external.
type platform struct {
	cfg     config
	log     *slog.Logger
	nats    *server.Server // nil when external
	nc      *nats.Conn
	cluster *pgcluster.Cluster // nil when external
	pool    *pgxpool.Pool
	// lock is held while this process runs the embedded NATS server.
	lock         *os.File
	endpointFile string
}

// openDatabase connects to PostgreSQL: the external URL, or the embedded
// cluster under the data directory (started if it is not running).
func openDatabase(ctx context.Context, cfg config, log *slog.Logger) (*pgcluster.Cluster, *pgxpool.Pool, error) {
	url := cfg.DatabaseURL
	var cluster *pgcluster.Cluster
	if url == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("data directory: %w", err)
		}
		c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: filepath.Join(cfg.DataDir, "postgres"), BinDir: cfg.PGBinDir, Logger: log})
		if err != nil {
			return nil, nil, err
		}
		cluster, url = c, c.URL()
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		stopCluster(cluster, log)
		return nil, nil, fmt.Errorf("database url: %w", err)
	}
	if pcfg.MaxConns < 8 {
		pcfg.MaxConns = 8
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err == nil {
		err = pingUntil(ctx, pool, 30*time.Second)
	}
	if err != nil {
		stopCluster(cluster, log)
		return nil, nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return cluster, pool, nil
}

func pingUntil(ctx context.Context, pool *pgxpool.Pool, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := pool.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func stopCluster(c *pgcluster.Cluster, log *slog.Logger) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		log.Error("stop PostgreSQL", "err", err)
	}
}

// migrate applies every migration set the product has.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrations.Up(ctx, pool, migrations.Engine(), auth.Migrations(), web.Migrations())
}

// endpoint is how other gcmtrack commands reach the embedded NATS server of
// a running `gcmtrack run` on the same data directory.
type endpoint struct {
	URL      string `json:"url"`
	User     string `json:"user"`
	Password string `json:"password"`
	PID      int    `json:"pid"`
}

// openPlatform starts or connects to NATS and PostgreSQL. In embedded mode
// the process that holds the data directory's lock runs the NATS server; a
// command started while `gcmtrack run` holds it connects to that server.
// serve makes this process the holder (gcmtrack run): it fails if another
// holds the lock.
func openPlatform(ctx context.Context, cfg config, log *slog.Logger, serve bool) (*platform, error) {
	p := &platform{cfg: cfg, log: log}
	var err error
	p.cluster, p.pool, err = openDatabase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.NATSURL != "":
		p.nc, err = nats.Connect(cfg.NATSURL, nats.Name("gcmtrack-"+cfg.Target), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	default:
		err = p.openEmbeddedNATS(serve)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("NATS: %w", err)
	}
	return p, nil
}

func (p *platform) openEmbeddedNATS(serve bool) error {
	dir := filepath.Join(p.cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if serve {
			return fmt.Errorf("another gcmtrack is running on %s (its lock is held); stop it or use another --data-dir", p.cfg.DataDir)
		}
		return p.attachNATS(filepath.Join(dir, "endpoint.json"))
	}
	p.lock = lock
	ep := endpoint{User: "gcmtrack", Password: randomHex(24), PID: os.Getpid()}
	ncfg := natsnode.Config{
		StoreDir:   filepath.Join(dir, "jetstream"),
		SyncAlways: p.cfg.NATSSync == "always",
		ServerName: "gcmtrack-embedded",
		Logger:     p.log.With("component", "nats"),
	}
	if serve {
		// Loopback only, with a password, so that other gcmtrack commands on
		// this data directory (rebuild, backup) can reach the stream.
		ncfg.Port, ncfg.Username, ncfg.Password = -1, ep.User, ep.Password
	}
	p.nats, err = natsnode.Start(ncfg)
	if err != nil {
		return err
	}
	p.nc, err = natsnode.Connect(p.nats, nats.UserInfo(ep.User, ep.Password))
	if err != nil {
		return err
	}
	if serve {
		ep.URL = p.nats.ClientURL()
		b, _ := json.Marshal(ep)
		p.endpointFile = filepath.Join(dir, "endpoint.json")
		if err := os.WriteFile(p.endpointFile, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (p *platform) attachNATS(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("a gcmtrack run holds %s but its endpoint is not readable: %w", p.cfg.DataDir, err)
	}
	var ep endpoint
	if err := json.Unmarshal(b, &ep); err != nil {
		return fmt.Errorf("endpoint of the running gcmtrack: %w", err)
	}
	p.log.Info("attaching to the running gcmtrack's NATS server", "pid", ep.PID, "url", ep.URL)
	p.nc, err = nats.Connect(ep.URL, nats.UserInfo(ep.User, ep.Password), nats.Name("gcmtrack-cli"))
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// ready reports whether both stores answer.
func (p *platform) ready(ctx context.Context) error {
	if !p.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	return p.pool.Ping(ctx)
}

// close stops everything in reverse order of start.
func (p *platform) close() {
	if p.nc != nil {
		_ = p.nc.Drain()
		p.nc.Close()
	}
	if p.endpointFile != "" {
		_ = os.Remove(p.endpointFile)
	}
	if p.nats != nil {
		p.nats.Shutdown()
		p.nats.WaitForShutdown()
	}
	if p.lock != nil {
		_ = p.lock.Close() // releases the flock
	}
	if p.pool != nil {
		p.pool.Close()
	}
	stopCluster(p.cluster, p.log)
}
