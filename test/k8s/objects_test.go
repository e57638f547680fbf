package k8s

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

// repoRoot is the root of the Sluice repository, seen from this package.
const repoRoot = "../.."

// valueSet is one ci/*-values.yaml file of the chart.
type valueSet struct {
	name string // file name without "-values.yaml"
	path string
	vals map[string]any
}

// requiredValueSets must exist among the chart's ci/ files: the issue asks for
// these renders at least.
var requiredValueSets = []string{"default", "ha-external-etcd", "autoscaling", "everything", "tls-off", "cert-manager"}

func loadValueSets(t *testing.T) []valueSet {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(chart.Dir(repoRoot), "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sets []valueSet
	found := map[string]bool{}
	for _, p := range paths {
		vals, err := chart.ReadValues(p)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(p), "-values.yaml")
		found[name] = true
		sets = append(sets, valueSet{name: name, path: p, vals: vals})
	}
	for _, n := range requiredValueSets {
		if !found[n] {
			t.Fatalf("value set ci/%s-values.yaml is missing", n)
		}
	}
	return sets
}

// serviceMonitor mirrors the fields of monitoring.coreos.com/v1 ServiceMonitor
// that the chart may set, so that it too is decoded strictly (the Prometheus
// Operator's Go types are not a dependency worth taking for one object).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			HonorLabels   bool   `json:"honorLabels"`
			Scheme        string `json:"scheme"`
			TLSConfig     *struct {
				ServerName string `json:"serverName"`
				CA         struct {
					Secret struct {
						Name string `json:"name"`
						Key  string `json:"key"`
					} `json:"secret"`
				} `json:"ca"`
			} `json:"tlsConfig"`
		} `json:"endpoints"`
	} `json:"spec"`
}

var serviceMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}

// podMonitor mirrors the fields of monitoring.coreos.com/v1 PodMonitor that
// the chart may set, decoded strictly like the ServiceMonitor.
type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Scheme        string `json:"scheme"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
			HonorLabels   bool   `json:"honorLabels"`
			TLSConfig     *struct {
				ServerName string `json:"serverName"`
			} `json:"tlsConfig"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

var podMonitorGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}

// certificate mirrors the fields of cert-manager.io/v1 Certificate that the
// chart sets, decoded strictly like every other object.
type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SecretName  string   `json:"secretName"`
		CommonName  string   `json:"commonName"`
		DNSNames    []string `json:"dnsNames"`
		IPAddresses []string `json:"ipAddresses"`
		Usages      []string `json:"usages"`
		Duration    string   `json:"duration"`
		RenewBefore string   `json:"renewBefore"`
		PrivateKey  struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy"`
		} `json:"privateKey"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

var certificateGVK = schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"}

// prometheusRule mirrors monitoring.coreos.com/v1 PrometheusRule: its spec is
// a Prometheus rules file (rulefmt), decoded strictly like every other object.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleFile `json:"spec"`
}

// ruleFile is a Prometheus rules file: the fields of Prometheus' rulefmt.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Limit    int    `json:"limit,omitempty"`
		Rules    []struct {
			Record        string            `json:"record,omitempty"`
			Alert         string            `json:"alert,omitempty"`
			Expr          string            `json:"expr"`
			For           string            `json:"for,omitempty"`
			KeepFiringFor string            `json:"keep_firing_for,omitempty"`
			Labels        map[string]string `json:"labels,omitempty"`
			Annotations   map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

var prometheusRuleGVK = schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}

// object is one rendered document: its JSON, as the apiserver receives it,
// and the typed object it strictly decodes into.
type object struct {
	source string // the template, from Helm's "# Source:" comment
	gvk    schema.GroupVersionKind
	name   string
	json   []byte
	typed  any
}

// objects is one render, by kind and name.
type objects struct {
	namespace       string
	all             []object
	deployments     map[string]*appsv1.Deployment
	statefulSets    map[string]*appsv1.StatefulSet
	services        map[string]*corev1.Service
	serviceAccounts map[string]*corev1.ServiceAccount
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs            map[string]*policyv1.PodDisruptionBudget
	serviceMonitors map[string]*serviceMonitor
	podMonitors     map[string]*podMonitor
	secrets         map[string]*corev1.Secret
	networkPolicies map[string]*networkingv1.NetworkPolicy
	certificates    map[string]*certificate
	configMaps      map[string]*corev1.ConfigMap
	prometheusRules map[string]*prometheusRule
	// values are those of the render, when the caller sets them (secretName).
	values map[string]any
}

// strictCodecs refuse unknown and duplicated fields: a misspelled field in a
// template is an error here, not a silently dropped value.
var strictCodecs = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict)

// decodeManifest splits a rendered manifest into documents and decodes each
// strictly into its typed object. Every kind the chart may render must be
// known here; an unknown kind is an error.
func decodeManifest(manifest, namespace string) (*objects, error) {
	objs := &objects{
		namespace:       namespace,
		deployments:     map[string]*appsv1.Deployment{},
		statefulSets:    map[string]*appsv1.StatefulSet{},
		services:        map[string]*corev1.Service{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		hpas:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		serviceMonitors: map[string]*serviceMonitor{},
		podMonitors:     map[string]*podMonitor{},
		secrets:         map[string]*corev1.Secret{},
		networkPolicies: map[string]*networkingv1.NetworkPolicy{},
		certificates:    map[string]*certificate{},
		configMaps:      map[string]*corev1.ConfigMap{},
		prometheusRules: map[string]*prometheusRule{},
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("split manifest: %w", err)
		}
		source := sourceOf(doc)
		// YAMLToJSONStrict refuses duplicated keys, which plain YAML decoding
		// resolves silently (the last one wins).
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // an empty document: a template that rendered nothing
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		o := object{source: source, gvk: tm.GroupVersionKind(), json: js}
		if o.gvk == serviceMonitorGVK || o.gvk == podMonitorGVK || o.gvk == certificateGVK || o.gvk == prometheusRuleGVK {
			var v metav1.Object
			switch o.gvk {
			case serviceMonitorGVK:
				v = &serviceMonitor{}
			case podMonitorGVK:
				v = &podMonitor{}
			case certificateGVK:
				v = &certificate{}
			default:
				v = &prometheusRule{}
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", source, o.gvk.Kind, err)
			}
			switch v := v.(type) {
			case *serviceMonitor:
				objs.serviceMonitors[v.Name] = v
			case *podMonitor:
				objs.podMonitors[v.Name] = v
			case *certificate:
				objs.certificates[v.Name] = v
			case *prometheusRule:
				objs.prometheusRules[v.Name] = v
			}
			o.name, o.typed = v.GetName(), v
			objs.all = append(objs.all, o)
			continue
		}
		typed, _, err := strictCodecs.UniversalDeserializer().Decode(js, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", source, o.gvk.Kind, err)
		}
		o.typed = typed
		switch v := typed.(type) {
		case *appsv1.Deployment:
			o.name = v.Name
			objs.deployments[v.Name] = v
		case *appsv1.StatefulSet:
			o.name = v.Name
			objs.statefulSets[v.Name] = v
		case *corev1.Service:
			o.name = v.Name
			objs.services[v.Name] = v
		case *corev1.ServiceAccount:
			o.name = v.Name
			objs.serviceAccounts[v.Name] = v
		case *autoscalingv2.HorizontalPodAutoscaler:
			o.name = v.Name
			objs.hpas[v.Name] = v
		case *policyv1.PodDisruptionBudget:
			o.name = v.Name
			objs.pdbs[v.Name] = v
		case *corev1.Secret:
			o.name = v.Name
			objs.secrets[v.Name] = v
		case *networkingv1.NetworkPolicy:
			o.name = v.Name
			objs.networkPolicies[v.Name] = v
		case *corev1.ConfigMap:
			o.name = v.Name
			objs.configMaps[v.Name] = v
		default:
			return nil, fmt.Errorf("%s: kind %s is not checked by these tests; add it to decodeManifest", source, o.gvk)
		}
		objs.all = append(objs.all, o)
	}
	return objs, nil
}

func sourceOf(doc []byte) string {
	for _, line := range strings.Split(string(doc), "\n") {
		if s, ok := strings.CutPrefix(line, "# Source: "); ok {
			return s
		}
	}
	return "(no source)"
}

// workload is a Deployment or StatefulSet seen through its pod template.
type workload struct {
	kind, name string
	replicas   *int32
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
}

func (o *objects) workloads() []workload {
	var ws []workload
	for _, d := range o.deployments {
		ws = append(ws, workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template})
	}
	for _, s := range o.statefulSets {
		ws = append(ws, workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Selector, &s.Spec.Template})
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].kind+ws[i].name < ws[j].kind+ws[j].name })
	return ws
}

// byComponent finds the one workload whose pods carry
// app.kubernetes.io/component=c.
func (o *objects) byComponent(t *testing.T, c string) workload {
	t.Helper()
	var found []workload
	for _, w := range o.workloads() {
		if w.template.Labels["app.kubernetes.io/component"] == c {
			found = append(found, w)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s workload, found %d", c, len(found))
	}
	return found[0]
}

func env(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func envIndex(c *corev1.Container, name string) int {
	for i, e := range c.Env {
		if e.Name == name {
			return i
		}
	}
	return -1
}

// containerPort resolves a probe's or Service's target port (a name or a
// number) to one of the container's ports.
func containerPort(c *corev1.Container, port string) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// valueAt reads a dotted path of the rendered values, for checks that compare
// objects with the values that produced them.
func valueAt(vals map[string]any, path string) (any, bool) {
	var cur any = vals
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}
