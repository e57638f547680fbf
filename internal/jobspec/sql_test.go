package jobspec

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/sqltransform"
)

// goodSQL is the treasury job as users write it, with its Spark SQL query.
const goodSQL = `
name: treasury
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction], startingOffsets: earliest}
transforms:
  - decode: {format: json, schema: "branch STRING, currency STRING, amount BIGINT"}
  - sql:
      view: treasury_stream
      query: >
        select from_unixtime(unix_timestamp()) as curr_time, t.branch as branch_name,
        t.currency as currency_code, sum(amount) as batch_value
        from treasury_stream t group by t.branch, t.currency
sink:
  file: {path: /tmp/out, format: jsonl}
trigger: {processingTime: 2s}
`

// TestCompileSQLShorthands: in a SQL job the filter, select and aggregate
// steps are SQL, compiled into the job's query.
func TestCompileSQLShorthands(t *testing.T) {
	spec, err := ParseYAML([]byte(`
name: shorthands
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction]}
transforms:
  - decode: {format: json, schema: "branch STRING, currency STRING, amount BIGINT"}
  - filter: "amount <> 0 AND currency IN ('USD', 'EUR')"
  - select: {fields: [{name: branch}, {name: cents, expr: "amount * 100"}, {name: currency, expr: "lower(currency)"}]}
  - aggregate: {groupBy: [branch, currency], aggregations: [{fn: sum, field: cents}, {fn: count, as: n}, {fn: avg, field: cents, as: mean}]}
sink:
  file: {path: /tmp/out}
`))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if j.SQL == nil || !j.Aggregating() || strings.Join(j.Columns(), ",") != "branch,currency,sum_cents,n,mean" {
		t.Fatalf("compiled job: SQL %v, aggregating %v, columns %v", j.SQL, j.Aggregating(), j.Columns())
	}
}

func TestCompileSQL(t *testing.T) {
	spec, err := ParseYAML([]byte(goodSQL))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if j.SQL == nil || !j.Aggregating() || strings.Join(j.Columns(), ",") != "curr_time,branch_name,currency_code,batch_value" {
		t.Fatalf("compiled job: SQL %v, aggregating %v, columns %v", j.SQL, j.Aggregating(), j.Columns())
	}
}

// TestCompileSQLDeadLetter: bad records of a SQL job's decode can go to a
// dead-letter sink.
func TestCompileSQLDeadLetter(t *testing.T) {
	spec, err := ParseYAML([]byte(strings.Replace(goodSQL, "trigger: {processingTime: 2s}",
		"trigger: {processingTime: 2s}\nonError: deadLetter\ndeadLetter: {file: {path: /tmp/dl, format: jsonl}}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if j.SQL.OnBad() != sqltransform.KeepBad {
		t.Fatalf("OnBad %v, want KeepBad", j.SQL.OnBad())
	}
}

// TestCompileRefusesBadSQL: bad SQL is refused at submit as InvalidArgument
// naming the step's field and the place in the query.
func TestCompileRefusesBadSQL(t *testing.T) {
	for _, tc := range []struct {
		name, old, new, field, want string
	}{
		{"unknown column", "sum(amount)", "sum(amont)", "transforms[1].sql.query", "line 1, column 112 (position 111): unknown column"},
		{"unknown function", "sum(amount)", "summ(amount)", "transforms[1].sql.query", "unknown function"},
		{"syntax", "group by t.branch", "group t.branch", "transforms[1].sql.query", "syntax error"},
		{"bad schema", "amount BIGINT", "amount BIGNUM", "transforms[0].decode.schema", "BIGNUM"},
		{"filter's unknown column", "  - sql:", "  - filter: \"amont <> 0\"\n  - sql:", "transforms[1].filter", "position 0: unknown column"},
		{"filter's syntax", "  - sql:", "  - filter: \"amount <> \"\n  - sql:", "transforms[1].filter", "syntax error"},
		{"CEL in a filter", "  - sql:", "  - filter: \"amount > 0 && currency == 'USD'\"\n  - sql:", "transforms[1].filter", ""},
		{"select's expression", "  - sql:", "  - select: {fields: [{name: branch}, {name: x, expr: \"amount + nope\"}]}\n  - sql:", "transforms[1].select.fields[1].expr", "position 9: unknown column"},
		{"select's column", "  - sql:", "  - select: {fields: [{name: branch}, {name: curency}]}\n  - sql:", "transforms[1].select.fields[1].name", "unknown column"},
		{"select names twice", "  - sql:", "  - select: {fields: [{name: branch}, {name: Branch, expr: \"upper(branch)\"}]}\n  - sql:", "transforms[1].select.fields[1].name", "listed twice"},
		{"aggregate not last", "  - sql:", "  - aggregate: {groupBy: [branch], aggregations: [{fn: sum, field: amount}]}\n  - sql:", "transforms[1].aggregate", "must be the job's last"},
		{"aggregate's unknown fn", "  - sql:", "  - aggregate: {groupBy: [branch], aggregations: [{fn: median, field: amount}]}\n  - sql:", "transforms[1].aggregate.aggregations[0].fn", "not one of count"},
		{"aggregate's unknown group key", "  - sql:", "  - aggregate: {groupBy: [brunch], aggregations: [{fn: count}]}\n  - sql:", "transforms[1].aggregate.groupBy[0]", "unknown column"},
		{"aggregate's maxGroups", "  - sql:", "  - aggregate: {groupBy: [branch], aggregations: [{fn: count}], maxGroups: 10}\n  - sql:", "transforms[1].aggregate.maxGroups", "applies to CEL steps"},
		{"empty query", "      query: >\n        select from_unixtime(unix_timestamp()) as curr_time, t.branch as branch_name,\n        t.currency as currency_code, sum(amount) as batch_value\n        from treasury_stream t group by t.branch, t.currency\n", "      query: \"\"\n", "transforms[1].sql.query", "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(goodSQL, tc.old, tc.new, 1)
			if src == goodSQL {
				t.Fatalf("edit %q did not apply", tc.old)
			}
			spec, err := ParseYAML([]byte(src))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Compile(spec)
			var br rpc.BadRequester
			if !errors.As(err, &br) {
				t.Fatalf("err = %v, want field violations", err)
			}
			for _, v := range br.Violations() {
				if v.Field == tc.field && strings.Contains(v.Description, tc.want) {
					return
				}
			}
			t.Fatalf("violations %+v, want %s: ...%s...", br.Violations(), tc.field, tc.want)
		})
	}
}
