package kafka_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// TestRecycledFetchesKeepEveryValue: ReadKafkaArrow gives each record back
// to the slab pool once it copied it, and franz-go lends the batch's
// slices again; the pool here poisons what comes back. Every value read
// by ReadKafkaArrow is still the one produced, for compressed and
// uncompressed batches, and rows Read handed out keep their values while
// later reads reuse the slices: Read never gives its records back.
func TestRecycledFetchesKeepEveryValue(t *testing.T) {
	poisoned, recycled, decompressed := kafka.PoisonedFetchSlabs()
	c := newCluster(t, 1, "slabs")
	plain, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx := testCtx(t)
	value := func(i int) []byte { return []byte(fmt.Sprintf("%d:%s", i, strings.Repeat("v", i%50))) }
	const batches, per = 8, 500
	for b := range batches {
		recs := make([]*kgo.Record, per)
		for i := range recs {
			off := b*per + i
			recs[i] = &kgo.Record{Topic: "slabs", Key: []byte(itoa(int64(off))), Value: value(off)}
		}
		cl := c.cl // snappy, franz-go's default
		if b%2 == 1 {
			cl = plain
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	pool := newPool(t, c.config("slabs"), kafka.WithMaxRecordsPerRead(64), poisoned)
	// Rows of the first 500 records, read with Read and kept to the end.
	rd, err := pool.Open(ctx, rng("slabs/0", "0", "500"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []stream.Record
	for {
		recs, err := rd.Read(ctx)
		rows = append(rows, recs...)
		if err != nil {
			break
		}
	}
	_ = rd.Close()
	if len(rows) != 500 {
		t.Fatalf("Read gave %d rows, want 500", len(rows))
	}
	check := func(from int, got [][]byte) {
		t.Helper()
		for i, v := range got {
			if want := value(from + i); !bytes.Equal(v, want) {
				t.Fatalf("offset %d reads %q, want %q", from+i, v, want)
			}
		}
	}
	// The rest, twice over, in ranges of 250: each pass recycles every
	// batch the one before fetched.
	for pass := range 2 {
		for from := 500; from < batches*per; from += 250 {
			_, got := readArrow(t, ctx, pool, rng("slabs/0", itoa(int64(from)), itoa(int64(from+250))), mem, false)
			col := got.Column(got.Schema().FieldIndices("value")[0]).(*array.Binary)
			vals := make([][]byte, col.Len())
			for i := range vals {
				vals[i] = col.Value(i)
			}
			check(from, vals)
			got.Release()
		}
		// Read's rows are untouched by the slices lent again.
		vals := make([][]byte, len(rows))
		for i, r := range rows {
			vals[i] = r.Fields["value"].([]byte)
		}
		check(0, vals)
		if pass == 0 && (recycled.Load() == 0 || decompressed.Load() == 0) {
			t.Fatalf("%d record slabs and %d decompressed batches came back; want both", recycled.Load(), decompressed.Load())
		}
	}
}
