//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newEngine opens an engine closed at the end of the test, which fails if
// a result was left unreleased.
func newEngine(t testing.TB, opts ...Option) *Engine {
	t.Helper()
	e, err := Open(context.Background(), append([]Option{WithThreads(2), WithMemoryLimit(256 << 20)}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// checkedMem returns an allocator that fails the test if anything built
// with it is still allocated at the end.
func checkedMem(t testing.TB) *memory.CheckedAllocator {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// The inputs of the conformance tests: Kafka's columns as the source
// produces them, and a decoded treasury stream.
var (
	kafkaSchema = arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "topic", Type: arrow.BinaryTypes.String},
		{Name: "partition", Type: arrow.PrimitiveTypes.Int32},
		{Name: "offset", Type: arrow.PrimitiveTypes.Int64},
		{Name: "timestamp", Type: &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}},
	}, nil)
	treasurySchema = arrow.NewSchema([]arrow.Field{
		{Name: "branch", Type: arrow.BinaryTypes.String},
		{Name: "currency", Type: arrow.BinaryTypes.String},
		{Name: "amount", Type: arrow.PrimitiveTypes.Int64},
		{Name: "note", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "rate", Type: arrow.PrimitiveTypes.Float64},
		{Name: "ok", Type: arrow.FixedWidthTypes.Boolean},
		{Name: "doc", Type: arrow.BinaryTypes.String, Nullable: true},
	}, nil)
)

type kafkaRecord struct {
	key, value string // "" is NULL for key
	partition  int32
	offset     int64
	ts         time.Time
}

type treasuryRow struct {
	branch, currency string
	amount           int64
	note             *string
	rate             float64
	ok               bool
	doc              *string
}

func str(s string) *string { return &s }

// kafkaBatches builds rows into batches of at most per rows each, so every
// query reads more than one batch.
func kafkaBatches(mem memory.Allocator, rows []kafkaRecord, per int) []arrow.RecordBatch {
	var out []arrow.RecordBatch
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		b := array.NewRecordBuilder(mem, kafkaSchema)
		for _, f := range b.Fields() {
			f.Reserve(len(chunk))
		}
		for _, r := range chunk {
			if r.key == "" {
				b.Field(0).AppendNull()
			} else {
				b.Field(0).(*array.BinaryBuilder).Append([]byte(r.key))
			}
			b.Field(1).(*array.BinaryBuilder).Append([]byte(r.value))
			b.Field(2).(*array.StringBuilder).Append("transactions")
			b.Field(3).(*array.Int32Builder).Append(r.partition)
			b.Field(4).(*array.Int64Builder).Append(r.offset)
			b.Field(5).(*array.TimestampBuilder).Append(arrow.Timestamp(r.ts.UnixMilli()))
		}
		out = append(out, b.NewRecordBatch())
		b.Release()
	}
	return out
}

func treasuryBatches(mem memory.Allocator, rows []treasuryRow, per int) []arrow.RecordBatch {
	var out []arrow.RecordBatch
	for start := 0; start < len(rows); start += per {
		chunk := rows[start:min(start+per, len(rows))]
		b := array.NewRecordBuilder(mem, treasurySchema)
		for _, f := range b.Fields() {
			f.Reserve(len(chunk))
		}
		for _, r := range chunk {
			b.Field(0).(*array.StringBuilder).Append(r.branch)
			b.Field(1).(*array.StringBuilder).Append(r.currency)
			b.Field(2).(*array.Int64Builder).Append(r.amount)
			appendOptString(b.Field(3).(*array.StringBuilder), r.note)
			b.Field(4).(*array.Float64Builder).Append(r.rate)
			b.Field(5).(*array.BooleanBuilder).Append(r.ok)
			appendOptString(b.Field(6).(*array.StringBuilder), r.doc)
		}
		out = append(out, b.NewRecordBatch())
		b.Release()
	}
	return out
}

func appendOptString(b *array.StringBuilder, s *string) {
	if s == nil {
		b.AppendNull()
		return
	}
	b.Append(*s)
}

func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// rowsOf turns records into rows of plain Go values: int64, float64,
// string, bool, nil, time.Time (UTC), decimal strings, []any for lists and
// map[string]any for structs and maps.
func rowsOf(t testing.TB, recs []arrow.RecordBatch) [][]any {
	t.Helper()
	var rows [][]any
	for _, r := range recs {
		for i := 0; i < int(r.NumRows()); i++ {
			row := make([]any, r.NumCols())
			for j := range row {
				row[j] = valueOf(t, r.Column(j), i)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func valueOf(t testing.TB, a arrow.Array, i int) any {
	t.Helper()
	if a.IsNull(i) {
		return nil
	}
	switch x := a.(type) {
	case *array.Int8:
		return int64(x.Value(i))
	case *array.Int16:
		return int64(x.Value(i))
	case *array.Int32:
		return int64(x.Value(i))
	case *array.Int64:
		return x.Value(i)
	case *array.Uint64:
		return int64(x.Value(i))
	case *array.Float32:
		return float64(x.Value(i))
	case *array.Float64:
		return x.Value(i)
	case *array.String:
		// Value aliases the record's buffer, which DuckDB's C memory backs
		// and Release frees: copy.
		return strings.Clone(x.Value(i))
	case *array.Binary:
		return string(x.Value(i))
	case *array.Boolean:
		return x.Value(i)
	case *array.Timestamp:
		return x.Value(i).ToTime(x.DataType().(*arrow.TimestampType).Unit).UTC()
	case *array.Date32:
		return x.Value(i).ToTime().Format(time.DateOnly)
	case *array.Decimal128:
		n := x.Value(i)
		return "decimal:" + n.ToString(x.DataType().(*arrow.Decimal128Type).Scale)
	case *array.Struct:
		st := x.DataType().(*arrow.StructType)
		m := map[string]any{}
		for f := range st.NumFields() {
			m[st.Field(f).Name] = valueOf(t, x.Field(f), i)
		}
		return m
	case *array.Map:
		start, end := x.ValueOffsets(i)
		m := map[string]any{}
		for k := start; k < end; k++ {
			m[fmt.Sprint(valueOf(t, x.Keys(), int(k)))] = valueOf(t, x.Items(), int(k))
		}
		return m
	case *array.List:
		start, end := x.ValueOffsets(i)
		out := []any{}
		for k := start; k < end; k++ {
			out = append(out, valueOf(t, x.ListValues(), int(k)))
		}
		return out
	}
	t.Fatalf("valueOf: unhandled Arrow type %s", a.DataType())
	return nil
}

// sortRows orders rows by their printed form, for comparing results whose
// order SQL does not define.
func sortRows(rows [][]any) {
	slices.SortFunc(rows, func(a, b []any) int {
		sa, sb := fmt.Sprint(a...), fmt.Sprint(b...)
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
}

// mustCompile compiles query for inputs of schema, failing the test on an
// error.
func mustCompile(t testing.TB, e *Engine, query string, schema *arrow.Schema) *Compiled {
	t.Helper()
	c, err := e.Compile(context.Background(), query, schema)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
