package k8s

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	helmchart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/release"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

// TestAPIServer applies the chart to a real kube-apiserver: every value set
// through server-side apply with strict field validation (dry run), values
// that only the apiserver can refuse, and a real helm install, upgrade and
// rollback and uninstall through the Helm SDK.
func TestAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	srv := startAPIServer(t)
	// A plain create of a misspelled field draws a warning (see below);
	// client-go would log it to stderr.
	srv.config.WarningHandler = rest.NoWarnings{}
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(srv.config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(srv.config)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(srv.config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	if v, err := dc.ServerVersion(); err != nil || v.GitVersion != kubeVersion {
		t.Fatalf("server version %v (%v), want %s", v, err, kubeVersion)
	}

	for _, ns := range []string{testNamespace, "sluice-helm"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	installCRD(t, ctx, dyn, mapper, "testdata/servicemonitor-crd.yaml", serviceMonitorGVK)
	installCRD(t, ctx, dyn, mapper, "testdata/podmonitor-crd.yaml", podMonitorGVK)
	installCRD(t, ctx, dyn, mapper, "testdata/certificate-crd.yaml", certificateGVK)
	installCRD(t, ctx, dyn, mapper, "testdata/prometheusrule-crd.yaml", prometheusRuleGVK)

	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	sets := loadValueSets(t)

	t.Run("server-side apply", func(t *testing.T) {
		// No value set enables the executors' PodMonitor; the default one
		// with it on (TLS on) and the one with TLS off cover it.
		applied := append([]valueSet(nil), sets...)
		for _, set := range sets {
			if set.name == "default" || set.name == "tls-off" {
				applied = append(applied, valueSet{name: set.name + "+podMonitor", path: set.path, vals: withPodMonitor(t, set.vals)})
			}
		}
		for _, set := range applied {
			t.Run(set.name, func(t *testing.T) {
				r, err := chart.Render(c, testRelease, testNamespace, set.vals)
				if err != nil {
					t.Fatal(err)
				}
				objs, err := decodeManifest(r.Manifest, testNamespace)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range objs.all {
					if err := applyDryRun(ctx, dyn, mapper, o); err != nil {
						t.Errorf("%s %s (%s): %v", o.gvk.Kind, o.name, o.source, err)
					}
				}
			})
		}
	})

	// Values whose shape the schema leaves to Kubernetes (env, volumes,
	// tolerations, labels are Kubernetes objects) pass rendering; the
	// apiserver must refuse them. A misspelled field is the case `helm lint`
	// and a plain create (Helm's) let through with a warning at most.
	t.Run("refused by the apiserver", func(t *testing.T) {
		type m = map[string]any
		tests := []struct {
			name string
			vals m
			kind string // the kind of object that must be refused ("|" separates several)
			want string
			// unknownField: a plain create, as Helm does it, with the
			// apiserver's default field validation (Warn) accepts the object
			// and drops the field; server-side apply refuses it.
			unknownField bool
		}{
			{"misspelled env field", m{"extraEnv": []any{m{"name": "AWS_REGION", "valu": "eu-west-1"}}},
				"Deployment|StatefulSet", `env[name="AWS_REGION"].valu: field not declared in schema`, true},
			{"mount of a missing volume", m{"executor": m{"extraVolumeMounts": []any{m{"name": "out", "mountPath": "/out"}}}},
				"StatefulSet", `volumeMounts[2].name: Not found: "out"`, false},
			{"bad toleration operator", m{"driver": m{"tolerations": []any{m{"key": "a", "operator": "Sometimes"}}}},
				"Deployment", `tolerations[0].operator: Unsupported value: "Sometimes"`, false},
			{"bad pod label", m{"executor": m{"podLabels": m{"team!": "data"}}},
				"StatefulSet", `spec.template.labels: Invalid value: "team!"`, false},
			{"bad node selector", m{"driver": m{"nodeSelector": m{"bad key!": "x"}}},
				"Deployment", `nodeSelector: Invalid value: "bad key!"`, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r, err := chart.Render(c, testRelease, testNamespace, tt.vals)
				if err != nil {
					t.Fatalf("render: %v (these values pass the schema; only the apiserver refuses them)", err)
				}
				objs, err := decodeManifest(r.Manifest, testNamespace)
				if err != nil {
					// The typed decoder is strict too; either refusal is
					// fine, but the apiserver's is the one under test.
					t.Logf("strict decoding refused it too: %v", err)
				}
				var refused []string
				for _, o := range allObjects(t, r.Manifest, objs) {
					isKind := slicesContains(strings.Split(tt.kind, "|"), o.gvk.Kind)
					if tt.unknownField && isKind {
						if err := createDryRun(ctx, dyn, mapper, o); err != nil {
							t.Errorf("%s %s: a plain create refused it too (%v); this case no longer shows why the tests apply strictly", o.gvk.Kind, o.name, err)
						}
					}
					if err := applyDryRun(ctx, dyn, mapper, o); err != nil {
						if !isKind || !strings.Contains(err.Error(), tt.want) {
							t.Errorf("%s %s refused with %v; want only a %s refused with %q", o.gvk.Kind, o.name, err, tt.kind, tt.want)
						}
						refused = append(refused, o.gvk.Kind+" "+o.name)
					}
				}
				if len(refused) == 0 {
					t.Errorf("the apiserver accepted every object; want a %s refused with %q", tt.kind, tt.want)
				}
			})
		}
	})

	t.Run("helm install, upgrade, rollback, uninstall", func(t *testing.T) {
		helmLifecycle(t, ctx, srv, cs, c, sets)
	})
}

// allObjects returns the decoded objects, or, when strict decoding refused
// the render, the raw documents so that the apiserver sees them anyway.
func allObjects(t *testing.T, manifest string, objs *objects) []object {
	t.Helper()
	if objs != nil {
		return objs.all
	}
	var out []object
	for _, doc := range strings.Split(manifest, "\n---") {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		var om struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(js, &tm); err != nil || tm.Kind == "" {
			continue
		}
		_ = json.Unmarshal(js, &om)
		out = append(out, object{source: sourceOf([]byte(doc)), gvk: tm.GroupVersionKind(), name: om.Metadata.Name, json: js})
	}
	return out
}

// applyDryRun server-side applies o without persisting it: the apiserver runs
// defaulting, validation and admission, and with FieldValidation Strict an
// unknown or duplicated field is an error rather than a warning.
func applyDryRun(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, o object) error {
	return applyDryRunWith(ctx, dyn, mapper, o, metav1.FieldValidationStrict)
}

func applyDryRunWith(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, o object, validation string) error {
	ri, err := resourceFor(dyn, mapper, o)
	if err != nil {
		return err
	}
	force := true
	_, err = ri.Patch(ctx, o.name, types.ApplyPatchType, o.json, metav1.PatchOptions{
		DryRun:          []string{metav1.DryRunAll},
		FieldManager:    "sluice-chart-test",
		FieldValidation: validation,
		Force:           &force,
	})
	return err
}

// createDryRun creates o the way Helm does (a POST, no field validation
// option, so the apiserver's default applies) without persisting it.
func createDryRun(ctx context.Context, dyn dynamic.Interface, mapper meta.RESTMapper, o object) error {
	ri, err := resourceFor(dyn, mapper, o)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(o.json); err != nil {
		return err
	}
	_, err = ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// resourceFor is the dynamic client of o's resource, in o's namespace when
// the resource is namespaced.
func resourceFor(dyn dynamic.Interface, mapper meta.RESTMapper, o object) (dynamic.ResourceInterface, error) {
	m, err := mapper.RESTMapping(o.gvk.GroupKind(), o.gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", o.gvk, err)
	}
	if m.Scope.Name() != meta.RESTScopeNameNamespace {
		return dyn.Resource(m.Resource), nil
	}
	var om struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(o.json, &om); err != nil {
		return nil, err
	}
	return dyn.Resource(m.Resource).Namespace(om.Metadata.Namespace), nil
}

// installCRD creates a CRD subset of testdata (ServiceMonitor, cert-manager's
// Certificate) and waits until the apiserver serves the kind.
func installCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface, mapper *restmapper.DeferredDiscoveryRESTMapper, file string, gvk schema.GroupVersionKind) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dyn.Resource(crds).Create(ctx, u, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
		t.Fatalf("create %s CRD: %v", gvk.Kind, err)
	}
	err = waitFor(ctx, gvk.Kind+" CRD served", func(ctx context.Context) (bool, error) {
		mapper.Reset()
		_, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// helmLifecycle installs the chart with Helm into the apiserver, upgrades it
// through value sets that add and remove objects, rolls it back, installs a
// second release with everything on next to it, and uninstalls both, checking
// what the apiserver holds after each step.
func helmLifecycle(t *testing.T, ctx context.Context, srv *apiServer, cs kubernetes.Interface, c *helmchart.Chart, sets []valueSet) {
	const ns = "sluice-helm"
	vals := map[string]map[string]any{}
	for _, s := range sets {
		vals[s.name] = s.vals
	}
	cfg := helmConfig(t, srv, ns)

	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace, install.Timeout = "sluice", ns, 2*time.Minute
	rel, err := install.RunWithContext(ctx, c, vals["default"])
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	if rel.Info.Status != release.StatusDeployed || !strings.Contains(rel.Info.Notes, "port-forward svc/sluice-driver") {
		t.Fatalf("release status %s, notes:\n%s", rel.Info.Status, rel.Info.Notes)
	}
	drv, err := cs.AppsV1().Deployments(ns).Get(ctx, "sluice-driver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *drv.Spec.Replicas != 2 || drv.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("stored driver Deployment: replicas %d, readiness %+v", *drv.Spec.Replicas, drv.Spec.Template.Spec.Containers[0].ReadinessProbe)
	}
	mustExist(t, ctx, cs, ns, "StatefulSet", "sluice-etcd", true)
	mustExist(t, ctx, cs, ns, "Service", "sluice-etcd", true)
	mustExist(t, ctx, cs, ns, "PodDisruptionBudget", "sluice-executor", true)
	mustExist(t, ctx, cs, ns, "HorizontalPodAutoscaler", "sluice-executor", false)
	mustExist(t, ctx, cs, ns, "StatefulSet", "sluice-executor", true)
	mustExist(t, ctx, cs, ns, "NetworkPolicy", "sluice-driver", true)

	// The generated CAs, certificates, tokens and secrets key are read back
	// (lookup) by every upgrade: the same values keep every byte.
	generated := []string{"sluice-ca", "sluice-etcd-ca", "sluice-driver-tls", "sluice-executor-tls", "sluice-etcd-tls",
		"sluice-etcd-client-tls", "sluice-tokens", "sluice-auth", "sluice-secrets-key"}
	first := secretsData(t, ctx, cs, ns, generated)
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace, upgrade.Timeout = ns, 2*time.Minute
	if rel, err = upgrade.RunWithContext(ctx, "sluice", c, vals["default"]); err != nil || rel.Version != 2 {
		t.Fatalf("helm upgrade with the same values: %v", err)
	}
	again := secretsData(t, ctx, cs, ns, generated)
	for _, name := range generated {
		if !equalData(first[name], again[name]) {
			t.Errorf("Secret %s changed on an upgrade with the same values", name)
		}
	}
	checkStoredTokens(t, again["sluice-tokens"], again["sluice-auth"]["auth.yaml"])

	// Upgrade 1: executors autoscaled. The HPA appears and the StatefulSet
	// no longer pins a replica count of its own in the chart. The executor
	// Secret gains a certificate per possible executor; the CA, the other
	// certificates, the tokens and the key stay.
	rel, err = upgrade.RunWithContext(ctx, "sluice", c, vals["autoscaling"])
	if err != nil {
		t.Fatalf("helm upgrade to autoscaling: %v", err)
	}
	scaled := secretsData(t, ctx, cs, ns, generated)
	for _, name := range generated {
		if same := equalData(first[name], scaled[name]); same != (name != "sluice-executor-tls") {
			t.Errorf("Secret %s unchanged %v after the upgrade to autoscaling", name, same)
		}
	}
	if n := len(scaled["sluice-executor-tls"]); n != 1+2*20 {
		t.Errorf("executor Secret has %d keys after scaling to at most 20 executors, want ca.crt and 20 pairs", n)
	}
	if string(scaled["sluice-executor-tls"]["ca.crt"]) != string(first["sluice-ca"]["tls.crt"]) {
		t.Errorf("executor certificates re-issued by another CA")
	}
	if rel.Version != 3 || rel.Info.Status != release.StatusDeployed {
		t.Fatalf("after upgrade: version %d status %s", rel.Version, rel.Info.Status)
	}
	mustExist(t, ctx, cs, ns, "HorizontalPodAutoscaler", "sluice-executor", true)

	// Upgrade 2: an external etcd over TLS. The bundled etcd's StatefulSet
	// and Service are removed; the drivers point at the given endpoints.
	rel, err = upgrade.RunWithContext(ctx, "sluice", c, vals["ha-external-etcd"])
	if err != nil {
		t.Fatalf("helm upgrade to ha-external-etcd: %v", err)
	}
	if rel.Version != 4 {
		t.Fatalf("after the second upgrade: version %d, want 4", rel.Version)
	}
	// The bundled etcd's certificates go with it.
	mustExist(t, ctx, cs, ns, "Secret", "sluice-etcd-tls", false)
	mustExist(t, ctx, cs, ns, "NetworkPolicy", "sluice-etcd", false)
	mustExist(t, ctx, cs, ns, "StatefulSet", "sluice-etcd", false)
	mustExist(t, ctx, cs, ns, "Service", "sluice-etcd", false)
	mustExist(t, ctx, cs, ns, "HorizontalPodAutoscaler", "sluice-executor", false)
	drv, err = cs.AppsV1().Deployments(ns).Get(ctx, "sluice-driver", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := env(&drv.Spec.Template.Spec.Containers[0], "SLUICE_ETCD"); !strings.HasPrefix(got, "https://etcd-0.etcd.example.internal:2379,") {
		t.Errorf("driver SLUICE_ETCD after upgrade: %q", got)
	}
	if *drv.Spec.Replicas != 3 {
		t.Errorf("driver replicas after upgrade: %d, want 3", *drv.Spec.Replicas)
	}
	sa, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "sluice", metav1.GetOptions{})
	if err != nil || sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Errorf("ServiceAccount after upgrade: %v, annotations %v", err, sa.Annotations)
	}

	// Rolling back to the first revision brings the bundled etcd back.
	rollback := action.NewRollback(cfg)
	rollback.Version, rollback.Timeout = 1, 2*time.Minute
	if err := rollback.Run("sluice"); err != nil {
		t.Fatalf("helm rollback to 1: %v", err)
	}
	mustExist(t, ctx, cs, ns, "StatefulSet", "sluice-etcd", true)
	mustExist(t, ctx, cs, ns, "Service", "sluice-etcd", true)

	// A second release with every option on (the executors' PodMonitor
	// too), next to the first: no name collides, and the ServiceMonitor and
	// the PodMonitor are stored.
	install2 := action.NewInstall(cfg)
	install2.ReleaseName, install2.Namespace, install2.Timeout = "stream", ns, 2*time.Minute
	if _, err := install2.RunWithContext(ctx, c, withPodMonitor(t, vals["everything"])); err != nil {
		t.Fatalf("helm install everything: %v", err)
	}
	checkStoredPodMonitor(t, ctx, srv, ns, "stream-executor")
	mustExist(t, ctx, cs, ns, "StatefulSet", "stream-etcd", true)
	mustExist(t, ctx, cs, ns, "PodDisruptionBudget", "stream-etcd", true)
	mustExist(t, ctx, cs, ns, "HorizontalPodAutoscaler", "stream-executor", true)
	// The operations kit: the dashboard ConfigMap and the PrometheusRule,
	// stored as the chart rendered them.
	mustExist(t, ctx, cs, ns, "ConfigMap", "stream-dashboard", true)
	checkStoredPrometheusRule(t, ctx, srv, ns, "stream")

	for _, name := range []string{"sluice", "stream"} {
		un := action.NewUninstall(cfg)
		un.Wait, un.Timeout = true, 2*time.Minute
		if _, err := un.Run(name); err != nil {
			t.Fatalf("helm uninstall %s: %v", name, err)
		}
	}
	for _, kind := range []string{"Deployment", "StatefulSet", "Service", "ServiceAccount", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret", "NetworkPolicy", "ConfigMap"} {
		if n := countObjects(t, ctx, cs, ns, kind); n != 0 {
			t.Errorf("%d %s objects left after uninstall", n, kind)
		}
	}
	list := action.NewList(cfg)
	list.All = true
	if rels, err := list.Run(); err != nil || len(rels) != 0 {
		t.Errorf("releases after uninstall: %d (%v)", len(rels), err)
	}
}

// helmConfig is a Helm action configuration for namespace ns of the test
// apiserver, keeping releases in Secrets as the helm CLI does.
func helmConfig(t *testing.T, srv *apiServer, ns string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &srv.kubeconfig
	flags.Namespace = &ns
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, ns, "secret", func(format string, v ...any) { t.Logf("helm: "+format, v...) }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustExist(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, kind, name string, want bool) {
	t.Helper()
	var err error
	switch kind {
	case "StatefulSet":
		_, err = cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	case "Service":
		_, err = cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	case "PodDisruptionBudget":
		_, err = cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
	case "HorizontalPodAutoscaler":
		_, err = cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, name, metav1.GetOptions{})
	case "Secret":
		_, err = cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	case "NetworkPolicy":
		_, err = cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
	case "ConfigMap":
		_, err = cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	default:
		t.Fatalf("mustExist: kind %s", kind)
	}
	switch {
	case err == nil && !want:
		t.Errorf("%s %s exists, want it gone", kind, name)
	case apierrors.IsNotFound(err) && want:
		t.Errorf("%s %s does not exist", kind, name)
	case err != nil && !apierrors.IsNotFound(err):
		t.Errorf("get %s %s: %v", kind, name, err)
	}
}

func countObjects(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, kind string) int {
	t.Helper()
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=sluice"}
	var n int
	var err error
	switch kind {
	case "Deployment":
		l, e := cs.AppsV1().Deployments(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "StatefulSet":
		l, e := cs.AppsV1().StatefulSets(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "Service":
		l, e := cs.CoreV1().Services(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "ServiceAccount":
		l, e := cs.CoreV1().ServiceAccounts(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "HorizontalPodAutoscaler":
		l, e := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "PodDisruptionBudget":
		l, e := cs.PolicyV1().PodDisruptionBudgets(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "Secret":
		l, e := cs.CoreV1().Secrets(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "NetworkPolicy":
		l, e := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	case "ConfigMap":
		l, e := cs.CoreV1().ConfigMaps(ns).List(ctx, opts)
		err = e
		if e == nil {
			n = len(l.Items)
		}
	default:
		t.Fatalf("countObjects: kind %s", kind)
	}
	if err != nil {
		t.Fatalf("list %s: %v", kind, err)
	}
	return n
}

// secretsData reads the data of the named Secrets.
func secretsData(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string, names []string) map[string]map[string][]byte {
	t.Helper()
	out := map[string]map[string][]byte{}
	for _, name := range names {
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get Secret %s: %v", name, err)
		}
		out[name] = s.Data
	}
	return out
}

func equalData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			return false
		}
	}
	return true
}

// checkStoredTokens: the stored auth.yaml (stringData became data) lists the
// digests of the stored tokens.
func checkStoredTokens(t *testing.T, tokens map[string][]byte, authYAML []byte) {
	t.Helper()
	for name, tok := range tokens {
		sum := sha256.Sum256(tok)
		if !strings.Contains(string(authYAML), fmt.Sprintf("{name: %q, sha256: %q", name, hex.EncodeToString(sum[:]))) {
			t.Errorf("stored auth.yaml lacks the digest of token %s:\n%s", name, authYAML)
		}
	}
	if len(tokens) != 3 {
		t.Errorf("%d stored tokens, want admin, operator, viewer", len(tokens))
	}
}

// checkStoredPrometheusRule reads the release's PrometheusRule back from the
// apiserver: the CRD accepted every group and rule, and they are still a
// valid rules file with the alerts.
func checkStoredPrometheusRule(t *testing.T, ctx context.Context, srv *apiServer, ns, name string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(srv.config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: prometheusRuleGVK.Group, Version: prometheusRuleGVK.Version, Resource: "prometheusrules"}
	u, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PrometheusRule %s: %v", name, err)
	}
	js, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := json.Unmarshal(js, &pr); err != nil {
		t.Fatal(err)
	}
	alerts := checkRuleFile(t, "stored PrometheusRule "+name, pr.Spec, knownMetrics(t))
	if strings.Join(alerts, ",") != strings.Join(wantAlerts, ",") {
		t.Errorf("stored PrometheusRule %s: alerts %v, want %v", name, alerts, wantAlerts)
	}
}

// checkStoredPodMonitor reads the executors' PodMonitor back from the
// apiserver: stored, selecting the executor pods, scraping their http port.
func checkStoredPodMonitor(t *testing.T, ctx context.Context, srv *apiServer, ns, name string) {
	t.Helper()
	dyn, err := dynamic.NewForConfig(srv.config)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: podMonitorGVK.Group, Version: podMonitorGVK.Version, Resource: "podmonitors"}
	u, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("PodMonitor %s: %v", name, err)
	}
	js, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var pm podMonitor
	if err := json.Unmarshal(js, &pm); err != nil {
		t.Fatal(err)
	}
	if pm.Spec.Selector.MatchLabels["app.kubernetes.io/component"] != "executor" || len(pm.Spec.PodMetricsEndpoints) != 1 ||
		pm.Spec.PodMetricsEndpoints[0].Port != "http" || pm.Labels["release"] != "prometheus" {
		t.Errorf("stored PodMonitor %s: %s", name, js)
	}
}
