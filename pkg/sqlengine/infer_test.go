//go:build duckdb_arrow

package sqlengine

import (
	"strings"
	"testing"
)

func TestInferJSONSchema(t *testing.T) {
	tests := []struct {
		name     string
		payloads []string
		want     string
		skipped  int
		err      string
	}{
		{name: "seed 003's records", payloads: []string{
			`{"branch":"b1","currency":"USD","amount":10}`,
			`{"branch":"b2","currency":"EUR","amount":-3}`,
		}, want: "amount BIGINT, branch STRING, currency STRING"},
		{name: "fields union across records, sorted", payloads: []string{`{"z":1}`, `{"a":true}`},
			want: "a BOOLEAN, z BIGINT"},
		{name: "integers widen to double", payloads: []string{`{"x":1}`, `{"x":1.5}`}, want: "x DOUBLE"},
		{name: "exponent is a double", payloads: []string{`{"x":1e3}`}, want: "x DOUBLE"},
		{name: "beyond a long: decimal", payloads: []string{`{"x":18446744073709551615}`}, want: "x DECIMAL(20,0)"},
		{name: "long and decimal widen to decimal(20)", payloads: []string{`{"x":1}`, `{"x":123456789012345678901234}`},
			want: "x DECIMAL(24,0)"},
		{name: "beyond 38 digits: double", payloads: []string{`{"x":123456789012345678901234567890123456789}`}, want: "x DOUBLE"},
		{name: "conflicting types become string", payloads: []string{`{"x":1}`, `{"x":"one"}`}, want: "x STRING"},
		{name: "bool and number conflict", payloads: []string{`{"x":true}`, `{"x":1}`}, want: "x STRING"},
		{name: "struct and scalar conflict", payloads: []string{`{"x":{"a":1}}`, `{"x":2}`}, want: "x STRING"},
		{name: "null only is string", payloads: []string{`{"x":null}`}, want: "x STRING"},
		{name: "null then a type", payloads: []string{`{"x":null}`, `{"x":2}`}, want: "x BIGINT"},
		{name: "no timestamp inference", payloads: []string{`{"ts":"2026-12-05T10:00:00Z"}`}, want: "ts STRING"},
		{name: "nested structs merge", payloads: []string{`{"s":{"b":1}}`, `{"s":{"a":"x","b":2.5}}`},
			want: "s STRUCT<a: STRING, b: DOUBLE>"},
		{name: "arrays", payloads: []string{`{"t":["a","b"],"n":[1,2.5],"e":[],"o":[{"k":1},{"j":true}]}`},
			want: "e ARRAY<STRING>, n ARRAY<DOUBLE>, o ARRAY<STRUCT<j: BOOLEAN, k: BIGINT>>, t ARRAY<STRING>"},
		{name: "empty struct is dropped", payloads: []string{`{"a":1,"s":{}}`}, want: "a BIGINT"},
		{name: "odd names are quoted", payloads: []string{"{\"weird name\":1,\"back`tick\":2,\"9lives\":3}"},
			want: "`9lives` BIGINT, `back``tick` BIGINT, `weird name` BIGINT"},
		{name: "non-objects are skipped", payloads: []string{`[1,2]`, `42`, `not json`, `{"a":1} trailing`, `{"a":1}`},
			want: "a BIGINT", skipped: 4},
		{name: "no object at all", payloads: []string{`[1]`, `"s"`}, err: "none of the 2 sampled payloads is a JSON object"},
		{name: "objects without fields", payloads: []string{`{}`}, err: "have no fields"},
		{name: "case-only difference", payloads: []string{`{"Amount":1}`, `{"amount":2}`}, err: `"Amount" and "amount" differ only in case`},
		{name: "nested case-only difference", payloads: []string{`{"s":{"A":1,"a":2}}`}, err: `"s.A" and "s.a" differ only in case`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps [][]byte
			for _, p := range tt.payloads {
				ps = append(ps, []byte(p))
			}
			got, err := InferJSONSchema(ps)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Schema != tt.want || got.Skipped != tt.skipped || got.Objects != len(ps)-tt.skipped {
				t.Fatalf("got %+v, want schema %q with %d skipped", got, tt.want, tt.skipped)
			}
			// Every inferred schema is one SparkSchema (and so decode and
			// from_json) accepts.
			if _, _, err := SparkSchema(got.Schema); err != nil {
				t.Fatalf("SparkSchema(%q): %v", got.Schema, err)
			}
		})
	}
}
