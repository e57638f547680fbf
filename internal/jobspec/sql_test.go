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
		{"CEL step mixed in", "  - sql:", "  - filter: \"amount != 0\"\n  - sql:", "transforms[1]", "do not mix with sql steps"},
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
