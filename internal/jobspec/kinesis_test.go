package jobspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
)

const kinesisJob = `
name: countries
source:
  kinesis:
    streamName: "events, clicks"
    region: us-east-1
    endpoint: http://127.0.0.1:4568
    initialPosition: trim_horizon
    maxRecordsPerFetch: 5000
    maxFetchRate: 1.5
    minFetchPeriod: 500ms
    maxFetchDuration: 5s
    fetchBufferSize: 64mb
    shardsPerTask: 3
    maxShardsPerDescribe: 50
    describeShardInterval: 2s
    awsAccessKey: AKIAEXAMPLE
    awsSecretKey: very-secret
    roleArn: arn:aws:iam::123456789012:role/reader
    roleExternalId: ext
transforms:
  - decode: {format: json, schema: "country STRING"}
  - aggregate: {groupBy: [country], aggregations: [{fn: count, as: n}]}
sink:
  kinesis:
    streamName: counts
    region: us-east-1
    endpoint: http://127.0.0.1:4568
    partitionKey: country
    data: "country || ':' || CAST(n AS STRING)"
    awsAccessKey: AKIAEXAMPLE
    awsSecretKey: very-secret
    awsSessionToken: token
`

func TestCompileKinesis(t *testing.T) {
	spec, err := ParseYAML([]byte(kinesisJob))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := j.source.(kinesisSource).cfg
	if cfg.StreamName != "events, clicks" || !cfg.FailOnDataLoss || cfg.MaxFetchRate != 1.5 || cfg.ShardsPerTask != 3 ||
		cfg.DescribeShardInterval != "2s" || cfg.RoleExternalID != "ext" {
		t.Fatalf("source config %+v", cfg)
	}
	if got := j.SourceIdentity(); got != "kinesis:region=us-east-1;endpoint=http://127.0.0.1:4568;roleArn=arn:aws:iam::123456789012:role/reader;streamName=clicks,events" {
		t.Fatalf("identity %q", got)
	}
	if _, ok := j.sink.(kinesisSink); !ok {
		t.Fatalf("sink %T", j.sink)
	}
	// The constructors do not call AWS.
	src, err := j.NewSource()
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	pool, err := j.NewReaderPool()
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
	sink, err := j.NewSink(nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Close()
}

func TestCompileKinesisRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name, from, to string
		field, want    string
	}{
		{"rate", "maxFetchRate: 1.5", "maxFetchRate: 3", "source.kinesis.maxFetchRate", "must be between 0 and 2.0 MB/s (got 3)"},
		{"period", "minFetchPeriod: 500ms", "minFetchPeriod: 100ms", "source.kinesis.minFetchPeriod", "at least 200ms"},
		{"position", "initialPosition: trim_horizon", "initialPosition: beginning", "source.kinesis.initialPosition", "not one of"},
		{"timestamp", "initialPosition: trim_horizon", "initialPosition: at_timestamp", "source.kinesis.atTimestamp", "required"},
		{"size", "fetchBufferSize: 64mb", "fetchBufferSize: lots", "source.kinesis.fetchBufferSize", "size"},
		{"alias", "describeShardInterval: 2s", "describeShardInterval: 2s\n    shardFetchInterval: 3s", "source.kinesis.describeShardInterval", "alias"},
		{"secret", "    awsSecretKey: very-secret\n    roleArn", "    roleArn", "source.kinesis.awsSecretKey", "required with awsAccessKey"},
		{"no stream", `streamName: "events, clicks"`, `streamName: ""`, "source.kinesis.streamName", "required"},
		{"mode", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: push", "source.kinesis.consumerMode", "not one of polling, efo"},
		{"efo refresh", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: efo\n    consumerName: c\n    consumerRefreshInterval: soon",
			"source.kinesis.consumerRefreshInterval", "not a duration"},
		{"efo refresh range", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: efo\n    consumerName: c\n    consumerRefreshInterval: 2h",
			"source.kinesis.consumerRefreshInterval", "outside 1s to 1h"},
		{"efo refresh negative", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: efo\n    consumerName: c\n    consumerRefreshInterval: -1s",
			"source.kinesis.consumerRefreshInterval", "must be positive"},
		{"efo lifecycle", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: efo\n    consumerName: c\n    consumerLifecycle: mine",
			"source.kinesis.consumerLifecycle", "not job-managed or self-managed"},
		{"efo name", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: efo\n    consumerName: 'a b'", "source.kinesis.consumerName", "may only hold"},
		{"efo self-managed", "roleExternalId: ext", "roleExternalId: ext\n    consumerMode: efo\n    consumerLifecycle: self-managed",
			"source.kinesis.consumerName", "required with consumerLifecycle self-managed"},
		{"efo self-managed dereg", "roleExternalId: ext",
			"roleExternalId: ext\n    consumerMode: efo\n    consumerName: c\n    consumerLifecycle: SELF_MANAGED\n    requireConsumerDeregistration: true",
			"source.kinesis.requireConsumerDeregistration", "cannot be true"},
		{"efo option in polling mode", "roleExternalId: ext", "roleExternalId: ext\n    consumerName: c", "source.kinesis.consumerName", "only applies with consumerMode efo"},
		{"sink key", "partitionKey: country", "partitionKey: ''", "sink.kinesis.partitionKey", "required"},
		{"sink expression", "partitionKey: country", "partitionKey: 'country +'", "sink.kinesis.partitionKey", "position 9: syntax error"},
		{"sink CEL", "partitionKey: country", "partitionKey: 'string(id)'", "sink.kinesis.partitionKey", "CAST(x AS STRING)"},
		{"sink batch", "partitionKey: country", "partitionKey: country\n    maxRecordsPerRequest: 501", "sink.kinesis.maxRecordsPerRequest", "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(kinesisJob, tt.from) {
				t.Fatalf("test job has no %q", tt.from)
			}
			spec, err := ParseYAML([]byte(strings.Replace(kinesisJob, tt.from, tt.to, 1)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Compile(spec)
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("Compile = %v, want a *jobspec.Error", err)
			}
			for _, v := range je.List {
				if v.Field == tt.field && strings.Contains(v.Description, tt.want) {
					return
				}
			}
			t.Fatalf("no violation of %s containing %q in: %v", tt.field, tt.want, err)
		})
	}
}

// TestCompileKinesisReportsEveryProblem: one round trip shows all of them.
func TestCompileKinesisReportsEveryProblem(t *testing.T) {
	spec, err := ParseYAML([]byte(strings.NewReplacer("maxFetchRate: 1.5", "maxFetchRate: 9", "shardsPerTask: 3", "shardsPerTask: -2",
		"maxRecordsPerFetch: 5000", "maxRecordsPerFetch: 20000").Replace(kinesisJob)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(spec)
	for _, f := range []string{"source.kinesis.maxFetchRate", "source.kinesis.shardsPerTask", "source.kinesis.maxRecordsPerFetch"} {
		if !strings.Contains(err.Error(), f+":") {
			t.Errorf("error does not name %s: %v", f, err)
		}
	}
}

func TestRedactKinesis(t *testing.T) {
	spec, err := ParseYAML([]byte(kinesisJob))
	if err != nil {
		t.Fatal(err)
	}
	r := Redact(spec)
	src, sink := r.GetSource().GetKinesis(), r.GetSink().GetKinesis()
	if src.GetAwsSecretKey() != Redacted || sink.GetAwsSecretKey() != Redacted || sink.GetAwsSessionToken() != Redacted {
		t.Fatalf("secrets shown: %v / %v", src, sink)
	}
	if src.GetAwsAccessKey() != "AKIAEXAMPLE" || src.GetRoleArn() == "" {
		t.Fatal("non-secret options were hidden")
	}
	if spec.GetSource().GetKinesis().GetAwsSecretKey() != "very-secret" {
		t.Fatal("Redact changed its input")
	}
	// A validation error never echoes a secret.
	spec.GetSource().GetKinesis().MaxFetchRate = 7
	_, err = Compile(spec)
	if err == nil || strings.Contains(err.Error(), "very-secret") {
		t.Fatalf("error %v", err)
	}
}

func TestKinesisConfigDefaultsFailOnDataLoss(t *testing.T) {
	spec, _ := ParseYAML([]byte(strings.Replace(kinesisJob, "maxFetchRate: 1.5", "maxFetchRate: 1.5\n    failOnDataLoss: false", 1)))
	if KinesisConfig(spec.GetSource().GetKinesis()).FailOnDataLoss {
		t.Fatal("failOnDataLoss: false was ignored")
	}
}

// TestCompileKinesisEFO maps the enhanced fan-out options into the source
// config, derives the consumer name from the job when none is given, and
// builds source and pool without calling AWS.
func TestCompileKinesisEFO(t *testing.T) {
	tests := []struct {
		name, extra string
		job         string // compileKinesisSource's job name
		want        efo.Config
		consumer    string
	}{
		{"named", "consumerMode: EFO\n    consumerName: mine\n    consumerNamePrefix: team-\n    consumerRefreshInterval: 30s\n" +
			"    requireConsumerDeregistration: true", "",
			efo.Config{ConsumerName: "mine", ConsumerNamePrefix: "team-", ConsumerRefreshInterval: 30 * time.Second, RequireConsumerDeregistration: true},
			"team-mine"},
		{"derived", "consumerMode: efo", "countries", efo.Config{}, "sluice_countries"},
		{"self-managed", "consumerMode: efo\n    consumerName: theirs\n    consumerLifecycle: self-managed", "",
			efo.Config{ConsumerName: "theirs", ConsumerLifecycle: efo.SelfManaged}, "theirs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(strings.Replace(kinesisJob, "roleExternalId: ext", "roleExternalId: ext\n    "+tt.extra, 1)))
			if err != nil {
				t.Fatal(err)
			}
			e := &Error{}
			sc := compileKinesisSource(spec.GetSource().GetKinesis(), e.at("source.kinesis"), tt.job)
			if len(e.List) > 0 || sc == nil {
				t.Fatalf("compile: %v", e)
			}
			cfg := sc.(kinesisSource).cfg
			if cfg.ConsumerMode != "efo" || cfg.EFO != tt.want || cfg.JobName != tt.job {
				t.Fatalf("config mode %q efo %+v job %q", cfg.ConsumerMode, cfg.EFO, cfg.JobName)
			}
			if got := cfg.EFO.ConsumerNameFor(cfg.JobName); got != tt.consumer {
				t.Fatalf("consumer name %q, want %q", got, tt.consumer)
			}
			src, err := sc.newSource()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := src.(connectors.Finisher); !ok {
				t.Fatal("the efo source does not implement connectors.Finisher")
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			pool, err := sc.newReaderPool()
			if err != nil {
				t.Fatal(err)
			}
			pool.Close()
		})
	}
}
