package k8s

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

const (
	testRelease   = "sluice"
	testNamespace = "streaming"
)

// TestRenderValueSets renders the chart for every ci/*-values.yaml, decodes
// every object strictly into its typed Go struct and checks the properties the
// deployment relies on, within and across objects.
func TestRenderValueSets(t *testing.T) {
	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	flags := binaryFlags(t)
	for _, set := range loadValueSets(t) {
		t.Run(set.name, func(t *testing.T) {
			r, err := chart.Render(c, testRelease, testNamespace, set.vals)
			if err != nil {
				t.Fatalf("render with %s: %v", set.path, err)
			}
			objs, err := decodeManifest(r.Manifest, testNamespace)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			objs.values = r.Values
			checkMetadata(t, objs)
			checkWorkloads(t, objs)
			checkServices(t, objs)
			checkDriver(t, objs, r.Values)
			checkExecutor(t, objs, r.Values)
			checkEtcd(t, objs, r.Values)
			checkAutoscalingAndDisruption(t, objs, r.Values)
			checkServiceMonitor(t, objs, r.Values)
			checkPodMonitor(t, objs, r.Values)
			checkMonitoring(t, objs, r.Values)
			checkServiceAccount(t, objs, r.Values)
			checkFlags(t, objs, flags)
			checkSecurity(t, objs, r.Values)
			checkNetworkPolicies(t, objs, r.Values)
			if !strings.Contains(r.Notes, "port-forward svc/"+objs.byComponent(t, "driver").name) {
				t.Errorf("NOTES.txt does not tell how to port-forward to the driver Service:\n%s", r.Notes)
			}
		})
	}
}

// checkMetadata: every object lives in the release namespace and carries the
// release's labels, so that `kubectl get -l app.kubernetes.io/instance=...`
// finds all of it.
func checkMetadata(t *testing.T, objs *objects) {
	t.Helper()
	for _, o := range objs.all {
		meta := metaOf(o.typed)
		if meta.Namespace != objs.namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.gvk.Kind, o.name, meta.Namespace, objs.namespace)
		}
		if meta.Labels["app.kubernetes.io/instance"] != testRelease || meta.Labels["app.kubernetes.io/name"] != "sluice" {
			t.Errorf("%s %s: labels %v lack the release's name/instance labels", o.gvk.Kind, o.name, meta.Labels)
		}
		if len(o.name) > 63 {
			t.Errorf("%s %s: name longer than 63 characters", o.gvk.Kind, o.name)
		}
	}
}

func metaOf(typed any) metav1.ObjectMeta {
	switch v := typed.(type) {
	case *serviceMonitor:
		return v.ObjectMeta
	case *podMonitor:
		return v.ObjectMeta
	case *certificate:
		return v.ObjectMeta
	case *prometheusRule:
		return v.ObjectMeta
	case metav1.ObjectMetaAccessor:
		return *v.GetObjectMeta().(*metav1.ObjectMeta)
	}
	panic(fmt.Sprintf("no metadata in %T", typed))
}

// checkWorkloads: selectors select their own pods and no other workload's;
// every container is non-root with a read-only root filesystem, no privilege
// escalation and no capabilities, has CPU and memory requests and a memory
// limit, and every probe targets a port the container declares.
func checkWorkloads(t *testing.T, objs *objects) {
	t.Helper()
	ws := objs.workloads()
	if len(ws) == 0 {
		t.Fatal("no workloads rendered")
	}
	for _, w := range ws {
		id := w.kind + " " + w.name
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() {
			t.Errorf("%s: selector %v: %v (empty selects everything)", id, w.selector, err)
			continue
		}
		if !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("%s: selector %v does not match its pod labels %v", id, w.selector, w.template.Labels)
		}
		for _, other := range ws {
			if other.name != w.name && sel.Matches(labels.Set(other.template.Labels)) {
				t.Errorf("%s: selector %v also matches the pods of %s %s", id, w.selector, other.kind, other.name)
			}
		}
		spec := &w.template.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext %+v must set runAsNonRoot and a non-zero runAsUser", id, psc)
		}
		if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
			t.Errorf("%s: pod seccompProfile must be RuntimeDefault", id)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false (Sluice never calls the Kubernetes API)", id)
		}
		if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks must be false: service variables such as SLUICE_DRIVER_PORT would land among the SLUICE_* flag variables", id)
		}
		if spec.TerminationGracePeriodSeconds == nil {
			t.Errorf("%s: terminationGracePeriodSeconds unset", id)
		}
		if len(spec.InitContainers) != 0 {
			t.Errorf("%s: unexpected init containers", id)
		}
		for i := range spec.Containers {
			checkContainer(t, id, &spec.Containers[i])
		}
	}
}

func checkContainer(t *testing.T, id string, c *corev1.Container) {
	t.Helper()
	id += " container " + c.Name
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: no securityContext", id)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: allowPrivilegeEscalation must be false", id)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: readOnlyRootFilesystem must be true", id)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: privileged", id)
	case sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !containsCap(sc.Capabilities.Drop, "ALL"):
		t.Errorf("%s: capabilities %+v must drop ALL and add none", id, sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: runAsNonRoot must be true", id)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v need CPU and memory requests and a memory limit", id, c.Resources)
	}
	repo, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
	if !ok || tag == "" || tag == "latest" || repo == "" {
		t.Errorf("%s: image %q needs a pinned tag", id, c.Image)
	}
	for kind, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil {
			continue
		}
		var port string
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port.String()
		case p.GRPC != nil:
			port = strconv.Itoa(int(p.GRPC.Port))
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port.String()
		default:
			t.Errorf("%s: %s probe has no HTTP, gRPC or TCP action", id, kind)
			continue
		}
		if _, ok := containerPort(c, port); !ok {
			t.Errorf("%s: %s probe targets port %s, which the container does not declare", id, kind, port)
		}
	}
}

func containsCap(caps []corev1.Capability, want corev1.Capability) bool {
	for _, c := range caps {
		if c == want {
			return true
		}
	}
	return false
}

// checkServices: every Service selects the pods of exactly one workload, and
// every port targets a port those pods' containers declare.
func checkServices(t *testing.T, objs *objects) {
	t.Helper()
	for _, s := range objs.services {
		id := "Service " + s.Name
		if len(s.Spec.Selector) == 0 {
			t.Errorf("%s: no selector", id)
			continue
		}
		var targets []workload
		for _, w := range objs.workloads() {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
				targets = append(targets, w)
			}
		}
		if len(targets) != 1 {
			t.Errorf("%s: selector %v matches %d workloads, want 1", id, s.Spec.Selector, len(targets))
			continue
		}
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if target == (intstr.IntOrString{}) {
				target = intstr.FromInt32(p.Port)
			}
			found := false
			for i := range targets[0].template.Spec.Containers {
				if cp, ok := containerPort(&targets[0].template.Spec.Containers[i], target.String()); ok {
					found = true
					if cp.Protocol != p.Protocol {
						t.Errorf("%s port %s: protocol %s, container port %s", id, p.Name, p.Protocol, cp.Protocol)
					}
				}
			}
			if !found {
				t.Errorf("%s port %s: targetPort %s is not a container port of %s", id, p.Name, target.String(), targets[0].name)
			}
		}
	}
}

func intValue(t *testing.T, vals map[string]any, path string) int {
	t.Helper()
	v, ok := valueAt(vals, path)
	if !ok {
		t.Fatalf("value %s missing", path)
	}
	switch n := v.(type) {
	case float64:
		return int(n)
	case int64:
		return int(n)
	case int:
		return n
	}
	t.Fatalf("value %s = %v (%T), want a number", path, v, v)
	return 0
}

func boolValue(vals map[string]any, path string) bool {
	v, _ := valueAt(vals, path)
	b, _ := v.(bool)
	return b
}

func portOf(t *testing.T, listen string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatalf("address %q: %v", listen, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", listen, err)
	}
	return n
}

// checkDriver: readiness is leadership (/readyz on the HTTP port the driver
// listens on), liveness is the gRPC health service on the gRPC port, the
// advertised address is the pod IP, the rollout can complete although only one
// driver is ever ready, and the grace period outlasts the shutdown bound.
func checkDriver(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	w := objs.byComponent(t, "driver")
	d := objs.deployments[w.name]
	if d == nil {
		t.Fatalf("driver %s is not a Deployment", w.name)
	}
	if got, want := int(*d.Spec.Replicas), intValue(t, vals, "driver.replicas"); got != want {
		t.Errorf("driver replicas %d, want %d", got, want)
	}
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "100%" {
		t.Errorf("driver strategy %+v: only the leader is ever Ready, so a rollout completes only if every driver may be unavailable (maxUnavailable 100%%)", d.Spec.Strategy)
	}
	c := &w.template.Spec.Containers[0]
	listen, _ := env(c, "SLUICE_LISTEN")
	httpAddr, _ := env(c, "SLUICE_HTTP")
	grpcPort, httpPort := portOf(t, listen), portOf(t, httpAddr)
	if grpcPort != intValue(t, vals, "driver.grpcPort") || httpPort != intValue(t, vals, "driver.httpPort") {
		t.Errorf("driver listens on gRPC %d and HTTP %d, values say %d and %d", grpcPort, httpPort, intValue(t, vals, "driver.grpcPort"), intValue(t, vals, "driver.httpPort"))
	}

	rp := c.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" {
		t.Fatalf("driver readiness probe %+v must be GET /readyz: ready = leader, so the Service reaches only the leader", rp)
	}
	if cp, _ := containerPort(c, rp.HTTPGet.Port.String()); int(cp.ContainerPort) != httpPort {
		t.Errorf("driver readiness probe port %s resolves to %d, but --http listens on %d", rp.HTTPGet.Port.String(), cp.ContainerPort, httpPort)
	}
	tlsOn := boolValue(vals, "tls.enabled")
	wantScheme := corev1.URISchemeHTTP
	if tlsOn {
		wantScheme = corev1.URISchemeHTTPS
	}
	if rp.HTTPGet.Scheme != wantScheme && !(rp.HTTPGet.Scheme == "" && !tlsOn) {
		t.Errorf("driver readiness probe scheme %q, want %s (tls.enabled %v)", rp.HTTPGet.Scheme, wantScheme, tlsOn)
	}
	if tlsOn {
		// The kubelet's gRPC probe speaks plaintext only: with TLS the
		// driver is probed on /healthz over HTTPS.
		for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
				t.Errorf("driver %s probe %+v must be GET /healthz over HTTPS with TLS on", kind, p)
				continue
			}
			if cp, _ := containerPort(c, p.HTTPGet.Port.String()); int(cp.ContainerPort) != httpPort {
				t.Errorf("driver %s probe port %s is not the --http port %d", kind, p.HTTPGet.Port.String(), httpPort)
			}
		}
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if tlsOn {
			break
		}
		if p == nil || p.GRPC == nil || int(p.GRPC.Port) != grpcPort {
			t.Errorf("driver %s probe %+v must be the gRPC health check on port %d", kind, p, grpcPort)
			continue
		}
		// The overall service ("") is SERVING on followers too; naming
		// sluice.v1.DriverService would restart every follower.
		if p.GRPC.Service != nil && *p.GRPC.Service != "" {
			t.Errorf("driver %s probe asks for service %q; followers must stay live", kind, *p.GRPC.Service)
		}
	}

	if adv, _ := env(c, "SLUICE_ADVERTISE"); adv != fmt.Sprintf("$(POD_IP):%d", grpcPort) {
		t.Errorf("driver SLUICE_ADVERTISE %q, want $(POD_IP):%d", adv, grpcPort)
	}
	if i, j := envIndex(c, "POD_IP"), envIndex(c, "SLUICE_ADVERTISE"); i < 0 || i > j {
		t.Errorf("driver: POD_IP must be defined before SLUICE_ADVERTISE, or $(POD_IP) is not expanded")
	}
	if ip, _ := envFieldPath(c, "POD_IP"); ip != "status.podIP" {
		t.Errorf("driver POD_IP comes from %q, want status.podIP", ip)
	}

	store, _ := valueAt(vals, "driver.store")
	if got, set := env(c, "SLUICE_STORE"); got != store || set != (store != "") {
		t.Errorf("driver SLUICE_STORE %q (set %v), want driver.store %q", got, set, store)
	}

	shutdown := intValue(t, vals, "driver.shutdownTimeoutSeconds")
	if v, _ := env(c, "SLUICE_SHUTDOWN_TIMEOUT"); v != fmt.Sprintf("%ds", shutdown) {
		t.Errorf("driver SLUICE_SHUTDOWN_TIMEOUT %q, want %ds", v, shutdown)
	}
	if g := *w.template.Spec.TerminationGracePeriodSeconds; g < int64(shutdown)+15 {
		t.Errorf("driver terminationGracePeriodSeconds %d: below the shutdown bound %ds + 15s (resign, HTTP stop, etcd close)", g, shutdown)
	}
	hb, _ := env(c, "SLUICE_HEARTBEAT_INTERVAL")
	hbt, _ := env(c, "SLUICE_HEARTBEAT_TIMEOUT")
	hbd, err1 := time.ParseDuration(hb)
	hbtd, err2 := time.ParseDuration(hbt)
	if err1 != nil || err2 != nil || hbtd < 3*hbd {
		t.Errorf("driver heartbeat interval %q and timeout %q: the timeout must be at least 3x the interval", hb, hbt)
	}

	// Anti-affinity: preferred or required per driver.antiAffinity, over
	// the driver pods' own labels.
	mode, _ := valueAt(vals, "driver.antiAffinity")
	custom, _ := valueAt(vals, "driver.affinity")
	if m, _ := custom.(map[string]any); len(m) == 0 && mode != "none" {
		aff := w.template.Spec.Affinity
		var terms []corev1.PodAffinityTerm
		if aff != nil && aff.PodAntiAffinity != nil {
			terms = aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
			if mode == "soft" {
				terms = nil
				for _, wt := range aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
					terms = append(terms, wt.PodAffinityTerm)
				}
			}
		}
		if len(terms) != 1 || terms[0].TopologyKey != "kubernetes.io/hostname" {
			t.Errorf("driver anti-affinity (%v): terms %+v, want one on kubernetes.io/hostname", mode, terms)
		} else if sel, err := metav1.LabelSelectorAsSelector(terms[0].LabelSelector); err != nil || !sel.Matches(labels.Set(w.template.Labels)) {
			t.Errorf("driver anti-affinity selector %v does not match the driver pods", terms[0].LabelSelector)
		}
	}

	// The driver Service reaches the leader only: it must not publish
	// not-ready (follower) addresses, and it must expose gRPC and HTTP.
	svc := objs.services[w.name]
	if svc == nil {
		t.Fatalf("no driver Service named %s", w.name)
	}
	if svc.Spec.PublishNotReadyAddresses {
		t.Errorf("driver Service publishes not-ready addresses: clients would reach followers")
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.template.Labels)) {
		t.Errorf("driver Service selector %v does not match driver pods", svc.Spec.Selector)
	}
	if servicePortTo(svc, c, grpcPort) == nil || servicePortTo(svc, c, httpPort) == nil {
		t.Errorf("driver Service ports %+v must reach the gRPC (%d) and HTTP (%d) container ports", svc.Spec.Ports, grpcPort, httpPort)
	}
}

func envFieldPath(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath, true
		}
	}
	return "", false
}

// servicePortTo returns the Service port whose target resolves to the
// container port numbered containerPortNum.
func servicePortTo(svc *corev1.Service, c *corev1.Container, containerPortNum int) *corev1.ServicePort {
	for i, p := range svc.Spec.Ports {
		if cp, ok := containerPort(c, p.TargetPort.String()); ok && int(cp.ContainerPort) == containerPortNum {
			return &svc.Spec.Ports[i]
		}
	}
	return nil
}

// checkExecutor: executors dial the driver Service on its gRPC port (which
// reaches the leader's gRPC container port), identify as their pod, serve
// HTTP on executor.httpPort with liveness on /healthz and readiness on /readyz
// there, and get a grace period longer than their drain bound.
func checkExecutor(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	w := objs.byComponent(t, "executor")
	d := objs.statefulSets[w.name]
	if d == nil {
		t.Fatalf("executor %s is not a StatefulSet (every executor needs a stable name for a certificate of its own)", w.name)
	}
	c := &w.template.Spec.Containers[0]
	target, _ := env(c, "SLUICE_DRIVER")
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("executor SLUICE_DRIVER %q: %v", target, err)
	}
	svc := objs.services[host]
	if svc == nil {
		t.Fatalf("executor SLUICE_DRIVER %q names no Service of the release", target)
	}
	driver := objs.byComponent(t, "driver")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(driver.template.Labels)) {
		t.Errorf("executor SLUICE_DRIVER Service %s does not select the drivers", host)
	}
	dc := &driver.template.Spec.Containers[0]
	listen, _ := env(dc, "SLUICE_LISTEN")
	sp := servicePortTo(svc, dc, portOf(t, listen))
	if sp == nil || strconv.Itoa(int(sp.Port)) != port {
		t.Errorf("executor dials port %s of %s, which must be the Service port of the driver's gRPC listener %s", port, host, listen)
	}

	if v, _ := env(c, "SLUICE_SLOTS"); v != strconv.Itoa(intValue(t, vals, "executor.slots")) {
		t.Errorf("executor SLUICE_SLOTS %q, want executor.slots %d", v, intValue(t, vals, "executor.slots"))
	}
	if i, j := envIndex(c, "POD_NAME"), envIndex(c, "SLUICE_ID"); i < 0 || i > j {
		t.Errorf("executor: POD_NAME must be defined before SLUICE_ID")
	}
	httpAddr, _ := env(c, "SLUICE_HTTP")
	httpPort := portOf(t, httpAddr)
	if httpPort != intValue(t, vals, "executor.httpPort") {
		t.Errorf("executor SLUICE_HTTP %q, want port executor.httpPort %d", httpAddr, intValue(t, vals, "executor.httpPort"))
	}
	for kind, want := range map[string]struct {
		p    *corev1.Probe
		path string
	}{"liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		p := want.p
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want.path {
			t.Errorf("executor %s probe %+v must be GET %s", kind, p, want.path)
			continue
		}
		if cp, _ := containerPort(c, p.HTTPGet.Port.String()); int(cp.ContainerPort) != httpPort {
			t.Errorf("executor %s probe port %s resolves to %d, but --http listens on %d", kind, p.HTTPGet.Port.String(), cp.ContainerPort, httpPort)
		}
	}

	drain := intValue(t, vals, "executor.drainTimeoutSeconds")
	if v, _ := env(c, "SLUICE_DRAIN_TIMEOUT"); v != fmt.Sprintf("%ds", drain) {
		t.Errorf("executor SLUICE_DRAIN_TIMEOUT %q, want %ds", v, drain)
	}
	if g := *w.template.Spec.TerminationGracePeriodSeconds; g < int64(drain)+10 {
		t.Errorf("executor terminationGracePeriodSeconds %d: below the drain bound %ds + 10s", g, drain)
	}
	if d.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || d.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("executor StatefulSet: update strategy %+v, pod management %q; want RollingUpdate (one at a time) and Parallel scaling", d.Spec.UpdateStrategy, d.Spec.PodManagementPolicy)
	}
	if hs := objs.services[d.Spec.ServiceName]; hs == nil || hs.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("executor StatefulSet serviceName %q must name a headless Service of the chart", d.Spec.ServiceName)
	}
}

// checkEtcd: the drivers' --etcd endpoints are the bundled members' stable DNS
// names (pod.headless-service.namespace.svc), matching the StatefulSet and its
// headless Service, or exactly the configured external endpoints with the TLS
// files mounted from the Secret.
func checkEtcd(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	dc := &objs.byComponent(t, "driver").template.Spec.Containers[0]
	got, _ := env(dc, "SLUICE_ETCD")
	if !boolValue(vals, "etcd.bundled.enabled") {
		for _, w := range objs.workloads() {
			if w.template.Labels["app.kubernetes.io/component"] == "etcd" {
				t.Errorf("external etcd, yet %s %s is rendered", w.kind, w.name)
			}
		}
		eps, _ := valueAt(vals, "etcd.endpoints")
		var want []string
		for _, e := range eps.([]any) {
			want = append(want, e.(string))
		}
		if got != strings.Join(want, ",") {
			t.Errorf("driver SLUICE_ETCD %q, want %q", got, strings.Join(want, ","))
		}
		if boolValue(vals, "etcd.tls.enabled") {
			secret, _ := valueAt(vals, "etcd.tls.secretName")
			checkTLSMount(t, objs, dc, secret.(string))
		}
		return
	}
	w := objs.byComponent(t, "etcd")
	sts := objs.statefulSets[w.name]
	if sts == nil {
		t.Fatalf("bundled etcd %s is not a StatefulSet", w.name)
	}
	members := intValue(t, vals, "etcd.bundled.replicas")
	if int(*sts.Spec.Replicas) != members {
		t.Errorf("etcd replicas %d, want %d", *sts.Spec.Replicas, members)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("etcd podManagementPolicy %q: members must start together to form a quorum", sts.Spec.PodManagementPolicy)
	}
	hs := objs.services[sts.Spec.ServiceName]
	if hs == nil || hs.Spec.ClusterIP != corev1.ClusterIPNone || !hs.Spec.PublishNotReadyAddresses {
		t.Fatalf("etcd serviceName %q must be a headless Service publishing not-ready addresses", sts.Spec.ServiceName)
	}
	scheme := "http"
	if boolValue(vals, "tls.enabled") {
		scheme = "https"
	}
	var want, peers []string
	for i := 0; i < members; i++ {
		host := fmt.Sprintf("%s-%d.%s.%s.svc", sts.Name, i, hs.Name, objs.namespace)
		want = append(want, scheme+"://"+host+":2379")
		peers = append(peers, fmt.Sprintf("%s-%d=%s://%s:2380", sts.Name, i, scheme, host))
	}
	if got != strings.Join(want, ",") {
		t.Errorf("driver SLUICE_ETCD %q, want the members %q", got, strings.Join(want, ","))
	}
	ec := &w.template.Spec.Containers[0]
	if !slicesContains(ec.Args, "--initial-cluster="+strings.Join(peers, ",")) {
		t.Errorf("etcd args %q lack --initial-cluster=%s", ec.Args, strings.Join(peers, ","))
	}
	for _, a := range []string{"--listen-client-urls=" + scheme + "://0.0.0.0:2379", "--listen-peer-urls=" + scheme + "://0.0.0.0:2380"} {
		if !slicesContains(ec.Args, a) {
			t.Errorf("etcd args %q lack %s", ec.Args, a)
		}
	}
	if scheme == "https" {
		// Client and peer TLS with client-certificate auth, from a mounted Secret.
		dir := mountOf(t, &w.template.Spec, ec, objs.secretName(t, "etcd"))
		for _, a := range []string{"--cert-file=" + dir + "/tls.crt", "--key-file=" + dir + "/tls.key", "--client-cert-auth", "--trusted-ca-file=" + dir + "/ca.crt",
			"--peer-cert-file=" + dir + "/tls.crt", "--peer-key-file=" + dir + "/tls.key", "--peer-client-cert-auth", "--peer-trusted-ca-file=" + dir + "/ca.crt"} {
			if !slicesContains(ec.Args, a) {
				t.Errorf("etcd args %q lack %s", ec.Args, a)
			}
		}
		checkTLSMount(t, objs, dc, objs.secretName(t, "etcdClient"))
	} else if slicesContains(ec.Args, "--client-cert-auth") {
		t.Errorf("etcd without TLS asks for client certificates")
	}
	for _, port := range []int{2379, 2380} {
		if servicePortTo(hs, ec, port) == nil {
			t.Errorf("etcd Service %s has no port reaching container port %d", hs.Name, port)
		}
	}
	if ec.ReadinessProbe == nil || ec.LivenessProbe == nil {
		t.Errorf("etcd container needs readiness and liveness probes")
	}
	persist := boolValue(vals, "etcd.bundled.persistence.enabled")
	if persist != (len(sts.Spec.VolumeClaimTemplates) == 1) {
		t.Errorf("etcd persistence %v, volumeClaimTemplates %d", persist, len(sts.Spec.VolumeClaimTemplates))
	}
	if pdb, ok := objs.pdbs[sts.Name]; members > 1 {
		if !ok || pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != members/2+1 {
			t.Errorf("etcd with %d members needs a PodDisruptionBudget keeping a quorum of %d", members, members/2+1)
		}
	} else if ok {
		t.Errorf("single-member etcd has a PodDisruptionBudget, which would block every node drain")
	}
}

func checkTLSMount(t *testing.T, objs *objects, c *corev1.Container, secret string) {
	t.Helper()
	spec := &objs.byComponent(t, "driver").template.Spec
	var volume string
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			volume = v.Name
		}
	}
	var dir string
	for _, m := range c.VolumeMounts {
		if m.Name == volume && volume != "" {
			dir = m.MountPath
		}
	}
	if dir == "" {
		t.Fatalf("etcd TLS Secret %q is not mounted into the driver", secret)
	}
	for _, flag := range []string{"--etcd-cacert=" + dir + "/ca.crt", "--etcd-cert=" + dir + "/tls.crt", "--etcd-key=" + dir + "/tls.key"} {
		if !slicesContains(c.Args, flag) {
			t.Errorf("driver args %q lack %s", c.Args, flag)
		}
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkAutoscalingAndDisruption: with autoscaling the HPA targets the executor
// Deployment, which then leaves replicas to it (Helm would otherwise reset the
// count on every upgrade); CPU scaling needs CPU requests; lag scaling is an
// External AverageValue metric; the executor PDB covers the executors only.
func checkAutoscalingAndDisruption(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	ex := objs.byComponent(t, "executor")
	on := boolValue(vals, "executor.autoscaling.enabled")
	if on != (len(objs.hpas) == 1) {
		t.Fatalf("executor.autoscaling.enabled %v, but %d HPAs rendered", on, len(objs.hpas))
	}
	if on != (ex.replicas == nil) {
		t.Errorf("executor Deployment replicas %v with autoscaling %v: the HPA alone must own the count", ex.replicas, on)
	}
	if !on && int(*ex.replicas) != intValue(t, vals, "executor.replicas") {
		t.Errorf("executor replicas %d, want %d", *ex.replicas, intValue(t, vals, "executor.replicas"))
	}
	for _, h := range objs.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "StatefulSet" || ref.APIVersion != "apps/v1" || ref.Name != ex.name {
			t.Errorf("HPA %s targets %+v, want the executor StatefulSet %s", h.Name, ref, ex.name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: min %v max %d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		var cpu, lag bool
		for _, m := range h.Spec.Metrics {
			switch m.Type {
			case autoscalingv2.ResourceMetricSourceType:
				cpu = m.Resource.Name == corev1.ResourceCPU && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType
			case autoscalingv2.ExternalMetricSourceType:
				lag = m.External.Target.Type == autoscalingv2.AverageValueMetricType && m.External.Target.AverageValue != nil
				if name, _ := valueAt(vals, "executor.autoscaling.lag.metricName"); m.External.Metric.Name != name {
					t.Errorf("HPA lag metric %q, want %v", m.External.Metric.Name, name)
				}
			}
		}
		_, cpuSet := valueAt(vals, "executor.autoscaling.targetCPUUtilizationPercentage")
		if v, _ := valueAt(vals, "executor.autoscaling.targetCPUUtilizationPercentage"); cpuSet && v != nil && !cpu {
			t.Errorf("HPA %s: no CPU utilisation metric although targetCPUUtilizationPercentage is %v", h.Name, v)
		}
		if cpu && ex.template.Spec.Containers[0].Resources.Requests.Cpu().IsZero() {
			t.Errorf("HPA %s scales on CPU utilisation, which needs a CPU request", h.Name)
		}
		if boolValue(vals, "executor.autoscaling.lag.enabled") != lag {
			t.Errorf("HPA %s: lag metric present %v, lag.enabled %v", h.Name, lag, boolValue(vals, "executor.autoscaling.lag.enabled"))
		}
	}
	pdb, ok := objs.pdbs[ex.name]
	if boolValue(vals, "executor.pdb.enabled") != ok {
		t.Fatalf("executor PDB rendered %v, executor.pdb.enabled %v", ok, boolValue(vals, "executor.pdb.enabled"))
	}
	if ok {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(ex.template.Labels)) {
			t.Errorf("executor PDB selector %v does not match executor pods", pdb.Spec.Selector)
		}
		for _, w := range objs.workloads() {
			if w.name != ex.name && sel.Matches(labels.Set(w.template.Labels)) {
				t.Errorf("executor PDB also covers %s %s", w.kind, w.name)
			}
		}
	}
	for name := range objs.pdbs {
		if name == objs.byComponent(t, "driver").name {
			t.Errorf("a driver PDB would count only the (single) Ready leader and block every drain of its node")
		}
	}
}

// checkServiceMonitor: it selects the driver Service and scrapes a port that
// Service has, in the release's namespace.
func checkServiceMonitor(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	on := boolValue(vals, "metrics.serviceMonitor.enabled")
	if on != (len(objs.serviceMonitors) == 1) {
		t.Fatalf("metrics.serviceMonitor.enabled %v, %d ServiceMonitors rendered", on, len(objs.serviceMonitors))
	}
	for _, sm := range objs.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil {
			t.Fatalf("ServiceMonitor selector: %v", err)
		}
		var matched []*corev1.Service
		for _, s := range objs.services {
			if sel.Matches(labels.Set(s.Labels)) {
				matched = append(matched, s)
			}
		}
		if len(matched) != 1 || matched[0].Name != objs.byComponent(t, "driver").name {
			t.Fatalf("ServiceMonitor selects %d Services, want the driver Service", len(matched))
		}
		for _, ep := range sm.Spec.Endpoints {
			found := false
			for _, p := range matched[0].Spec.Ports {
				found = found || p.Name == ep.Port
			}
			if !found || ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor endpoint %+v: port must be a named port of %s, path /metrics", ep, matched[0].Name)
			}
		}
		for _, ep := range sm.Spec.Endpoints {
			tlsOn := boolValue(vals, "tls.enabled")
			if tlsOn != (ep.Scheme == "https") || tlsOn != (ep.TLSConfig != nil) {
				t.Errorf("ServiceMonitor endpoint scheme %q, tlsConfig %v with tls.enabled %v", ep.Scheme, ep.TLSConfig, tlsOn)
			}
			if ep.TLSConfig != nil && (ep.TLSConfig.ServerName != objs.byComponent(t, "driver").name || ep.TLSConfig.CA.Secret.Key != "ca.crt" || ep.TLSConfig.CA.Secret.Name != objs.secretName(t, "driver")) {
				t.Errorf("ServiceMonitor tlsConfig %+v: want the driver Service's name and ca.crt of the driver's Secret", *ep.TLSConfig)
			}
		}
		if !slicesContains(sm.Spec.NamespaceSelector.MatchNames, objs.namespace) {
			t.Errorf("ServiceMonitor namespaceSelector %v lacks %s", sm.Spec.NamespaceSelector.MatchNames, objs.namespace)
		}
	}
}

// checkPodMonitor: it selects the executor pods and no other workload's,
// in the release's namespace, and scrapes /metrics on a named port of the
// executor container, executor.httpPort, in plain HTTP whatever tls.enabled
// says (executors serve HTTP without TLS; their TLS settings are those of
// their connection to the driver), with the interval, timeout, honorLabels
// and labels of metrics.podMonitor.
func checkPodMonitor(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	on := boolValue(vals, "metrics.podMonitor.enabled")
	if on != (len(objs.podMonitors) == 1) {
		t.Fatalf("metrics.podMonitor.enabled %v, %d PodMonitors rendered", on, len(objs.podMonitors))
	}
	ex := objs.byComponent(t, "executor")
	for _, pm := range objs.podMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Fatalf("PodMonitor selector %v: %v (empty selects every pod)", pm.Spec.Selector, err)
		}
		for _, w := range objs.workloads() {
			if sel.Matches(labels.Set(w.template.Labels)) != (w.name == ex.name) {
				t.Errorf("PodMonitor selector %v: matches %s %s %v, want the executor pods only", pm.Spec.Selector, w.kind, w.name, sel.Matches(labels.Set(w.template.Labels)))
			}
		}
		if !slicesContains(pm.Spec.NamespaceSelector.MatchNames, objs.namespace) {
			t.Errorf("PodMonitor namespaceSelector %v lacks %s", pm.Spec.NamespaceSelector.MatchNames, objs.namespace)
		}
		if len(pm.Spec.PodMetricsEndpoints) != 1 {
			t.Fatalf("PodMonitor has %d endpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
		}
		ep := pm.Spec.PodMetricsEndpoints[0]
		p, ok := containerPort(&ex.template.Spec.Containers[0], ep.Port)
		if !ok || p.Name != ep.Port || ep.Path != "/metrics" {
			t.Errorf("PodMonitor endpoint port %q path %q: want a named port of the executor container, path /metrics", ep.Port, ep.Path)
		}
		if want := intValue(t, vals, "executor.httpPort"); int(p.ContainerPort) != want {
			t.Errorf("PodMonitor scrapes port %q (%d), want executor.httpPort (%d), where SLUICE_HTTP serves /metrics", ep.Port, p.ContainerPort, want)
		}
		if ep.Scheme != "http" || ep.TLSConfig != nil {
			t.Errorf("PodMonitor scheme %q, tlsConfig %v with tls.enabled %v: executors serve /metrics in plain HTTP", ep.Scheme, ep.TLSConfig, boolValue(vals, "tls.enabled"))
		}
		interval, _ := valueAt(vals, "metrics.podMonitor.interval")
		timeout, _ := valueAt(vals, "metrics.podMonitor.scrapeTimeout")
		if ep.Interval != interval || ep.ScrapeTimeout != timeout || ep.HonorLabels != boolValue(vals, "metrics.podMonitor.honorLabels") {
			t.Errorf("PodMonitor endpoint interval %q, scrapeTimeout %q, honorLabels %v; want metrics.podMonitor's %v, %v, %v",
				ep.Interval, ep.ScrapeTimeout, ep.HonorLabels, interval, timeout, boolValue(vals, "metrics.podMonitor.honorLabels"))
		}
		extra, _ := valueAt(vals, "metrics.podMonitor.labels")
		for k, v := range extra.(map[string]any) {
			if pm.Labels[k] != v {
				t.Errorf("PodMonitor label %s=%q, want %q (metrics.podMonitor.labels)", k, pm.Labels[k], v)
			}
		}
		if pm.Labels["app.kubernetes.io/component"] != "executor" {
			t.Errorf("PodMonitor labels %v: want component executor", pm.Labels)
		}
	}
}

// withPodMonitor is vals (a deep copy) with metrics.podMonitor enabled,
// labelled for a Prometheus and with its own interval, as a user would set
// it; no ci/*-values.yaml enables it.
func withPodMonitor(t *testing.T, vals map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	metrics, _ := out["metrics"].(map[string]any)
	if metrics == nil {
		metrics = map[string]any{}
		out["metrics"] = metrics
	}
	metrics["podMonitor"] = map[string]any{"enabled": true, "interval": "15s", "scrapeTimeout": "5s", "honorLabels": true,
		"labels": map[string]any{"release": "prometheus"}}
	return out
}

// TestPodMonitor renders every value set with metrics.podMonitor enabled
// (TLS on and off, cert-manager, autoscaled executors) and checks the
// PodMonitor, and that the executors' NetworkPolicy, when there is one, lets
// Prometheus reach the port it scrapes.
func TestPodMonitor(t *testing.T) {
	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range loadValueSets(t) {
		t.Run(set.name, func(t *testing.T) {
			r, err := chart.Render(c, testRelease, testNamespace, withPodMonitor(t, set.vals))
			if err != nil {
				t.Fatalf("render with %s and metrics.podMonitor.enabled: %v", set.path, err)
			}
			objs, err := decodeManifest(r.Manifest, testNamespace)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			checkMetadata(t, objs)
			checkPodMonitor(t, objs, r.Values)
			if len(objs.podMonitors) != 1 {
				t.Fatalf("%d PodMonitors rendered, want 1", len(objs.podMonitors))
			}
			np, ok := objs.networkPolicies[objs.byComponent(t, "executor").name]
			if !ok {
				return
			}
			port := ""
			for _, pm := range objs.podMonitors {
				port = pm.Spec.PodMetricsEndpoints[0].Port
			}
			allowed := false
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					allowed = allowed || (p.Port != nil && p.Port.String() == port)
				}
			}
			if !allowed {
				t.Errorf("NetworkPolicy %s lets no one reach port %q, which the PodMonitor scrapes", np.Name, port)
			}
		})
	}
}

// checkServiceAccount: pods run as the chart's ServiceAccount, which carries
// the configured annotations (IRSA role).
func checkServiceAccount(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	for _, c := range []string{"driver", "executor"} {
		name := objs.byComponent(t, c).template.Spec.ServiceAccountName
		sa, ok := objs.serviceAccounts[name]
		if !ok {
			if boolValue(vals, "serviceAccount.create") {
				t.Errorf("%s runs as ServiceAccount %q, which the chart does not create", c, name)
			}
			continue
		}
		want, _ := valueAt(vals, "serviceAccount.annotations")
		for k, v := range want.(map[string]any) {
			if sa.Annotations[k] != v {
				t.Errorf("ServiceAccount %s: annotation %s = %q, want %q", name, k, sa.Annotations[k], v)
			}
		}
	}
}

// checkFlags: every SLUICE_* variable and every --flag argument the chart
// gives the driver and executor names a real flag of that binary, so that a
// renamed flag or a typo in a template is caught here rather than silently
// ignored (flagenv reads only variables of defined flags).
func checkFlags(t *testing.T, objs *objects, flags map[string]map[string]bool) {
	t.Helper()
	for _, bin := range []string{"driver", "executor"} {
		c := &objs.byComponent(t, bin).template.Spec.Containers[0]
		var used []string
		for _, e := range c.Env {
			if name, ok := strings.CutPrefix(e.Name, "SLUICE_"); ok {
				used = append(used, strings.ReplaceAll(strings.ToLower(name), "_", "-"))
			}
		}
		for _, a := range c.Args {
			if name, ok := strings.CutPrefix(a, "--"); ok {
				name, _, _ = strings.Cut(name, "=")
				used = append(used, name)
			}
		}
		for _, f := range used {
			switch {
			case flags[bin][f]:
			default:
				t.Errorf("%s: the chart sets --%s (SLUICE_%s), which is not a flag of cmd/%s (flags: %v)",
					bin, f, strings.ToUpper(strings.ReplaceAll(f, "-", "_")), bin, sortedKeys(flags[bin]))
			}
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var (
	flagsOnce sync.Once
	flagsSet  map[string]map[string]bool
	flagsErr  error
)

// binaryFlags builds cmd/driver and cmd/executor of the main module and reads
// their flags from -h.
func binaryFlags(t *testing.T) map[string]map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-flags")
		if err != nil {
			flagsErr = err
			return
		}
		defer os.RemoveAll(dir)
		flagsSet = map[string]map[string]bool{}
		line := regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`)
		for _, bin := range []string{"driver", "executor"} {
			out := filepath.Join(dir, bin)
			build := exec.Command("go", "build", "-o", out, "./cmd/"+bin)
			build.Dir = repoRoot
			build.Env = append(os.Environ(), "GOWORK=off")
			if b, err := build.CombinedOutput(); err != nil {
				flagsErr = fmt.Errorf("go build ./cmd/%s: %v\n%s", bin, err, b)
				return
			}
			// -h prints the flags and exits non-zero; only the output matters.
			help, _ := exec.Command(out, "-h").CombinedOutput()
			flagsSet[bin] = map[string]bool{}
			for _, m := range line.FindAllStringSubmatch(string(help), -1) {
				flagsSet[bin][m[1]] = true
			}
			if len(flagsSet[bin]) == 0 {
				flagsErr = fmt.Errorf("%s -h listed no flags:\n%s", bin, help)
				return
			}
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flagsSet
}
