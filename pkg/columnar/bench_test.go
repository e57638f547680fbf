package columnar

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/stream"
)

// BenchmarkKafkaRowsToArrow measures the rows-to-Arrow edge of a SQL step:
// one 64k-row batch of Kafka records with ~60-byte JSON values.
func BenchmarkKafkaRowsToArrow(b *testing.B) {
	const n = 64 << 10
	rows := make([]stream.Row, n)
	for i := range rows {
		value := fmt.Sprintf(`{"id":%d,"user":"user-%05d","amount":%d.%02d,"ok":true}`, i, i%50000, i%1000, i%100)
		rows[i] = kafkaRow([]byte(fmt.Sprintf("user-%05d", i%50000)), []byte(value), int64(i))
	}
	mem := memory.NewGoAllocator()
	bld := NewBuilder(mem, KafkaSchema(false))
	defer bld.Release()
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range rows {
			if err := bld.Append(r); err != nil {
				b.Fatal(err)
			}
		}
		bld.NewRecordBatch().Release()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
