// Package chart renders the Sluice Helm chart with the Helm SDK, exactly as
// `helm template` and `helm install` do (values.yaml merged with the given
// values, checked against values.schema.json, templates executed), and builds
// the plain manifests of deploy/k8s/manifests from it.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"sigs.k8s.io/yaml"
)

// KubeVersion is the Kubernetes version rendering assumes when no cluster is
// asked: the version of the kube-apiserver the tests run, so that a render and
// an install see the same capabilities.
var KubeVersion = chartutil.KubeVersion{Version: "v1.35.4", Major: "1", Minor: "35"}

// Dir returns the chart directory (deploy/k8s/sluice) from the root of the
// repository.
func Dir(repoRoot string) string { return filepath.Join(repoRoot, "deploy", "k8s", "sluice") }

// Load reads the chart directory.
func Load(dir string) (*chart.Chart, error) {
	c, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return c, nil
}

// Rendered is the output of one render.
type Rendered struct {
	// Manifest is every object, as YAML documents separated by "---", each
	// preceded by a "# Source:" comment naming its template.
	Manifest string
	// Notes is the rendered NOTES.txt.
	Notes string
	// Values are the values the templates saw: values.yaml with the given
	// values merged over it.
	Values map[string]any
}

// Render renders c for release in namespace with vals over the chart's
// values.yaml, without a cluster. Values that values.schema.json refuses and
// templates that call fail are errors carrying Helm's message.
func Render(c *chart.Chart, release, namespace string, vals map[string]any) (*Rendered, error) {
	install := action.NewInstall(&action.Configuration{})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = release
	install.Namespace = namespace
	kv := KubeVersion
	install.KubeVersion = &kv
	if vals == nil {
		vals = map[string]any{}
	}
	rel, err := install.Run(c, vals)
	if err != nil {
		return nil, err
	}
	merged, err := chartutil.CoalesceValues(c, vals)
	if err != nil {
		return nil, fmt.Errorf("merge values: %w", err)
	}
	return &Rendered{Manifest: rel.Manifest, Notes: rel.Info.Notes, Values: merged}, nil
}

// ReadValues reads a YAML values file into the map Render takes.
func ReadValues(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal(b, &vals); err != nil {
		return nil, fmt.Errorf("values file %s: %w", path, err)
	}
	return vals, nil
}

// Manifest file, release and namespace of the plain manifests.
const (
	ManifestsFile      = "sluice.yaml"
	ManifestsRelease   = "sluice"
	ManifestsNamespace = "sluice"
)

// ManifestsDir returns deploy/k8s/manifests from the root of the repository.
func ManifestsDir(repoRoot string) string {
	return filepath.Join(repoRoot, "deploy", "k8s", "manifests")
}

// ManifestsValues are the values of the plain manifests: the chart's defaults
// except that certificates, tokens and the secrets key come from Secrets the
// user creates. Generated ones would differ at every render, and, committed,
// would be the same for everyone who applies the file.
func ManifestsValues() map[string]any {
	return map[string]any{
		"tls":     map[string]any{"source": "existing"},
		"auth":    map[string]any{"existingSecret": ManifestsRelease + "-auth"},
		"secrets": map[string]any{"keySecret": ManifestsRelease + "-secrets-key"},
	}
}

// Manifests renders the plain manifests for users without Helm: the chart
// with its default values (bundled single-member etcd) and ManifestsValues as
// release "sluice" in namespace "sluice", preceded by that Namespace.
func Manifests(c *chart.Chart) ([]byte, error) {
	r, err := Render(c, ManifestsRelease, ManifestsNamespace, ManifestsValues())
	if err != nil {
		return nil, fmt.Errorf("render chart with default values: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Sluice %s for Kubernetes without Helm: the chart deploy/k8s/sluice %s rendered with its
# default values (2 drivers, 2 executors, a single-member etcd, TLS, tokens, NetworkPolicies) as
# release %q in namespace %q, except that the Secrets below are yours to create first (the chart
# generates them; a committed file cannot). docs/kubernetes.md, "Credentials and security", shows how:
#   sluice-driver-tls       tls.crt, tls.key (names sluice-driver, localhost), ca.crt
#   sluice-executor-tls     ca.crt, sluice-executor-0.crt/.key, sluice-executor-1.crt/.key (CN = pod name)
#   sluice-etcd-tls         tls.crt, tls.key (*.sluice-etcd.sluice.svc; server and client auth), ca.crt
#   sluice-etcd-client-tls  tls.crt, tls.key, ca.crt (signed by the etcd CA)
#   sluice-auth             auth.yaml (token digests and roles)
#   sluice-secrets-key      secrets.key (head -c32 /dev/urandom | base64)
# Generated by "make manifests"; do not edit. Apply with:
#   kubectl apply -f deploy/k8s/manifests/%s
`, c.Metadata.AppVersion, c.Metadata.Version, ManifestsRelease, ManifestsNamespace, ManifestsFile)
	fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ManifestsNamespace)
	b.WriteString(strings.TrimLeft(r.Manifest, "\n"))
	if !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// Files of the operations kit: the chart's files/ are their single source;
// `make manifests` copies them to deploy/ for use without the chart.
const (
	DashboardFile  = "files/sluice-dashboard.json"
	AlertsFile     = "files/sluice-alerts.yaml"
	DashboardCopy  = "deploy/grafana/sluice-dashboard.json"
	AlertRulesCopy = "deploy/prometheus/sluice-alerts.yaml"
)

// ChartFile returns a file of the chart's files/ (name relative to the chart).
func ChartFile(c *chart.Chart, name string) ([]byte, error) {
	for _, f := range c.Files {
		if f.Name == name {
			return f.Data, nil
		}
	}
	return nil, fmt.Errorf("chart has no %s", name)
}

// OpsKit returns the operations kit's files outside the chart, by path from
// the root of the repository: the Grafana dashboard, byte for byte the
// chart's, and the alert rules as the chart's PrometheusRule holds them with
// the default values (release and namespace "sluice"), as a Prometheus rules
// file.
func OpsKit(c *chart.Chart) (map[string][]byte, error) {
	dash, err := ChartFile(c, DashboardFile)
	if err != nil {
		return nil, err
	}
	r, err := Render(c, ManifestsRelease, ManifestsNamespace, map[string]any{
		"monitoring": map[string]any{"prometheusRule": map[string]any{"enabled": true}},
	})
	if err != nil {
		return nil, fmt.Errorf("render the PrometheusRule with default values: %w", err)
	}
	spec, err := PrometheusRuleSpec(r.Manifest)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Sluice alert rules for Prometheus (rule_files), with the default thresholds of the Helm chart
# deploy/k8s/sluice %s (2 executors expected). Generated by "make manifests" from
# deploy/k8s/sluice/%s; do not edit: change the chart's file or, with the chart, the values
# monitoring.prometheusRule.*. Check with: promtool check rules %s
`, c.Metadata.Version, AlertsFile, AlertRulesCopy)
	b.Write(spec)
	return map[string][]byte{DashboardCopy: dash, AlertRulesCopy: b.Bytes()}, nil
}

// PrometheusRuleSpec returns the spec of the one PrometheusRule of a rendered
// manifest as the text the template wrote (comments and order kept), which is
// a Prometheus rules file.
func PrometheusRuleSpec(manifest string) ([]byte, error) {
	var found []string
	for _, doc := range strings.Split(manifest, "\n---\n") {
		if !strings.Contains(doc, "\nkind: PrometheusRule\n") {
			continue
		}
		_, spec, ok := strings.Cut(doc, "\nspec:\n")
		if !ok {
			return nil, fmt.Errorf("PrometheusRule without spec")
		}
		var out strings.Builder
		for _, line := range strings.Split(strings.TrimRight(spec, "\n"), "\n") {
			if line != "" && !strings.HasPrefix(line, "  ") {
				return nil, fmt.Errorf("PrometheusRule spec line %q is not indented", line)
			}
			out.WriteString(strings.TrimPrefix(line, "  "))
			out.WriteByte('\n')
		}
		found = append(found, out.String())
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d PrometheusRules rendered, want 1", len(found))
	}
	return []byte(found[0]), nil
}
