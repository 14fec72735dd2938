package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
)

// describeMachine reads what the run happens on: CPUs and their model from
// /proc/cpuinfo, memory from /proc/meminfo, the kernel, and the versions of
// Go, PostgreSQL (asked from the running server) and nats-server.
func describeMachine(ctx context.Context, pool *pgxpool.Pool) Machine {
	m := Machine{
		NProc:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   procField("/proc/cpuinfo", "model name"),
		MemTotal:   procField("/proc/meminfo", "MemTotal"),
		Kernel:     "unknown kernel",
		GoVersion:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		NATSServer: server.VERSION + " (embedded)",
	}
	if m.CPUModel == "" {
		m.CPUModel = "unknown CPU"
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if pool != nil {
		var v string
		if err := pool.QueryRow(ctx, "SHOW server_version").Scan(&v); err == nil {
			m.PostgreSQL = v
		} else {
			m.PostgreSQL = "unknown (" + err.Error() + ")"
		}
	}
	return m
}

// procField is the value of the first "key : value" line of a /proc file
// whose key is key, or "".
func procField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}
