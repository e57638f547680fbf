//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/stream"
)

// TestPruneDecode: a json decode extracts only the fields later steps read,
// unless leaving the others out would change what the job produces.
func TestPruneDecode(t *testing.T) {
	eng := engine(t)
	const schema = "a BIGINT, b STRING, c DOUBLE, topic STRING, `odd name` BIGINT"
	payloads := []any{`{"a":1,"b":"x","c":1.5,"topic":"t1","odd name":7}`, `{"a":2,"b":"y","c":2.5,"topic":"t2","odd name":8}`}
	for _, tc := range []struct {
		name      string
		steps     []Step
		kept, cut []string
		rows      string
	}{
		{name: "one field read", steps: []Step{query(1, "", "select a * 10 as x from source")},
			kept: []string{`"a"`, `"topic"`}, cut: []string{`"b"`, `"c"`, `"odd name"`}, rows: "10; 20"},
		{name: "filter and select", steps: []Step{{Path: "transforms[1]", Filter: "c > 2"}, {Path: "transforms[2]", Select: []SelectField{{Name: "B", Expr: "upper(b)"}}}},
			kept: []string{`"b"`, `"c"`}, cut: []string{`"a"`, `"odd name"`}, rows: "Y"},
		{name: "quoted name", steps: []Step{query(1, "", `select "odd name" as n from source where a > 1`)},
			kept: []string{`"odd name"`, `"a"`}, cut: []string{`"b"`, `"c"`}, rows: "8"},
		{name: "a name inside another is not a mention", steps: []Step{query(1, "", `select abc from (select a as abc from source)`)},
			kept: []string{`"a"`}, cut: []string{`"b"`, `"c"`}, rows: "1; 2"},
		{name: "star reads everything", steps: []Step{query(1, "", "select * exclude (key, timestamp) from source")},
			kept: []string{`"a"`, `"b"`, `"c"`, `"odd name"`}},
		{name: "count only", steps: []Step{query(1, "", "select count(*) as n from source")},
			cut: []string{`"b"`, `"c"`, `"odd name"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps := append([]Step{decodeJSON(schema)}, tc.steps...)
			p, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: steps})
			if err != nil {
				t.Fatal(err)
			}
			in := p.dist.Task.InputQuery()
			for _, f := range tc.kept {
				if !strings.Contains(in, f) {
					t.Errorf("decode leaves out %s: %s", f, in)
				}
			}
			for _, f := range tc.cut {
				if strings.Contains(in, f) {
					t.Errorf("decode extracts %s: %s", f, in)
				}
			}
			if tc.rows == "" {
				return
			}
			got, err := runRows(t, p, payloads)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.rows {
				t.Fatalf("rows %s, want %s", got, tc.rows)
			}
		})
	}
}

// TestPruneSource: a pipeline's source is narrowed to the columns its task
// query reads, as DuckDB's optimizer sees them, and gives the rows the
// unpruned pipeline gives.
func TestPruneSource(t *testing.T) {
	eng := engine(t)
	payloads := []any{`{"a":1,"s":"x"}`, `{"a":2,"s":"y"}`, nil, `{"a":3,"s":"x"}`}
	all := columnar.Names(columnar.KafkaSchema(false))
	for _, tc := range []struct {
		name  string
		onBad BadRecords
		steps []Step
		want  []string
	}{
		{name: "count only keeps the cheapest column", steps: []Step{query(0, "", "select count(*) as n from source")},
			want: []string{"partition"}},
		{name: "columns named", steps: []Step{query(0, "", `select "offset", octet_length(value) as n from source where partition = 0`)},
			want: []string{"value", "partition", "offset"}},
		{name: "select star", steps: []Step{query(0, "", "select * from source")}, want: all},
		{name: "a whole-row reference", steps: []Step{query(0, "", "select hash(s) % 1000 as h from source s")}, want: all},
		{name: "columns star in a filter", steps: []Step{query(0, "", "select count(*) as n from source where columns(*) is not null")}, want: all},
		{name: "decode: the failure message names the record", steps: []Step{decodeJSON("a BIGINT, s STRING"), query(1, "", "select s, sum(a) as total from source group by s")},
			want: []string{"value", "topic", "partition", "offset"}},
		{name: "decode skipping bad records", onBad: SkipBad, steps: []Step{decodeJSON("a BIGINT, s STRING"), query(1, "", "select s, sum(a) as total from source group by s")},
			want: []string{"value"}},
		{name: "decode dead-lettering bad records", onBad: KeepBad, steps: []Step{decodeJSON("a BIGINT, s STRING"), query(1, "", "select s, sum(a) as total from source group by s")},
			want: all},
		{name: "shorthand steps", steps: []Step{decodeJSON("a BIGINT, s STRING"), {Path: "transforms[1]", Filter: "a > 1"},
			{Path: "transforms[2]", Select: []SelectField{{Name: "s", Expr: "s"}, {Name: "ts", Expr: "timestamp"}}}},
			want: []string{"value", "topic", "partition", "offset", "timestamp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Source: columnar.KafkaSchema(false), OnBad: tc.onBad, Steps: tc.steps}
			p, err := Compile(context.Background(), eng, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := columnar.Names(p.Source()); !slices.Equal(got, tc.want) {
				t.Errorf("source %q, want %q", got, tc.want)
			}
			full, err := compile(context.Background(), eng, cfg)
			if err != nil {
				t.Fatal(err)
			}
			want, werr := runRows(t, full, payloads)
			got, gerr := runRows(t, p, payloads)
			if fmt.Sprint(gerr) != fmt.Sprint(werr) || got != want {
				t.Errorf("pruned gives %q, %v; unpruned %q, %v", got, gerr, want, werr)
			}
		})
	}
}

// BenchmarkPruneDecode: a query reading 2 of a payload's 20 fields, with
// the decode narrowed to them and with every field extracted.
func BenchmarkPruneDecode(b *testing.B) {
	eng := engine(b)
	var ddl []string
	var obj []string
	for i := range 20 {
		ddl = append(ddl, fmt.Sprintf("f%d STRING", i))
		obj = append(obj, fmt.Sprintf(`"f%d":"value number %d of the record"`, i, i))
	}
	payload := []byte("{" + strings.Join(obj, ",") + "}")
	cfg := Config{Source: columnar.KafkaSchema(false), Steps: []Step{
		decodeJSON(strings.Join(ddl, ", ")),
		query(1, "", "select f3, count(*) as n from source group by f3"),
	}}
	full, err := compile(context.Background(), eng, cfg)
	if err != nil {
		b.Fatal(err)
	}
	pruned, err := Compile(context.Background(), eng, cfg)
	if err != nil {
		b.Fatal(err)
	}
	const records = 50000
	mem := memory.NewGoAllocator()
	for _, bc := range []struct {
		name string
		p    *Pipeline
	}{{"every field", full}, {"pruned", pruned}} {
		b.Run(bc.name, func(b *testing.B) {
			// Each pipeline's own input: the pruned one reads fewer source
			// columns too.
			build := columnar.NewBuilder(mem, bc.p.Source())
			defer build.Release()
			for i := range records {
				if err := build.Append(stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i), "value": payload}); err != nil {
					b.Fatal(err)
				}
			}
			rec := build.NewRecordBatch()
			defer rec.Release()
			for b.Loop() {
				in, err := array.NewRecordReader(bc.p.Source(), []arrow.RecordBatch{rec})
				if err != nil {
					b.Fatal(err)
				}
				out, err := bc.p.RunTask(context.Background(), in, time.Now(), nil)
				if err != nil {
					b.Fatal(err)
				}
				for out.Next() {
				}
				if err := out.Err(); err != nil {
					b.Fatal(err)
				}
				out.Release()
				in.Release()
			}
			b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
