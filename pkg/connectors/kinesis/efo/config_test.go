package efo

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "" = valid
	}{
		{"zero value", Config{}, ""},
		{"everything set", Config{ConsumerName: "orders-reader", ConsumerNamePrefix: "team.a_", ConsumerRefreshInterval: 5 * time.Minute,
			RequireConsumerDeregistration: true, ConsumerLifecycle: JobManaged}, ""},
		{"flink spelling", Config{ConsumerLifecycle: "SELF_MANAGED", ConsumerName: "x"}, ""},
		{"unknown lifecycle", Config{ConsumerLifecycle: "forever"}, `source.kinesis.consumerLifecycle: "forever" is not job-managed or self-managed`},
		{"bad name", Config{ConsumerName: "orders reader"}, `source.kinesis.consumerName: "orders reader" may only hold`},
		{"bad prefix", Config{ConsumerNamePrefix: "sluice/"}, `source.kinesis.consumerNamePrefix: "sluice/" may only hold`},
		{"prefix too long", Config{ConsumerNamePrefix: strings.Repeat("p", 128)}, "source.kinesis.consumerNamePrefix: is 128 characters"},
		{"name too long", Config{ConsumerNamePrefix: "p_", ConsumerName: strings.Repeat("n", 127)}, "source.kinesis.consumerName: consumerNamePrefix + consumerName is 129 characters"},
		{"refresh too often", Config{ConsumerRefreshInterval: 100 * time.Millisecond}, "source.kinesis.consumerRefreshInterval: 100ms is outside 1s to 1h0m0s"},
		{"refresh too rare", Config{ConsumerRefreshInterval: 2 * time.Hour}, "source.kinesis.consumerRefreshInterval: 2h0m0s is outside"},
		{"negative refresh", Config{ConsumerRefreshInterval: -time.Second}, "source.kinesis.consumerRefreshInterval: -1s is outside"},
		{"self-managed without name", Config{ConsumerLifecycle: SelfManaged}, "source.kinesis.consumerName: is required with consumerLifecycle self-managed"},
		{"self-managed with deregistration", Config{ConsumerLifecycle: SelfManaged, ConsumerName: "x", RequireConsumerDeregistration: true},
			"source.kinesis.requireConsumerDeregistration: cannot be true with consumerLifecycle self-managed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.ConsumerRefreshInterval != time.Minute || c.ConsumerLifecycle != JobManaged || c.RequireConsumerDeregistration {
		t.Errorf("defaults = %+v", c)
	}
	if got := (Config{ConsumerLifecycle: "Self_Managed"}).WithDefaults().ConsumerLifecycle; got != SelfManaged {
		t.Errorf("lifecycle Self_Managed normalised to %q", got)
	}
}

func TestConsumerNameFor(t *testing.T) {
	long := strings.Repeat("j", 200)
	for _, tc := range []struct {
		name string
		cfg  Config
		job  string
		want string
	}{
		{"derived", Config{}, "orders", "sluice_orders"},
		{"derived with prefix", Config{ConsumerNamePrefix: "team_"}, "orders", "team_orders"},
		{"explicit name is used as given", Config{ConsumerName: "my-consumer"}, "orders", "my-consumer"},
		{"explicit prefix applies to an explicit name", Config{ConsumerName: "reader", ConsumerNamePrefix: "databricks_"}, "orders", "databricks_reader"},
		{"characters the service refuses", Config{}, "orders/eu west", "sluice_orders-eu-west"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.ConsumerNameFor(tc.job); got != tc.want {
				t.Errorf("ConsumerNameFor(%q) = %q, want %q", tc.job, got, tc.want)
			}
		})
	}
	a, b := (Config{}).ConsumerNameFor(long+"a"), (Config{}).ConsumerNameFor(long+"b")
	if len(a) != 128 || len(b) != 128 || a == b || !consumerNameRE.MatchString(a) {
		t.Errorf("long job names give %q and %q: want 128 valid characters each, different", a, b)
	}
}
