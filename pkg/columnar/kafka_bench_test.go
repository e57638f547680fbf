package columnar

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// BenchmarkKafkaBuilder is BenchmarkKafkaRowsToArrow's batch (64k Kafka
// records with ~60-byte JSON values) through the typed builder, from the
// values a Kafka reader holds instead of rows.
func BenchmarkKafkaBuilder(b *testing.B) {
	const n = 64 << 10
	type rec struct{ key, value []byte }
	recs := make([]rec, n)
	for i := range recs {
		value := fmt.Sprintf(`{"id":%d,"user":"user-%05d","amount":%d.%02d,"ok":true}`, i, i%50000, i%1000, i%100)
		recs[i] = rec{[]byte(fmt.Sprintf("user-%05d", i%50000)), []byte(value)}
	}
	mem := memory.NewGoAllocator()
	bld := NewKafkaBuilder(mem, false)
	defer bld.Release()
	b.ReportAllocs()
	for b.Loop() {
		for i, r := range recs {
			bld.Append("orders", 7, int64(i), r.key, r.value, 1_700_000_000_123+int64(i), 0, nil)
		}
		bld.NewRecordBatch().Release()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
