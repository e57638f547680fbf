//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/transform"
)

func engine(t *testing.T) *sqlengine.Engine {
	t.Helper()
	eng, err := sqlengine.Open(context.Background(), sqlengine.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	return eng
}

func decodeJSON(schema string) Step {
	return Step{Path: "transforms[0]", Decode: &Decode{Format: "json", Schema: schema}}
}

func query(i int, view, q string) Step {
	return Step{Path: "transforms[" + string(rune('0'+i)) + "]", SQL: &SQL{View: view, Query: q}}
}

// TestCompileErrors: every refusal names the field as the user wrote it in
// the job spec and, for a query, where in it.
func TestCompileErrors(t *testing.T) {
	eng := engine(t)
	for _, tc := range []struct {
		name  string
		steps []Step
		want  []string // field: reason fragments, one per error
	}{
		{"unknown column", []Step{decodeJSON("branch STRING, amount BIGINT"), query(1, "treasury_stream", "select brnch, sum(amount) from treasury_stream group by branch")},
			[]string{"transforms[1].sql.query: line 1, column 8 (position 7): unknown column"}},
		{"unknown function", []Step{query(0, "", "select summ(\"offset\") from source")},
			[]string{"transforms[0].sql.query: line 1, column 8 (position 7): unknown function"}},
		{"syntax", []Step{query(0, "", "select from where")}, []string{"transforms[0].sql.query: line 1"}},
		{"schema", []Step{decodeJSON("branch STRNG"), query(1, "", "select 1")}, []string{"transforms[0].decode.schema: "}},
		{"no schema", []Step{{Path: "transforms[0]", Decode: &Decode{Format: "json"}}, query(1, "", "select 1")}, []string{"transforms[0].decode.schema: is required"}},
		{"csv", []Step{{Path: "transforms[0]", Decode: &Decode{Format: "csv"}}, query(1, "", "select 1")}, []string{"transforms[0].decode.format: csv is not one of"}},
		{"payload field", []Step{{Path: "transforms[0]", Decode: &Decode{Format: "raw", Field: "body"}}, query(1, "", "select 1")}, []string{`transforms[0].decode.field: "body" is not a column`}},
		{"decode after sql", []Step{query(0, "", "select value from source"), {Path: "transforms[1]", Decode: &Decode{Format: "raw"}}}, []string{"transforms[1].decode: must come before"}},
		{"aggregate not last", []Step{query(0, "", "select topic, count(*) as n from source group by topic"), query(1, "", "select * from source")},
			[]string{"transforms[0].sql.query: an aggregating query must be the job's last step"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: tc.steps})
			if err == nil {
				t.Fatal("compiled")
			}
			var got []string
			for _, e := range unjoin(err) {
				var fe *transform.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *transform.FieldError", e)
				}
				got = append(got, fe.Error())
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors %q, want %d", got, len(tc.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("error %q, want it to start with %q", got[i], tc.want[i])
				}
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TestCompileChains: decode and several sql steps compose into one query
// whose columns are the last step's.
func TestCompileChains(t *testing.T) {
	eng := engine(t)
	p, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: []Step{
		decodeJSON("branch STRING, amount BIGINT, topic STRING"),
		query(1, "tx", `select branch, amount, topic, "offset" from tx where amount <> 0`),
		query(2, "nonzero", `select branch, sum(amount) as total, count(distinct topic) as topics from nonzero group by branch having count(*) > 1`),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Aggregating() || strings.Join(p.Columns(), ",") != "branch,total,topics" {
		t.Fatalf("aggregating %v, columns %v", p.Aggregating(), p.Columns())
	}
}
