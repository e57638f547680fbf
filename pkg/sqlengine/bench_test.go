//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// BenchmarkSeedQuery runs the treasury query, with from_json decoding
// Kafka's value in the query, over one task's 1M records in 64k batches:
// the spike measured 10.8-11.3M records/s for this shape on 2 threads
// (through a decode view and json_transform, without the Spark macros).
func BenchmarkSeedQuery(b *testing.B) {
	e := newEngine(b, WithThreads(2), WithMemoryLimit(1<<30))
	const n, per = 1 << 20, 1 << 16
	branches := []string{"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"}
	currencies := []string{"EUR", "USD", "GBP", "CHF", "JPY"}
	rows := make([]kafkaRecord, n)
	for i := range rows {
		rows[i] = kafkaRecord{key: "k", value: fmt.Sprintf(`{"branch":"%s","currency":"%s","amount":%d}`, branches[i%10], currencies[(i/10)%5], i%1000-100),
			partition: int32(i % 4), offset: int64(i), ts: t0.Add(time.Duration(i) * time.Millisecond)}
	}
	batches := kafkaBatches(memory.NewGoAllocator(), rows, per)
	defer releaseAll(batches)
	for _, bc := range []struct{ name, decode string }{
		{"from_json", `from_json(value, 'branch STRING, currency STRING, amount BIGINT')`},
		{"json_transform", `json_transform(decode(value), '{"branch":"VARCHAR","currency":"VARCHAR","amount":"BIGINT"}')`},
	} {
		b.Run(bc.name, func(b *testing.B) { benchSeed(b, e, batches, bc.decode) })
	}
}

func benchSeed(b *testing.B, e *Engine, batches []arrow.RecordBatch, decode string) {
	c, err := e.Compile(context.Background(), `select from_unixtime(unix_timestamp()) as curr_time, t.branch as branch_name,
		t.currency as currency_code, sum(t.amount) as batch_value
		from (select `+decode+` as t from source)
		group by t.branch, t.currency`, kafkaSchema)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, r := range batches {
		n += r.NumRows()
	}
	for b.Loop() {
		out, err := c.RunBatches(context.Background(), batches)
		if err != nil {
			b.Fatal(err)
		}
		var groups int64
		for _, r := range out {
			groups += r.NumRows()
		}
		releaseAll(out)
		if groups != 50 {
			b.Fatalf("%d groups, want 50", groups)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e6, "Mrec/s")
}

// BenchmarkOpen prices opening an engine, which every process pays at its
// first SQL job (the driver once, an executor twice: its engine and its
// planner database): DuckDB's database, the settings and the Spark macros.
func BenchmarkOpen(b *testing.B) {
	for b.Loop() {
		e, err := Open(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
