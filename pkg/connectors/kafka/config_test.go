package kafka_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/connectors/kafka"
)

func TestConfigValidate(t *testing.T) {
	valid := func() kafka.Config {
		return kafka.Config{BootstrapServers: "k1:9092,k2:9092", Subscribe: []string{"orders"}, FailOnDataLoss: true}
	}
	with := func(f func(*kafka.Config)) kafka.Config {
		c := valid()
		f(&c)
		return c
	}
	props := func(kv ...string) func(*kafka.Config) {
		return func(c *kafka.Config) {
			c.Properties = map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				c.Properties[kv[i]] = kv[i+1]
			}
		}
	}
	tests := []struct {
		name string
		cfg  kafka.Config
		want string // "" for valid
	}{
		{"valid", valid(), ""},
		{"pattern", with(func(c *kafka.Config) { c.Subscribe, c.SubscribePattern = nil, `orders-\d+` }), ""},
		{"assign", with(func(c *kafka.Config) { c.Subscribe, c.Assign = nil, `{"orders":[0,2]}` }), ""},
		{"everything", with(func(c *kafka.Config) {
			c.StartingOffsets = `{"orders":{"0":23,"1":-2,"2":-1}}`
			c.StartingTimestamp = 1700000000000
			c.MaxOffsetsPerTrigger, c.MaxRatePerPartition, c.MaxRecordsPerPartition = 1000, 10, 500
			c.Properties = map[string]string{
				"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
				"sasl.username": "u", "kafka.sasl.password": "p", "ssl.endpoint.identification.algorithm": "",
				"client.id": "me", "request.timeout.ms": "30000", "isolation.level": "read_committed",
			}
		}), ""},

		{"no bootstrap", with(func(c *kafka.Config) { c.BootstrapServers = " " }), "source.kafka.bootstrapServers: required"},
		{"bootstrap without port", with(func(c *kafka.Config) { c.BootstrapServers = "k1:9092,k2" }), `source.kafka.bootstrapServers: "k2" is not host:port`},
		{"bootstrap bad port", with(func(c *kafka.Config) { c.BootstrapServers = "k1:99999" }), `"k1:99999" has an invalid port`},
		{"no subscription", with(func(c *kafka.Config) { c.Subscribe = nil }), "set exactly one of subscribe, subscribePattern and assign (got 0)"},
		{"two subscriptions", with(func(c *kafka.Config) { c.SubscribePattern = "x" }), "(got 2)"},
		{"bad topic", with(func(c *kafka.Config) { c.Subscribe = []string{"a b"} }), `source.kafka.subscribe: topic "a b" may only contain`},
		{"duplicate topic", with(func(c *kafka.Config) { c.Subscribe = []string{"a", "a"} }), `topic "a" is listed twice`},
		{"java regex", with(func(c *kafka.Config) { c.Subscribe, c.SubscribePattern = nil, `(?<=x)y` }), "source.kafka.subscribePattern: not a valid Go regexp"},
		{"assign not json", with(func(c *kafka.Config) { c.Subscribe, c.Assign = nil, `orders:0` }), `source.kafka.assign: want JSON like {"topicA":[0,1]}`},
		{"assign negative", with(func(c *kafka.Config) { c.Subscribe, c.Assign = nil, `{"orders":[-1]}` }), "partition -1 is negative"},
		{"assign empty", with(func(c *kafka.Config) { c.Subscribe, c.Assign = nil, `{"orders":[]}` }), `topic "orders" has no partitions`},
		{"startingOffsets word", with(func(c *kafka.Config) { c.StartingOffsets = "oldest" }), `source.kafka.startingOffsets: want "earliest", "latest" or JSON`},
		{"startingOffsets bad offset", with(func(c *kafka.Config) { c.StartingOffsets = `{"orders":{"0":-3}}` }), "offset -3 is invalid"},
		{"startingOffsets bad partition", with(func(c *kafka.Config) { c.StartingOffsets = `{"orders":{"x":1}}` }), `"x" is not a partition number`},
		{"startingOffsets other topic", with(func(c *kafka.Config) { c.StartingOffsets = `{"payments":{"0":1}}` }), `topic "payments" is not in subscribe`},
		{"startingOffsets unassigned", with(func(c *kafka.Config) {
			c.Subscribe, c.Assign, c.StartingOffsets = nil, `{"orders":[0]}`, `{"orders":{"1":5}}`
		}), "partition orders/1 is not in assign"},
		{"negative timestamp", with(func(c *kafka.Config) { c.StartingTimestamp = -1 }), "source.kafka.startingTimestamp: must not be negative (got -1)"},
		{"negative maxOffsetsPerTrigger", with(func(c *kafka.Config) { c.MaxOffsetsPerTrigger = -5 }), "source.kafka.maxOffsetsPerTrigger: must not be negative (got -5)"},
		{"negative maxRatePerPartition", with(func(c *kafka.Config) { c.MaxRatePerPartition = -1 }), "source.kafka.maxRatePerPartition: must not be negative"},
		{"negative maxRecordsPerPartition", with(func(c *kafka.Config) { c.MaxRecordsPerPartition = -1 }), "source.kafka.maxRecordsPerPartition: must not be negative"},

		{"unknown property", with(props("fetch.max.bytes", "1")), `source.kafka.properties: unknown property "fetch.max.bytes"`},
		{"property twice", with(props("client.id", "a", "kafka.client.id", "b")), `"client.id" is set both with and without`},
		{"bad protocol", with(props("security.protocol", "TLS")), `properties.security.protocol: "TLS" is not one of`},
		{"sasl without mechanism", with(props("security.protocol", "SASL_SSL", "sasl.username", "u", "sasl.password", "p")), "properties.sasl.mechanism: required with security.protocol SASL_SSL"},
		{"bad mechanism", with(props("security.protocol", "SASL_PLAINTEXT", "sasl.mechanism", "GSSAPI")), `"GSSAPI" is not one of PLAIN`},
		{"sasl without user", with(props("security.protocol", "SASL_PLAINTEXT", "sasl.mechanism", "PLAIN", "sasl.password", "p")), "properties.sasl.username: required"},
		{"sasl without password", with(props("security.protocol", "SASL_PLAINTEXT", "sasl.mechanism", "PLAIN", "sasl.username", "u")), "properties.sasl.password: required"},
		{"sasl over plaintext", with(props("sasl.mechanism", "PLAIN")), "properties.sasl.mechanism: set but security.protocol is PLAINTEXT"},
		{"ssl over plaintext", with(props("ssl.ca.location", "/ca.pem")), "properties.ssl.ca.location: set but security.protocol is PLAINTEXT"},
		{"cert without key", with(props("security.protocol", "SSL", "ssl.certificate.location", "/c.pem")), "ssl.certificate.location and ssl.key.location go together"},
		{"bad endpoint algorithm", with(props("security.protocol", "SSL", "ssl.endpoint.identification.algorithm", "dns")), `"dns" is not "https" or ""`},
		{"empty client id", with(props("client.id", " ")), "properties.client.id: must not be empty"},
		{"bad timeout", with(props("request.timeout.ms", "0")), `properties.request.timeout.ms: want a positive number of milliseconds (got "0")`},
		{"bad isolation", with(props("isolation.level", "serializable")), `"serializable" is not read_uncommitted or read_committed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateNeverEchoesSecrets(t *testing.T) {
	cfg := kafka.Config{BootstrapServers: "k:9092", Subscribe: []string{"t"}, Properties: map[string]string{
		"security.protocol": "SASL_SSL", "sasl.mechanism": "NOPE", "sasl.username": "u", "sasl.password": "hunter2",
	}}
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Validate() = %v: want an error that does not show the password", err)
	}
}

func TestRedacted(t *testing.T) {
	cfg := kafka.Config{BootstrapServers: "k:9092", Subscribe: []string{"t"}, Properties: map[string]string{
		"sasl.username": "u", "sasl.password": "hunter2", "kafka.ssl.key.password": "x",
	}}
	r := cfg.Redacted()
	if r.Properties["sasl.password"] != "[redacted]" || r.Properties["kafka.ssl.key.password"] != "[redacted]" || r.Properties["sasl.username"] != "u" {
		t.Fatalf("Redacted properties = %v", r.Properties)
	}
	if cfg.Properties["sasl.password"] != "hunter2" {
		t.Fatal("Redacted changed the original")
	}
	for key, secret := range map[string]bool{"sasl.password": true, "kafka.sasl.jaas.config": true, "sasl.username": false, "client.id": false} {
		if kafka.IsSecretProperty(key) != secret {
			t.Errorf("IsSecretProperty(%q) = %v, want %v", key, !secret, secret)
		}
	}
}

func TestNewRejectsBadConfigAndOptions(t *testing.T) {
	if _, err := kafka.NewSource(kafka.Config{}); err == nil || !strings.Contains(err.Error(), "bootstrapServers") {
		t.Fatalf("NewSource(zero Config) = %v", err)
	}
	cfg := kafka.Config{BootstrapServers: "k:9092", Subscribe: []string{"t"}}
	if _, err := kafka.NewReaderPool(cfg, kafka.WithCacheCapacity(0)); err == nil || !strings.Contains(err.Error(), "WithCacheCapacity") {
		t.Fatalf("NewReaderPool(WithCacheCapacity(0)) = %v", err)
	}
	cfg.Properties = map[string]string{"security.protocol": "SSL", "ssl.ca.location": "/does/not/exist.pem"}
	if _, err := kafka.NewSource(cfg); err == nil || !strings.Contains(err.Error(), "properties.ssl.ca.location") {
		t.Fatalf("NewSource with a missing CA file = %v", err)
	}
}
