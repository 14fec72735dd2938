package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured and found.
type Report struct {
	Config  Config
	WorkDir string // kept for a failing run or on request

	SetupTook time.Duration
	Took      time.Duration

	// The load.
	Writes, Acked, Refused, Unresolved int
	Retried, Ambiguous, Skipped        int
	RefusalSamples                     []string
	Latencies                          []time.Duration

	// The faults.
	Faults    []Fault
	Takeovers []time.Duration

	// The stream and the read models.
	StreamLast   uint64
	StreamEvents int
	Aggregates   int
	CatchUp      time.Duration
	RebuildTook  time.Duration
	ReadModels   []string
	Parked       int
	BackupEvents int
	BackupBytes  int64
	BackupTook   time.Duration
	RestoreTook  time.Duration

	// Findings: any of these fails the run.
	AckedInStream         int
	Lost                  int
	Misplaced             int
	Duplicates            int
	RefusedWritten        int
	RefusedAfterAmbiguous int
	UnresolvedWritten     int // not a failure: the client never learnt the outcome
	ChainBreaks           int
	ReadModelDiffs        int
	Failures              []string
	Errors                []string
}

func (r *Report) fail(format string, args ...any) {
	if len(r.Failures) < 50 {
		r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
	}
}

// Passed reports whether the run found nothing wrong: no acknowledged write
// lost, misplaced or doubled, no refused write written, version chains and
// read models intact, every fault recovered from.
func (r *Report) Passed() bool {
	if len(r.Failures) > 0 || len(r.Errors) > 0 || r.Lost+r.Misplaced+r.Duplicates+r.RefusedWritten+r.ChainBreaks+r.ReadModelDiffs > 0 {
		return false
	}
	for _, f := range r.Faults {
		if f.Err != "" {
			return false
		}
	}
	return r.Writes > 0 && r.AckedInStream == r.Acked
}

// durations summarises a sample as min / median / max.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	return fmt.Sprintf("%s / %s / %s", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]))
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func check(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

// Print writes the summary tables.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nGCM Tracker chaos run: load %s at %.0f writes/s, a fault every %s, seed %d; run time %s (set-up %s)\n",
		r.Config.Duration, r.Config.Rate, r.Config.FaultEvery, r.Config.Seed, r.Took.Round(time.Second), r.SetupTook.Round(100*time.Millisecond))

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWRITES\t")
	fmt.Fprintf(tw, "  sent\t%d\n", r.Writes)
	fmt.Fprintf(tw, "  acknowledged (2xx)\t%d\n", r.Acked)
	fmt.Fprintf(tw, "  refused (final 4xx)\t%d\n", r.Refused)
	fmt.Fprintf(tw, "  unresolved (no answer within %s)\t%d (with an event: %d)\n", opDeadline, r.Unresolved, r.UnresolvedWritten)
	fmt.Fprintf(tw, "  retried with the same key\t%d (after an attempt without an answer: %d)\n", r.Retried, r.Ambiguous)
	fmt.Fprintf(tw, "  time to a definite answer p50 / p99 / max\t%s / %s / %s\n",
		percentile(r.Latencies, 0.5).Round(time.Millisecond), percentile(r.Latencies, 0.99).Round(time.Millisecond), percentile(r.Latencies, 1).Round(time.Millisecond))
	tw.Flush()
	for _, s := range r.RefusalSamples {
		fmt.Fprintf(w, "    refused: %s\n", s)
	}

	fmt.Fprintln(w, "\nFAULTS")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  KIND\tCOUNT\tRECOVERY min / median / max\tFAILED")
	for _, kind := range faultOrder {
		var ds []time.Duration
		failed := 0
		for _, f := range r.Faults {
			if f.Kind != kind {
				continue
			}
			if f.Err != "" {
				failed++
				continue
			}
			ds = append(ds, f.Took)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\n", kind, len(ds)+failed, durations(ds), failed)
	}
	tw.Flush()
	fmt.Fprintf(w, "  projector takeover (kill -9 of the leader → the standby leads and its checkpoints move): %s over %d takeovers\n",
		durations(r.Takeovers), len(r.Takeovers))
	for _, f := range r.Faults {
		line := fmt.Sprintf("    %6.1fs  %-22s %-12s %8s %s", f.At.Seconds(), f.Kind, f.Target, f.Took.Round(10*time.Millisecond), f.Detail)
		if f.Err != "" {
			line += "  FAILED: " + f.Err
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}

	fmt.Fprintln(w, "\nCHECKS")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  stream\t%d events, last position %d, %d aggregates\t\n", r.StreamEvents, r.StreamLast, r.Aggregates)
	fmt.Fprintf(tw, "  acknowledged writes in the stream exactly once, at their position\t%d of %d\t%s\n", r.AckedInStream, r.Acked, check(r.AckedInStream == r.Acked && r.Lost == 0 && r.Misplaced == 0))
	fmt.Fprintf(tw, "  lost / misplaced acknowledged writes\t%d / %d\t%s\n", r.Lost, r.Misplaced, check(r.Lost+r.Misplaced == 0))
	fmt.Fprintf(tw, "  message ids on more than one event\t%d\t%s\n", r.Duplicates, check(r.Duplicates == 0))
	fmt.Fprintf(tw, "  refused writes that left an event\t%d (after an unanswered attempt: %d)\t%s\n", r.RefusedWritten, r.RefusedAfterAmbiguous, check(r.RefusedWritten == 0))
	fmt.Fprintf(tw, "  per-aggregate version chain breaks\t%d\t%s\n", r.ChainBreaks, check(r.ChainBreaks == 0))
	fmt.Fprintf(tw, "  read models equal a fresh rebuild\t%s (rebuilt in %s)\t%s\n", strings.Join(r.ReadModels, "; "), r.RebuildTook.Round(100*time.Millisecond), check(r.ReadModelDiffs == 0 && len(r.ReadModels) > 0))
	fmt.Fprintf(tw, "  projectors caught up after the load\tin %s\t\n", r.CatchUp.Round(100*time.Millisecond))
	fmt.Fprintf(tw, "  parked events (unresolved dead letters)\t%d\t\n", r.Parked)
	fmt.Fprintf(tw, "  gcmtrack backup as user backup, restore into a fresh NATS\t%d events, %d bytes, backup %s, restore %s\t%s\n",
		r.BackupEvents, r.BackupBytes, r.BackupTook.Round(10*time.Millisecond), r.RestoreTook.Round(10*time.Millisecond), check(r.BackupEvents == r.StreamEvents && r.StreamEvents > 0))
	tw.Flush()

	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nERROR: %s\n", e)
	}
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "\nFINDINGS (first %d)\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  - %s\n", f)
		}
	}
	if r.WorkDir != "" {
		fmt.Fprintf(w, "\nlogs and stores kept in %s\n", r.WorkDir)
	}
	if r.Passed() {
		fmt.Fprintln(w, "\nRESULT: PASS")
	} else {
		fmt.Fprintln(w, "\nRESULT: FAIL")
	}
}
