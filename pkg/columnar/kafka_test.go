package columnar

import (
	"fmt"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/sluicehq/sluice/pkg/stream"
)

// kafkaRec is one record as a Kafka reader holds it.
type kafkaRec struct {
	topic      string
	partition  int32
	offset     int64
	key, value []byte
	ts         int64
	tsType     int32
	headers    []KafkaHeader
}

// row is the record as the Kafka reader's Read returns it.
func (r kafkaRec) row(headers bool) stream.Row {
	row := stream.Row{
		"key": nil, "value": nil,
		"topic": r.topic, "partition": int64(r.partition), "offset": r.offset,
		"timestamp": stream.Timestamp(r.ts), "timestampType": int64(r.tsType),
	}
	if r.key != nil {
		row["key"] = r.key
	}
	if r.value != nil {
		row["value"] = r.value
	}
	if headers {
		var hs []any
		for _, h := range r.headers {
			var v any
			if h.Value != nil {
				v = h.Value
			}
			hs = append(hs, map[string]any{"key": h.Key, "value": v})
		}
		if hs != nil {
			row["headers"] = hs
		} else {
			row["headers"] = nil
		}
	}
	return row
}

func kafkaRecs(n int, from int64) []kafkaRec {
	recs := make([]kafkaRec, n)
	for i := range recs {
		off := from + int64(i)
		r := kafkaRec{topic: "orders", partition: int32(i % 3), offset: off, ts: 1_700_000_000_000 + off, tsType: int32(i % 2),
			key: []byte(fmt.Sprintf("user-%d", i%7)), value: []byte(fmt.Sprintf(`{"id":%d}`, off))}
		switch i % 5 {
		case 1:
			r.key = nil
		case 2:
			r.value = nil // tombstone
		case 3:
			r.key, r.value = []byte{}, []byte{} // empty is not null
			r.headers = []KafkaHeader{{Key: "trace-id", Value: []byte("abc")}, {Key: "empty", Value: nil}, {Key: "", Value: []byte{}}}
		case 4:
			r.headers = []KafkaHeader{{Key: "only", Value: []byte{0, 1, 0xff}}}
		}
		recs[i] = r
	}
	return recs
}

// TestKafkaBuilderMatchesBuilder: the typed builder gives, batch after
// batch, the batches a Builder gives for the rows the Kafka reader's Read
// returns, with and without headers.
func TestKafkaBuilderMatchesBuilder(t *testing.T) {
	edge := kafkaRec{topic: "", partition: math.MaxInt32, offset: math.MaxInt64, ts: -1, tsType: math.MinInt32}
	for _, headers := range []bool{false, true} {
		t.Run(fmt.Sprintf("headers=%v", headers), func(t *testing.T) {
			mem := checkedMem(t)
			kb := NewKafkaBuilder(mem, headers)
			defer kb.Release()
			rb := NewBuilder(mem, KafkaSchema(headers))
			defer rb.Release()
			if !kb.Schema().Equal(KafkaSchema(headers)) || kb.Headers() != headers {
				t.Fatalf("schema %s, want KafkaSchema(%v)", kb.Schema(), headers)
			}
			// Batches of varying sizes: the second reserves what the
			// first used, the third less, the fourth more, one is empty.
			groups := [][]kafkaRec{kafkaRecs(1000, 0), kafkaRecs(1000, 1000), kafkaRecs(3, 2000), nil, append(kafkaRecs(5000, 3000), edge)}
			for g, recs := range groups {
				for _, r := range recs {
					kb.Append(r.topic, r.partition, r.offset, r.key, r.value, r.ts, r.tsType, r.headers)
					if err := rb.Append(r.row(headers)); err != nil {
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
				if !got.Schema().Equal(want.Schema()) {
					t.Fatalf("batch %d: schema %s, want %s", g, got.Schema(), want.Schema())
				}
				if !array.RecordEqual(got, want) {
					t.Errorf("batch %d differs from the Builder's:\n got %v\nwant %v", g, head(got), head(want))
				}
				rows, err := AppendRows(nil, got)
				if err != nil {
					t.Fatal(err)
				}
				for i, r := range recs {
					if fmt.Sprint(rows[i]) != fmt.Sprint(r.row(headers)) {
						t.Fatalf("batch %d row %d: got %v, want %v", g, i, rows[i], r.row(headers))
					}
				}
				got.Release()
				want.Release()
			}
		})
	}
}

// TestKafkaBuilderForSomeColumns: a builder of some of Kafka's columns (a
// pruned pipeline's source) gives the Builder's batches of those columns,
// with Expect's room or without; other schemas are refused.
func TestKafkaBuilderForSomeColumns(t *testing.T) {
	full := KafkaSchema(true)
	pick := func(names ...string) *arrow.Schema {
		var fs []arrow.Field
		for _, n := range names {
			f, _ := full.FieldsByName(n)
			fs = append(fs, f[0])
		}
		return arrow.NewSchema(fs, nil)
	}
	for _, s := range []*arrow.Schema{pick("partition"), pick("value"), pick("key", "topic", "offset"), pick("timestamp", "timestampType", "headers"), pick("value", "headers")} {
		for _, expect := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/expect=%v", Names(s), expect), func(t *testing.T) {
				mem := checkedMem(t)
				kb, ok := NewKafkaBuilderFor(mem, s)
				if !ok {
					t.Fatal("refused")
				}
				defer kb.Release()
				rb := NewBuilder(mem, s)
				defer rb.Release()
				kb.SetBatchRows(100)
				for g, recs := range [][]kafkaRec{kafkaRecs(300, 0), kafkaRecs(50, 300)} {
					if expect {
						kb.Expect(len(recs)*2, 10*len(recs), 20*len(recs), 6*len(recs))
					}
					for _, r := range recs {
						kb.Append(r.topic, r.partition, r.offset, r.key, r.value, r.ts, r.tsType, r.headers)
						if err := rb.Append(r.row(true)); err != nil {
							t.Fatal(err)
						}
					}
					got, want := kb.NewRecordBatch(), rb.NewRecordBatch()
					if !got.Schema().Equal(s) || !array.RecordEqual(got, want) {
						t.Errorf("batch %d differs from the Builder's:\n got %v\nwant %v", g, head(got), head(want))
					}
					got.Release()
					want.Release()
				}
			})
		}
	}
	for _, s := range []*arrow.Schema{
		arrow.NewSchema(nil, nil),
		pick("topic", "key"), // out of order
		arrow.NewSchema([]arrow.Field{{Name: "partition", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil),
		arrow.NewSchema([]arrow.Field{{Name: "other", Type: arrow.PrimitiveTypes.Int32, Nullable: true}}, nil),
		KinesisSchema(),
	} {
		if _, ok := NewKafkaBuilderFor(checkedMem(t), s); ok {
			t.Errorf("NewKafkaBuilderFor(%s) accepted", s)
		}
	}
}

// TestKafkaBuilderIgnoresHeadersWithoutColumn: like a Builder ignoring a
// row's headers key, a builder without the column drops headers.
func TestKafkaBuilderIgnoresHeadersWithoutColumn(t *testing.T) {
	mem := checkedMem(t)
	kb := NewKafkaBuilder(mem, false)
	defer kb.Release()
	kb.Append("t", 0, 1, nil, []byte("v"), 5, 0, []KafkaHeader{{Key: "k", Value: []byte("v")}})
	rec := kb.NewRecordBatch()
	defer rec.Release()
	if rec.NumCols() != 7 || rec.NumRows() != 1 {
		t.Fatalf("batch %v", rec)
	}
}

// TestKafkaBuilderReleasesUnfinished: records appended but never turned
// into a batch are freed by Release, as are reserved buffers.
func TestKafkaBuilderReleasesUnfinished(t *testing.T) {
	mem := checkedMem(t)
	kb := NewKafkaBuilder(mem, true)
	for _, r := range kafkaRecs(100, 0) {
		kb.Append(r.topic, r.partition, r.offset, r.key, r.value, r.ts, r.tsType, r.headers)
	}
	kb.NewRecordBatch().Release()
	kb.Append("t", 0, 1, nil, nil, 0, 0, nil) // reserves the last batch's room
	kb.Release()
}

func head(rec arrow.RecordBatch) arrow.RecordBatch {
	return rec.NewSlice(0, min(rec.NumRows(), 5))
}
