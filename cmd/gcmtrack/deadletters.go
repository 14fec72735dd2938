package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gcmtrack/projections/engine"
)

const deadLettersUsage = `usage: gcmtrack deadletters list  [flags] [--projection NAME] [--unresolved]
       gcmtrack deadletters retry [flags] [--projection NAME] [POSITION ...]

list prints the events projections parked because they could not apply
them. retry re-applies the unresolved ones of the active builds (those at
the given positions, or all), one transaction per event, after a fix: a
binary that can now decode or apply them. A retried event is applied as of
now, after the events that followed it; where a read model depends on the
order of events, gcmtrack rebuild is the safe remedy.`

func cmdDeadLetters(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "retry") {
		fmt.Fprintln(os.Stderr, deadLettersUsage)
		return errors.New("deadletters: want list or retry")
	}
	sub := args[0]
	var cfg config
	fs := flag.NewFlagSet("deadletters "+sub, flag.ContinueOnError)
	cfg.bind(fs)
	projection := fs.String("projection", "", "only this projection's (registry, records)")
	unresolved := fs.Bool("unresolved", false, "list only the events not yet re-applied (list)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), deadLettersUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	var positions []uint64
	for _, a := range fs.Args() {
		if sub == "list" {
			return fmt.Errorf("deadletters list takes no positions (got %q)", a)
		}
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("deadletters retry: %q is not a stream position", a)
		}
		positions = append(positions, n)
	}
	log := cfg.logger()
	cluster, pool, err := openDatabase(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopCluster(cluster, log)
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	if sub == "list" {
		letters, err := engine.ListDeadLetters(ctx, pool, engine.DeadLetterFilter{Projection: *projection, Unresolved: *unresolved})
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "POSITION\tPROJECTION\tGENERATION\tTYPE\tPARKED_AT\tRESOLVED\tERROR")
		open := 0
		for _, d := range letters {
			resolved := "no"
			if d.ResolvedAt != nil {
				resolved = d.ResolvedAt.UTC().Format(time.RFC3339)
			} else {
				open++
			}
			gen := strconv.Itoa(d.Generation)
			if d.BuildStatus != "active" {
				gen += " (" + d.BuildStatus + ")"
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Position, d.Projection, gen, d.EventType,
				d.ParkedAt.UTC().Format(time.RFC3339), resolved, oneLine(d.Error))
		}
		if err := w.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%d parked events, %d unresolved\n", len(letters), open)
		return nil
	}

	eng := engine.New(pool, nil, engine.Config{Logger: log}, projectionSet()...)
	results, err := eng.RetryDeadLetters(ctx, *projection, positions)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POSITION\tPROJECTION\tTYPE\tRESULT")
	failed := 0
	for _, r := range results {
		result := "applied"
		switch {
		case r.Err != nil:
			result = "failed: " + oneLine(r.Err.Error())
			failed++
		case r.ResolvedAt == nil:
			result = "resolved meanwhile by another retry"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", r.Position, r.Projection, r.EventType, result)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "no unresolved parked events to retry")
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d parked events still cannot be applied; see their errors above", failed, len(results))
	}
	return nil
}

// oneLine keeps a message on one table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
