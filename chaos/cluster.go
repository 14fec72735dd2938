package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"gcmtrack/deploy/embedded/pgcluster"
	"gcmtrack/events"
)

// natsUsers maps each user of deploy/nats/gcm-shared.conf to the
// environment variable the server reads its password hash from.
var natsUsers = map[string]string{
	"api":       "GCM_NATS_API_PASSWORD",
	"projector": "GCM_NATS_PROJECTOR_PASSWORD",
	"backup":    "GCM_NATS_BACKUP_PASSWORD",
	"admin":     "GCM_NATS_ADMIN_PASSWORD",
	"sys":       "GCM_NATS_SYS_PASSWORD",
}

// natsCluster is the three nodes of deploy/nats, each a `gcmtrack
// nats-node` process on loopback ports chosen once, so that a node
// restarted on its store directory rejoins at the same address.
type natsCluster struct {
	nodes     []*process
	names     []string
	ports     []int
	passwords map[string]string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startNATS starts the three nodes and waits until JetStream answers on
// each.
func startNATS(ctx context.Context, h *harness) (*natsCluster, error) {
	c := &natsCluster{passwords: map[string]string{}}
	var env []string
	for user, v := range natsUsers {
		pw := "chaos-" + randomHex(12)
		hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("nats passwords: %w", err)
		}
		c.passwords[user] = pw
		env = append(env, v+"="+string(hash))
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	c.ports = ports[:3]
	routePorts := ports[3:]
	for i := range 3 {
		name := fmt.Sprintf("nats-%d", i+1)
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[j]))
			}
		}
		conf, err := filepath.Abs(filepath.Join(h.cfg.DeployDir, "nats", name+".conf"))
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(conf); err != nil {
			return nil, fmt.Errorf("NATS configuration: %w (set the deploy directory)", err)
		}
		p := &process{
			name: name, bin: h.cfg.Gcmtrack, env: env,
			logPath: filepath.Join(h.dir, "logs", name+".log"),
			args: []string{"nats-node", "--config", conf, "--host", "127.0.0.1", "--port", strconv.Itoa(c.ports[i]),
				"--http-port", "0", "--cluster-host", "127.0.0.1", "--cluster-port", strconv.Itoa(routePorts[i]),
				"--routes", strings.Join(routes, ","), "--store-dir", filepath.Join(h.dir, name)},
		}
		h.track(p)
		if err := p.start(); err != nil {
			return nil, err
		}
		c.nodes, c.names = append(c.nodes, p), append(c.names, name)
	}
	for i := range c.nodes {
		if err := c.awaitNode(ctx, i, 60*time.Second); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// url is a client URL listing every node, with user's credentials.
func (c *natsCluster) url(user string) string {
	var urls []string
	for _, p := range c.ports {
		u := url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p), User: url.UserPassword(user, c.passwords[user])}
		urls = append(urls, u.String())
	}
	return strings.Join(urls, ",")
}

// nodeURL is the admin URL of node i alone.
func (c *natsCluster) nodeURL(i int) string {
	u := url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", c.ports[i]), User: url.UserPassword("admin", c.passwords["admin"])}
	return u.String()
}

// awaitNode waits until node i answers the GCM account's JetStream API.
func (c *natsCluster) awaitNode(ctx context.Context, i int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var lastErr error
	for time.Now().Before(deadline) {
		if !c.nodes[i].running() {
			return fmt.Errorf("%s exited (see %s)", c.names[i], c.nodes[i].logPath)
		}
		nc, err := nats.Connect(c.nodeURL(i), nats.NoReconnect(), nats.Timeout(2*time.Second))
		if err == nil {
			var js jetstream.JetStream
			if js, err = jetstream.New(nc); err == nil {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err = js.AccountInfo(actx)
				cancel()
			}
			nc.Close()
			if err == nil {
				return nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: JetStream not ready within %s: %v", c.names[i], limit, lastErr)
}

// awaitStreamHealthy waits until the event stream has a leader and every
// replica is current: a restarted or resumed node has caught up.
func awaitStreamHealthy(ctx context.Context, js jetstream.JetStream, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var why string
	for time.Now().Before(deadline) {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := js.Stream(ictx, events.StreamName)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(ictx)
		}
		cancel()
		switch {
		case err != nil:
			why = err.Error()
		case info.Cluster == nil || info.Cluster.Leader == "":
			why = "no leader"
		case len(info.Cluster.Replicas) != 2:
			why = fmt.Sprintf("%d replicas", len(info.Cluster.Replicas))
		default:
			ok := true
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					ok, why = false, fmt.Sprintf("replica %s not current (lag %d)", r.Name, r.Lag)
				}
			}
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("stream %s not healthy within %s: %s", events.StreamName, limit, why)
}

// createStream creates the event stream from the deployment's settings
// file, retrying while the cluster elects its JetStream leader.
func createStream(ctx context.Context, js jetstream.JetStream, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("stream settings: %w", err)
	}
	var cfg jetstream.StreamConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("stream settings %s: %w", file, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.CreateStream(cctx, cfg)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("create stream %s: %w", cfg.Name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// streamLeader names the node that leads the event stream.
func streamLeader(ctx context.Context, js jetstream.JetStream) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return "", err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", err
	}
	if info.Cluster == nil {
		return "", fmt.Errorf("stream %s has no cluster information", events.StreamName)
	}
	return info.Cluster.Leader, nil
}

// postgres is the harness's PostgreSQL cluster. pgcluster starts it; the
// harness restarts and stops it with pg_ctl itself, so that the server
// comes back on the same port and the processes' URLs stay valid.
type postgres struct {
	cluster *pgcluster.Cluster
	dir     string
	binDir  string
	cred    *syscall.Credential // the postgres OS user's, when the harness is root
}

func startPostgres(ctx context.Context, h *harness) (*postgres, error) {
	dir := filepath.Join(h.dir, "pg")
	c, err := pgcluster.Start(ctx, pgcluster.Config{Dir: dir})
	if err != nil {
		return nil, err
	}
	p := &postgres{cluster: c, dir: dir}
	if p.binDir, err = pgcluster.FindBinaries(""); err != nil {
		return p, err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return p, fmt.Errorf("postgres OS user: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return p, nil
}

// url is the connection URL of the application database, tagged with an
// application name that shows in pg_stat_activity.
func (p *postgres) url(application string) string {
	u := p.cluster.URL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "application_name=" + url.QueryEscape(application)
}

// pgctl runs pg_ctl on the cluster as the OS user that owns it.
func (p *postgres) pgctl(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(p.binDir, "pg_ctl"), append(args, "-D", filepath.Join(p.dir, "data"))...)
	cmd.Dir = p.dir
	cmd.Env = []string{"PATH=" + p.binDir + ":/usr/bin:/bin", "LANG=C", "LC_ALL=C", "HOME=/"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// restart stops the server (fast: sessions are cut) and starts it again on
// the same port (pg_ctl restart reuses the options of the last start).
func (p *postgres) restart(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	err := p.pgctl(ctx, "restart", "-m", "fast", "-w", "-t", "120", "-l", filepath.Join(p.dir, "postgres.log"))
	return time.Since(start), err
}

// stop stops the server, however it was last started.
func (p *postgres) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.pgctl(ctx, "stop", "-m", "fast", "-w", "-t", "60"); err != nil {
		_ = p.cluster.Stop(ctx)
	}
}
