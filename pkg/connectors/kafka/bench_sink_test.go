package kafka_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// BenchmarkSinkWriteArrow is the writing half of scenario 2 of make bench
// (Kafka to Kafka, key and value passed through): a task's batches of
// 8192 records with 120-byte values through WriteArrow, then Commit, to
// kfake in the same process. The records' bytes are read in place from the
// batches, which stay alive until the client acknowledges them.
func BenchmarkSinkWriteArrow(b *testing.B) {
	const batches, rows, valueSize = 4, 8192, 120
	c := newCluster(b, 16, "out")
	mem := memory.NewGoAllocator()
	s := newSink(b, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Key: "key", Value: "value"}, kafka.WithSinkAllocator(mem))
	recs := make([]arrow.RecordBatch, batches)
	for j := range recs {
		bld, ok := columnar.NewKafkaBuilderFor(mem, columnar.KafkaSchema(false))
		if !ok {
			b.Fatal("no Kafka builder for the Kafka schema")
		}
		value := make([]byte, valueSize)
		for i := range rows {
			copy(value, fmt.Sprintf(`{"branch":"b%d","amount":%d,"pad":"`, i%10, i))
			bld.Append("in", int32(j), int64(i), []byte(fmt.Sprintf("k%d", i)), value, 0, 0, nil)
		}
		recs[j] = bld.NewRecordBatch()
		bld.Release()
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	ctx := testCtx(b)
	b.ResetTimer()
	for n := range b.N {
		w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: stream.BatchID(n), Part: "p"})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range recs {
			if err := w.(connectors.ArrowWriter).WriteArrow(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batches*rows)/b.Elapsed().Seconds(), "rec/s")
}
