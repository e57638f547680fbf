package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// step is what one Read or ReadKafkaArrow call gave: how many records, their
// size, the End after it, and whether it ended the range.
type step struct {
	N     int
	Bytes int64
	End   stream.Position
	EOF   bool
}

// readRows reads r to the end with Read and builds its rows into one batch,
// as a SQL task's row path does.
func readRows(t *testing.T, ctx context.Context, pool connectors.ReaderPool, r stream.Range, mem memory.Allocator, headers bool) ([]step, arrow.RecordBatch) {
	t.Helper()
	rd, err := pool.Open(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	b := columnar.NewBuilder(mem, columnar.KafkaSchema(headers))
	defer b.Release()
	var steps []step
	for {
		recs, err := rd.Read(ctx)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("Read: %v", err)
		}
		s := step{N: len(recs), End: rd.End(), EOF: err != nil}
		for _, rec := range recs {
			s.Bytes += int64(rec.Size)
			if err := b.Append(rec.Fields); err != nil {
				t.Fatal(err)
			}
		}
		steps = append(steps, s)
		if s.EOF {
			return steps, b.NewRecordBatch()
		}
	}
}

// readArrow reads r to the end with ReadKafkaArrow into one batch.
func readArrow(t *testing.T, ctx context.Context, pool connectors.ReaderPool, r stream.Range, mem memory.Allocator, headers bool) ([]step, arrow.RecordBatch) {
	t.Helper()
	rd, err := pool.Open(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	ar, ok := rd.(connectors.KafkaArrowReader)
	if !ok {
		t.Fatalf("%T does not implement connectors.KafkaArrowReader", rd)
	}
	b := columnar.NewKafkaBuilder(mem, headers)
	defer b.Release()
	var steps []step
	for {
		n, bytes, err := ar.ReadKafkaArrow(ctx, b)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadKafkaArrow: %v", err)
		}
		steps = append(steps, step{N: n, Bytes: bytes, End: rd.End(), EOF: err != nil})
		if err != nil {
			if b.Len() != sum(steps) {
				t.Fatalf("builder holds %d records, ReadKafkaArrow reported %d", b.Len(), sum(steps))
			}
			return steps, b.NewRecordBatch()
		}
	}
}

func sum(steps []step) int {
	n := 0
	for _, s := range steps {
		n += s.N
	}
	return n
}

// TestReadKafkaArrowMatchesRead: ReadKafkaArrow reads a range exactly as Read
// does (the same records per call, sizes, End after each call, io.EOF,
// transaction markers skipped), and its batch is the one a Builder makes of
// Read's rows, with and without headers.
func TestReadKafkaArrowMatchesRead(t *testing.T) {
	c := newCluster(t, 1, "arrow")
	var recs []*kgo.Record
	for i := range 20 {
		rec := &kgo.Record{Topic: "arrow", Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf(`{"i":%d}`, i))}
		switch i % 4 {
		case 1:
			rec.Key = nil
		case 2:
			rec.Value = nil // tombstone
		case 3:
			rec.Headers = []kgo.RecordHeader{{Key: "trace", Value: []byte("t" + itoa(int64(i)))}, {Key: "nil", Value: nil}}
		}
		recs = append(recs, rec)
	}
	c.produceRecords(recs...) // offsets 0-19
	txn, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.TransactionalID("sluice-arrow"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := testCtx(t)
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "arrow", Value: []byte("tx")}, &kgo.Record{Topic: "arrow", Value: []byte("tx2")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil { // offsets 20-21, marker 22
		t.Fatal(err)
	}

	for _, headers := range []bool{false, true} {
		for _, r := range []stream.Range{rng("arrow/0", "0", "23"), rng("arrow/0", "3", "17"), rng("arrow/0", "21", "23"), rng("arrow/0", "22", "23"), rng("arrow/0", "5", "5")} {
			t.Run(fmt.Sprintf("headers=%v/%s-%s", headers, r.From, r.Until), func(t *testing.T) {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				defer mem.AssertSize(t, 0)
				cfg := c.config("arrow")
				cfg.IncludeHeaders = headers
				// Separate pools, so that neither path finds the other's
				// warm partition.
				rowSteps, want := readRows(t, ctx, newPool(t, cfg, kafka.WithMaxRecordsPerRead(4)), r, mem, headers)
				defer want.Release()
				arrowSteps, got := readArrow(t, ctx, newPool(t, cfg, kafka.WithMaxRecordsPerRead(4)), r, mem, headers)
				defer got.Release()
				if diff := cmp.Diff(rowSteps, arrowSteps); diff != "" {
					t.Fatalf("calls (-Read +ReadKafkaArrow):\n%s", diff)
				}
				if got.NumRows() != int64(sum(rowSteps)) || !got.Schema().Equal(columnar.KafkaSchema(headers)) {
					t.Fatalf("batch of %d rows, schema %s", got.NumRows(), got.Schema())
				}
				if !array.RecordEqual(got, want) {
					t.Fatalf("ReadKafkaArrow's batch differs from Read's rows:\n got %v\nwant %v", got, want)
				}
			})
		}
	}
}

// TestReadKafkaArrowErrors: ReadKafkaArrow fails as Read does, appending
// nothing: after Close, and with a DataLossError for deleted records.
func TestReadKafkaArrowErrors(t *testing.T) {
	c := newCluster(t, 1, "gone")
	c.produce("gone", 0, 10)
	c.deleteRecords("gone", 0, 5)
	ctx := testCtx(t)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	b := columnar.NewKafkaBuilder(mem, false)
	defer b.Release()
	pool := newPool(t, c.config("gone"))

	rd, err := pool.Open(ctx, rng("gone/0", "0", "10"))
	if err != nil {
		t.Fatal(err)
	}
	n, bytes, err := rd.(connectors.KafkaArrowReader).ReadKafkaArrow(ctx, b)
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || n != 0 || bytes != 0 || b.Len() != 0 {
		t.Fatalf("ReadKafkaArrow = %d, %d, %v (builder %d); want a DataLossError and nothing", n, bytes, err, b.Len())
	}
	_ = rd.Close()

	rd, err = pool.Open(ctx, rng("gone/0", "5", "10"))
	if err != nil {
		t.Fatal(err)
	}
	_ = rd.Close()
	if n, _, err := rd.(connectors.KafkaArrowReader).ReadKafkaArrow(ctx, b); err == nil || n != 0 || b.Len() != 0 {
		t.Fatalf("ReadKafkaArrow after Close = %d, %v; want an error", n, err)
	}
}
