package kafka_test

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
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

// BenchmarkReaderPoolThroughput reads a backlog of 16 partitions × 62,500
// records of ~120 bytes (snappy, as franz-go produces by default) in 8
// micro-batches, one range per partition each, into Arrow batches of the
// partition column only: make bench's count-only scenario (1c) without the
// engine, the driver and the processes. "pool" is one executor's pool
// reading every partition, two ranges at a time; "pools=2" two executors'
// pools reading half the partitions each, two ranges at a time each, as
// the scenario's two executors do; "raw" is franz-go consuming and
// counting the same records in one client (the scenario's baseline). All
// share the machine with the broker (kfake), as in the scenario; compare
// their records/s within one run.
func BenchmarkReaderPoolThroughput(b *testing.B) {
	const parts, perPart, batches = 16, 62_500, 8
	c := newCluster(b, parts, "t")
	for p := range int32(parts) {
		recs := make([]*kgo.Record, perPart)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: "t", Partition: p, Key: []byte(fmt.Sprintf("k%d", i%97)),
				Value: []byte(fmt.Sprintf(`{"id":%d,"branch":"branch-%02d","currency":"USD","amount":%d,"note":"%s"}`, i, i%37, i%1000, strings.Repeat("x", 40)))}
		}
		c.produceRecords(recs...)
	}
	total := float64(parts * perPart)
	schema := arrow.NewSchema([]arrow.Field{{Name: "partition", Type: arrow.PrimitiveTypes.Int32, Nullable: true}}, nil)
	// executor reads batch k's ranges of partitions first, first+step, ...
	// through pool, two at a time.
	executor := func(pool *kafka.ReaderPool, k, first, step int) {
		work := make(chan stream.Range)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				kb, _ := columnar.NewKafkaBuilderFor(memory.DefaultAllocator, schema)
				defer kb.Release()
				kb.SetBatchRows(16 << 10)
				for r := range work {
					countRange(b, pool, r, kb)
				}
			})
		}
		for p := first; p < parts; p += step {
			from, until := k*perPart/batches, (k+1)*perPart/batches
			work <- rng(stream.PartitionID(fmt.Sprintf("t/%d", p)), strconv.Itoa(from), strconv.Itoa(until))
		}
		close(work)
		wg.Wait()
	}
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("pools=%d", n), func(b *testing.B) {
			for b.Loop() {
				pools := make([]*kafka.ReaderPool, n)
				for i := range pools {
					pools[i] = newPool(b, c.config("t"))
				}
				for k := range batches {
					var wg sync.WaitGroup
					for i, pool := range pools {
						wg.Go(func() { executor(pool, k, i, n) })
					}
					wg.Wait()
				}
				for _, pool := range pools {
					_ = pool.Close()
				}
			}
			b.ReportMetric(total*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			start := map[string]map[int32]kgo.Offset{"t": {}}
			for p := range int32(parts) {
				start["t"][p] = kgo.NewOffset().AtStart()
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.ConsumePartitions(start))
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for n < parts*perPart {
				fs := cl.PollFetches(b.Context())
				if err := fs.Err0(); err != nil {
					b.Fatal(err)
				}
				n += fs.NumRecords()
			}
			cl.Close()
		}
		b.ReportMetric(total*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}

// countRange reads r to its end into kb, cutting batches at 16k records.
func countRange(b *testing.B, pool *kafka.ReaderPool, r stream.Range, kb *columnar.KafkaBuilder) {
	rd, err := pool.Open(b.Context(), r)
	if err != nil {
		b.Error(err)
		return
	}
	defer func() { _ = rd.Close() }()
	ar := rd.(connectors.KafkaArrowReader)
	for {
		_, _, err := ar.ReadKafkaArrow(b.Context(), kb)
		if kb.Len() >= 16<<10 || errors.Is(err, io.EOF) {
			kb.NewRecordBatch().Release()
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			b.Error(err)
			return
		}
	}
}
