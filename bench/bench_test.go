package bench

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"gcmtrack/events/catalog"
)

// These tests check the harness's helpers and that the program builds; they
// never start a measurement (`make bench` does).

func TestHarnessBuilds(t *testing.T) {
	out, err := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "gcmbench"), "gcmtrack/bench/cmd/gcmbench").CombinedOutput()
	if err != nil {
		t.Fatalf("go build gcmtrack/bench/cmd/gcmbench: %v\n%s", err, out)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{5, 5, 1}, 5},
	} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("Median reordered its input: %v", c.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	xs := make([]float64, 0, 100)
	for i := 100; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {1, 1}, {50, 50}, {99, 99}, {99.5, 100}, {100, 100}, {150, 100}, {-3, 1},
	} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	// Nearest rank on few values: p99 of 10 values is the largest.
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if got := Percentile(ten, 99); got != 10 {
		t.Errorf("Percentile(1..10, 99) = %v, want 10", got)
	}
	if got := Percentile(ten, 50); got != 5 {
		t.Errorf("Percentile(1..10, 50) = %v, want 5", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile(nil) is not NaN")
	}
}

func TestMinMaxAndRatio(t *testing.T) {
	lo, hi := MinMax([]float64{3, -1, 7})
	if lo != -1 || hi != 7 {
		t.Errorf("MinMax = %v, %v", lo, hi)
	}
	if lo, hi := MinMax(nil); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Error("MinMax(nil) is not NaN")
	}
	if got := Ratio(3, 4); got != 0.75 {
		t.Errorf("Ratio(3, 4) = %v", got)
	}
	for _, c := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}} {
		if !math.IsNaN(Ratio(c[0], c[1])) {
			t.Errorf("Ratio(%v, %v) is not NaN", c[0], c[1])
		}
	}
}

func TestFormatting(t *testing.T) {
	ratios := map[float64]string{
		0.8: "0.80", 1.134: "1.13", 37.318: "37.32", 0.0117: "0.0117", 0.000502: "0.000502", 0: "0.00",
		math.NaN(): "n/a", math.Inf(1): "n/a",
	}
	for in, want := range ratios {
		if got := FormatRatio(in); got != want {
			t.Errorf("FormatRatio(%v) = %q, want %q", in, got, want)
		}
	}
	values := map[float64]string{
		66028.4: "66 028", 1000: "1 000", 1234567: "1 234 567", -4321: "-4 321", 999.4: "999",
		41.26: "41.3", 0.5123: "0.512", 0: "0", math.NaN(): "n/a",
	}
	for in, want := range values {
		if got := FormatValue(in); got != want {
			t.Errorf("FormatValue(%v) = %q, want %q", in, got, want)
		}
	}
	if got := Millis(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("Millis = %v", got)
	}
	if got := PerSecond(500, 250*time.Millisecond); got != 2000 {
		t.Errorf("PerSecond = %v", got)
	}
	if !math.IsNaN(PerSecond(1, 0)) {
		t.Error("PerSecond over no time is not NaN")
	}
}

func TestTargetsAndResults(t *testing.T) {
	for _, c := range []struct {
		t    Target
		r    float64
		met  bool
		text string
	}{
		{AtLeast(0.8), 0.8, true, "≥ 0.8"},
		{AtLeast(0.8), 0.79, false, "≥ 0.8"},
		{AtMost(1.3), 1.3, true, "≤ 1.3"},
		{AtMost(1.3), 1.31, false, "≤ 1.3"},
		{Below(10), 10, false, "< 10"},
		{Below(10), 9.9, true, "< 10"},
		{AtLeast(1), math.NaN(), false, "≥ 1"},
		{Target{}, 1, false, "—"},
	} {
		if got := c.t.Met(c.r); got != c.met {
			t.Errorf("%s met by %v = %v, want %v", c.t, c.r, got, c.met)
		}
		if got := c.t.String(); got != c.text {
			t.Errorf("String() = %q, want %q", got, c.text)
		}
	}
	row := Row{Product: []float64{90, 70, 80}, Baseline: []float64{100, 100, 120}, Target: AtLeast(0.8)}
	if got := row.Ratio(); got != 0.8 {
		t.Errorf("Ratio of medians = %v, want 0.8", got)
	}
	for _, c := range []struct {
		mod  func(*Row)
		want string
	}{
		{func(*Row) {}, "pass"},
		{func(r *Row) { r.Target = AtLeast(0.9) }, "FAIL"},
		{func(r *Row) { r.Target = Target{} }, "info"},
		{func(r *Row) { r.Err = "boom" }, "error: boom"},
		{func(r *Row) { r.Skipped = "not measured yet" }, "not measured yet"},
	} {
		r := row
		c.mod(&r)
		if got := r.Result(); got != c.want {
			t.Errorf("Result() = %q, want %q", got, c.want)
		}
	}
}

func TestReportOutputs(t *testing.T) {
	rep := &Report{
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: time.Minute,
		Machine:    Machine{NProc: 2, GOMAXPROCS: 2, CPUModel: "test CPU"},
		Conditions: []string{"a condition"},
		Rows: []Row{
			{Path: "measured", Unit: "events/s", Product: []float64{2}, Baseline: []float64{math.NaN()}, Target: AtLeast(1),
				Extra: map[string]any{"nan": math.NaN(), "list": []float64{1, math.NaN()}}},
			{Path: "configured", Unit: "ms", Product: []float64{20}, Baseline: []float64{5}, BaselineConfigured: true, Target: Below(10)},
			{Path: "later", Skipped: "not measured yet"},
		},
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"test CPU", "a condition", "5 (config)", "not measured yet", "FAIL", "pass"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	path := filepath.Join(t.TempDir(), "sub", "latest.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Rows []struct {
			Path   string         `json:"path"`
			Ratio  *float64       `json:"ratio"`
			Result string         `json:"result"`
			Extra  map[string]any `json:"extra"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("results are not JSON: %v\n%s", err, b)
	}
	if len(doc.Rows) != 3 || doc.Rows[0].Ratio != nil || doc.Rows[0].Extra["nan"] != nil || doc.Rows[1].Result != "pass" {
		t.Errorf("unexpected results: %s", b)
	}
}

func TestVisibleAfter(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	samples := []sample{{at(0), 1}, {at(1), 1}, {at(2), 3}, {at(3), 3}, {at(4), 5}}
	got := visibleAfter([]written{
		{at(0), 1},  // already visible at the first reading
		{at(1), 2},  // shows at 2 ms
		{at(1), 4},  // shows at 4 ms
		{at(3), 3},  // visible at the reading of 3 ms
		{at(2), 9},  // never shows
		{at(10), 1}, // no reading after it
		{t0.Add(500 * time.Microsecond), 1},
	}, samples)
	want := []float64{0, 1, 3, 0, 0.5}
	if len(got) != len(want) {
		t.Fatalf("visibleAfter = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("visibleAfter = %v, want %v", got, want)
		}
	}
}

func TestAssign(t *testing.T) {
	cat := catalog.Default()
	as := assign(cat, 32)
	if len(as) != 32 {
		t.Fatalf("%d assignments", len(as))
	}
	used := map[string]map[string]bool{}
	for _, a := range as {
		if len(a.states) == 0 {
			t.Fatalf("client on %s has no States", a.slug)
		}
		if used[a.slug] == nil {
			used[a.slug] = map[string]bool{}
		}
		for _, s := range a.states {
			if used[a.slug][s] {
				t.Fatalf("two clients of %s share State %s", a.slug, s)
			}
			used[a.slug][s] = true
		}
	}
	if len(used) != len(cat.ISCMs) {
		t.Errorf("clients cover %d of %d ISCMs", len(used), len(cat.ISCMs))
	}
}

func TestGeneratorKeepsMembershipValid(t *testing.T) {
	cat := catalog.Default()
	g := newGenerator(cat, 1)
	members := make([]map[string]bool, len(cat.ISCMs))
	for i := range members {
		members[i] = map[string]bool{}
	}
	joins := 0
	for range 20_000 {
		d := g.next()
		if d.join == members[d.iscm][d.state] {
			t.Fatalf("%v: join=%v but member=%v", d, d.join, members[d.iscm][d.state])
		}
		members[d.iscm][d.state] = d.join
		if d.join {
			joins++
		}
	}
	if joins < 10_000 || joins > 12_000 {
		t.Errorf("%d joins of 20000 changes: the mix drifted", joins)
	}
	env, err := g.envelope(g.next())
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 350 || len(b) > 550 {
		t.Errorf("envelope of %d bytes, want about 400: %s", len(b), b)
	}
	again := newGenerator(cat, 1)
	first := newGenerator(cat, 1).next()
	if d := again.next(); d != first {
		t.Errorf("the same seed gave %v and %v", d, first)
	}
}

// Compare reads back two results files and reports, row by row, the
// changes a U test finds over five repetitions, and the rows only one has.
func TestCompareResults(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rows []Row) string {
		t.Helper()
		rep := &Report{Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Duration: time.Minute, Events: 1000, Reps: 5,
			Machine: Machine{NProc: 2, CPUModel: "test CPU"}, Rows: rows}
		path := filepath.Join(dir, name)
		if err := rep.WriteJSON(path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	five := func(v float64) []float64 { return []float64{v, v * 1.01, v * 0.99, v * 1.02, v * 0.98} }
	old := write("old.json", []Row{
		// Faster on a faster machine: the product doubles, the ratio stays.
		{Path: "drift", Unit: "events/s", Product: five(100), Baseline: five(200), Target: AtLeast(0.4)},
		// The product improves against the same baseline.
		{Path: "better", Unit: "events/s", Product: five(50), Baseline: five(200), Target: AtLeast(0.4)},
		{Path: "same", Unit: "ms", Product: five(10)},
		{Path: "gone", Unit: "ms", Product: five(1)},
	})
	cur := write("new.json", []Row{
		{Path: "drift", Unit: "events/s", Product: five(200), Baseline: five(400), Target: AtLeast(0.4)},
		{Path: "better", Unit: "events/s", Product: five(100), Baseline: five(200), Target: AtLeast(0.4)},
		{Path: "same", Unit: "ms", Product: five(10)},
		{Path: "added", Unit: "ms", Product: five(1)},
	})
	var out strings.Builder
	if err := Compare(&out, old, cur); err != nil {
		t.Fatal(err)
	}
	lines := map[string][]string{}
	for l := range strings.Lines(out.String()) {
		f := strings.Fields(l)
		if len(f) > 0 {
			lines[f[0]] = f
		}
	}
	// PATH UNIT OLD NEW Δ p= n= OLD-RATIO NEW-RATIO Δ-RATIO p= n= RESULT
	if f := lines["drift"]; len(f) < 13 || f[4] != "+100.00%" || f[5] != "p=0.008" || f[9] != "~" || f[12] != "pass" {
		t.Errorf("drift: %q", f)
	}
	if f := lines["better"]; len(f) < 15 || f[4] != "+100.00%" || f[9] != "+100.00%" || f[12] != "FAIL" || f[13] != "→" || f[14] != "pass" {
		t.Errorf("better: %q", f)
	}
	if f := lines["same"]; len(f) < 6 || f[4] != "~" {
		t.Errorf("same: %q", f)
	}
	for _, want := range []string{"Only in new: added", "Only in old: gone", "1 000 events, 5 repetitions"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("comparison lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "WARNING") {
		t.Errorf("a warning for runs alike:\n%s", out.String())
	}
	if err := Compare(&out, old, filepath.Join(dir, "missing.json")); err == nil {
		t.Error("a missing file compares")
	}
}

func TestAppendCeiling(t *testing.T) {
	window := func(ok int, harness, pg float64) loadResult {
		return loadResult{ok: ok, elapsed: 5 * time.Second, cpu: cpuUse{Wall: 5, Harness: harness, PostgreSQL: pg}}
	}
	// Product: 10,000 writes for 2 CPU-seconds, 200 µs each; HTTP alone
	// 50,000 requests for 3 s, 60 µs; raw publishes 100,000 for 4 s, 40 µs.
	product := []loadResult{window(10_000, 1.5, 0.5), {ok: 5}}
	floor := []loadResult{window(50_000, 3, 0), window(50_000, 3, 0)}
	raw := []loadResult{window(100_000, 3.5, 0.5), window(100_000, 4, 0)}
	rows := appendCeiling(product, floor, raw)
	if len(rows) != 2 {
		t.Fatalf("rows = %d, want 2", len(rows))
	}
	cpuRow, ceil := rows[0], rows[1]
	// The second repetition's product window had no clock: it is left out.
	if len(cpuRow.Product) != 1 || len(ceil.Product) != 1 {
		t.Fatalf("repetitions kept: %d and %d, want 1", len(cpuRow.Product), len(ceil.Product))
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-6*want }
	if !near(cpuRow.Product[0], 200) || !near(cpuRow.Baseline[0], 100) || !near(cpuRow.Ratio(), 2) {
		t.Errorf("CPU row %v / %v (ratio %v), want 200 / 100 (2)", cpuRow.Product, cpuRow.Baseline, cpuRow.Ratio())
	}
	cores := float64(runtime.NumCPU())
	if want := cores * 1e6 / 100; !near(ceil.Product[0], want) || !near(ceil.Baseline[0], 20_000) {
		t.Errorf("ceiling row %v / %v, want %v / 20000", ceil.Product, ceil.Baseline, want)
	}
	if rows := appendCeiling([]loadResult{{ok: 1}}, floor, raw); rows[0].Err == "" || rows[1].Err == "" {
		t.Errorf("without a measured window the rows must carry an error, got %+v", rows)
	}
}

func TestRebuildCeiling(t *testing.T) {
	// 100,000 events: the product took 8 CPU-seconds (80 µs an event), the
	// raw baseline 2 (20 µs) and ran at 50,000 events/s.
	prod := []cpuUse{{Wall: 10, Harness: 5, PostgreSQL: 3}}
	raw := []cpuUse{{Wall: 2, Harness: 1.5, PostgreSQL: 0.5}}
	cpuRow, ceil := rebuildCeiling("rebuild: product", prod, raw, []float64{50_000}, 100_000)
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-6*want }
	if len(cpuRow.Product) != 1 || !near(cpuRow.Product[0], 80) || !near(cpuRow.Baseline[0], 20) {
		t.Fatalf("CPU row %v / %v, want 80 / 20", cpuRow.Product, cpuRow.Baseline)
	}
	cores := float64(runtime.NumCPU())
	if want := cores * 1e6 / 80; len(ceil.Product) != 1 || !near(ceil.Product[0], want) || !near(ceil.Ratio(), want/50_000) {
		t.Fatalf("ceiling %v (ratio %v), want %v (%v)", ceil.Product, ceil.Ratio(), want, want/50_000)
	}
	if !strings.Contains(ceil.Notes[0], "rebuild: product") {
		t.Errorf("the ceiling's note names another row: %q", ceil.Notes[0])
	}
}
