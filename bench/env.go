package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"gcmtrack/deploy/embedded/natsnode"
	"gcmtrack/deploy/embedded/pgcluster"
)

// env is the infrastructure of one run: a private working directory, one
// PostgreSQL cluster in it, and the databases and NATS servers made for the
// measurements.
type env struct {
	dir     string
	cluster *pgcluster.Cluster
	admin   *pgxpool.Pool // on the cluster's own database: creates and drops the others
	seq     atomic.Int64
	logf    func(format string, args ...any)
}

// startEnv creates the working directory under os.TempDir() and starts the
// PostgreSQL cluster in it. The directory is mode 0711: when the harness
// runs as root, PostgreSQL runs as the postgres user, which must traverse it.
func startEnv(ctx context.Context, logf func(string, ...any)) (*env, error) {
	dir, err := os.MkdirTemp("", "gcmbench-*")
	if err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, errors.Join(fmt.Errorf("working directory: %w", err), os.RemoveAll(dir))
	}
	e := &env{dir: dir, logf: logf}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	e.cluster, err = pgcluster.Start(sctx, pgcluster.Config{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	if e.admin, err = openPool(ctx, e.cluster.URL(), 2); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// close stops the cluster and removes the working directory.
func (e *env) close() {
	if e.admin != nil {
		e.admin.Close()
	}
	if e.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.cluster.Stop(ctx); err != nil {
			e.logf("stop PostgreSQL: %v", err)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		e.logf("remove %s: %v", e.dir, err)
	}
}

// next numbers the things the run creates.
func (e *env) next() int64 { return e.seq.Add(1) }

// newDatabase creates an empty database and returns its URL and a function
// that drops it.
func (e *env) newDatabase(ctx context.Context, label string) (string, func(), error) {
	name := fmt.Sprintf("b_%s_%d", label, e.next())
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := e.admin.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// An autovacuum worker busy in the database after a large write
		// runs as the bootstrap superuser, whose process this role may not
		// end: the drop fails until the worker is done.
		for attempt := 1; ; attempt++ {
			_, err := e.admin.Exec(dctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
			if err == nil {
				return
			}
			if attempt == 30 || dctx.Err() != nil {
				e.logf("drop database %s: %v", name, err)
				return
			}
			sleepCtx(dctx, time.Second)
		}
	}
	return e.cluster.URLFor(name), drop, nil
}

// openPool connects a pool of at most maxConns connections, as the product
// does (it asks for at least 8).
func openPool(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	return pool, nil
}

// natsNode is an embedded NATS server with an in-process connection to it.
type natsNode struct {
	srv *server.Server
	nc  *nats.Conn
	dir string
}

// startNATS starts a JetStream server storing in a new directory, as the
// product does (natsnode.Start). listen opens a loopback listener on a free
// port (for child processes); without it only in-process connections reach
// the server, as in `gcmtrack run`.
func (e *env) startNATS(label string, listen, syncAlways bool) (*natsNode, error) {
	dir := filepath.Join(e.dir, fmt.Sprintf("nats-%s-%d", label, e.next()))
	port := 0
	if listen {
		port = -1
	}
	s, err := natsnode.Start(natsnode.Config{StoreDir: dir, Port: port, SyncAlways: syncAlways, ServerName: "gcmbench-" + label})
	if err != nil {
		return nil, err
	}
	return connectNode(s, dir)
}

// connectNode connects in-process to a started server.
func connectNode(s *server.Server, dir string) (*natsNode, error) {
	nc, err := natsnode.Connect(s)
	if err != nil {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, err
	}
	return &natsNode{srv: s, nc: nc, dir: dir}, nil
}

// close stops the server and removes its storage.
func (n *natsNode) close() {
	n.nc.Close()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	_ = os.RemoveAll(n.dir)
}

// cpuClock reads CPU time consumed so far: by this process, by the
// PostgreSQL server (the postmaster and its children, from /proc) and
// by the whole machine (/proc/stat), so that the time other processes took
// shows next to each figure.
type cpuClock struct{ postmaster int }

// cpuSample is a reading of a cpuClock.
type cpuSample struct {
	at                time.Time
	self, pg, machine time.Duration
}

func (c cpuClock) now() cpuSample {
	var ru syscall.Rusage
	s := cpuSample{at: time.Now()}
	// The harness's time includes its finished children (the memory
	// pair's gcmtrack runs).
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		if syscall.Getrusage(who, &ru) == nil {
			s.self += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	s.pg = pgCPU(c.postmaster)
	s.machine = machineBusy()
	return s
}

// others is the CPU time the machine spent outside the harness, its
// children and PostgreSQL since an earlier sample.
func (s cpuSample) others(earlier cpuSample) time.Duration {
	return max(0, (s.machine-earlier.machine)-(s.self-earlier.self)-(s.pg-earlier.pg))
}

// cpuUse is the CPU time spent during one measurement, in seconds.
type cpuUse struct {
	Wall       float64 `json:"wall_s"`
	Harness    float64 `json:"harness_cpu_s"`
	PostgreSQL float64 `json:"postgresql_cpu_s"`
	// Others is the time of every other process on the machine: what
	// disturbed the measurement.
	Others float64 `json:"other_cpu_s"`
}

// since is the CPU time used since an earlier sample.
func (s cpuSample) since(earlier cpuSample) cpuUse {
	return cpuUse{
		Wall:       s.at.Sub(earlier.at).Seconds(),
		Harness:    (s.self - earlier.self).Seconds(),
		PostgreSQL: (s.pg - earlier.pg).Seconds(),
		Others:     s.others(earlier).Seconds(),
	}
}

// othersShare is the share of the machine's CPU capacity that other
// processes took during the measurements.
func othersShare(uses []cpuUse) float64 {
	var others, wall float64
	for _, u := range uses {
		others += u.Others
		wall += u.Wall
	}
	return Ratio(others, wall*float64(runtime.NumCPU()))
}

// disturbance is a note on how busy other processes kept the machine while
// the product's and the baseline's runs were measured.
func disturbance(product, baseline []cpuUse) string {
	p, b := othersShare(product), othersShare(baseline)
	if math.IsNaN(b) {
		return fmt.Sprintf("other processes took %.0f%% of the machine's CPU during the product's runs", 100*p)
	}
	return fmt.Sprintf("other processes took %.0f%% of the machine's CPU during the product's runs, %.0f%% during the baseline's", 100*p, 100*b)
}

// machineBusy is the machine's CPU time spent other than idle or waiting
// for I/O since boot, from the first line of /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for i, v := range f[1:9] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat times; it
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// pgCPU sums user and system time of the postmaster and its children, live
// or exited.
func pgCPU(postmaster int) time.Duration {
	if postmaster <= 0 {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var ticks int64
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: fields start
		// after the last ')'. Then: state ppid … utime(14th) stime(15th).
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if pid != postmaster && ppid != postmaster {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += ut + st
		if pid == postmaster {
			// Backends that have exited (a pool closed, a database
			// dropped) live on in the postmaster's cutime and cstime.
			cut, _ := strconv.ParseInt(f[13], 10, 64)
			cst, _ := strconv.ParseInt(f[14], 10, 64)
			ticks += cut + cst
		}
	}
	return time.Duration(ticks) * time.Second / clockTick
}
