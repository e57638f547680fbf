//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/stream"
)

// TestShorthandSteps: filter, select and aggregate steps are SQL and run
// as the job's query, the aggregate merged exactly across tasks.
func TestShorthandSteps(t *testing.T) {
	eng := engine(t)
	payloads := []any{
		`{"branch":"b1","currency":"USD","amount":10}`,
		`{"branch":"b1","currency":"EUR","amount":0}`,
		`{"branch":"b2","currency":"usd","amount":-4}`,
		`{"branch":"b1","currency":"USD","amount":5}`,
	}
	decode := Step{Path: "transforms[0]", Decode: &Decode{Format: "json", Schema: "branch STRING, currency STRING, amount BIGINT"}}
	filter := Step{Path: "transforms[1]", Filter: "amount <> 0 AND upper(currency) = 'USD'"}
	sel := Step{Path: "transforms[2]", Select: []SelectField{{Name: "branch"}, {Name: "cents", Expr: "amount * 100"}, {Name: "offset"}}}

	p, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: []Step{decode, filter, sel}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := runRows(t, p, payloads)
	if err != nil {
		t.Fatal(err)
	}
	if want := "b1|1000|0; b2|-400|2; b1|500|3"; got != want || strings.Join(p.Columns(), ",") != "branch,cents,offset" {
		t.Fatalf("rows %s (columns %v), want %s", got, p.Columns(), want)
	}

	agg := Step{Path: "transforms[3]", Aggregate: &Aggregate{GroupBy: []string{"branch"}, Aggregations: []Aggregation{
		{Fn: "sum", Field: "cents"}, {Fn: "count", As: "n"}, {Fn: "avg", Field: "cents"}, {Fn: "MAX", Field: "offset", As: "last"}}}}
	p, err = Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: []Step{decode, filter, sel, agg}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Aggregating() || strings.Join(p.Columns(), ",") != "branch,sum_cents,n,avg_cents,last" {
		t.Fatalf("aggregating %v, columns %v", p.Aggregating(), p.Columns())
	}
	// Two tasks, each with part of the records: the merge is exact (avg
	// is not an average of averages).
	partials := [][]byte{partial(t, p, 0, payloads[:1]), partial(t, p, 1, payloads[1:])}
	rows, err := p.Merge(context.Background(), partials, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprintf("%v|%v|%v|%v|%v", r["branch"], r["sum_cents"], r["n"], r["avg_cents"], r["last"]))
	}
	sort.Strings(out)
	if want := "b1|1500|2|750|3,b2|-400|1|-400|2"; strings.Join(out, ",") != want {
		t.Fatalf("merged %v, want %s", out, want)
	}
}

// partial runs p as one task over Kafka records with the given values, from
// offset from on, and returns its encoded partial aggregate.
func partial(t *testing.T, p *Pipeline, from int, values []any) []byte {
	t.Helper()
	rows := make([]stream.Row, len(values))
	for i, v := range values {
		rows[i] = stream.Row{"topic": "t", "partition": int64(0), "offset": int64(from + i), "value": []byte(v.(string))}
	}
	return rowsIPC(t, p, rows)
}

// TestShorthandText: a shorthand's text is one expression: it may end with
// a comment, and cannot close the query around it.
func TestShorthandText(t *testing.T) {
	eng := engine(t)
	for _, tc := range []struct {
		steps []Step
		err   string
	}{
		{steps: []Step{{Path: "transforms[0]", Filter: "partition > 0 -- only some"}, {Path: "transforms[1]", Select: []SelectField{{Name: "t", Expr: "topic -- the topic"}}}}},
		{steps: []Step{{Path: "transforms[0]", Filter: "partition > 0) UNION ALL (SELECT * FROM source"}},
			err: "transforms[0].filter: position 13: a ')' with no '(' before it"},
		{steps: []Step{{Path: "transforms[0]", Select: []SelectField{{Name: "t", Expr: "topic; SELECT 1"}}}},
			err: "transforms[0].select.fields[0].expr: position 5: ';' ends a statement"},
		{steps: []Step{{Path: "transforms[0]", Select: []SelectField{}}}, err: "transforms[0].select.fields: lists no field"},
		{steps: []Step{{Path: "transforms[0]", Aggregate: &Aggregate{Aggregations: []Aggregation{{Fn: "sum"}}}}},
			err: "transforms[0].aggregate.aggregations[0].field: is required for sum"},
	} {
		_, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: tc.steps})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.steps, err)
		case tc.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.err)):
			t.Errorf("%+v: err = %v, want %q", tc.steps, err, tc.err)
		}
	}
}
