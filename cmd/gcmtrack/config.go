package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// config is every setting of the binary, read once from flags and GCM_*
// environment variables (a flag wins over the environment).
type config struct {
	DataDir     string
	HTTPAddr    string
	NATSURL     string
	DatabaseURL string
	Target      string
	LogLevel    string
	NATSSync    string // always | default
	PGBinDir    string
	Replicas    int
	// BootstrapAdminToken is read from the environment only, never a flag,
	// so it stays out of process listings.
	BootstrapAdminToken string
}

// bind declares the shared settings on fs, with defaults taken from the
// environment.
func (c *config) bind(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", env("GCM_DATA_DIR", "./data"), "directory for the embedded NATS and PostgreSQL data (env GCM_DATA_DIR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", env("GCM_HTTP_ADDR", "127.0.0.1:8080"), "HTTP listen address (env GCM_HTTP_ADDR)")
	fs.StringVar(&c.NATSURL, "nats-url", env("GCM_NATS_URL", ""), "external NATS server URL; empty starts an embedded one (env GCM_NATS_URL)")
	fs.StringVar(&c.DatabaseURL, "database-url", env("GCM_DATABASE_URL", ""), "external PostgreSQL URL; empty starts an embedded cluster (env GCM_DATABASE_URL)")
	fs.StringVar(&c.Target, "target", env("GCM_TARGET", "all"), "what runs in this process: all, api or projector (env GCM_TARGET)")
	fs.StringVar(&c.LogLevel, "log-level", env("GCM_LOG_LEVEL", "info"), "debug, info, warn or error (env GCM_LOG_LEVEL)")
	fs.StringVar(&c.NATSSync, "nats-sync", env("GCM_NATS_SYNC", "always"), "embedded JetStream fsync: always (every write) or default (periodic) (env GCM_NATS_SYNC)")
	fs.StringVar(&c.PGBinDir, "pg-bin-dir", env("GCM_PG_BIN_DIR", ""), "directory of initdb/pg_ctl; empty searches /usr/lib/postgresql/*/bin and PATH (env GCM_PG_BIN_DIR)")
	fs.IntVar(&c.Replicas, "stream-replicas", envInt("GCM_STREAM_REPLICAS", 1), "replicas of the event stream on an external NATS cluster (env GCM_STREAM_REPLICAS)")
	c.BootstrapAdminToken = os.Getenv("GCM_BOOTSTRAP_ADMIN_TOKEN")
}

func (c *config) validate() error {
	switch c.Target {
	case "all", "api", "projector":
	default:
		return fmt.Errorf("--target %q: want all, api or projector", c.Target)
	}
	switch c.NATSSync {
	case "always", "default":
	default:
		return fmt.Errorf("--nats-sync %q: want always or default", c.NATSSync)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("--stream-replicas %d: want 1 to 5", c.Replicas)
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	c.DataDir = abs
	return nil
}

func (c *config) logAttrs() []any {
	tok := ""
	if c.BootstrapAdminToken != "" {
		tok = "(set)"
	}
	return []any{"data_dir", c.DataDir, "http_addr", c.HTTPAddr, "nats_url", maskURL(c.NATSURL),
		"database_url", maskURL(c.DatabaseURL), "target", c.Target, "nats_sync", c.NATSSync,
		"stream_replicas", c.Replicas, "bootstrap_admin_token", tok}
}

// maskURL hides the passwords in a URL, or a comma-separated list of
// URLs (NATS cluster seeds), for logging.
func maskURL(s string) string {
	if s == "" {
		return "(embedded)"
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable)"
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

func (c *config) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(strings.ToUpper(c.LogLevel))); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	var n int
	if _, err := fmt.Sscan(env(key, ""), &n); err != nil {
		return def
	}
	return n
}
