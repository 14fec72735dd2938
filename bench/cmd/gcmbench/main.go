// Command gcmbench measures GCM Tracker against baselines it measures in the
// same run (see package gcmtrack/bench) and prints a table of the pairs:
// path, product median, baseline median, the spread of both, the ratio
// product/baseline, the target and whether the ratio meets it. The results
// also go to a JSON file; the file they replace is kept beside it as
// previous.json.
//
//	gcmbench [-events N] [-reps R] [-gcmtrack bin/gcmtrack] [-out bin/bench/latest.json] [-profile DIR]
//	gcmbench -compare OLD.json NEW.json
//
// `make bench` runs it at the default size; `make bench BENCH_EVENTS=1000000`
// at full size; `make bench PROFILE=1` also saves CPU profiles of the
// rebuild, append and public read paths under bin/bench/. `make
// bench-compare` compares the last two runs as benchstat compares
// benchmarks: the medians, and a Mann–Whitney U test over the repetitions,
// of the product's figures and of the ratios to their baselines.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"gcmtrack/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "gcmbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var cfg bench.Config
	fs := flag.NewFlagSet("gcmbench", flag.ContinueOnError)
	fs.IntVar(&cfg.Events, "events", 100_000, "size N of the replay stream")
	fs.IntVar(&cfg.Reps, "reps", 3, "repetitions of each figure (the median counts)")
	fs.IntVar(&cfg.NaiveEvents, "naive-events", 20_000, "events the naive projector replays (a prefix of the stream)")
	fs.IntVar(&cfg.CommandEvents, "command-events", 2_000, "membership changes of the replay stream made through the registry service (at most N/10); the rest are published directly")
	fs.IntVar(&cfg.Clients, "clients", 32, "concurrent HTTP clients and raw publishers of the append pairs")
	fs.DurationVar(&cfg.AppendDuration, "append-duration", 0, "measurement window of each append run, after a 1 s warm-up (default 5s)")
	fs.IntVar(&cfg.WriteRate, "write-rate", 200, "API writes per second of the freshness runs")
	fs.DurationVar(&cfg.FreshnessDuration, "freshness-duration", 0, "measurement window of each freshness run, after a 1 s warm-up (default 5s)")
	fs.IntVar(&cfg.AggregateEvents, "aggregate-events", 10_000, "events of the aggregate the load pair reads")
	fs.StringVar(&cfg.Gcmtrack, "gcmtrack", "bin/gcmtrack", "the product binary, run as a child process for the memory pair")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "directory for CPU profiles of extra, untimed runs of the rebuild, append and public read paths; empty: none")
	fs.Uint64Var(&cfg.Seed, "seed", 2018, "seed of the generated data")
	only := fs.String("only", "", "comma-separated scenarios to run ("+strings.Join(bench.Scenarios, ", ")+"); empty: all")
	out := fs.String("out", "bin/bench/latest.json", "where the JSON results go (the file there before is kept as previous.json beside it)")
	compare := fs.Bool("compare", false, "compare two results files, OLD.json NEW.json, instead of measuring")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *compare {
		if fs.NArg() != 2 {
			return errors.New("-compare takes two results files: OLD.json NEW.json")
		}
		return bench.Compare(os.Stdout, fs.Arg(0), fs.Arg(1))
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.Progress = os.Stderr
	rep, err := bench.Run(ctx, cfg)
	if rep == nil {
		return err
	}
	if werr := rep.WriteText(os.Stdout); werr != nil {
		return errors.Join(err, werr)
	}
	if _, serr := os.Stat(*out); serr == nil {
		if rerr := os.Rename(*out, filepath.Join(filepath.Dir(*out), "previous.json")); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	if jerr := rep.WriteJSON(*out); jerr != nil {
		return errors.Join(err, jerr)
	}
	fmt.Printf("\nResults written to %s\n", *out)
	return err
}
