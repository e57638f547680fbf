package jobspec

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/connectors/postgres"
)

// sinkSpec is a job whose sink (and dead letters) the tests fill in.
const sinkSpec = `
name: sinks
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction]}
transforms:
  - decode: {format: json, schema: "branch STRING, currency STRING, amount BIGINT"}
`

func compileSinkYAML(t *testing.T, sinks string) (*Job, error) {
	t.Helper()
	spec, err := ParseYAML([]byte(sinkSpec + sinks))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return Compile(spec)
}

func TestCompileProductionSinks(t *testing.T) {
	tests := []struct {
		name  string
		sinks string
	}{
		{"postgres", `sink: {postgres: {url: "postgres://u:pw@db:5432/treasury?sslmode=require", table: transaction_flow, createTable: true,
  columns: [{name: branch_name, field: branch}, {name: batch_value, type: "numeric(18,2)"}]}}`},
		{"postgres upsert", `sink: {postgres: {url: "host=db user=u password=pw", table: "s.t", mode: upsert, keyColumns: [id], writeMethod: insert, positionsTable: s.pos, lockTimeout: 30s}}`},
		{"s3 jsonl", `sink: {s3: {bucket: lake, prefix: raw/, region: eu-west-1}}`},
		{"s3 parquet", `sink: {s3: {bucket: lake, format: parquet, partitionBy: day, endpoint: "http://127.0.0.1:9000",
  auth: {awsAccessKey: AK, awsSecretKey: SK, roleArn: "arn:aws:iam::1:role/r", roleExternalId: x}}}`},
		{"kafka", `sink: {kafka: {bootstrapServers: "127.0.0.1:9092", topic: out, key: "branch", headers: {src: "'sluice'"}}}`},
		{"kafka expressions", `sink: {kafka: {bootstrapServers: "127.0.0.1:9092", topic: out, key: "upper(branch) || '/' || currency",
  value: "to_json({'branch': branch, 'amount': amount})", partition: "CAST(amount % 3 AS INT)", headers: {src: "'sluice'", at: "offset"}}}`},
		{"kafka transactional", `sink: {kafka: {bootstrapServers: "127.0.0.1:9092", topicExpr: "'fx-' || lower(currency)", transactional: true,
  properties: {"transaction.timeout.ms": "30000"}}}`},
		{"postgres dead letters", `sink: {discard: {}}
onError: deadLetter
deadLetter: {postgres: {url: "postgres://u:pw@db/x", table: bad_records, createTable: true}}`},
		{"kafka dead letters", `sink: {discard: {}}
onError: deadLetter
deadLetter: {kafka: {bootstrapServers: "127.0.0.1:9092", topic: dlq, transactional: true}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := compileSinkYAML(t, tt.sinks)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			// Building the sinks connects to nothing.
			s, err := j.NewSink(io.Discard)
			if err != nil {
				t.Fatalf("NewSink: %v", err)
			}
			_ = s.Close()
			d, err := j.NewDeadLetterSink(io.Discard)
			if err != nil {
				t.Fatalf("NewDeadLetterSink: %v", err)
			}
			if d != nil {
				_ = d.Close()
			}
		})
	}
}

func TestSinkRoles(t *testing.T) {
	j, err := compileSinkYAML(t, `sink: {postgres: {url: "postgres://db/x", table: out}}
onError: deadLetter
deadLetter: {postgres: {url: "postgres://db/x", table: bad}}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := j.sink.(postgresSink).cfg.SinkName; got != "sink" {
		t.Errorf("sink's positions name = %q, want sink", got)
	}
	if got := j.deadLetter.(postgresSink).cfg.SinkName; got != "deadLetter" {
		t.Errorf("dead-letter sink's positions name = %q, want deadLetter", got)
	}
	j, err = compileSinkYAML(t, `sink: {kafka: {bootstrapServers: "b:9092", topic: out, transactional: true}}
onError: deadLetter
deadLetter: {kafka: {bootstrapServers: "b:9092", topic: out, transactional: true}}`)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := j.sink.(kafkaSink).cfg.Name, j.deadLetter.(kafkaSink).cfg.Name; a != "sink" || b != "deadLetter" {
		t.Errorf("kafka sink names = %q, %q; want sink, deadLetter (distinct transactional ids)", a, b)
	}
}

func TestCompileRefusesBadSinks(t *testing.T) {
	tests := []struct {
		name  string
		sinks string
		field string
		want  string
	}{
		{"postgres url", `sink: {postgres: {table: t}}`, "sink.postgres.url", "required"},
		{"postgres table", `sink: {postgres: {url: "postgres://u:pw@db/x"}}`, "sink.postgres.table", "required"},
		{"postgres lock timeout", `sink: {postgres: {url: "postgres://db/x", table: t, lockTimeout: soon}}`, "sink.postgres.lockTimeout", "not a duration"},
		{"postgres lock timeout zero", `sink: {postgres: {url: "postgres://db/x", table: t, lockTimeout: 0s}}`, "sink.postgres.lockTimeout", "positive"},
		{"postgres mode", `sink: {postgres: {url: "postgres://db/x", table: t, mode: merge}}`, "sink.postgres.mode", `"merge" is not append or upsert`},
		{"postgres upsert keys", `sink: {postgres: {url: "postgres://db/x", table: t, mode: upsert}}`, "sink.postgres.keyColumns", "required with mode upsert"},
		{"postgres column type", `sink: {postgres: {url: "postgres://db/x", table: t, columns: [{name: a}, {name: b, type: "int; drop table t"}]}}`,
			"sink.postgres.columns[1].type", "is not a SQL type name"},
		{"postgres write method", `sink: {postgres: {url: "postgres://db/x", table: t, writeMethod: bulk}}`, "sink.postgres.writeMethod", "not copy or insert"},
		{"postgres dead letters", `sink: {discard: {}}
onError: deadLetter
deadLetter: {postgres: {url: "postgres://db/x"}}`, "deadLetter.postgres.table", "required"},
		{"s3 bucket", `sink: {s3: {prefix: x}}`, "sink.s3.bucket", "required"},
		{"s3 format", `sink: {s3: {bucket: lake, format: orc}}`, "sink.s3.format", `"orc" is not jsonl or parquet`},
		{"s3 auth", `sink: {s3: {bucket: lake, auth: {awsSecretKey: SK}}}`, "sink.s3.auth.awsAccessKey", "is required with awsSecretKey"},
		{"s3 endpoint", `sink: {s3: {bucket: lake, endpoint: "minio:9000"}}`, "sink.s3.endpoint", "is not an http:// or https:// URL"},
		{"kafka topic", `sink: {kafka: {bootstrapServers: "b:9092"}}`, "sink.kafka.topic", "required"},
		{"kafka brokers", `sink: {kafka: {topic: out}}`, "sink.kafka.bootstrapServers", "required"},
		{"kafka header", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, headers: {trace: "1 +"}}}`, "sink.kafka.headers.trace", "position 3: syntax error"},
		{"kafka partition", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, partition: "'x'"}}`, "sink.kafka.partition", "want an integer"},
		{"kafka unknown column", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "upper(brnch)"}}`, "sink.kafka.key",
			`position 6: unknown column: Referenced column "brnch" not found`},
		{"kafka unknown bare column", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, value: "amout"}}`, "sink.kafka.value",
			`position 0: unknown column`},
		{"kafka payload column after decode", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "value"}}`, "sink.kafka.key", "unknown column"},
		{"kafka CEL cast", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "string(amount)"}}`, "sink.kafka.key",
			"position 0: unknown function"},
		{"kafka CEL row", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "row.branch"}}`, "sink.kafka.key", "no longer CEL"},
		{"kafka CEL string", `sink: {kafka: {bootstrapServers: "b:9092", topicExpr: '"fx-" + currency'}}`, "sink.kafka.topicExpr",
			"write a string as 'EUR'"},
		{"kafka CEL equality and and", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, partition: "amount == 1 && branch == 'x' ? 1 : 0"}}`,
			"sink.kafka.partition", "&& → AND"},
		{"kafka aggregate", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "sum(amount)"}}`, "sink.kafka.key", "aggregates the rows"},
		{"kafka two statements", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "branch; SELECT 1"}}`, "sink.kafka.key",
			"position 6: ';' ends a statement"},
		{"kafka dead letters see the source's columns", `sink: {discard: {}}
onError: deadLetter
deadLetter: {kafka: {bootstrapServers: "b:9092", topic: dlq, key: "branch"}}`, "deadLetter.kafka.key", "unknown column"},
		{"kafka property", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, properties: {acks: "1"}}}`, "sink.kafka.properties", `unknown property "acks"`},
		{"kafka sasl", `sink: {kafka: {bootstrapServers: "b:9092", topic: out, properties: {"security.protocol": SASL_SSL}}}`,
			"sink.kafka.properties.sasl.mechanism", "required with security.protocol SASL_SSL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileSinkYAML(t, tt.sinks)
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("Compile() = %v, want a *jobspec.Error", err)
			}
			for _, v := range je.List {
				if v.Field == tt.field && strings.Contains(v.Description, tt.want) {
					if strings.Contains(v.Description, "pw@") {
						t.Fatalf("violation shows the password: %s", v.Description)
					}
					return
				}
			}
			t.Fatalf("no violation of %s containing %q in: %v", tt.field, tt.want, err)
		})
	}
}

func TestRedactSinks(t *testing.T) {
	spec, err := ParseYAML([]byte(sinkSpec + `sink: {postgres: {url: "postgres://habr:habr12345@db:5432/habrDB?sslmode=require", table: t}}
onError: deadLetter
deadLetter: {s3: {bucket: lake, auth: {awsAccessKey: AKIA, awsSecretKey: wJalr, awsSessionToken: tok}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := Redact(spec)
	if got, want := r.GetSink().GetPostgres().GetUrl(), "postgres://habr:*****@db:5432/habrDB?sslmode=require"; got != want {
		t.Errorf("postgres url = %q, want %q", got, want)
	}
	a := r.GetDeadLetter().GetS3().GetAuth()
	if diff := cmp.Diff([]string{"AKIA", Redacted, Redacted}, []string{a.GetAwsAccessKey(), a.GetAwsSecretKey(), a.GetAwsSessionToken()}); diff != "" {
		t.Errorf("s3 auth (-want +got):\n%s", diff)
	}
	if !strings.Contains(spec.GetSink().GetPostgres().GetUrl(), "habr12345") {
		t.Error("Redact changed its input")
	}

	spec, err = ParseYAML([]byte(sinkSpec + `sink: {kafka: {bootstrapServers: "b:9092", topic: out,
  properties: {"security.protocol": SASL_SSL, "sasl.mechanism": PLAIN, "sasl.username": me, "sasl.password": hunter2}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := Redact(spec).GetSink().GetKafka().GetProperties()
	if p["sasl.password"] != Redacted || p["sasl.username"] != "me" {
		t.Errorf("kafka sink properties: %v", p)
	}
	if got := postgres.RedactURL("host=db password=secret user=u", Redacted); got != "host=db password=***** user=u" {
		t.Errorf("key=value url redacted to %q", got)
	}
}

// TestSinkExpressionSchemas: the sinks' expressions see the rows they
// receive: the query's output, the source's records without transforms, and
// for dead letters the source's records and error.
func TestSinkExpressionSchemas(t *testing.T) {
	for _, tt := range []struct{ name, spec string }{
		{"query output", sinkSpec + `sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: "branch", partition: "CAST(amount AS INT)"}}`},
		{"source records", `
name: raw
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction], includeHeaders: true}
sink: {kafka: {bootstrapServers: "b:9092", topicExpr: "topic || '-copy'", key: key, value: value, partition: partition,
  headers: {first: "headers[1].value", at: "CAST(\"timestamp\" AS STRING)"}}}
`},
		{"kinesis source records", `
name: raw
source:
  kinesis: {streamName: in, region: eu-west-1}
sink: {kinesis: {streamName: out, region: eu-west-1, partitionKey: partitionKey, explicitHashKey: "abs(hash(sequenceNumber)) % 1000", data: data}}
`},
		{"dead letters", sinkSpec + `sink: {discard: {}}
onError: deadLetter
deadLetter: {kafka: {bootstrapServers: "b:9092", topic: dlq, key: "key", headers: {why: error, at: "CAST(\"offset\" AS STRING)"}}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(tt.spec))
			if err != nil {
				t.Fatal(err)
			}
			j, err := Compile(spec)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if s, err := j.NewSink(io.Discard); err != nil {
				t.Fatalf("NewSink: %v", err)
			} else {
				_ = s.Close()
			}
		})
	}
}

// TestCheckBeforeInferenceLeavesSinkColumns: before a schema is inferred
// the sink's expressions are checked for shape only (their columns come
// from the decode still to be inferred); a malformed one is refused.
func TestCheckBeforeInferenceLeavesSinkColumns(t *testing.T) {
	const spec = `
name: infer
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction]}
transforms:
  - decode: {format: json}
sink: {kafka: {bootstrapServers: "b:9092", topic: out, key: %s}}
`
	parse := func(key string) *Error {
		s, err := ParseYAML([]byte(fmt.Sprintf(spec, key)))
		if err != nil {
			t.Fatal(err)
		}
		var je *Error
		if err := CheckBeforeInference(s); err != nil && !errors.As(err, &je) {
			t.Fatalf("CheckBeforeInference = %v", err)
		}
		return je
	}
	if je := parse(`"upper(branch)"`); je != nil {
		t.Fatalf("CheckBeforeInference refused a column of the decode: %v", je)
	}
	je := parse(`"(branch"`)
	if je == nil || len(je.List) != 1 || je.List[0].Field != "sink.kafka.key" || !strings.Contains(je.List[0].Description, "is not closed") {
		t.Fatalf("CheckBeforeInference = %v, want sink.kafka.key refused", je)
	}
}
