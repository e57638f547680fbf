package columnar

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluicehq/sluice/pkg/stream"
)

// kinesisRec is one user record as a Kinesis reader holds it.
type kinesisRec struct {
	key, stream, shard, seq string
	data                    []byte
	arrival                 int64 // ms
	sub                     int64
}

// row is the record as the Kinesis reader's Read returns it.
func (r kinesisRec) row() stream.Row {
	return stream.Row{
		"data": r.data, "stream": r.stream, "shardId": r.shard, "sequenceNumber": r.seq,
		"subSequenceNumber": r.sub, "partitionKey": r.key,
		"approximateArrivalTimestamp": time.UnixMilli(r.arrival).UTC(),
	}
}

func (r kinesisRec) appendTo(b *KinesisBuilder) {
	b.Append(r.key, r.data, r.stream, r.shard, r.seq, r.arrival, r.sub)
}

func kinesisRecs(n int, from int) []kinesisRec {
	recs := make([]kinesisRec, n)
	for i := range recs {
		k := from + i
		r := kinesisRec{key: fmt.Sprintf("user-%d", k%7), stream: "orders", shard: fmt.Sprintf("shardId-%012d", k%4),
			seq: fmt.Sprintf("4959%036d", k), data: []byte(fmt.Sprintf(`{"id":%d}`, k)), arrival: 1_700_000_000_000 + int64(k), sub: int64(k % 3)}
		switch k % 5 {
		case 1:
			r.data = []byte{} // empty, not null
		case 2:
			r.key = ""
		case 3:
			r.data = []byte{0, 0xff, 0}
		case 4:
			r.data = nil // as Kinesis' SDK may give an empty payload
		}
		recs[i] = r
	}
	return recs
}

// TestKinesisBuilderMatchesBuilder: the typed builder gives, batch after
// batch, the batches a Builder gives for the rows the Kinesis reader's Read
// returns, for all of the columns and for some of them.
func TestKinesisBuilderMatchesBuilder(t *testing.T) {
	full := KinesisSchema()
	pick := func(names ...string) *arrow.Schema {
		var fs []arrow.Field
		for _, n := range names {
			f, _ := full.FieldsByName(n)
			fs = append(fs, f[0])
		}
		return arrow.NewSchema(fs, nil)
	}
	edge := kinesisRec{arrival: -1, sub: math.MaxInt64}
	for _, s := range []*arrow.Schema{full, pick("data"), pick("subSequenceNumber"), pick("partitionKey", "sequenceNumber", "approximateArrivalTimestamp"), pick("stream", "shardId")} {
		t.Run(fmt.Sprint(Names(s)), func(t *testing.T) {
			mem := checkedMem(t)
			kb, ok := NewKinesisBuilderFor(mem, s)
			if !ok {
				t.Fatal("refused")
			}
			defer kb.Release()
			rb := NewBuilder(mem, s)
			defer rb.Release()
			if !kb.Schema().Equal(s) {
				t.Fatalf("schema %s, want %s", kb.Schema(), s)
			}
			// The second batch reserves what the first used, the third
			// less, the fourth is empty, the fifth more.
			groups := [][]kinesisRec{kinesisRecs(1000, 0), kinesisRecs(1000, 1000), kinesisRecs(3, 2000), nil, append(kinesisRecs(5000, 3000), edge)}
			for g, recs := range groups {
				for _, r := range recs {
					r.appendTo(kb)
					if err := rb.Append(r.row()); err != nil {
						t.Fatalf("batch %d: Builder.Append: %v", g, err)
					}
				}
				if kb.Len() != len(recs) {
					t.Fatalf("batch %d: Len() = %d, want %d", g, kb.Len(), len(recs))
				}
				got, want := kb.NewRecordBatch(), rb.NewRecordBatch()
				if kb.Len() != 0 {
					t.Fatalf("Len() after NewRecordBatch = %d", kb.Len())
				}
				if !got.Schema().Equal(s) || !array.RecordEqual(got, want) {
					t.Errorf("batch %d differs from the Builder's:\n got %v\nwant %v", g, head(got), head(want))
				}
				if s == full {
					rows, err := AppendRows(nil, got)
					if err != nil {
						t.Fatal(err)
					}
					for i, r := range recs {
						if fmt.Sprint(rows[i]) != fmt.Sprint(r.row()) {
							t.Fatalf("batch %d row %d: got %v, want %v", g, i, rows[i], r.row())
						}
					}
				}
				got.Release()
				want.Release()
			}
		})
	}
}

// TestKinesisBuilderRefuses: schemas that are not some of the Kinesis
// source's columns, in order and of its types, get no builder.
func TestKinesisBuilderRefuses(t *testing.T) {
	full := KinesisSchema().Fields()
	for _, s := range []*arrow.Schema{
		arrow.NewSchema(nil, nil),
		arrow.NewSchema([]arrow.Field{full[1], full[0]}, nil), // out of order
		arrow.NewSchema([]arrow.Field{{Name: "data", Type: arrow.BinaryTypes.String, Nullable: true}}, nil),
		arrow.NewSchema([]arrow.Field{{Name: "other", Type: arrow.PrimitiveTypes.Int32, Nullable: true}}, nil),
		KafkaSchema(false),
	} {
		if _, ok := NewKinesisBuilderFor(checkedMem(t), s); ok {
			t.Errorf("NewKinesisBuilderFor(%s) accepted", s)
		}
	}
}

// TestKinesisBuilderReleasesUnfinished: records appended but never turned
// into a batch are freed by Release, as are reserved buffers.
func TestKinesisBuilderReleasesUnfinished(t *testing.T) {
	mem := checkedMem(t)
	kb, _ := NewKinesisBuilderFor(mem, KinesisSchema())
	for _, r := range kinesisRecs(100, 0) {
		r.appendTo(kb)
	}
	kb.NewRecordBatch().Release()
	kinesisRec{}.appendTo(kb) // reserves the last batch's room
	kb.Release()
}
