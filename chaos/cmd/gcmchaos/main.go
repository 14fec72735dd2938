// Command gcmchaos runs GCM Tracker's chaos test: the product as deployed
// (three NATS nodes, PostgreSQL, two APIs, two projectors) on loopback,
// under a steady load of writes while processes are killed, paused and
// restarted; then it checks that no acknowledged write was lost or doubled
// and that the read models equal a fresh rebuild, prints a summary, and
// exits non-zero on any finding. See package gcmtrack/chaos.
//
//	gcmchaos -gcmtrack bin/gcmtrack [-duration 3m] [-rate 10] [-fault-every 15s] [-seed N] [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gcmtrack/chaos"
)

func main() {
	var cfg chaos.Config
	flag.StringVar(&cfg.Gcmtrack, "gcmtrack", "bin/gcmtrack", "the gcmtrack binary under test")
	flag.StringVar(&cfg.DeployDir, "deploy", "deploy", "the deploy directory (for nats/nats-{1,2,3}.conf)")
	flag.DurationVar(&cfg.Duration, "duration", 3*time.Minute, "how long the load runs and faults are injected")
	flag.Float64Var(&cfg.Rate, "rate", 10, "writes started per second")
	flag.DurationVar(&cfg.FaultEvery, "fault-every", 15*time.Second, "time between two faults")
	seed := flag.Int64("seed", 0, "seed of the writes and faults (0: from the clock)")
	flag.StringVar(&cfg.WorkParent, "work", "", "parent of the work directory (default: the system's temporary directory)")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the work directory (logs, stores) of a passing run")
	flag.Parse()
	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	cfg.Seed = uint64(*seed)
	cfg.Out = os.Stdout

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	report, err := chaos.Run(ctx, cfg)
	stop()
	if report != nil {
		report.Print(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gcmchaos:", err)
		os.Exit(2)
	}
	if !report.Passed() {
		os.Exit(1)
	}
}
