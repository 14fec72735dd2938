package configtest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func promParser() parser.Parser { return parser.NewParser(parser.Options{}) }

// TestAlertRules parses alerts.yml with Prometheus' own rule-file parser,
// which also parses every expression and annotation template.
func TestAlertRules(t *testing.T) {
	path := deployPath("prometheus", "alerts.yml")
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promParser(), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	anchors := readmeAnchors(t)
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a recording rule %q; this file holds alerts only", g.Name, r.Record)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			for _, key := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[key]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, key)
				}
			}
			if sev := r.Labels["severity"]; sev != "warning" && sev != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, sev)
			}
			m := anchorRE.FindStringSubmatch(r.Annotations["runbook"])
			switch {
			case m == nil:
				t.Errorf("alert %s: runbook %q is not deploy/README.md#<anchor>", r.Alert, r.Annotations["runbook"])
			case !anchors[m[1]]:
				t.Errorf("alert %s: deploy/README.md has no section #%s", r.Alert, m[1])
			case m[1] != strings.ToLower(r.Alert):
				t.Errorf("alert %s: runbook points at #%s, not its own section", r.Alert, m[1])
			}
		}
	}
	// The alerts the deployment promises (deploy/README.md, "Alerts").
	for _, want := range []string{"GCMProjectionLagHigh", "GCMProjectionLagGrowing", "GCMProjectionStalled", "GCMNoProjector",
		"GCMDeadLetters", "GCMAppendErrors", "GCMAPIErrorRatioHigh", "GCMMinPositionTimeouts",
		"NATSServerDown", "NATSQuorumLost", "GCMStreamUnderReplicated"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
	// The metrics they watch must be ones the code exports.
	exported := exportedMetrics(t)
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			for _, name := range metricNames(t, r.Expr) {
				if strings.HasPrefix(name, "gcm_") && !exported[name] {
					t.Errorf("alert %s uses %s, which gcmtrack does not export", r.Alert, name)
				}
			}
		}
	}
}

// metricNameRE finds the name of a metric declared with client_golang.
var metricNameRE = regexp.MustCompile(`Name:\s*"(gcm_[a-z0-9_]+)"`)

// exportedMetrics lists the gcm_* metric names declared in the Go code of
// services/ and projections/, with the series names their histograms add.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, dir := range []string{"services", "projections"} {
		err := filepath.WalkDir(filepath.Join(deployDir, "..", dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			for _, m := range metricNameRE.FindAllStringSubmatch(string(readFile(t, path)), -1) {
				names[m[1]] = true
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[m[1]+suffix] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d metric names in the code", len(names))
	}
	return names
}

// metricNames parses expr and returns the metric names it selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	// Grafana's interval variables are not PromQL.
	for _, v := range []string{"$__rate_interval", "$__interval", "$__range"} {
		expr = strings.ReplaceAll(expr, v, "5m")
	}
	e, err := promParser().ParseExpr(expr)
	if err != nil {
		t.Errorf("%q: %v", expr, err)
		return nil
	}
	var names []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok && vs.Name != "" {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

func TestPrometheusConfig(t *testing.T) {
	path := deployPath("prometheus", "prometheus.yml")
	doc := yamlDocs(t, path)[0]
	if !slices.ContainsFunc(digList(doc, "rule_files"), func(v any) bool { return strings.HasSuffix(fmt.Sprint(v), "/alerts.yml") }) {
		t.Errorf("%s: rule_files does not load alerts.yml", path)
	}
	jobs := map[string][]string{}
	for _, sc := range digList(doc, "scrape_configs") {
		name := digString(sc, "job_name")
		for _, static := range digList(sc, "static_configs") {
			for _, target := range digList(static, "targets") {
				jobs[name] = append(jobs[name], fmt.Sprint(target))
			}
		}
	}
	// The alert rules select these job names.
	for job, n := range map[string]int{"gcmtrack-api": 3, "gcmtrack-projector": 2, "nats": 3} {
		if len(jobs[job]) != n {
			t.Errorf("%s: job %s has targets %v, want %d", path, job, jobs[job], n)
		}
	}
	// Targets name services of the compose file.
	compose := composeServices(t)
	for _, job := range []string{"gcmtrack-api", "gcmtrack-projector", "nats"} {
		for _, target := range jobs[job] {
			host, _, _ := strings.Cut(target, ":")
			if _, ok := compose[host]; !ok {
				t.Errorf("%s: target %s is no service of docker-compose.yml", path, target)
			}
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	path := deployPath("grafana", "gcmtrack-dashboard.json")
	var dash struct {
		UID           string `json:"uid"`
		Title         string `json:"title"`
		SchemaVersion int    `json:"schemaVersion"`
		Panels        []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			GridPos *struct {
				H, W, X, Y int
			} `json:"gridPos"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(readFile(t, path), &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 36 {
		t.Errorf("%s: uid %q, title %q, schemaVersion %d", path, dash.UID, dash.Title, dash.SchemaVersion)
	}
	exported := exportedMetrics(t)
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("%s: panel id %d used twice", path, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: panel %q: bad gridPos", path, p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", path, p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range metricNames(t, tg.Expr) {
				used[name] = true
				if strings.HasPrefix(name, "gcm_") && !exported[name] {
					t.Errorf("%s: panel %q uses %s, which gcmtrack does not export", path, p.Title, name)
				}
			}
		}
	}
	for _, want := range []string{"gcm_eventstore_appends_total", "gcm_command_seconds_bucket", "gcm_http_requests_total",
		"gcm_projection_lag_events", "gcm_projection_position", "gcm_projection_batch_events_bucket",
		"gcm_projection_dead_letters_total", "gcm_min_position_wait_seconds_bucket", "gcm_kept_pages_lookups_total", "gcm_kept_pages_bytes"} {
		if !used[want] {
			t.Errorf("%s: no panel shows %s", path, want)
		}
	}
}
