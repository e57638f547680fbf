package jobspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/scheduler"
)

func TestCompileSpeculation(t *testing.T) {
	kinesis := strings.Replace(good, `kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction], startingOffsets: earliest, maxOffsetsPerTrigger: 50000}`,
		`kinesis: {streamName: s, region: us-east-1}`, 1)
	tests := []struct {
		name  string
		base  string
		yaml  string
		want  scheduler.Speculation
		field string // of the expected error, "" for none
		err   string
	}{
		{name: "default: off, Spark's values", yaml: "", want: scheduler.DefaultSpeculation},
		{name: "on with defaults", yaml: "speculation: {enabled: true}",
			want: scheduler.Speculation{Enabled: true, Quantile: 0.75, Multiplier: 1.5, MinTaskRuntime: 100 * time.Millisecond}},
		{name: "all set", yaml: "speculation: {enabled: true, quantile: 0.9, multiplier: 3, minTaskRuntime: 2s}",
			want: scheduler.Speculation{Enabled: true, Quantile: 0.9, Multiplier: 3, MinTaskRuntime: 2 * time.Second}},
		{name: "quantile above 1", yaml: "speculation: {quantile: 1.5}", field: "speculation.quantile", err: "between 0 and 1"},
		{name: "multiplier below 1", yaml: "speculation: {multiplier: 0.5}", field: "speculation.multiplier", err: "at least 1"},
		{name: "bad duration", yaml: "speculation: {minTaskRuntime: quick}", field: "speculation.minTaskRuntime", err: "duration"},
		{name: "kinesis", base: kinesis, yaml: "speculation: {enabled: true}", field: "speculation.enabled", err: "Kinesis"},
		{name: "kinesis with speculation off", base: kinesis, yaml: "speculation: {enabled: false}", want: scheduler.DefaultSpeculation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := good
			if tc.base != "" {
				base = tc.base
			}
			spec, err := ParseYAML([]byte(base + tc.yaml + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			j, err := Compile(spec)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if j.Retry.Speculation != tc.want {
					t.Fatalf("speculation %+v, want %+v", j.Retry.Speculation, tc.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || len(e.List) != 1 || e.List[0].Field != tc.field || !strings.Contains(e.List[0].Description, tc.err) {
				t.Fatalf("error %v, want one on %s containing %q", err, tc.field, tc.err)
			}
		})
	}
}
