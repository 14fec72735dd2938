// Package natsnode runs a NATS server with JetStream inside the program and
// connects to it in-process.
package natsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	defaultHost  = "127.0.0.1"
	readyTimeout = 10 * time.Second
	clientName   = "gcmtrack"
)

// Config describes an embedded NATS server.
type Config struct {
	// StoreDir is the JetStream file storage directory; required.
	StoreDir string
	// Host is the client listener address; empty means 127.0.0.1.
	Host string
	// Port is the client port: 0 opens no listener (in-process connections
	// only), -1 picks a random free port.
	Port int
	// SyncAlways makes JetStream fsync every write (sync_interval: always).
	SyncAlways bool
	// ServerName names the server; empty lets the server generate one.
	ServerName string
	// Username and Password, when set, are required of network clients
	// (in-process connections pass them too).
	Username, Password string
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
}

// Start starts a JetStream-enabled server and waits up to ten seconds until
// it is ready for connections.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsnode: start: config: StoreDir is empty")
	}
	host := cfg.Host
	if host == "" {
		host = defaultHost
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       host,
		Port:       cfg.Port,
		DontListen: cfg.Port == 0,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: cfg.SyncAlways,
		NoSigs:     true,
		Username:   cfg.Username,
		Password:   cfg.Password,
		NoLog:      cfg.Logger == nil,
		// JetStreamMaxMemory and JetStreamMaxStore stay zero: the server
		// derives limits from the available memory and disk.
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsnode: start: %w", err)
	}
	if cfg.Logger != nil {
		debug := cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
		s.SetLoggerV2(slogAdapter{cfg.Logger}, debug, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsnode: start: server not ready for connections within %s", readyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, errors.New("natsnode: start: JetStream failed to start (see server log)")
	}
	return s, nil
}

// Connect opens an in-process client connection to s. The defaults (client
// name, unlimited reconnects with a short wait) come first, so opts override
// them.
func Connect(s *server.Server, opts ...nats.Option) (*nats.Conn, error) {
	if s == nil {
		return nil, errors.New("natsnode: connect: nil server")
	}
	all := append([]nats.Option{
		nats.Name(clientName),
		nats.InProcessServer(s),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect("", all...)
	if err != nil {
		return nil, fmt.Errorf("natsnode: connect: %w", err)
	}
	return nc, nil
}

// slogAdapter implements server.Logger on top of a slog.Logger. Notices map
// to info, traces to debug, and fatal errors to error: the adapter never
// exits the process.
type slogAdapter struct {
	logger *slog.Logger
}

var _ server.Logger = slogAdapter{}

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !a.logger.Enabled(ctx, level) {
		return
	}
	a.logger.Log(ctx, level, fmt.Sprintf(format, args...), "component", "nats-server")
}

// Noticef logs at info level.
func (a slogAdapter) Noticef(format string, v ...any) { a.log(slog.LevelInfo, format, v) }

// Warnf logs at warn level.
func (a slogAdapter) Warnf(format string, v ...any) { a.log(slog.LevelWarn, format, v) }

// Fatalf logs at error level.
func (a slogAdapter) Fatalf(format string, v ...any) { a.log(slog.LevelError, format, v) }

// Errorf logs at error level.
func (a slogAdapter) Errorf(format string, v ...any) { a.log(slog.LevelError, format, v) }

// Debugf logs at debug level.
func (a slogAdapter) Debugf(format string, v ...any) { a.log(slog.LevelDebug, format, v) }

// Tracef logs at debug level.
func (a slogAdapter) Tracef(format string, v ...any) { a.log(slog.LevelDebug, format, v) }
