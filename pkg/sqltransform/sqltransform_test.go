//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/stream"
)

func engine(t testing.TB) *sqlengine.Engine {
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
		{"format", []Step{{Path: "transforms[0]", Decode: &Decode{Format: "avro"}}, query(1, "", "select 1")}, []string{`transforms[0].decode.format: "avro" is not one of json, csv, raw`}},
		{"payload field", []Step{{Path: "transforms[0]", Decode: &Decode{Format: "raw", Field: "body"}}, query(1, "", "select 1")}, []string{`transforms[0].decode.field: "body" is not a column`}},
		{"decode after sql", []Step{query(0, "", "select value from source"), {Path: "transforms[1]", Decode: &Decode{Format: "raw"}}}, []string{"transforms[1].decode: must come before"}},
		{"aggregate not last", []Step{query(0, "", "select topic, count(*) as n from source group by topic"), query(1, "", "select * from source")},
			[]string{"transforms[0].sql.query: an aggregating step must be the job's last"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: tc.steps})
			if err == nil {
				t.Fatal("compiled")
			}
			var got []string
			for _, e := range unjoin(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *FieldError", e)
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

// TestCSVDecode: a csv decode splits each payload into rows (quoted fields,
// several lines, a header line skipped), names the fields by columns or
// types them by schema, and fails or drops a payload that is not CSV.
func TestCSVDecode(t *testing.T) {
	eng := engine(t)
	payloads := []any{"a,1\n\"b,\"\"q\"\"\",2", nil, "c,x", "d,4,extra", "\"unterminated,5"}
	for _, tc := range []struct {
		name    string
		decode  Decode
		skip    bool
		want    string
		wantErr string
	}{
		{name: "columns", decode: Decode{Format: "csv", Columns: []string{"k", "n"}}, skip: true,
			want: `a|1; b,"q"|2; c|x; d|4`},
		{name: "schema", decode: Decode{Format: "csv", Schema: "k STRING, n BIGINT"}, skip: true,
			want: `a|1; b,"q"|2; c|<nil>; d|4`},
		{name: "header", decode: Decode{Format: "csv", Columns: []string{"k", "n"}, Header: true}, skip: true,
			want: `b,"q"|2`},
		{name: "fail", decode: Decode{Format: "csv", Columns: []string{"k", "n"}},
			wantErr: "bad record in t/0 at offset 4: transforms[0].decode: a payload that is not CSV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), OnBad: onBad(tc.skip), Steps: []Step{
				{Path: "transforms[0]", Decode: &tc.decode},
				query(1, "", `select k, n from source`),
			}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := runRows(t, p, payloads)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("rows %s, want %s", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		decode Decode
		want   string
	}{
		{Decode{Format: "csv"}, "transforms[0].decode.columns: names a csv record's fields up front"},
		{Decode{Format: "csv", Columns: []string{"a"}, Schema: "a STRING"}, "transforms[0].decode.columns: give columns or schema, not both"},
		{Decode{Format: "csv", Schema: "a ARRAY<INT>"}, "transforms[0].decode.schema: field \"a\": a csv field is a scalar"},
		{Decode{Format: "csv", Columns: []string{"a"}, Delimiter: ";;"}, "transforms[0].decode.delimiter"},
	} {
		_, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: []Step{
			{Path: "transforms[0]", Decode: &tc.decode}, query(1, "", `select 1 as x from source`)}})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: err = %v, want %q", tc.decode, err, tc.want)
		}
	}
}

// runRows runs p as one task over Kafka records with the given values and
// renders the output rows as "a|b; c|d".
func runRows(t *testing.T, p *Pipeline, values []any) (string, error) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := columnar.NewBuilder(mem, p.Source())
	defer b.Release()
	for i, v := range values {
		row := stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i), "value": nil}
		if s, ok := v.(string); ok {
			row["value"] = []byte(s)
		}
		if err := b.Append(row); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	in, err := array.NewRecordReader(p.Source(), []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Release()
	var rejects *sqlengine.Rejects
	if p.OnBad() != FailOnBad {
		rejects = &sqlengine.Rejects{}
	}
	out, err := p.RunTask(context.Background(), in, time.Now(), rejects)
	if err != nil {
		return "", err
	}
	defer out.Release()
	var parts []string
	for out.Next() {
		rows, err := columnar.AppendRows(nil, out.RecordBatch())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			var cells []string
			for _, c := range p.Columns() {
				cells = append(cells, fmt.Sprint(r[c]))
			}
			parts = append(parts, strings.Join(cells, "|"))
		}
	}
	return strings.Join(parts, "; "), out.Err()
}

func onBad(skip bool) BadRecords {
	if skip {
		return SkipBad
	}
	return FailOnBad
}

// TestJSONDecodeKeeps: a JSON decode drops (or fails on) only payloads that
// are not JSON; valid JSON that is not an object of the schema's types is
// kept with null fields, and a null payload stays a null row. The check
// runs after the transform and parses a payload again only when the
// transform gave nothing: this pins that the order changed nothing.
func TestJSONDecodeKeeps(t *testing.T) {
	eng := engine(t)
	values := []any{`{"a":1,"s":"x"}`, `null`, `5`, `[1]`, `{"a":"x"}`, `not json`, nil, "\xff", `{"s":"y"}`}
	for _, tc := range []struct {
		skip    bool
		want    string
		wantErr string
	}{
		{skip: true, want: "0|1|x; 1|<nil>|<nil>; 2|<nil>|<nil>; 3|<nil>|<nil>; 4|<nil>|<nil>; 6|<nil>|<nil>; 8|<nil>|y"},
		{wantErr: "bad record in t/0 at offset 5: transforms[0].decode: malformed JSON"},
	} {
		cfg := Config{Source: columnar.KafkaSchema(false), OnBad: onBad(tc.skip), Steps: []Step{
			decodeJSON("a BIGINT, s STRING"), query(1, "", `select "offset", a, s from source`)}}
		p, err := Compile(context.Background(), eng, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := runRows(t, p, values)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("fail: err = %v, want %q", err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("skip: %v", err)
		case got != tc.want:
			t.Errorf("skip: rows %s\nwant %s", got, tc.want)
		}
	}
}
