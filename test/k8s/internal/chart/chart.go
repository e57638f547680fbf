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
# generates them; a committed file cannot). README "Kubernetes > Security" shows how:
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
