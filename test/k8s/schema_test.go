package k8s

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

// TestBadValuesRefused: values.schema.json (types, ranges, enums, unknown
// keys) and the chart's cross-value checks refuse bad values at render time,
// which is when `helm install` and `helm upgrade` run them, with a message
// naming the value.
func TestBadValuesRefused(t *testing.T) {
	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	type m = map[string]any
	tests := []struct {
		name string
		vals m
		want []string // substrings of the error, all required
	}{
		{"negative driver replicas", m{"driver": m{"replicas": -1}}, []string{"/driver/replicas", "minimum"}},
		{"misspelled key", m{"executor": m{"replica": 3}}, []string{"/executor", "replica"}},
		{"misspelled top-level key", m{"etcdEndpoints": []any{"http://etcd:2379"}}, []string{"etcdEndpoints"}},
		{"string for a number", m{"executor": m{"slots": "four"}}, []string{"/executor/slots"}},
		{"zero slots", m{"executor": m{"slots": 0}}, []string{"/executor/slots", "minimum"}},
		{"port out of range", m{"driver": m{"grpcPort": 70000}}, []string{"/driver/grpcPort", "maximum"}},
		{"executor port out of range", m{"executor": m{"httpPort": 0}}, []string{"/executor/httpPort", "minimum"}},
		{"even etcd members", m{"etcd": m{"bundled": m{"replicas": 2}}}, []string{"/etcd/bundled/replicas"}},
		{"unknown log level", m{"logLevel": "verbose"}, []string{"/logLevel"}},
		{"unknown pull policy", m{"image": m{"pullPolicy": "Sometimes"}}, []string{"/image/pullPolicy"}},
		{"unknown anti-affinity", m{"driver": m{"antiAffinity": "maybe"}}, []string{"/driver/antiAffinity"}},
		{"bad memory quantity", m{"driver": m{"resources": m{"limits": m{"memory": "lots"}}}}, []string{"/driver/resources/limits/memory"}},
		{"bad etcd endpoint", m{"etcd": m{"bundled": m{"enabled": false}, "endpoints": []any{"etcd 2379"}}}, []string{"/etcd/endpoints/0"}},
		{"external etcd without endpoints", m{"etcd": m{"bundled": m{"enabled": false}}}, []string{"/etcd/endpoints", "minItems"}},
		{"PDB percentage over 100", m{"executor": m{"pdb": m{"maxUnavailable": "150%"}}}, []string{"/executor/pdb/maxUnavailable"}},
		{"lease below 2s", m{"driver": m{"leaseTTLSeconds": 1}}, []string{"/driver/leaseTTLSeconds"}},
		{"unknown checkpoint store", m{"driver": m{"store": "redis://cache/0"}}, []string{"/driver/store"}},
		{"bad scrape interval", m{"metrics": m{"serviceMonitor": m{"interval": "often"}}}, []string{"/metrics/serviceMonitor/interval"}},
		{"bad executor scrape timeout", m{"metrics": m{"podMonitor": m{"scrapeTimeout": "10"}}}, []string{"/metrics/podMonitor/scrapeTimeout"}},
		{"misspelled monitor", m{"metrics": m{"podMonitors": m{"enabled": true}}}, []string{"/metrics", "podMonitors"}},
		{"bad alert duration", m{"monitoring": m{"prometheusRule": m{"noLeader": m{"for": "2 minutes"}}}}, []string{"/monitoring/prometheusRule/noLeader/for"}},
		{"bad alert window", m{"monitoring": m{"prometheusRule": m{"lagGrowing": m{"window": "10"}}}}, []string{"/monitoring/prometheusRule/lagGrowing/window"}},
		{"zero expected executors", m{"monitoring": m{"prometheusRule": m{"executorsMissing": m{"minExecutors": 0}}}}, []string{"/monitoring/prometheusRule/executorsMissing/minExecutors", "minimum"}},
		{"misspelled alert", m{"monitoring": m{"prometheusRule": m{"noLeaders": m{"enabled": false}}}}, []string{"/monitoring/prometheusRule", "noLeaders"}},
		{"severity with a space", m{"monitoring": m{"prometheusRule": m{"jobRetrying": m{"severity": "very bad"}}}}, []string{"/monitoring/prometheusRule/jobRetrying/severity"}},
		{"dashboard label not a string", m{"monitoring": m{"dashboard": m{"labels": m{"grafana_dashboard": 1}}}}, []string{"/monitoring/dashboard/labels/grafana_dashboard"}},

		// Checks across values, in the chart's templates.
		{"heartbeat timeout below 3x interval", m{"driver": m{"heartbeatIntervalSeconds": 2, "heartbeatTimeoutSeconds": 5}},
			[]string{"driver.heartbeatTimeoutSeconds (5) must be at least 3x driver.heartbeatIntervalSeconds (2)"}},
		{"driver grace period shorter than shutdown", m{"driver": m{"shutdownTimeoutSeconds": 30, "terminationGracePeriodSeconds": 20}},
			[]string{"driver.terminationGracePeriodSeconds (20) must be at least driver.shutdownTimeoutSeconds (30) + 15"}},
		{"executor grace period shorter than drain", m{"executor": m{"drainTimeoutSeconds": 60, "terminationGracePeriodSeconds": 30}},
			[]string{"executor.terminationGracePeriodSeconds (30) must be at least executor.drainTimeoutSeconds (60) + 10"}},
		{"same driver ports", m{"driver": m{"grpcPort": 8080}}, []string{"driver.grpcPort and driver.httpPort must differ"}},
		{"autoscaling min above max", m{"executor": m{"autoscaling": m{"enabled": true, "minReplicas": 5, "maxReplicas": 3}}},
			[]string{"executor.autoscaling.minReplicas (5) must not exceed executor.autoscaling.maxReplicas (3)"}},
		{"autoscaling without a metric", m{"executor": m{"autoscaling": m{"enabled": true, "targetCPUUtilizationPercentage": nil}}},
			[]string{"executor.autoscaling: set targetCPUUtilizationPercentage or enable lag"}},
		{"endpoints with bundled etcd", m{"etcd": m{"endpoints": []any{"http://etcd:2379"}}},
			[]string{"etcd.endpoints and etcd.bundled.enabled are exclusive"}},
		{"TLS without a Secret", m{"etcd": m{"bundled": m{"enabled": false}, "endpoints": []any{"https://etcd:2379"}, "tls": m{"enabled": true}}},
			[]string{"etcd.tls.secretName is required"}},
		{"TLS to the bundled etcd", m{"etcd": m{"tls": m{"enabled": true, "secretName": "x"}}},
			[]string{"etcd.tls.enabled applies to an external etcd"}},
		{"unknown TLS source", m{"tls": m{"source": "vault"}}, []string{"/tls/source"}},
		{"unknown token role", m{"auth": m{"tokens": []any{m{"name": "ci", "role": "root"}}}}, []string{"/auth/tokens/0/role"}},
		{"token name not a Secret key", m{"auth": m{"tokens": []any{m{"name": "CI Bot", "role": "viewer"}}}}, []string{"/auth/tokens/0/name"}},
		{"misspelled NetworkPolicy selector", m{"networkPolicy": m{"clients": m{"podSelector": m{"matchLabel": m{"a": "b"}}}}}, []string{"/networkPolicy/clients/podSelector", "matchLabel"}},
		{"cert-manager without an issuer", m{"tls": m{"source": "certManager"}},
			[]string{"tls.certManager.issuerRef.name is required with tls.source=certManager"}},
		{"duplicate token name", m{"auth": m{"tokens": []any{m{"name": "ci", "role": "viewer"}, m{"name": "ci", "role": "admin"}}}},
			[]string{`auth.tokens: the name "ci" appears twice`}},
		{"auth without tokens", m{"auth": m{"tokens": []any{}}}, []string{"auth.tokens is empty"}},
		{"existing ServiceAccount without a name", m{"serviceAccount": m{"create": false}},
			[]string{"serviceAccount.name is required when serviceAccount.create is false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := chart.Render(c, testRelease, testNamespace, tt.vals)
			if err == nil {
				t.Fatalf("values %v were accepted", tt.vals)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}
