package k8s

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

// The operations kit (docs/kubernetes.md, "Operations kit"): the Grafana
// dashboard and the alert rules in the chart's files/, their copies in
// deploy/grafana and deploy/prometheus, and the chart's ConfigMap and
// PrometheusRule. Every PromQL expression is parsed by Prometheus' own parser
// and may only name series that internal/driver/metrics.go or
// internal/executor/metrics.go register.

var promql = parser.NewParser(parser.Options{})

// metricsSources register every sluice_* series.
var metricsSources = []string{"internal/driver/metrics.go", "internal/executor/metrics.go"}

// knownMetrics reads the series names (Name: "sluice_...") the driver and
// the executor register; histograms also expose _bucket, _sum and _count.
func knownMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*)"(sluice_[a-z0-9_]+)"`)
	histogram := regexp.MustCompile(`prometheus\.HistogramOpts\{\s*Name:\s*"(sluice_[a-z0-9_]+)"`)
	known := map[string]bool{}
	for _, f := range metricsSources {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			known[string(m[1])] = true
		}
		for _, m := range histogram.FindAllSubmatch(b, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				known[string(m[1])+suffix] = true
			}
		}
	}
	for _, must := range []string{"sluice_driver_is_leader", "sluice_batches_total", "sluice_batch_phase_seconds_bucket", "sluice_executor_tasks_running"} {
		if !known[must] {
			t.Fatalf("metric %s not found in %v: has the registration's form changed?", must, metricsSources)
		}
	}
	return known
}

// sourceFigures are the names of sluice_source_metric{name=...} the sources
// report (docs/metrics.md).
var sourceFigures = []string{"minOffsetsBehindLatest", "maxOffsetsBehindLatest", "avgOffsetsBehindLatest",
	"minMsBehindLatest", "maxMsBehindLatest", "avgMsBehindLatest"}

// checkExpr parses a PromQL expression and checks the series it selects:
// each is a known sluice_* metric, and sluice_source_metric is selected by
// one of the figures the sources report.
func checkExpr(known map[string]bool, expr string) error {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return fmt.Errorf("parse %q: %w", expr, err)
	}
	var errs []string
	selectors := 0
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		selectors++
		name := vs.Name
		if name == "" {
			errs = append(errs, fmt.Sprintf("selector %s has no metric name", vs))
			return nil
		}
		if !known[name] {
			errs = append(errs, fmt.Sprintf("metric %s is not registered in %v", name, metricsSources))
		}
		if name == "sluice_source_metric" {
			figure := false
			for _, m := range vs.LabelMatchers {
				if m.Name == "name" {
					for _, f := range sourceFigures {
						figure = figure || m.Matches(f)
					}
				}
			}
			if !figure {
				errs = append(errs, fmt.Sprintf("%s selects no source figure of %v", vs, sourceFigures))
			}
		}
		return nil
	})
	if selectors == 0 {
		errs = append(errs, "selects no series")
	}
	if len(errs) > 0 {
		return fmt.Errorf("%q: %s", expr, strings.Join(errs, "; "))
	}
	return nil
}

// grafanaVars replaces Grafana's variables in a panel's query by values
// PromQL accepts; a variable neither built in nor defined by the dashboard
// is left and makes the parse fail.
func grafanaVars(expr string, defined map[string]string) string {
	for _, b := range []string{"__rate_interval", "__interval", "__range"} {
		expr = strings.ReplaceAll(expr, "${"+b+"}", "5m")
		expr = strings.ReplaceAll(expr, "$"+b, "5m")
	}
	names := make([]string, 0, len(defined))
	for n := range defined {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		expr = strings.ReplaceAll(expr, "${"+n+"}", defined[n])
		expr = strings.ReplaceAll(expr, "$"+n, defined[n])
	}
	return expr
}

type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// TestDashboard: the Grafana dashboard is valid JSON of the dashboard schema
// subset in testdata, every panel queries the dashboard's Prometheus data
// source with PromQL that parses and names registered series only, and the
// copy in deploy/grafana is the chart's file.
func TestDashboard(t *testing.T) {
	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := chart.ChartFile(c, chart.DashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := os.ReadFile(filepath.Join(repoRoot, chart.DashboardCopy))
	if err != nil || !bytes.Equal(copied, raw) {
		t.Errorf("%s is not the chart's %s (%v): run make manifests", chart.DashboardCopy, chart.DashboardFile, err)
	}

	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s is not JSON: %v", chart.DashboardFile, err)
	}
	comp := jsonschema.NewCompiler()
	sch, err := comp.Compile("testdata/grafana-dashboard.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("%s: %v", chart.DashboardFile, err)
	}

	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	known := knownMetrics(t)
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			vars[v.Name] = "prometheus"
		case "query":
			vars[v.Name] = "x"
			q, _ := v.Query.(map[string]any)
			s, _ := q["query"].(string)
			// label_values(metric, label): the metric must exist.
			m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(s)
			if m == nil || !known[m[1]] {
				t.Errorf("variable %s: query %q is not label_values of a registered metric", v.Name, s)
			}
		default:
			t.Errorf("variable %s: type %s not checked", v.Name, v.Type)
		}
	}
	if _, ok := vars["datasource"]; !ok {
		t.Fatalf("no datasource variable: the dashboard would be bound to one Prometheus")
	}

	ids := map[int]bool{}
	var queries, graphs int
	used := map[string]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			graphs++
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if refs[tg.RefID] {
					t.Errorf("panel %q: refId %s twice", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
				queries++
				expr := grafanaVars(tg.Expr, vars)
				if err := checkExpr(known, expr); err != nil {
					t.Errorf("panel %q: %v", p.Title, err)
				}
				if e, err := promql.ParseExpr(expr); err == nil {
					parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
						if vs, ok := n.(*parser.VectorSelector); ok {
							used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(vs.Name, "_bucket"), "_sum"), "_count")] = true
						}
						return nil
					})
				}
			}
		}
	}
	walk(d.Panels)
	if graphs < 10 || queries < graphs {
		t.Errorf("%d panels, %d queries: too few", graphs, queries)
	}
	// The subjects: rates, lag, batch phases, retries, executors.
	for _, m := range []string{"sluice_input_rows_total", "sluice_output_rows_total", "sluice_batches_total", "sluice_source_metric",
		"sluice_batch_phase_seconds", "sluice_task_retries_total", "sluice_job_restarts_total", "sluice_executors",
		"sluice_driver_is_leader", "sluice_executor_task_attempts_total", "sluice_executor_tasks_running"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

// checkRuleFile checks a Prometheus rules file as promtool check rules does:
// strict YAML of rulefmt's fields, unique group names, each rule an alert or
// a record with a parsing expression, durations Prometheus parses, and
// annotation and label templates that parse (with $labels and $value
// defined, as Prometheus does); plus this repository's own rule: only
// registered series, a severity on every alert.
func checkRuleFile(t *testing.T, name string, rf ruleFile, known map[string]bool) (alerts []string) {
	t.Helper()
	if len(rf.Groups) == 0 {
		t.Fatalf("%s: no rule groups", name)
	}
	groups := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("%s: group name %q empty or repeated", name, g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				t.Errorf("%s: group %s interval: %v", name, g.Name, err)
			}
		}
		if len(g.Rules) == 0 {
			t.Errorf("%s: group %s has no rules", name, g.Name)
		}
		for i, r := range g.Rules {
			id := fmt.Sprintf("%s: group %s rule %d (%s%s)", name, g.Name, i, r.Alert, r.Record)
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("%s: one of alert and record is required", id)
			}
			if r.Alert != "" && !model.LabelName(r.Alert).IsValidLegacy() {
				t.Errorf("%s: alert name is not a valid label value for alertname", id)
			}
			if err := checkExpr(known, r.Expr); err != nil {
				t.Errorf("%s: %v", id, err)
			}
			for _, d := range []string{r.For, r.KeepFiringFor} {
				if d == "" {
					continue
				}
				if _, err := model.ParseDuration(d); err != nil {
					t.Errorf("%s: duration %q: %v", id, d, err)
				}
			}
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", id)
			}
			for _, kv := range []map[string]string{r.Labels, r.Annotations} {
				for k, v := range kv {
					if !model.LabelName(k).IsValidLegacy() {
						t.Errorf("%s: invalid label or annotation name %q", id, k)
					}
					// Prometheus' template prefix (rules/alerting.go).
					text := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}" + v
					if _, err := template.New(k).Option("missingkey=zero").Funcs(template.FuncMap{
						"humanize": fmt.Sprint, "humanizeDuration": fmt.Sprint, "humanizePercentage": fmt.Sprint, "query": fmt.Sprint,
						"first": fmt.Sprint, "value": fmt.Sprint, "label": fmt.Sprint, "printf": fmt.Sprintf,
					}).Parse(text); err != nil {
						t.Errorf("%s: template %s: %v", id, k, err)
					}
				}
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: summary and description annotations are required", id)
			}
		}
	}
	return alerts
}

// wantAlerts are the alerts: no leader, executors missing, a job
// retrying, a job failed or stuck, lag growing.
var wantAlerts = []string{"SluiceNoLeader", "SluiceExecutorsMissing", "SluiceJobFailed", "SluiceJobRetrying", "SluiceJobStalled", "SluiceLagGrowing"}

// TestAlertRules: the rules file in deploy/prometheus is the chart's
// PrometheusRule with the default values, and it is a valid rules file;
// values set the thresholds and turn alerts off.
func TestAlertRules(t *testing.T) {
	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	known := knownMetrics(t)
	kit, err := chart.OpsKit(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(repoRoot, chart.AlertRulesCopy))
	if err != nil || !bytes.Equal(got, kit[chart.AlertRulesCopy]) {
		t.Errorf("%s is stale (%v): run make manifests", chart.AlertRulesCopy, err)
	}
	js, err := yaml.YAMLToJSONStrict(got)
	if err != nil {
		t.Fatalf("%s: %v", chart.AlertRulesCopy, err)
	}
	var rf ruleFile
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", chart.AlertRulesCopy, err)
	}
	if alerts := checkRuleFile(t, chart.AlertRulesCopy, rf, known); !slices.Equal(alerts, wantAlerts) {
		t.Errorf("%s: alerts %v, want %v", chart.AlertRulesCopy, alerts, wantAlerts)
	}

	type m = map[string]any
	render := func(t *testing.T, vals m) *prometheusRule {
		t.Helper()
		r, err := chart.Render(c, testRelease, testNamespace, vals)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeManifest(r.Manifest, testNamespace)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs.prometheusRules) != 1 {
			t.Fatalf("%d PrometheusRules", len(objs.prometheusRules))
		}
		for _, pr := range objs.prometheusRules {
			checkRuleFile(t, "PrometheusRule", pr.Spec, known)
			return pr
		}
		return nil
	}
	expr := func(pr *prometheusRule, alert string) (string, string, string) {
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				if r.Alert == alert {
					return r.Expr, r.For, r.Labels["severity"]
				}
			}
		}
		return "", "", ""
	}
	t.Run("thresholds from values", func(t *testing.T) {
		pr := render(t, m{"monitoring": m{"prometheusRule": m{"enabled": true, "labels": m{"release": "prom"},
			"noLeader":         m{"for": "1m", "severity": "page"},
			"executorsMissing": m{"minExecutors": 7},
			"jobFailed":        m{"for": "2m", "severity": "page"},
			"jobRetrying":      m{"window": "3m", "for": "20m"},
			"jobStalled":       m{"window": "1h"},
			"lagGrowing":       m{"window": "30m", "minMs": 5000, "minRecords": 42}}}})
		if pr.Labels["release"] != "prom" {
			t.Errorf("labels %v", pr.Labels)
		}
		checks := []struct{ alert, expr, forDur, severity string }{
			{"SluiceNoLeader", "< 1", "1m", "page"},
			{"SluiceExecutorsMissing", "< 7", "5m", "warning"},
			{"SluiceJobFailed", `state="FAILED"`, "2m", "page"},
			{"SluiceJobRetrying", "[3m]", "20m", "warning"},
			{"SluiceJobStalled", "[1h]", "5m", "critical"},
			{"SluiceLagGrowing", `> 5000`, "15m", "warning"},
			{"SluiceLagGrowing", `> 42`, "15m", "warning"},
			{"SluiceLagGrowing", `[30m]`, "15m", "warning"},
		}
		for _, c := range checks {
			e, f, s := expr(pr, c.alert)
			if !strings.Contains(e, c.expr) || f != c.forDur || s != c.severity {
				t.Errorf("%s: expr %q for %q severity %q, want %q in expr, for %s, severity %s", c.alert, e, f, s, c.expr, c.forDur, c.severity)
			}
		}
	})
	t.Run("expected executors follow the autoscaler", func(t *testing.T) {
		pr := render(t, m{"monitoring": m{"prometheusRule": m{"enabled": true}},
			"executor": m{"replicas": 5, "autoscaling": m{"enabled": true, "minReplicas": 3, "maxReplicas": 6}}})
		if e, _, _ := expr(pr, "SluiceExecutorsMissing"); !strings.HasSuffix(e, "< 3") {
			t.Errorf("expr %q, want < 3 (autoscaling.minReplicas)", e)
		}
		pr = render(t, m{"monitoring": m{"prometheusRule": m{"enabled": true}}, "executor": m{"replicas": 5}})
		if e, _, _ := expr(pr, "SluiceExecutorsMissing"); !strings.HasSuffix(e, "< 5") {
			t.Errorf("expr %q, want < 5 (executor.replicas)", e)
		}
	})
	t.Run("alerts turned off", func(t *testing.T) {
		pr := render(t, m{"monitoring": m{"prometheusRule": m{"enabled": true, "jobStalled": m{"enabled": false}, "lagGrowing": m{"enabled": false}}}})
		var alerts []string
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				alerts = append(alerts, r.Alert)
			}
		}
		if !slices.Equal(alerts, []string{"SluiceNoLeader", "SluiceExecutorsMissing", "SluiceJobFailed", "SluiceJobRetrying"}) {
			t.Errorf("alerts %v", alerts)
		}
	})
}

// checkMonitoring: the dashboard ConfigMap and the PrometheusRule exist
// exactly when enabled, the ConfigMap holds the chart's dashboard and carries
// the sidecar's labels.
func checkMonitoring(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	dashOn, _ := valueAt(vals, "monitoring.dashboard.enabled")
	ruleOn, _ := valueAt(vals, "monitoring.prometheusRule.enabled")
	var dashboards []string
	for name, cm := range objs.configMaps {
		if _, ok := cm.Data["sluice-dashboard.json"]; ok {
			dashboards = append(dashboards, name)
		}
	}
	if (dashOn == true) != (len(dashboards) == 1) || len(dashboards) > 1 {
		t.Fatalf("monitoring.dashboard.enabled %v, dashboard ConfigMaps %v", dashOn, dashboards)
	}
	if (ruleOn == true) != (len(objs.prometheusRules) == 1) {
		t.Fatalf("monitoring.prometheusRule.enabled %v, %d PrometheusRules", ruleOn, len(objs.prometheusRules))
	}
	if dashOn == true {
		c, err := chart.Load(chart.Dir(repoRoot))
		if err != nil {
			t.Fatal(err)
		}
		want, err := chart.ChartFile(c, chart.DashboardFile)
		if err != nil {
			t.Fatal(err)
		}
		cm := objs.configMaps[dashboards[0]]
		if got := cm.Data["sluice-dashboard.json"]; got != strings.TrimRight(string(want), "\n") {
			t.Errorf("ConfigMap %s does not hold %s as it is", cm.Name, chart.DashboardFile)
		}
		labels, _ := valueAt(vals, "monitoring.dashboard.labels")
		for k, v := range labels.(map[string]any) {
			if cm.Labels[k] != v {
				t.Errorf("ConfigMap %s: label %s=%q, want %q", cm.Name, k, cm.Labels[k], v)
			}
		}
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("ConfigMap %s lacks the Grafana sidecar's label grafana_dashboard=1: %v", cm.Name, cm.Labels)
		}
	}
	for _, pr := range objs.prometheusRules {
		var alerts []string
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				alerts = append(alerts, r.Alert)
			}
		}
		if len(alerts) == 0 {
			t.Errorf("PrometheusRule %s has no alerts", pr.Name)
		}
	}
}
