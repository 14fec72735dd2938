package natsnode_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"gcmtrack/deploy/embedded/natsnode"
)

// startServer starts a server and shuts it down when the test ends.
func startServer(t *testing.T, cfg natsnode.Config) *server.Server {
	t.Helper()
	s, err := natsnode.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func connect(t *testing.T, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := natsnode.Connect(s)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestJetStreamSurvivesRestart(t *testing.T) {
	storeDir := t.TempDir()
	cfg := natsnode.Config{StoreDir: storeDir, SyncAlways: true, ServerName: "node-a"}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	s := startServer(t, cfg)
	if jsc := s.JetStreamConfig(); jsc == nil || !jsc.SyncAlways || jsc.StoreDir == "" {
		t.Fatalf("JetStreamConfig() = %+v, want SyncAlways with a store directory", jsc)
	}
	nc := connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "EVENTS",
		Subjects: []string{"events.>"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	if _, err := js.Publish(ctx, "events.created", []byte("hello")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	readFirst(ctx, t, js, "hello")

	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()

	s2 := startServer(t, cfg)
	js2, err := jetstream.New(connect(t, s2))
	if err != nil {
		t.Fatal(err)
	}
	readFirst(ctx, t, js2, "hello")
}

// readFirst checks the first message of stream EVENTS.
func readFirst(ctx context.Context, t *testing.T, js jetstream.JetStream, want string) {
	t.Helper()
	stream, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("GetMsg: %v", err)
	}
	if string(msg.Data) != want || msg.Subject != "events.created" {
		t.Fatalf("message = %q on %q, want %q on events.created", msg.Data, msg.Subject, want)
	}

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("OrderedConsumer: %v", err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if string(m.Data()) != want {
		t.Fatalf("consumed %q, want %q", m.Data(), want)
	}
}

func TestPortZeroListensNowhere(t *testing.T) {
	s := startServer(t, natsnode.Config{StoreDir: t.TempDir()})
	if addr := s.Addr(); addr != nil {
		t.Errorf("server listens on %v, want no listener", addr)
	}
	nc := connect(t, s)
	if err := nc.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func TestRandomPortAcceptsNetworkClients(t *testing.T) {
	s := startServer(t, natsnode.Config{StoreDir: t.TempDir(), Port: -1})
	if s.Addr() == nil {
		t.Fatal("no listener with Port -1")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect over TCP to %s: %v", s.ClientURL(), err)
	}
	defer nc.Close()
	if !strings.HasPrefix(nc.ConnectedUrl(), "nats://127.0.0.1:") {
		t.Errorf("connected to %s, want 127.0.0.1", nc.ConnectedUrl())
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLoggerReceivesServerLines(t *testing.T) {
	var sink syncBuffer
	logger := slog.New(slog.NewTextHandler(&sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
	startServer(t, natsnode.Config{StoreDir: t.TempDir(), Logger: logger})
	out := sink.String()
	if !strings.Contains(out, "level=INFO") || !strings.Contains(out, "JetStream") {
		t.Errorf("log output lacks info lines about JetStream:\n%s", out)
	}
	if strings.Contains(out, "level=DEBUG") {
		t.Errorf("debug lines logged although the logger is at info level")
	}
}

func TestStartRequiresStoreDir(t *testing.T) {
	if _, err := natsnode.Start(natsnode.Config{}); err == nil {
		t.Fatal("Start without StoreDir succeeded")
	}
}

func TestConnectRejectsNilServer(t *testing.T) {
	if _, err := natsnode.Connect(nil); err == nil {
		t.Fatal("Connect(nil) succeeded")
	}
}
