//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
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
				in, _ := array.NewRecordReader(p.Source(), []arrow.RecordBatch{rec})
				out, err := p.RunTask(context.Background(), in, time.Now(), nil)
				if err != nil {
					b.Fatal(err)
				}
				for out.Next() {
				}
				out.Release()
				in.Release()
			}
		})
	}
}
