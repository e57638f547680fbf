package jobspec

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/rpc"
)

const good = `
name: treasury
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction], startingOffsets: earliest, maxOffsetsPerTrigger: 50000}
transforms:
  - decode: {format: json, schema: "branch STRING, currency STRING, amount BIGINT"}
  - filter: "amount <> 0"
  - aggregate: {groupBy: [branch, currency], aggregations: [{fn: sum, field: amount, as: batch_value}, {fn: count, as: n}]}
sink:
  file: {path: /tmp/out, format: jsonl}
trigger: {processingTime: 2s}
onError: fail
`

func TestCompileGood(t *testing.T) {
	spec, err := ParseYAML([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if j.Trigger.Interval.String() != "2s" || !j.Aggregating() || !j.source.(kafkaSource).cfg.FailOnDataLoss || j.OnError != "fail" {
		t.Fatalf("compiled job: %+v", j)
	}
}

func TestCompileRefusesBadSpecs(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(string) string
		field string
		want  string
	}{
		{"missing name", func(s string) string { return strings.Replace(s, "name: treasury", "", 1) }, "name", "required"},
		{"bad name", func(s string) string { return strings.Replace(s, "name: treasury", "name: 'a b'", 1) }, "name", "letters"},
		{"missing source", func(s string) string { return cut(s, "source:", "transforms:") }, "source", "required"},
		{"missing sink", func(s string) string { return cut(s, "sink:", "trigger:") }, "sink", "required"},
		{"bad filter", func(s string) string { return strings.Replace(s, `"amount <> 0"`, `"amount <>"`, 1) }, "transforms[1].filter", "syntax error"},
		{"bad duration", func(s string) string { return strings.Replace(s, "processingTime: 2s", "processingTime: soon", 1) }, "trigger.processingTime", "duration"},
		{"negative limit", func(s string) string {
			return strings.Replace(s, "maxOffsetsPerTrigger: 50000", "maxOffsetsPerTrigger: -5", 1)
		}, "source.kafka.maxOffsetsPerTrigger", "must not be negative"},
		{"bad onError", func(s string) string { return strings.Replace(s, "onError: fail", "onError: ignore", 1) }, "onError", "not one of"},
		{"deadLetter without sink", func(s string) string { return strings.Replace(s, "onError: fail", "onError: deadLetter", 1) }, "deadLetter", "required"},
		{"unknown aggregate fn", func(s string) string { return strings.Replace(s, "fn: sum", "fn: median", 1) }, "transforms[2].aggregate.aggregations[0].fn", "median"},
		{"no subscription", func(s string) string { return strings.Replace(s, "subscribe: [transaction], ", "", 1) }, "source.kafka.subscribe", "set exactly one of subscribe"},
		{"negative task failures", func(s string) string { return s + "limits: {maxTaskFailures: -1}\n" }, "limits.maxTaskFailures", "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(tt.edit(good)))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, err = Compile(spec)
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("Compile() = %v, want a *jobspec.Error", err)
			}
			var br rpc.BadRequester
			if !errors.As(err, &br) {
				t.Fatal("error does not carry field violations for the API")
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

// TestParseYAMLKeepsNAsString pins a bug: YAML 1.1 parsers read `as: n`
// (a count column named n, as in the example) as the boolean false.
func TestParseYAMLKeepsNAsString(t *testing.T) {
	spec, err := ParseYAML([]byte("name: x\ntransforms: [{aggregate: {groupBy: [a], aggregations: [{fn: count, as: n}]}}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.GetTransforms()[0].GetAggregate().GetAggregations()[0].GetAs(); got != "n" {
		t.Fatalf("as = %q, want n", got)
	}
}

func TestParseYAMLUnknownField(t *testing.T) {
	_, err := ParseYAML([]byte("name: x\nsauce: {}\n"))
	if err == nil || !strings.Contains(err.Error(), "sauce") {
		t.Fatalf("ParseYAML = %v, want an error naming the unknown field", err)
	}
}

func TestRedact(t *testing.T) {
	spec, _ := ParseYAML([]byte(`name: x
source: {kafka: {bootstrapServers: "b:9092", subscribe: [t], properties: {"sasl.password": "hunter2", "sasl.username": "me"}}}
sink: {discard: {}}
`))
	r := Redact(spec)
	p := r.GetSource().GetKafka().GetProperties()
	if p["sasl.password"] != Redacted || p["sasl.username"] != "me" {
		t.Fatalf("redacted properties: %v", p)
	}
	if spec.GetSource().GetKafka().GetProperties()["sasl.password"] != "hunter2" {
		t.Fatal("Redact changed its input")
	}
}

// cut removes the text from start up to (not including) end.
func cut(s, start, end string) string {
	i, j := strings.Index(s, start), strings.Index(s, end)
	return s[:i] + s[j:]
}
