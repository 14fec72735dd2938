package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchmath"
)

// A results file as read back: NaN and infinities were written as null.
type savedReport struct {
	Started string     `json:"started"`
	Seconds *float64   `json:"seconds"`
	Events  int        `json:"events"`
	Reps    int        `json:"repetitions"`
	Machine Machine    `json:"machine"`
	Others  *float64   `json:"other_processes_cpu_share"`
	Rows    []savedRow `json:"rows"`
}

type savedRow struct {
	Path     string     `json:"path"`
	Unit     string     `json:"unit"`
	Product  []*float64 `json:"product"`
	Baseline []*float64 `json:"baseline"`
	Ratio    *float64   `json:"ratio"`
	Target   *Target    `json:"target"`
	Result   string     `json:"result"`
}

// readResults reads a results file written by WriteJSON.
func readResults(path string) (*savedReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep savedReport
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: not a results file: %w", path, err)
	}
	if len(rep.Rows) == 0 {
		return nil, fmt.Errorf("%s: no rows", path)
	}
	return &rep, nil
}

// values are a row's measured values, the nulls left out.
func values(xs []*float64) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if x != nil && !math.IsNaN(*x) {
			out = append(out, *x)
		}
	}
	return out
}

// ratios are a row's per-repetition ratios product/baseline: the two sides
// of a repetition ran one after the other, so the machine's drift between
// runs cancels in each. Nil when the sides do not pair up.
func (r savedRow) ratios() []float64 {
	if len(r.Product) == 0 || len(r.Product) != len(r.Baseline) {
		return nil
	}
	out := make([]float64, 0, len(r.Product))
	for i, p := range r.Product {
		b := r.Baseline[i]
		if p == nil || b == nil || *b == 0 {
			return nil
		}
		out = append(out, *p / *b)
	}
	return out
}

// change compares two samples as benchstat does: the median of each, and
// a Mann–Whitney U test of whether they differ; "~" when the test does not
// find a difference at α = 0.05.
type change struct {
	old, new float64
	delta    string // "+4.20%", "-3.10%" or "~"
	test     string // "p=0.100 n=3"
	warnings []string
}

func compareSamples(old, new []float64) (change, bool) {
	if len(old) == 0 || len(new) == 0 {
		return change{}, false
	}
	th := benchmath.DefaultThresholds
	a, b := benchmath.NewSample(slices.Clone(old), &th), benchmath.NewSample(slices.Clone(new), &th)
	cmp := benchmath.AssumeNothing.Compare(a, b)
	c := change{old: Median(old), new: Median(new), test: cmp.String()}
	c.delta = cmp.FormatDelta(c.old, c.new)
	for _, w := range cmp.Warnings {
		c.warnings = append(c.warnings, w.Error())
	}
	return c, true
}

// Compare writes how the figures of the results file newPath moved from
// those of oldPath, row by row (rows match by path): the product's median
// and the ratio to its baseline, each with a U test over the repetitions.
// Compare ratios between runs on a machine whose speed drifts: the
// product's absolute figures move with it.
func Compare(w io.Writer, oldPath, newPath string) error {
	old, err := readResults(oldPath)
	if err != nil {
		return err
	}
	cur, err := readResults(newPath)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, s := range []struct {
		label, path string
		rep         *savedReport
	}{{"old", oldPath, old}, {"new", newPath, cur}} {
		size := "size and repetitions not recorded"
		if s.rep.Events > 0 {
			size = fmt.Sprintf("%s events, %d repetitions", FormatValue(float64(s.rep.Events)), s.rep.Reps)
		}
		fmt.Fprintf(&b, "%s: %s, started %s, %s; %s, %d CPUs, %s\n", s.label, s.path, s.rep.Started,
			size, s.rep.Machine.GoVersion, s.rep.Machine.NProc, s.rep.Machine.CPUModel)
	}
	var caveats []string
	if old.Events != cur.Events {
		caveats = append(caveats, fmt.Sprintf("the runs replayed streams of different sizes (%d and %d events): figures that depend on N are not comparable", old.Events, cur.Events))
	}
	if old.Machine.CPUModel != cur.Machine.CPUModel || old.Machine.NProc != cur.Machine.NProc {
		caveats = append(caveats, "the runs were on different machines: compare the ratios, not the figures")
	}
	for _, s := range []struct {
		label string
		share *float64
	}{{"old", old.Others}, {"new", cur.Others}} {
		if s.share != nil && *s.share > busyWarning {
			caveats = append(caveats, fmt.Sprintf("other processes took %.0f%% of the machine during the %s run: its figures are disturbed", 100**s.share, s.label))
		}
	}
	for _, c := range caveats {
		fmt.Fprintf(&b, "WARNING: %s\n", c)
	}
	b.WriteString("\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}

	olds := map[string]savedRow{}
	for _, r := range old.Rows {
		olds[r.Path] = r
	}
	warnings := map[string]bool{}
	var onlyNew []string
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tUNIT\tOLD\tNEW\tΔ\tTEST\tOLD RATIO\tNEW RATIO\tΔ RATIO\tTEST\tRESULT")
	for _, r := range cur.Rows {
		o, ok := olds[r.Path]
		if !ok {
			onlyNew = append(onlyNew, r.Path)
			continue
		}
		delete(olds, r.Path)
		cols := []string{r.Path, r.Unit, "—", "—", "", "", "—", "—", "", ""}
		if c, ok := compareSamples(values(o.Product), values(r.Product)); ok {
			cols[2], cols[3], cols[4], cols[5] = FormatValue(c.old), FormatValue(c.new), c.delta, c.test
			for _, w := range c.warnings {
				warnings[w] = true
			}
		}
		if o.Ratio != nil {
			cols[6] = FormatRatio(*o.Ratio)
		}
		if r.Ratio != nil {
			cols[7] = FormatRatio(*r.Ratio)
		}
		if c, ok := compareSamples(o.ratios(), r.ratios()); ok {
			cols[8], cols[9] = c.delta, c.test
			for _, w := range c.warnings {
				warnings[w] = true
			}
		}
		result := r.Result
		if o.Result != r.Result {
			result = o.Result + " → " + r.Result
		}
		fmt.Fprintln(tw, strings.Join(append(cols, result), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes strings.Builder
	notes.WriteString("\nΔ: the change of the median where a Mann–Whitney U test over the repetitions finds one at α = 0.05, else ~.\n" +
		"Δ RATIO compares the per-repetition ratios product/baseline, whose sides ran one after the other.\n")
	for _, w := range slices.Sorted(maps.Keys(warnings)) {
		fmt.Fprintf(&notes, "Note: %s (BENCH_REPS sets the repetitions).\n", w)
	}
	for _, p := range onlyNew {
		fmt.Fprintf(&notes, "Only in new: %s\n", p)
	}
	for _, r := range old.Rows {
		if _, ok := olds[r.Path]; ok {
			fmt.Fprintf(&notes, "Only in old: %s\n", r.Path)
		}
	}
	_, err = io.WriteString(w, notes.String())
	return err
}
