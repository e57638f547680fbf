package transform

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCompileValidation(t *testing.T) {
	jsonDecode := Step{Decode: &Decode{Format: "json"}}
	tests := []struct {
		name  string
		steps []Step
		want  []string // substrings of the error; none = valid
	}{
		{name: "empty pipeline"},
		{name: "decode filter select", steps: []Step{
			jsonDecode,
			{Filter: `amount != 0 && currency == "USD"`},
			{Select: []SelectField{{Name: "branch"}, {Name: "cents", Expr: "amount * 100"}}},
		}},
		{name: "no kind set", steps: []Step{{}},
			want: []string{"transforms[0]: set exactly one of decode, filter, select or aggregate (found none)"}},
		{name: "two kinds set", steps: []Step{jsonDecode, {Filter: "true", Select: []SelectField{{Name: "a"}}}},
			want: []string{"transforms[1]: set exactly one of decode, filter, select or aggregate (found filter and select)"}},
		{name: "filter syntax error", steps: []Step{jsonDecode, {Filter: "amount >"}},
			want: []string{"transforms[1].filter: ERROR: <input>:1:9: Syntax error:", " | amount >"}},
		{name: "filter not bool", steps: []Step{{Filter: "amount + 1"}},
			want: []string{`transforms[0].filter: must evaluate to bool, but "amount + 1" is int`}},
		{name: "filter string literal", steps: []Step{{Filter: `"yes"`}},
			want: []string{`transforms[0].filter: must evaluate to bool, but "\"yes\"" is string`}},
		{name: "filter dyn is fine", steps: []Step{{Filter: "flag"}}},
		{name: "filter unknown function", steps: []Step{{Filter: "frobnicate(x)"}},
			want: []string{"transforms[0].filter: ERROR: <input>:1:11: undeclared reference to 'frobnicate'"}},
		{name: "filter with macros, types, row and optionals", steps: []Step{{
			Filter: `tags.exists(t, t == "vip") && type(amount) == int && has(row.note) && row.?x.orValue(1) == 1 && row["weird-name"] == "y"`}}},
		{name: "decode format missing", steps: []Step{{Decode: &Decode{}}},
			want: []string{"transforms[0].decode.format: required (json, csv or raw)"}},
		{name: "decode format unknown", steps: []Step{{Decode: &Decode{Format: "avro"}}},
			want: []string{`transforms[0].decode.format: unknown format "avro" (want json, csv or raw)`}},
		{name: "csv options on json", steps: []Step{{Decode: &Decode{Format: "json", Columns: []string{"a"}, Header: true, Delimiter: ";"}}},
			want: []string{"transforms[0].decode.columns: only applies to format csv",
				"transforms[0].decode.header: only applies to format csv",
				"transforms[0].decode.delimiter: only applies to format csv"}},
		{name: "csv without columns or header", steps: []Step{{Decode: &Decode{Format: "csv"}}},
			want: []string{"transforms[0].decode: format csv needs columns or header: true"}},
		{name: "csv bad columns", steps: []Step{{Decode: &Decode{Format: "csv", Columns: []string{"a", "", "a"}}}},
			want: []string{"transforms[0].decode.columns[1]: must not be empty", `transforms[0].decode.columns[2]: duplicate column "a"`}},
		{name: "csv bad delimiter", steps: []Step{{Decode: &Decode{Format: "csv", Header: true, Delimiter: ";;"}}},
			want: []string{`transforms[0].decode.delimiter: must be one character other than a quote or a line break, got ";;"`}},
		{name: "csv tab delimiter", steps: []Step{{Decode: &Decode{Format: "csv", Header: true, Delimiter: "\t"}}}},
		{name: "select name missing", steps: []Step{{Select: []SelectField{{Expr: "a"}}}},
			want: []string{"transforms[0].select[0].name: required"}},
		{name: "select duplicate", steps: []Step{{Select: []SelectField{{Name: "a"}, {Name: "a", Expr: "b"}}}},
			want: []string{`transforms[0].select[1].name: duplicate output field "a"`}},
		{name: "select expr error", steps: []Step{{Select: []SelectField{{Name: "a", Expr: "b +"}}}},
			want: []string{"transforms[0].select[0].expr: ERROR: <input>:1:4: Syntax error"}},
		{name: "aggregate ok", steps: []Step{jsonDecode, {Aggregate: &Aggregate{GroupBy: []string{"branch"},
			Aggregations: []Aggregation{{Fn: "count"}, {Fn: "sum", Field: "amount"}, {Fn: "AVG", Field: "amount"}}}}}},
		{name: "aggregate not last", steps: []Step{{Aggregate: &Aggregate{GroupBy: []string{"a"}}}, {Filter: "true"}, {Filter: "true"}},
			want: []string{"transforms[0].aggregate: must be the last transform (found 2 more after it)"}},
		{name: "aggregate unknown fn", steps: []Step{jsonDecode, {Filter: "true"}, {Filter: "true"}, {Aggregate: &Aggregate{
			Aggregations: []Aggregation{{Fn: "median", Field: "x"}}}}},
			want: []string{`transforms[3].aggregate.aggregations[0].fn: unknown function "median" (want count, sum, min, max or avg)`}},
		{name: "aggregate fn missing", steps: []Step{{Aggregate: &Aggregate{Aggregations: []Aggregation{{Field: "x"}}}}},
			want: []string{"transforms[0].aggregate.aggregations[0].fn: required"}},
		{name: "aggregate field missing", steps: []Step{{Aggregate: &Aggregate{Aggregations: []Aggregation{{Fn: "sum"}}}}},
			want: []string{"transforms[0].aggregate.aggregations[0].field: required for sum"}},
		{name: "aggregate empty", steps: []Step{{Aggregate: &Aggregate{}}},
			want: []string{"transforms[0].aggregate: needs groupBy fields, aggregations or both"}},
		{name: "aggregate duplicate outputs", steps: []Step{{Aggregate: &Aggregate{GroupBy: []string{"a", "count"},
			Aggregations: []Aggregation{{Fn: "count"}, {Fn: "sum", Field: "x", As: "a"}}}}},
			want: []string{`transforms[0].aggregate.aggregations[0]: duplicate output column "count" (also transforms[0].aggregate.groupBy[1])`,
				`transforms[0].aggregate.aggregations[1].as: duplicate output column "a" (also transforms[0].aggregate.groupBy[0])`}},
		{name: "aggregate negative max groups", steps: []Step{{Aggregate: &Aggregate{GroupBy: []string{"a"}, MaxGroups: -1}}},
			want: []string{"transforms[0].aggregate.maxGroups: must not be negative, got -1"}},
		{name: "several problems at once", steps: []Step{{Decode: &Decode{Format: "xml"}}, {Filter: "a >"}},
			want: []string{"transforms[0].decode.format", "transforms[1].filter"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.steps)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Compile succeeded (%v), want an error", p)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) is false for %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "transforms[") {
				t.Errorf("no *FieldError with a field path in %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestColumns(t *testing.T) {
	tests := []struct {
		name        string
		steps       []Step
		want        []string
		aggregating bool
	}{
		{name: "decode only", steps: []Step{{Decode: &Decode{Format: "json"}}}},
		{name: "select then filter", steps: []Step{
			{Decode: &Decode{Format: "json"}},
			{Select: []SelectField{{Name: "b"}, {Name: "a", Expr: "x"}}},
			{Filter: "a > 1"},
		}, want: []string{"b", "a"}},
		{name: "select then decode", steps: []Step{
			{Select: []SelectField{{Name: "value"}}},
			{Decode: &Decode{Format: "json"}},
		}},
		{name: "aggregate", steps: []Step{
			{Select: []SelectField{{Name: "x"}}},
			{Aggregate: &Aggregate{GroupBy: []string{"branch", "currency"},
				Aggregations: []Aggregation{{Fn: "count"}, {Fn: "max", Field: "x"}, {Fn: "sum", Field: "amount", As: "total"}}}},
		}, want: []string{"branch", "currency", "count", "max_x", "total"}, aggregating: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.steps)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Columns()); diff != "" {
				t.Errorf("Columns (-want +got):\n%s", diff)
			}
			if p.Aggregating() != tt.aggregating {
				t.Errorf("Aggregating = %v, want %v", p.Aggregating(), tt.aggregating)
			}
		})
	}
}
