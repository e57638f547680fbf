package k8s

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// fullname is the release's name prefix, read off the driver Deployment.
func (o *objects) fullname(t *testing.T) string {
	t.Helper()
	return strings.TrimSuffix(o.byComponent(t, "driver").name, "-driver")
}

// secretName is the Secret of a TLS piece (driver, executor, etcd,
// etcdClient): the chart's name, or with tls.source=existing the one named in
// tls.existingSecrets.
func (o *objects) secretName(t *testing.T, which string) string {
	t.Helper()
	if src, _ := valueAt(o.values, "tls.source"); src == "existing" {
		if v, _ := valueAt(o.values, "tls.existingSecrets."+which); v != "" && v != nil {
			return v.(string)
		}
	}
	suffix := map[string]string{"driver": "driver-tls", "executor": "executor-tls", "etcd": "etcd-tls", "etcdClient": "etcd-client-tls"}[which]
	return o.fullname(t) + "-" + suffix
}

// mountOf returns where container c mounts the Secret named secret (as a
// secret volume), failing the test when it does not.
func mountOf(t *testing.T, spec *corev1.PodSpec, c *corev1.Container, secret string) string {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Secret == nil || v.Secret.SecretName != secret {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				if !m.ReadOnly {
					t.Errorf("container %s mounts Secret %s writable", c.Name, secret)
				}
				return m.MountPath
			}
		}
	}
	t.Fatalf("container %s does not mount Secret %q", c.Name, secret)
	return ""
}

func executorIdentities(t *testing.T, vals map[string]any) int {
	if boolValue(vals, "executor.autoscaling.enabled") {
		return intValue(t, vals, "executor.autoscaling.maxReplicas")
	}
	return intValue(t, vals, "executor.replicas")
}

// checkSecurity: with tls.enabled the drivers serve TLS from the mounted
// driver Secret and admit executors by its CA, executors present a
// certificate of their own (named like their pod, their --id) and verify the
// driver by the driver Service's name; without it the drivers run with
// --insecure. Tokens and the secrets key are mounted and passed when on. The
// Secrets the chart generates hold what the flags need: a CA and
// certificates that verify for the names dialed, token digests matching the
// tokens, a 32-byte key.
func checkSecurity(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	dw, ew := objs.byComponent(t, "driver"), objs.byComponent(t, "executor")
	dc, ec := &dw.template.Spec.Containers[0], &ew.template.Spec.Containers[0]
	tlsOn := boolValue(vals, "tls.enabled")
	src, _ := valueAt(vals, "tls.source")
	if slicesContains(dc.Args, "--insecure") == tlsOn {
		t.Errorf("driver args %q: --insecure must be given exactly when tls.enabled is false (%v)", dc.Args, tlsOn)
	}
	if got, _ := env(ec, "SLUICE_ID"); got != "$(POD_NAME)" {
		t.Errorf("executor SLUICE_ID %q, want $(POD_NAME): its certificate names the pod", got)
	}
	if tlsOn {
		dir := mountOf(t, &dw.template.Spec, dc, objs.secretName(t, "driver"))
		for _, a := range []string{"--tls-cert=" + dir + "/tls.crt", "--tls-key=" + dir + "/tls.key", "--tls-client-ca=" + dir + "/ca.crt"} {
			if !slicesContains(dc.Args, a) {
				t.Errorf("driver args %q lack %s", dc.Args, a)
			}
		}
		n := executorIdentities(t, vals)
		var edir string
		if src == "certManager" {
			edir = checkProjectedExecutorCerts(t, objs, ew.template, ec, n)
		} else {
			edir = mountOf(t, &ew.template.Spec, ec, objs.secretName(t, "executor"))
		}
		for name, want := range map[string]string{
			"SLUICE_TLS_CA":          edir + "/ca.crt",
			"SLUICE_TLS_CERT":        edir + "/$(POD_NAME).crt",
			"SLUICE_TLS_KEY":         edir + "/$(POD_NAME).key",
			"SLUICE_TLS_SERVER_NAME": dw.name,
		} {
			if got, _ := env(ec, name); got != want {
				t.Errorf("executor %s %q, want %q", name, got, want)
			}
		}
		if i, j := envIndex(ec, "POD_NAME"), envIndex(ec, "SLUICE_TLS_CERT"); i < 0 || i > j {
			t.Errorf("executor: POD_NAME must be defined before SLUICE_TLS_CERT")
		}
		switch src {
		case "generate":
			checkGeneratedTLS(t, objs, vals, n)
		case "certManager":
			checkCertificates(t, objs, vals, n)
		case "existing":
			for _, s := range objs.secrets {
				if s.Labels["app.kubernetes.io/component"] == "tls" {
					t.Errorf("tls.source=existing, yet the chart renders Secret %s", s.Name)
				}
			}
		}
	} else {
		for _, a := range dc.Args {
			if strings.HasPrefix(a, "--tls-") {
				t.Errorf("driver arg %s with tls.enabled false", a)
			}
		}
		for _, e := range ec.Env {
			if strings.HasPrefix(e.Name, "SLUICE_TLS") {
				t.Errorf("executor %s with tls.enabled false", e.Name)
			}
		}
		if len(objs.certificates) != 0 {
			t.Errorf("tls.enabled false, yet %d Certificates", len(objs.certificates))
		}
	}

	// Tokens.
	if boolValue(vals, "auth.enabled") {
		existing, _ := valueAt(vals, "auth.existingSecret")
		name := objs.fullname(t) + "-auth"
		if existing != "" {
			name = existing.(string)
		}
		dir := mountOf(t, &dw.template.Spec, dc, name)
		if !slicesContains(dc.Args, "--auth-file="+dir+"/auth.yaml") {
			t.Errorf("driver args %q lack --auth-file=%s/auth.yaml", dc.Args, dir)
		}
		if existing == "" {
			checkGeneratedTokens(t, objs, vals, name)
		} else if _, ok := objs.secrets[name]; ok {
			t.Errorf("auth.existingSecret %s is rendered by the chart", name)
		}
	} else if strings.Contains(strings.Join(dc.Args, " "), "--auth-file") {
		t.Errorf("driver args %q: --auth-file with auth.enabled false", dc.Args)
	}

	// The secrets key.
	if boolValue(vals, "secrets.enabled") {
		existing, _ := valueAt(vals, "secrets.keySecret")
		name := objs.fullname(t) + "-secrets-key"
		if existing != "" {
			name = existing.(string)
		}
		dir := mountOf(t, &dw.template.Spec, dc, name)
		if !slicesContains(dc.Args, "--secrets-key-file="+dir+"/secrets.key") {
			t.Errorf("driver args %q lack --secrets-key-file=%s/secrets.key", dc.Args, dir)
		}
		if existing == "" {
			s := objs.secrets[name]
			if s == nil {
				t.Fatalf("Secret %s with the generated secrets key is not rendered", name)
			}
			line := strings.TrimSuffix(string(s.Data["secrets.key"]), "\n")
			if k, err := base64.StdEncoding.DecodeString(line); err != nil || len(k) != 32 || strings.Contains(line, "\n") {
				t.Errorf("generated secrets.key %q is not one base64 line of 32 bytes (%v)", line, err)
			}
		}
	} else if strings.Contains(strings.Join(dc.Args, " "), "--secrets-key-file") {
		t.Errorf("driver args %q: --secrets-key-file with secrets.enabled false", dc.Args)
	}

	// The executors and drivers never mount a CA key.
	for _, w := range []workload{dw, ew} {
		for _, v := range w.template.Spec.Volumes {
			if v.Secret != nil && strings.HasSuffix(v.Secret.SecretName, "-ca") {
				t.Errorf("%s mounts the CA Secret %s", w.name, v.Secret.SecretName)
			}
		}
	}
}

// checkProjectedExecutorCerts: with cert-manager every executor pod's
// Secret is projected into one volume as <pod>.crt and <pod>.key.
func checkProjectedExecutorCerts(t *testing.T, objs *objects, tpl *corev1.PodTemplateSpec, c *corev1.Container, n int) string {
	t.Helper()
	for _, v := range tpl.Spec.Volumes {
		if v.Projected == nil || v.Name != "tls" {
			continue
		}
		paths := map[string]string{}
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			for _, it := range src.Secret.Items {
				paths[it.Path] = src.Secret.Name + "/" + it.Key
			}
		}
		ex := objs.byComponent(t, "executor").name
		for i := 0; i < n; i++ {
			pod := fmt.Sprintf("%s-%d", ex, i)
			if paths[pod+".crt"] != pod+"-tls/tls.crt" || paths[pod+".key"] != pod+"-tls/tls.key" {
				t.Errorf("executor TLS volume lacks %s.crt/.key from Secret %s-tls: %v", pod, pod, paths)
			}
		}
		if paths["ca.crt"] == "" {
			t.Errorf("executor TLS volume lacks ca.crt")
		}
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				return m.MountPath
			}
		}
	}
	t.Fatalf("executor has no projected tls volume")
	return ""
}

func pemCert(t *testing.T, what string, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", what)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c
}

func secretData(t *testing.T, objs *objects, name, key string) []byte {
	t.Helper()
	s := objs.secrets[name]
	if s == nil {
		t.Fatalf("Secret %s is not rendered", name)
	}
	b := s.Data[key]
	if b == nil && s.StringData[key] != "" {
		b = []byte(s.StringData[key])
	}
	if len(b) == 0 {
		t.Fatalf("Secret %s has no %s", name, key)
	}
	return b
}

// verify checks that leaf chains to ca for usage (and the DNS name, if any).
func verify(t *testing.T, what string, ca, leaf *x509.Certificate, usage x509.ExtKeyUsage, dnsName string) error {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// checkGeneratedTLS: the generated Secrets hold a CA, a driver certificate
// valid for the names executors and port-forwards dial, one executor
// certificate per possible executor pod named like it, and for the bundled
// etcd member and client certificates from a second CA that the drivers do
// not trust for executors.
func checkGeneratedTLS(t *testing.T, objs *objects, vals map[string]any, n int) {
	t.Helper()
	fn := objs.fullname(t)
	ca := pemCert(t, fn+"-ca", secretData(t, objs, fn+"-ca", "tls.crt"))
	if !ca.IsCA {
		t.Errorf("%s-ca is not a CA", fn)
	}
	drv := objs.secretName(t, "driver")
	if got := pemCert(t, drv+" ca.crt", secretData(t, objs, drv, "ca.crt")); !got.Equal(ca) {
		t.Errorf("%s ca.crt is not the CA of %s-ca", drv, fn)
	}
	dcert := pemCert(t, drv, secretData(t, objs, drv, "tls.crt"))
	svc := objs.byComponent(t, "driver").name
	for _, name := range []string{svc, svc + "." + objs.namespace + ".svc", "localhost"} {
		if err := verify(t, "driver certificate", ca, dcert, x509.ExtKeyUsageServerAuth, name); err != nil {
			t.Error(err)
		}
	}
	if err := dcert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("driver certificate: %v (port-forwards dial 127.0.0.1)", err)
	}
	ex := objs.secretName(t, "executor")
	exName := objs.byComponent(t, "executor").name
	for i := 0; i < n; i++ {
		pod := fmt.Sprintf("%s-%d", exName, i)
		c := pemCert(t, ex+" "+pod, secretData(t, objs, ex, pod+".crt"))
		secretData(t, objs, ex, pod+".key")
		if c.Subject.CommonName != pod {
			t.Errorf("executor certificate %s names %q: the driver knows the executor by it, and its --id is the pod name", pod, c.Subject.CommonName)
		}
		if len(c.Subject.OrganizationalUnit) != 0 {
			t.Errorf("executor certificate %s has OU %v: an OU naming a role makes it a user's", pod, c.Subject.OrganizationalUnit)
		}
		if err := verify(t, "executor certificate "+pod, ca, c, x509.ExtKeyUsageClientAuth, ""); err != nil {
			t.Error(err)
		}
	}
	if _, ok := objs.secrets[ex].Data[fmt.Sprintf("%s-%d.crt", exName, n)]; ok {
		t.Errorf("executor Secret holds more certificates than executors (%d)", n)
	}
	if !boolValue(vals, "etcd.bundled.enabled") {
		if _, ok := objs.secrets[fn+"-etcd-ca"]; ok {
			t.Errorf("external etcd, yet an etcd CA is generated")
		}
		return
	}
	eca := pemCert(t, fn+"-etcd-ca", secretData(t, objs, fn+"-etcd-ca", "tls.crt"))
	if eca.Equal(ca) {
		t.Errorf("the bundled etcd's CA is the drivers' client CA: etcd certificates would pass as executors'")
	}
	et, ecl := objs.secretName(t, "etcd"), objs.secretName(t, "etcdClient")
	member := pemCert(t, et, secretData(t, objs, et, "tls.crt"))
	etcdSvc := objs.byComponent(t, "etcd").name
	for i := 0; i < intValue(t, vals, "etcd.bundled.replicas"); i++ {
		host := fmt.Sprintf("%s-%d.%s.%s.svc", etcdSvc, i, etcdSvc, objs.namespace)
		for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if err := verify(t, "etcd member certificate", eca, member, u, host); err != nil {
				t.Error(err)
			}
		}
	}
	client := pemCert(t, ecl, secretData(t, objs, ecl, "tls.crt"))
	if err := verify(t, "etcd client certificate", eca, client, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Error(err)
	}
	if err := verify(t, "etcd client certificate against the drivers' CA", ca, client, x509.ExtKeyUsageClientAuth, ""); err == nil {
		t.Errorf("the drivers' etcd client certificate would pass as an executor's")
	}
	for _, s := range []string{et, ecl} {
		if got := pemCert(t, s+" ca.crt", secretData(t, objs, s, "ca.crt")); !got.Equal(eca) {
			t.Errorf("%s ca.crt is not the etcd CA", s)
		}
	}
}

// checkCertificates: with cert-manager, a Certificate for the driver, one per
// possible executor pod and, for the bundled etcd, one for its members and
// one for the drivers as its clients, from the configured issuers.
func checkCertificates(t *testing.T, objs *objects, vals map[string]any, n int) {
	t.Helper()
	issuer, _ := valueAt(vals, "tls.certManager.issuerRef.name")
	etcdIssuer, _ := valueAt(vals, "tls.certManager.etcdIssuerRef.name")
	if etcdIssuer == "" {
		etcdIssuer = issuer
	}
	want := map[string]any{objs.secretName(t, "driver"): issuer}
	exName := objs.byComponent(t, "executor").name
	for i := 0; i < n; i++ {
		want[fmt.Sprintf("%s-%d-tls", exName, i)] = issuer
	}
	if boolValue(vals, "etcd.bundled.enabled") {
		want[objs.secretName(t, "etcd")] = etcdIssuer
		want[objs.secretName(t, "etcdClient")] = etcdIssuer
	}
	if len(objs.certificates) != len(want) {
		t.Errorf("%d Certificates, want %d", len(objs.certificates), len(want))
	}
	for name, iss := range want {
		c := objs.certificates[name]
		if c == nil {
			t.Errorf("no Certificate %s", name)
			continue
		}
		if c.Spec.SecretName != name || c.Spec.IssuerRef.Name != iss {
			t.Errorf("Certificate %s: secret %s, issuer %s; want %s, %v", name, c.Spec.SecretName, c.Spec.IssuerRef.Name, name, iss)
		}
		if strings.HasPrefix(name, exName+"-") && c.Spec.CommonName != strings.TrimSuffix(name, "-tls") {
			t.Errorf("Certificate %s names %q, want its pod", name, c.Spec.CommonName)
		}
	}
	if d := objs.certificates[objs.secretName(t, "driver")]; d != nil && !slicesContains(d.Spec.DNSNames, objs.byComponent(t, "driver").name) {
		t.Errorf("driver Certificate DNS names %v lack the driver Service", d.Spec.DNSNames)
	}
}

// checkGeneratedTokens: the tokens Secret has one token per auth.tokens
// entry, and the drivers' auth.yaml their SHA-256 digests with the roles.
func checkGeneratedTokens(t *testing.T, objs *objects, vals map[string]any, authSecret string) {
	t.Helper()
	tokens := objs.secrets[objs.fullname(t)+"-tokens"]
	if tokens == nil {
		t.Fatalf("no generated tokens Secret")
	}
	var file struct {
		Tokens []struct {
			Name   string `json:"name"`
			SHA256 string `json:"sha256"`
			Role   string `json:"role"`
		} `json:"tokens"`
	}
	if err := yaml.UnmarshalStrict(secretData(t, objs, authSecret, "auth.yaml"), &file); err != nil {
		t.Fatalf("auth.yaml: %v", err)
	}
	want, _ := valueAt(vals, "auth.tokens")
	if len(file.Tokens) != len(want.([]any)) || len(tokens.Data) != len(file.Tokens) {
		t.Fatalf("auth.yaml has %d tokens, the tokens Secret %d, auth.tokens %d", len(file.Tokens), len(tokens.Data), len(want.([]any)))
	}
	for i, w := range want.([]any) {
		w := w.(map[string]any)
		got := file.Tokens[i]
		tok := tokens.Data[got.Name]
		sum := sha256.Sum256(tok)
		if got.Name != w["name"] || got.Role != w["role"] || got.SHA256 != hex.EncodeToString(sum[:]) || len(tok) < 32 {
			t.Errorf("auth.yaml entry %+v does not match token %q (%d bytes) of auth.tokens %v", got, got.Name, len(tok), w)
		}
	}
}

// checkNetworkPolicies: with networkPolicy.enabled the drivers take the gRPC
// port from executors and clients only and HTTP from clients and
// Prometheus, executors only /metrics scrapes, the bundled etcd its client
// port from drivers and its peer port from its members; every rule names its
// peers (a rule without "from" would admit everyone) and egress stays open.
func checkNetworkPolicies(t *testing.T, objs *objects, vals map[string]any) {
	t.Helper()
	if !boolValue(vals, "networkPolicy.enabled") {
		if len(objs.networkPolicies) != 0 {
			t.Errorf("networkPolicy.enabled false, yet %d NetworkPolicies", len(objs.networkPolicies))
		}
		return
	}
	comps := []string{"driver", "executor"}
	if boolValue(vals, "etcd.bundled.enabled") {
		comps = append(comps, "etcd")
	}
	if len(objs.networkPolicies) != len(comps) {
		t.Errorf("%d NetworkPolicies, want one per component %v", len(objs.networkPolicies), comps)
	}
	for _, comp := range comps {
		w := objs.byComponent(t, comp)
		var np *networkingv1.NetworkPolicy
		for _, p := range objs.networkPolicies {
			sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
			if err == nil && !sel.Empty() && sel.Matches(labels.Set(w.template.Labels)) {
				np = p
			}
		}
		if np == nil {
			t.Errorf("no NetworkPolicy selects the %s pods", comp)
			continue
		}
		if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
			t.Errorf("NetworkPolicy %s: policyTypes %v, want Ingress only (jobs reach sources and sinks anywhere)", np.Name, np.Spec.PolicyTypes)
		}
		c := &w.template.Spec.Containers[0]
		// allowed: container port name -> components whose pods may reach it.
		allowed := map[string][]string{}
		for _, r := range np.Spec.Ingress {
			if len(r.From) == 0 || len(r.Ports) == 0 {
				t.Errorf("NetworkPolicy %s: a rule without peers or ports admits everyone: %+v", np.Name, r)
				continue
			}
			for _, port := range r.Ports {
				p := port.Port.String()
				if _, ok := containerPort(c, p); !ok {
					t.Errorf("NetworkPolicy %s: port %s is not a port of the %s container", np.Name, p, comp)
				}
				for _, from := range r.From {
					if from.PodSelector != nil && from.NamespaceSelector == nil {
						for _, other := range []string{"driver", "executor", "etcd"} {
							if other == "etcd" && !boolValue(vals, "etcd.bundled.enabled") {
								continue
							}
							sel, _ := metav1.LabelSelectorAsSelector(from.PodSelector)
							if sel.Matches(labels.Set(objs.byComponent(t, other).template.Labels)) {
								allowed[p] = append(allowed[p], other)
							}
						}
					}
				}
			}
		}
		want := map[string]map[string][]string{
			"driver":   {"grpc": {"executor"}},
			"executor": {},
			"etcd":     {"client": {"driver"}, "peer": {"etcd"}},
		}[comp]
		for port, from := range want {
			if strings.Join(allowed[port], ",") != strings.Join(from, ",") {
				t.Errorf("NetworkPolicy %s: port %s admits the chart's %v pods, want %v", np.Name, port, allowed[port], from)
			}
		}
		for port, from := range allowed {
			if _, ok := want[port]; !ok && comp != "driver" {
				t.Errorf("NetworkPolicy %s: port %s admits %v", np.Name, port, from)
			}
		}
	}
}
