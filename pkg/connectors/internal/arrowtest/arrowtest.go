// Package arrowtest builds the Arrow record batches the sinks' tests feed
// to connectors.ArrowWriter, and the rows the same batches are on the row
// path, so that each sink can check that both paths write the same thing.
package arrowtest

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Mem returns an allocator that fails the test if anything it handed out
// is still allocated when the test ends, and that overwrites what is freed:
// a sink still reading a batch's buffers after releasing it (records
// pointing into the batch, sent after the write returned) reads garbage
// and fails the test, where Go's allocator would leave the bytes intact.
func Mem(t testing.TB) *memory.CheckedAllocator {
	t.Helper()
	mem := memory.NewCheckedAllocator(scribbler{memory.NewGoAllocator()})
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// scribbler fills freed buffers with Poison.
type scribbler struct{ memory.Allocator }

// Poison is the byte freed memory holds.
const Poison = 0xA5

func (s scribbler) Free(b []byte) {
	for i := range b {
		b[i] = Poison
	}
	s.Allocator.Free(b)
}

// Reallocate moves b to a new buffer and poisons the old one, as a
// reallocation may do; Go's allocator would otherwise grow without freeing.
func (s scribbler) Reallocate(size int, b []byte) []byte {
	n := s.Allocate(size)
	copy(n, b)
	s.Free(b)
	return n
}

// Schema is the schema of Batch: the column types a SQL query's output
// usually holds.
var Schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "amount", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "ok", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
	{Name: "ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
	{Name: "payload", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	{Name: "attrs", Type: arrow.StructOf(
		arrow.Field{Name: "n", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		arrow.Field{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	), Nullable: true},
	{Name: "counts", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64), Nullable: true},
	{Name: "total", Type: &arrow.Decimal128Type{Precision: 38, Scale: 0}, Nullable: true},
	{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
}, nil)

// Batch returns n rows of Schema from mem, starting at id first: every
// fourth row has nulls in every nullable column, the others vary.
func Batch(mem memory.Allocator, first, n int) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, Schema)
	defer b.Release()
	for k := range n {
		i := first + k
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if i%4 == 3 {
			for c := 1; c < len(b.Fields()); c++ {
				b.Field(c).AppendNull()
			}
			continue
		}
		b.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("name <%d> \"q\" é", i))
		b.Field(2).(*array.Float64Builder).Append([]float64{float64(i), float64(i) + 0.25, -1e-7, 1e21}[i%4])
		b.Field(3).(*array.BooleanBuilder).Append(i%2 == 0)
		b.Field(4).(*array.TimestampBuilder).Append(arrow.Timestamp(1_700_000_000_000_000 + int64(i)*1_234_567))
		b.Field(5).(*array.Date32Builder).Append(arrow.Date32(19000 + i))
		b.Field(6).(*array.BinaryBuilder).Append([]byte{byte(i), 0, 0xff})
		lb := b.Field(7).(*array.ListBuilder)
		lb.Append(true)
		for j := range i % 3 {
			lb.ValueBuilder().(*array.StringBuilder).Append(fmt.Sprintf("t%d", j))
		}
		sb := b.Field(8).(*array.StructBuilder)
		sb.Append(true)
		sb.FieldBuilder(0).(*array.Int32Builder).Append(int32(i * 10))
		if i%2 == 0 {
			sb.FieldBuilder(1).(*array.StringBuilder).Append("even")
		} else {
			sb.FieldBuilder(1).(*array.StringBuilder).AppendNull()
		}
		mb := b.Field(9).(*array.MapBuilder)
		mb.Append(true)
		mb.KeyBuilder().(*array.StringBuilder).AppendValues([]string{"b", "a"}, nil)
		mb.ItemBuilder().(*array.Int64Builder).AppendValues([]int64{int64(i), -int64(i)}, nil)
		b.Field(10).(*array.Decimal128Builder).Append(decimal128.FromI64(int64(i) * math.MaxInt32))
		b.Field(11).(*array.Decimal128Builder).Append(decimal128.FromI64(int64(i)*100 + 5))
	}
	return b.NewRecordBatch()
}

// Rows is rec on the row path (columnar.AppendRows).
func Rows(t testing.TB, rec arrow.RecordBatch) []stream.Row {
	t.Helper()
	rows, err := columnar.AppendRows(nil, rec)
	if err != nil {
		t.Fatalf("AppendRows: %v", err)
	}
	return rows
}

// Columns is Schema's column names in order, as a SQL task's WriteKey
// holds them.
func Columns() []string {
	out := make([]string, Schema.NumFields())
	for i, f := range Schema.Fields() {
		out[i] = f.Name
	}
	return out
}

// Batches are three batches of Batch: a full one, a slice of another and an
// empty one, for a writer's WriteArrow to take in turn.
func Batches(mem memory.Allocator) []arrow.RecordBatch {
	full := Batch(mem, 0, 9)
	big := Batch(mem, 20, 10)
	slice := big.NewSlice(2, 9)
	big.Release()
	return []arrow.RecordBatch{full, slice, Batch(mem, 0, 0)}
}

// Write writes each of recs to w: through its WriteArrow when arrowPath,
// else as the batch's rows through Write. It fails the test on an error.
func Write(t testing.TB, ctx context.Context, w connectors.Writer, recs []arrow.RecordBatch, arrowPath bool) {
	t.Helper()
	for _, rec := range recs {
		var err error
		if arrowPath {
			err = w.(connectors.ArrowWriter).WriteArrow(ctx, rec)
		} else {
			err = w.Write(ctx, Rows(t, rec))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
