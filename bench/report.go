package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Target is the bound the ratio product/baseline of a row must meet.
type Target struct {
	// Op is one of ">=", "<=", ">" and "<"; empty means no target.
	Op    string  `json:"op,omitempty"`
	Value float64 `json:"value,omitempty"`
}

// AtLeast is the target ratio ≥ v.
func AtLeast(v float64) Target { return Target{Op: ">=", Value: v} }

// AtMost is the target ratio ≤ v.
func AtMost(v float64) Target { return Target{Op: "<=", Value: v} }

// Below is the target ratio < v.
func Below(v float64) Target { return Target{Op: "<", Value: v} }

// Met reports whether ratio r meets the target. A NaN ratio never does;
// without a target, nothing does.
func (t Target) Met(r float64) bool {
	if math.IsNaN(r) {
		return false
	}
	switch t.Op {
	case ">=":
		return r >= t.Value
	case "<=":
		return r <= t.Value
	case ">":
		return r > t.Value
	case "<":
		return r < t.Value
	}
	return false
}

// String prints the target as "≥ 0.80", or "—" when there is none.
func (t Target) String() string {
	sym := map[string]string{">=": "≥", "<=": "≤", ">": ">", "<": "<"}[t.Op]
	if sym == "" {
		return "—"
	}
	return sym + " " + strconv.FormatFloat(t.Value, 'f', -1, 64)
}

// Row is one measured pair: the product's figure and its baseline's, one
// value per repetition each.
type Row struct {
	// Path names what is measured, such as "rebuild, one-table projection".
	Path string
	// Unit of the values: "events/s", "ms", "MiB", ….
	Unit string
	// Product holds the product's value of each repetition.
	Product []float64
	// Baseline holds the baseline's value of each repetition.
	Baseline []float64
	// BaselineName says what the baseline is.
	BaselineName string
	// BaselineConfigured marks a baseline that is a configured value rather
	// than a measurement (the engine's linger); it is printed as such.
	BaselineConfigured bool
	// Target is the bound on Ratio; the zero Target makes the row
	// informational.
	Target Target
	// Skipped, when set, says why the pair was not measured.
	Skipped string
	// Err, when set, is why the measurement failed.
	Err string
	// Notes are printed under the table.
	Notes []string
	// Extra holds further figures, written to the JSON results only.
	Extra map[string]any
}

// ProductMedian is the median of the product's values.
func (r Row) ProductMedian() float64 { return Median(r.Product) }

// BaselineMedian is the median of the baseline's values.
func (r Row) BaselineMedian() float64 { return Median(r.Baseline) }

// Ratio is the product's median over the baseline's.
func (r Row) Ratio() float64 { return Ratio(r.ProductMedian(), r.BaselineMedian()) }

// Result is "pass", "FAIL", "info" (no target), "error: …" or the reason the
// pair was skipped.
func (r Row) Result() string {
	switch {
	case r.Skipped != "":
		return r.Skipped
	case r.Err != "":
		return "error: " + r.Err
	case r.Target.Op == "":
		return "info"
	case r.Target.Met(r.Ratio()):
		return "pass"
	}
	return "FAIL"
}

// Machine describes where the run happened.
type Machine struct {
	NProc      int    `json:"nproc"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
	PostgreSQL string `json:"postgresql_version"`
	NATSServer string `json:"nats_server_version"`
}

// Report is one run of the harness.
type Report struct {
	Started  time.Time
	Duration time.Duration
	// Events is the size N of the replay stream; Reps the repetitions of
	// each figure.
	Events, Reps int
	Machine      Machine
	// Conditions are the settings every figure was measured under.
	Conditions []string
	// OthersShare is the share of the machine's CPU time that processes
	// other than the harness and PostgreSQL took during the run.
	OthersShare float64
	Rows        []Row
}

// busyWarning is the share of the machine other processes may take before
// the report warns that its figures are disturbed.
const busyWarning = 0.10

// WriteText prints the machine, the conditions, the table and the notes.
func (rep *Report) WriteText(w io.Writer) error {
	m := rep.Machine
	var b strings.Builder
	fmt.Fprintf(&b, "\nMachine: %d CPUs (GOMAXPROCS %d), %s, %s memory, %s\n", m.NProc, m.GOMAXPROCS, m.CPUModel, m.MemTotal, m.Kernel)
	fmt.Fprintf(&b, "Software: %s, PostgreSQL %s, nats-server %s\n", m.GoVersion, m.PostgreSQL, m.NATSServer)
	fmt.Fprintf(&b, "Run: started %s, took %s\n", rep.Started.UTC().Format(time.RFC3339), rep.Duration.Round(time.Second))
	b.WriteString("Conditions:\n")
	for _, c := range rep.Conditions {
		fmt.Fprintf(&b, "  - %s\n", c)
	}
	if rep.OthersShare > busyWarning {
		fmt.Fprintf(&b, "WARNING: other processes took %.0f%% of the machine's CPU time during the run: the figures are disturbed; run again on a quiet machine\n",
			100*rep.OthersShare)
	}
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tUNIT\tPRODUCT\tBASELINE\tMIN–MAX PRODUCT | BASELINE\tRATIO\tTARGET\tRESULT")
	for _, r := range rep.Rows {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t%s\t%s\n", r.Path, r.Target, r.Result())
			continue
		}
		base := FormatValue(r.BaselineMedian())
		if r.BaselineConfigured {
			base += " (config)"
		}
		plo, phi := MinMax(r.Product)
		blo, bhi := MinMax(r.Baseline)
		spread := FormatValue(plo) + "–" + FormatValue(phi) + " | "
		if r.BaselineConfigured {
			spread += "—"
		} else {
			spread += FormatValue(blo) + "–" + FormatValue(bhi)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Path, r.Unit, FormatValue(r.ProductMedian()), base,
			spread, FormatRatio(r.Ratio()), r.Target, r.Result())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes strings.Builder
	notes.WriteString("\nBaselines and notes:\n")
	for _, r := range rep.Rows {
		if r.BaselineName != "" {
			fmt.Fprintf(&notes, "  - %s: baseline = %s\n", r.Path, r.BaselineName)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&notes, "  - %s: %s\n", r.Path, n)
		}
	}
	_, err := io.WriteString(w, notes.String())
	return err
}

// number is a float64 that encodes NaN and infinities as JSON null.
type number float64

// MarshalJSON implements json.Marshaler.
func (n number) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func numbers(xs []float64) []number {
	out := make([]number, len(xs))
	for i, x := range xs {
		out[i] = number(x)
	}
	return out
}

// jsonSafe returns extra with its float64 values, alone or in slices, as
// numbers, which encode NaN as null instead of failing.
func jsonSafe(extra map[string]any) map[string]any {
	if extra == nil {
		return nil
	}
	out := make(map[string]any, len(extra))
	for k, v := range extra {
		switch v := v.(type) {
		case float64:
			out[k] = number(v)
		case []float64:
			out[k] = numbers(v)
		default:
			out[k] = v
		}
	}
	return out
}

// jsonRow is a Row as written to the results file, with its summary.
type jsonRow struct {
	Path               string         `json:"path"`
	Unit               string         `json:"unit,omitempty"`
	Product            []number       `json:"product,omitempty"`
	Baseline           []number       `json:"baseline,omitempty"`
	ProductMedian      number         `json:"product_median"`
	BaselineMedian     number         `json:"baseline_median"`
	Ratio              number         `json:"ratio"`
	BaselineName       string         `json:"baseline_name,omitempty"`
	BaselineConfigured bool           `json:"baseline_configured,omitempty"`
	Target             *Target        `json:"target,omitempty"`
	Result             string         `json:"result"`
	Notes              []string       `json:"notes,omitempty"`
	Extra              map[string]any `json:"extra,omitempty"`
}

// jsonReport is the results file.
type jsonReport struct {
	Started    time.Time `json:"started"`
	Seconds    number    `json:"seconds"`
	Events     int       `json:"events,omitempty"`
	Reps       int       `json:"repetitions,omitempty"`
	Machine    Machine   `json:"machine"`
	Conditions []string  `json:"conditions"`
	Others     number    `json:"other_processes_cpu_share"`
	Rows       []jsonRow `json:"rows"`
}

// WriteJSON writes the report to path, creating its directory.
func (rep *Report) WriteJSON(path string) error {
	rows := make([]jsonRow, 0, len(rep.Rows))
	for _, r := range rep.Rows {
		jr := jsonRow{
			Path: r.Path, Unit: r.Unit, Product: numbers(r.Product), Baseline: numbers(r.Baseline),
			ProductMedian: number(r.ProductMedian()), BaselineMedian: number(r.BaselineMedian()), Ratio: number(r.Ratio()),
			BaselineName: r.BaselineName, BaselineConfigured: r.BaselineConfigured, Result: r.Result(),
			Notes: r.Notes, Extra: jsonSafe(r.Extra),
		}
		if r.Target.Op != "" {
			t := r.Target
			jr.Target = &t
		}
		rows = append(rows, jr)
	}
	doc := jsonReport{
		Started: rep.Started.UTC(), Seconds: number(rep.Duration.Seconds()), Events: rep.Events, Reps: rep.Reps,
		Machine: rep.Machine, Conditions: rep.Conditions, Others: number(rep.OthersShare), Rows: rows,
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
