//go:build duckdb_arrow

package sqltransform

import (
	"context"
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

// BenchmarkSmallTask is what a task costs around its records: one record
// through a decode and a query, most of it DuckDB parsing, binding and
// planning (issue 13's per-task set-up cost; a batch of many partitions
// pays it once per task). The count-only query is scenario 1c's: what a
// task costs in DuckDB when the query itself is almost free.
func BenchmarkSmallTask(b *testing.B) {
	eng := engine(b)
	for _, q := range []string{"select * from source", "select branch, sum(amount) as s from source group by branch", "select count(*) as n from source"} {
		steps := []Step{decodeJSON("branch STRING, amount BIGINT"), query(1, "", q)}
		if strings.HasPrefix(q, "select count") {
			// Scenario 1c's query: no decode, the source's columns only.
			steps = []Step{query(0, "", q)}
		}
		p, err := Compile(context.Background(), eng, Config{Source: columnar.KafkaSchema(false), Steps: steps})
		if err != nil {
			b.Fatal(err)
		}
		bld := columnar.NewBuilder(memory.NewGoAllocator(), p.Source())
		bld.Append(stream.Row{"topic": "t", "partition": int64(0), "offset": int64(1), "value": []byte(`{"branch":"a","amount":1}`)})
		rec := bld.NewRecordBatch()
		b.Run(q[:20], func(b *testing.B) {
			for b.Loop() {
				runTask(b, p, rec)
			}
		})
	}
}

// BenchmarkTaskSize runs one task of scenario 1's size (15,625 records of
// make bench's transactions: 8 batches of 250,000 records over 16
// partitions) through three pipelines: the count-only query (1c), the JSON
// decode and treasury group-by (1), and the same group-by over columns
// decoded already, which prices DuckDB's json_transform as the difference.
// Run with -benchtime 300x; ns/record is per input record.
func BenchmarkTaskSize(b *testing.B) {
	const records = 15_625
	eng := engine(b)
	branches, currencies := []string{"Kazan", "SPB", "Novosibirsk", "Surgut"}, []string{"RUB", "USD", "EUR", "GBP"}
	decoded := arrow.NewSchema([]arrow.Field{
		{Name: "branch", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "currency", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "amount", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	const group = "select branch, currency, sum(amount) as s, count(*) as n from t group by branch, currency"
	for _, tc := range []struct {
		name   string
		source *arrow.Schema
		steps  []Step
	}{
		{"count", columnar.KafkaSchema(false), []Step{query(0, "", "select count(*) as n from source")}},
		{"decode+group", columnar.KafkaSchema(false), []Step{decodeJSON("branch STRING, currency STRING, amount BIGINT"), query(1, "t", group)}},
		{"group-decoded", decoded, []Step{query(0, "t", group)}},
	} {
		p, err := Compile(context.Background(), eng, Config{Source: tc.source, Steps: tc.steps})
		if err != nil {
			b.Fatal(err)
		}
		bld := columnar.NewBuilder(memory.NewGoAllocator(), p.Source())
		ts := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		for i := range records {
			br, cur, amount := branches[i%4], currencies[(i/4)%4], int64(i%201-100)
			ts = ts.Add(time.Duration(i%5000) * time.Microsecond)
			err := bld.Append(stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i), "branch": br, "currency": cur, "amount": amount,
				"value": fmt.Appendf(nil, `{"id":%d,"ts":"%s","branch":"%s","currency":"%s","amount":%d,"account":"40817810%012d"}`,
					i, ts.Format("2006-01-02T15:04:05.000Z"), br, cur, amount, i)})
			if err != nil {
				b.Fatal(err)
			}
		}
		rec := bld.NewRecordBatch()
		bld.Release()
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				runTask(b, p, rec)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
		})
		rec.Release()
	}
}

// runTask runs p's task over rec and reads its output, as an executor's
// task does.
func runTask(b *testing.B, p *Pipeline, rec arrow.RecordBatch) {
	in, err := array.NewRecordReader(p.Source(), []arrow.RecordBatch{rec})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Release()
	out, err := p.RunTask(context.Background(), in, time.Now(), nil)
	if err != nil {
		b.Fatal(err)
	}
	for out.Next() {
	}
	out.Release()
}

// BenchmarkFirstCompile prices what a process pays at its first SQL job
// (the driver at its first SubmitJob, an executor at its first task): it
// opens an engine and compiles row 1's job of make bench, whose aggregate
// is distributed and whose read columns come from the planner database.
func BenchmarkFirstCompile(b *testing.B) {
	cfg := Config{Source: columnar.KafkaSchema(false), Steps: []Step{decodeJSON("branch STRING, currency STRING, amount BIGINT"),
		query(1, "treasury_stream", `select from_unixtime(unix_timestamp()) as curr_time, t.branch as branch_name,
			t.currency as currency_code, sum(amount) as batch_value from treasury_stream t group by t.branch, t.currency`)}}
	for b.Loop() {
		eng, err := sqlengine.Open(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Compile(context.Background(), eng, cfg); err != nil {
			b.Fatal(err)
		}
		if err := eng.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
