package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gcmtrack/deploy/embedded/natsnode"
	"gcmtrack/deploy/embedded/pgcluster"
	"gcmtrack/projections/migrations"
	"gcmtrack/services/auth"
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
	return migrations.Up(ctx, pool, migrations.Engine(), auth.Migrations())
}

// openPlatform starts or connects to NATS and PostgreSQL.
func openPlatform(ctx context.Context, cfg config, log *slog.Logger) (*platform, error) {
	p := &platform{cfg: cfg, log: log}
	var err error
	p.cluster, p.pool, err = openDatabase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if cfg.NATSURL == "" {
		p.nats, err = natsnode.Start(natsnode.Config{
			StoreDir:   filepath.Join(cfg.DataDir, "nats"),
			Port:       0, // in-process only: nothing listens on the network
			SyncAlways: cfg.NATSSync == "always",
			ServerName: "gcmtrack-embedded",
			Logger:     log.With("component", "nats"),
		})
		if err == nil {
			p.nc, err = natsnode.Connect(p.nats)
		}
	} else {
		p.nc, err = nats.Connect(cfg.NATSURL, nats.Name("gcmtrack-"+cfg.Target), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("NATS: %w", err)
	}
	return p, nil
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
	if p.nats != nil {
		p.nats.Shutdown()
		p.nats.WaitForShutdown()
	}
	if p.pool != nil {
		p.pool.Close()
	}
	stopCluster(p.cluster, p.log)
}
