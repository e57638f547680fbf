package kafka_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// BenchmarkReaderPoolBatches reads micro-batches of one record per
// partition through one ReaderPool, two ranges at a time (an executor's
// two slots), in plan order: an executor's reads in scenario 3 of make
// bench. The first batch opens every partition cold (cold-ms/part); the
// loop times warm batches (warm-ns/part). On the 2-core machine a cold
// partition cost 5.6-5.9 ms (each first fetch restarts the client's fetch
// session, see fetcher.go's First fetches), a warm one about 3 µs: so
// every partition that changes executor costs a batch milliseconds.
func BenchmarkReaderPoolBatches(b *testing.B) {
	for _, n := range []int{256, 1024} {
		b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
			c := newCluster(b, int32(n), "t")
			src, pool := newSource(b, c.config("t")), newPool(b, c.config("t"))
			var committed map[stream.PartitionID]stream.Position
			// batch reads batch id; the records' production and the plan
			// are not timed.
			batch := func(id int) {
				b.StopTimer()
				recs := make([]*kgo.Record, n)
				for i := range recs {
					recs[i] = &kgo.Record{Topic: "t", Partition: int32(i), Value: []byte("v")}
				}
				c.produceRecords(recs...)
				p, err := src.Plan(b.Context(), connectors.PlanRequest{Batch: stream.BatchID(id), Committed: committed})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				work := make(chan stream.Range)
				var wg sync.WaitGroup
				for range 2 {
					wg.Go(func() {
						for r := range work {
							readRange(b, pool, r)
						}
					})
				}
				for _, r := range p.Ranges {
					work <- r
				}
				close(work)
				wg.Wait()
				committed = ends(p)
			}
			start := time.Now()
			batch(0)
			cold := time.Since(start)
			id := 1
			for b.Loop() {
				batch(id)
				id++
			}
			b.ReportMetric(float64(cold.Microseconds())/1000/float64(n), "cold-ms/part")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "warm-ns/part")
		})
	}
}
