package configtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"
)

// natsUsers maps each user of the configuration to the environment variable
// its password hash is read from.
var natsUsers = map[string]string{
	"api":       "GCM_NATS_API_PASSWORD",
	"projector": "GCM_NATS_PROJECTOR_PASSWORD",
	"backup":    "GCM_NATS_BACKUP_PASSWORD",
	"admin":     "GCM_NATS_ADMIN_PASSWORD",
	"sys":       "GCM_NATS_SYS_PASSWORD",
}

// natsPassword is the plain-text password of user in these tests.
func natsPassword(user string) string { return "pw-" + user }

// setNATSEnv puts a bcrypt hash of each user's password in the environment,
// as an operator does.
func setNATSEnv(t *testing.T) {
	for user, env := range natsUsers {
		h, err := bcrypt.GenerateFromPassword([]byte(natsPassword(user)), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(env, string(h))
	}
}

func natsNodeFiles(t *testing.T) []string {
	return glob(t, "nats/nats-*.conf", 3)
}

func loadNATS(t *testing.T, path string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return opts
}

// permits reports whether a user with permissions p may publish to subject.
func permits(p *server.Permissions, subject string) bool {
	if p == nil || p.Publish == nil {
		return true
	}
	match := func(filters []string) bool {
		return slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) })
	}
	if p.Publish.Allow != nil && !match(p.Publish.Allow) {
		return false
	}
	return !match(p.Publish.Deny)
}

func findUser(opts *server.Options, name string) *server.User {
	for _, u := range opts.Users {
		if u.Username == name {
			return u
		}
	}
	return nil
}

func TestNATSConfigsParse(t *testing.T) {
	setNATSEnv(t)
	all := glob(t, "nats/*.conf", 4)
	for _, path := range all {
		opts := loadNATS(t, path)
		if !opts.JetStream {
			t.Errorf("%s: JetStream not enabled", path)
		}
		if !opts.SyncAlways {
			t.Errorf("%s: JetStream sync_interval is not always", path)
		}
		if opts.StoreDir == "" {
			t.Errorf("%s: no JetStream store_dir", path)
		}
		if opts.SystemAccount != "SYS" {
			t.Errorf("%s: system account %q, want SYS", path, opts.SystemAccount)
		}
	}

	names := map[string]bool{}
	for _, path := range natsNodeFiles(t) {
		opts := loadNATS(t, path)
		node := strings.TrimSuffix(filepath.Base(path), ".conf")
		if opts.ServerName != node {
			t.Errorf("%s: server_name %q, want %q", path, opts.ServerName, node)
		}
		names[opts.ServerName] = true
		if opts.Cluster.Name != "gcm" || opts.Cluster.Port == 0 {
			t.Errorf("%s: cluster %q on port %d", path, opts.Cluster.Name, opts.Cluster.Port)
		}
		if len(opts.Routes) != 2 {
			t.Errorf("%s: %d routes, want 2 (the other nodes)", path, len(opts.Routes))
		}
		for _, r := range opts.Routes {
			if r.Hostname() == node || !strings.HasPrefix(r.Hostname(), "nats-") {
				t.Errorf("%s: route %s should name another node", path, r)
			}
		}

		accounts := map[string]bool{}
		for _, a := range opts.Accounts {
			accounts[a.Name] = true
		}
		if !accounts["GCM"] || !accounts["SYS"] {
			t.Errorf("%s: accounts %v, want GCM and SYS", path, accounts)
		}
		for user := range natsUsers {
			u := findUser(opts, user)
			if u == nil {
				t.Errorf("%s: no user %s", path, user)
				continue
			}
			want := "GCM"
			if user == "sys" {
				want = "SYS"
			}
			if u.Account == nil || u.Account.Name != want {
				t.Errorf("%s: user %s not in account %s", path, user, want)
			}
			if !strings.HasPrefix(u.Password, "$2") {
				t.Errorf("%s: user %s: password not taken from the environment's bcrypt hash", path, user)
			}
		}

		const event = "gcm.events.puebla-process.iscm.puebla-process"
		api, projector, backup := findUser(opts, "api"), findUser(opts, "projector"), findUser(opts, "backup")
		if api == nil || projector == nil || backup == nil {
			continue
		}
		for _, subj := range []string{event, "$JS.API.STREAM.CREATE.GCM", "$JS.API.STREAM.UPDATE.GCM", "$KV.GCM_IDEMPOTENCY.k1",
			"$JS.API.STREAM.CREATE.KV_GCM_IDEMPOTENCY", "$JS.API.DIRECT.GET.GCM." + event, "$JS.API.CONSUMER.CREATE.GCM.c1." + event} {
			if !permits(api.Permissions, subj) {
				t.Errorf("%s: api may not publish to %s", path, subj)
			}
		}
		for _, subj := range []string{"$JS.API.STREAM.DELETE.GCM", "$JS.API.STREAM.PURGE.GCM", "$JS.API.STREAM.CREATE.OTHER", "other.subject"} {
			if permits(api.Permissions, subj) {
				t.Errorf("%s: api may publish to %s", path, subj)
			}
		}
		for _, subj := range []string{"$JS.API.STREAM.INFO.GCM", "$JS.API.CONSUMER.CREATE.GCM", "$JS.API.CONSUMER.CREATE.GCM.c1",
			"$JS.API.CONSUMER.MSG.NEXT.GCM.c1", "$JS.API.DIRECT.GET.GCM." + event} {
			if !permits(projector.Permissions, subj) {
				t.Errorf("%s: projector may not publish to %s", path, subj)
			}
		}
		for _, u := range []*server.User{projector, backup} {
			for _, subj := range []string{event, "gcm.events.>", "$KV.GCM_IDEMPOTENCY.k1", "$JS.API.STREAM.UPDATE.GCM", "$JS.API.STREAM.CREATE.GCM", "$JS.API.STREAM.PURGE.GCM"} {
				if permits(u.Permissions, subj) {
					t.Errorf("%s: %s may publish to %s", path, u.Username, subj)
				}
			}
		}
	}
	if len(names) != 3 {
		t.Errorf("server names %v: want 3 distinct", names)
	}
}

// streamConfig reads deploy/nats/stream-GCM.json, rejecting fields the
// JetStream API does not know.
func streamConfig(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(readFile(t, deployPath("nats", "stream-GCM.json"))))
	dec.DisallowUnknownFields()
	var cfg jetstream.StreamConfig
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("stream-GCM.json: %v", err)
	}
	return cfg
}

func TestStreamConfigFile(t *testing.T) {
	cfg := streamConfig(t)
	checks := []struct {
		what string
		ok   bool
	}{
		{"name GCM", cfg.Name == "GCM"},
		{"subjects gcm.events.>", slices.Equal(cfg.Subjects, []string{"gcm.events.>"})},
		{"3 replicas", cfg.Replicas == 3},
		{"file storage", cfg.Storage == jetstream.FileStorage},
		{"limits retention", cfg.Retention == jetstream.LimitsPolicy},
		{"deny_delete", cfg.DenyDelete},
		{"deny_purge", cfg.DenyPurge},
		{"allow_direct", cfg.AllowDirect},
		{"duplicate_window 10m", cfg.Duplicates == 10*time.Minute},
		{"discard new", cfg.Discard == jetstream.DiscardNew},
		{"no age or size limit", cfg.MaxAge == 0 && cfg.MaxMsgs == -1 && cfg.MaxBytes == -1},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("stream-GCM.json: want %s", c.what)
		}
	}
}

// natsCluster is the three nodes of deploy/nats started on loopback.
type natsCluster struct {
	servers []*server.Server
}

// url returns a client URL listing every node, with user's credentials.
func (c *natsCluster) url(user string) string {
	var urls []string
	for _, s := range c.servers {
		u := url.URL{Scheme: "nats", Host: s.Addr().String(), User: url.UserPassword(user, natsPassword(user))}
		urls = append(urls, u.String())
	}
	return strings.Join(urls, ",")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startNATSCluster starts the nodes from their configuration files, moved
// to loopback: client ports are chosen by the server, cluster ports up
// front so that the routes can name them, and each node stores into a
// temporary directory. Everything else is as configured.
func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	setNATSEnv(t)
	files := natsNodeFiles(t)
	clusterPorts := map[string]int{}
	opts := make([]*server.Options, len(files))
	for i, path := range files {
		opts[i] = loadNATS(t, path)
		clusterPorts[opts[i].ServerName] = freePort(t)
	}
	c := &natsCluster{}
	for _, o := range opts {
		o.Host, o.Port = "127.0.0.1", -1
		o.HTTPPort = 0
		o.Cluster.Host, o.Cluster.Port = "127.0.0.1", clusterPorts[o.ServerName]
		for _, r := range o.Routes {
			port, ok := clusterPorts[r.Hostname()]
			if !ok {
				t.Fatalf("%s: route %s names no node", o.ServerName, r)
			}
			r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		}
		o.StoreDir = t.TempDir()
		o.NoSigs, o.NoLog = true, true
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("%s: %v", o.ServerName, err)
		}
		s.Start()
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s: not ready for connections", s.Name())
		}
	}
	c.awaitJetStream(t)
	return c
}

// awaitJetStream waits until the JetStream meta group is current on every
// node and each node answers the GCM account's JetStream API: right after
// start, a node may not serve it yet and requests find no responders.
func (c *natsCluster) awaitJetStream(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range c.servers {
		u := url.URL{Scheme: "nats", Host: s.Addr().String(), User: url.UserPassword("admin", natsPassword("admin"))}
		nc, err := nats.Connect(u.String(), nats.NoReconnect())
		if err != nil {
			t.Fatalf("%s: connect: %v", s.Name(), err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		for {
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			_, err = js.AccountInfo(ctx)
			cancel()
			if err == nil && s.JetStreamIsCurrent() {
				break
			}
			if time.Now().After(deadline) {
				nc.Close()
				t.Fatalf("%s: JetStream not ready: %v", s.Name(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nc.Close()
	}
}

// connectNATS connects as user and records asynchronous errors, which is
// how the server reports refused publishes.
func connectNATS(t *testing.T, c *natsCluster, user string) (*nats.Conn, *asyncErrors) {
	t.Helper()
	errs := &asyncErrors{}
	nc, err := nats.Connect(c.url(user), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs.add(err) }))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, errs
}

type asyncErrors struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrors) add(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

// await waits for an error that mentions both words.
func (a *asyncErrors) await(words ...string) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		for _, err := range a.errs {
			msg := strings.ToLower(err.Error())
			if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(msg, strings.ToLower(w)) }) {
				a.mu.Unlock()
				return nil
			}
		}
		a.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no asynchronous error mentioning %q", words)
}

// readFirst reads the stream's first message through an ordered consumer,
// as projectors do. Right after a stream is created the consumer's first
// pull may find no responders (the new consumer is not yet serving); the
// projector's iterator resets and retries, and so does this.
func readFirst(t *testing.T, s jetstream.Stream) (string, error) {
	t.Helper()
	var err error
	for range 5 {
		var cons jetstream.Consumer
		cons, err = s.OrderedConsumer(t.Context(), jetstream.OrderedConsumerConfig{})
		if err != nil {
			return "", err
		}
		var msg jetstream.Msg
		msg, err = cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err == nil {
			return msg.Subject(), nil
		}
		if !errors.Is(err, nats.ErrNoResponders) {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", err
}

// createStream creates the GCM stream from stream-GCM.json, retrying while
// the cluster elects its JetStream meta leader.
func createStream(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) jetstream.Stream {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		s, err := js.CreateStream(ctx, cfg)
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("create stream GCM: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func TestNATSClusterFromConfigs(t *testing.T) {
	start := time.Now()
	c := startNATSCluster(t)
	ctx := t.Context()

	apiNC, _ := connectNATS(t, c, "api")
	apiJS, err := jetstream.New(apiNC)
	if err != nil {
		t.Fatal(err)
	}
	stream := createStream(t, apiJS, streamConfig(t))
	t.Logf("stream created after %v", time.Since(start))
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info as api: %v", err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream GCM cluster info %+v: want a leader and 2 replicas", info.Cluster)
	}

	const subject = "gcm.events.puebla-process.iscm.puebla-process"
	ack, err := apiJS.Publish(ctx, subject, []byte(`{}`), jetstream.WithMsgID("e1"))
	if err != nil {
		t.Fatalf("publish as api: %v", err)
	}
	if ack.Sequence != 1 {
		t.Fatalf("first event at sequence %d", ack.Sequence)
	}
	if _, err := apiJS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "GCM_IDEMPOTENCY", History: 1, TTL: 48 * time.Hour, Storage: jetstream.FileStorage, Replicas: 3}); err != nil {
		t.Fatalf("idempotency bucket as api: %v", err)
	}

	// Readers: the projector and the backup user read the stream through an
	// ordered consumer and may not append.
	for _, user := range []string{"projector", "backup"} {
		nc, asyncErrs := connectNATS(t, c, user)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, "GCM")
		if err != nil {
			t.Fatalf("stream info as %s: %v", user, err)
		}
		if got, err := readFirst(t, s); err != nil || got != subject {
			t.Fatalf("read as %s: %q, %v", user, got, err)
		}
		if _, err := s.GetLastMsgForSubject(ctx, subject); err != nil {
			t.Fatalf("direct get as %s: %v", user, err)
		}

		if err := nc.Publish(subject, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := asyncErrs.await("permissions violation", subject); err != nil {
			t.Errorf("publish to %s as %s: %v", subject, user, err)
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		_, err = js.CreateStream(short, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
		cancel()
		if err == nil {
			t.Errorf("%s created a stream", user)
		}
	}
	info, err = stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want only the api's one", info.State.Msgs)
	}
	adminNC, _ := connectNATS(t, c, "admin")
	adminJS, err := jetstream.New(adminNC)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminJS.Stream(ctx, "OTHER"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream OTHER: %v, want not found", err)
	}
}
