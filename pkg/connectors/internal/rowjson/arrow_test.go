package rowjson

import (
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/decimal256"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
)

// arrowColumn is one column of the identity test: its type and a fill
// that appends a few values (then the test appends a null).
type arrowColumn struct {
	name string
	typ  arrow.DataType
	fill func(b array.Builder)
}

// awkward are strings that every escaping rule sees.
var awkward = []string{"", "plain", `q"uo\te`, "<a & b>", "\b\f\n\r\t\x01\x1f", "\u2028\u2029", "bad \xff utf8", "é中😀"}

// arrowColumns are the Arrow types a SQL step's output may hold (DuckDB's
// export and columnar's Builder), each with values that exercise its
// encoding.
func arrowColumns() []arrowColumn {
	big70 := new(big.Int).Lsh(big.NewInt(1), 70)
	ts := func(unit arrow.TimeUnit, tz string) arrow.DataType {
		return &arrow.TimestampType{Unit: unit, TimeZone: tz}
	}
	return []arrowColumn{
		{"null", arrow.Null, func(b array.Builder) { b.AppendNull() }},
		{"bool", arrow.FixedWidthTypes.Boolean, func(b array.Builder) { b.(*array.BooleanBuilder).AppendValues([]bool{true, false}, nil) }},
		{"int8", arrow.PrimitiveTypes.Int8, func(b array.Builder) { b.(*array.Int8Builder).AppendValues([]int8{math.MinInt8, 0, 7}, nil) }},
		{"int16", arrow.PrimitiveTypes.Int16, func(b array.Builder) { b.(*array.Int16Builder).AppendValues([]int16{math.MinInt16, 300}, nil) }},
		{"int32", arrow.PrimitiveTypes.Int32, func(b array.Builder) {
			b.(*array.Int32Builder).AppendValues([]int32{math.MinInt32, math.MaxInt32}, nil)
		}},
		{"int64", arrow.PrimitiveTypes.Int64, func(b array.Builder) {
			b.(*array.Int64Builder).AppendValues([]int64{math.MinInt64, math.MaxInt64, 0}, nil)
		}},
		{"uint8", arrow.PrimitiveTypes.Uint8, func(b array.Builder) { b.(*array.Uint8Builder).AppendValues([]uint8{255}, nil) }},
		{"uint16", arrow.PrimitiveTypes.Uint16, func(b array.Builder) { b.(*array.Uint16Builder).AppendValues([]uint16{65535}, nil) }},
		{"uint32", arrow.PrimitiveTypes.Uint32, func(b array.Builder) { b.(*array.Uint32Builder).AppendValues([]uint32{math.MaxUint32}, nil) }},
		{"uint64", arrow.PrimitiveTypes.Uint64, func(b array.Builder) { b.(*array.Uint64Builder).AppendValues([]uint64{0, math.MaxInt64}, nil) }},
		{"float16", arrow.FixedWidthTypes.Float16, func(b array.Builder) {
			b.(*array.Float16Builder).AppendValues([]float16.Num{float16.New(1.5), float16.New(-2), float16.New(0.1)}, nil)
		}},
		{"float32", arrow.PrimitiveTypes.Float32, func(b array.Builder) {
			b.(*array.Float32Builder).AppendValues([]float32{3, 0.1, 1e-7, 3.4e38, -0.5}, nil)
		}},
		{"float64", arrow.PrimitiveTypes.Float64, func(b array.Builder) {
			b.(*array.Float64Builder).AppendValues([]float64{3, math.Copysign(0, -1), 0.1, 1e-7, 1e21, 123456789.125, 1e20, 5e-324, math.MaxFloat64}, nil)
		}},
		{"utf8", arrow.BinaryTypes.String, func(b array.Builder) { b.(*array.StringBuilder).AppendValues(awkward, nil) }},
		{"large utf8", arrow.BinaryTypes.LargeString, func(b array.Builder) { b.(*array.LargeStringBuilder).AppendValues(awkward, nil) }},
		{"utf8 view", arrow.BinaryTypes.StringView, func(b array.Builder) {
			for _, s := range append(awkward, strings.Repeat("long enough for the data buffer ", 3)) {
				b.(*array.StringViewBuilder).Append(s)
			}
		}},
		{"binary", arrow.BinaryTypes.Binary, func(b array.Builder) {
			b.(*array.BinaryBuilder).AppendValues([][]byte{{}, {0, 1, 2, 0xff}, []byte("hello")}, nil)
		}},
		{"large binary", arrow.BinaryTypes.LargeBinary, func(b array.Builder) { b.(*array.BinaryBuilder).Append([]byte{9, 8}) }},
		{"binary view", arrow.BinaryTypes.BinaryView, func(b array.Builder) { b.(*array.BinaryViewBuilder).Append([]byte("view")) }},
		{"fixed binary", &arrow.FixedSizeBinaryType{ByteWidth: 3}, func(b array.Builder) { b.(*array.FixedSizeBinaryBuilder).Append([]byte{1, 2, 3}) }},
		{"timestamp us utc", ts(arrow.Microsecond, "UTC"), func(b array.Builder) {
			b.(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{0, 1_700_000_000_123_456, -1}, nil)
		}},
		{"timestamp ns", ts(arrow.Nanosecond, ""), func(b array.Builder) {
			b.(*array.TimestampBuilder).AppendValues([]arrow.Timestamp{1_700_000_000_123_456_789, 1_700_000_000_000_000_000}, nil)
		}},
		{"timestamp ms zoned", ts(arrow.Millisecond, "Europe/Paris"), func(b array.Builder) { b.(*array.TimestampBuilder).Append(1_700_000_000_123) }},
		{"timestamp s", ts(arrow.Second, ""), func(b array.Builder) { b.(*array.TimestampBuilder).Append(1_700_000_000) }},
		{"date32", arrow.FixedWidthTypes.Date32, func(b array.Builder) { b.(*array.Date32Builder).AppendValues([]arrow.Date32{0, 19000, -1}, nil) }},
		{"date64", arrow.FixedWidthTypes.Date64, func(b array.Builder) {
			b.(*array.Date64Builder).AppendValues([]arrow.Date64{86_400_000 * 3, 86_400_000*5 + 17}, nil)
		}},
		{"time32", arrow.FixedWidthTypes.Time32ms, func(b array.Builder) { b.(*array.Time32Builder).Append(3723004) }},
		{"time64", arrow.FixedWidthTypes.Time64us, func(b array.Builder) { b.(*array.Time64Builder).Append(3723004005) }},
		{"duration", arrow.FixedWidthTypes.Duration_ms, func(b array.Builder) { b.(*array.DurationBuilder).Append(90500) }},
		{"interval", arrow.FixedWidthTypes.MonthDayNanoInterval, func(b array.Builder) {
			b.(*array.MonthDayNanoIntervalBuilder).Append(arrow.MonthDayNanoInterval{Months: 1, Days: -2, Nanoseconds: 3_500_000_000})
		}},
		{"decimal128 hugeint", &arrow.Decimal128Type{Precision: 38, Scale: 0}, func(b array.Builder) {
			b.(*array.Decimal128Builder).AppendValues([]decimal128.Num{decimal128.FromI64(math.MinInt64), decimal128.FromI64(42), decimal128.FromBigInt(big70)}, nil)
		}},
		{"decimal128 fraction", &arrow.Decimal128Type{Precision: 10, Scale: 2}, func(b array.Builder) {
			b.(*array.Decimal128Builder).AppendValues([]decimal128.Num{decimal128.FromI64(12345), decimal128.FromI64(-100)}, nil)
		}},
		{"decimal256", &arrow.Decimal256Type{Precision: 40, Scale: 0}, func(b array.Builder) { b.(*array.Decimal256Builder).Append(decimal256.FromI64(-5)) }},
		{"decimal64", &arrow.Decimal64Type{Precision: 10, Scale: 3}, func(b array.Builder) { b.(*array.Decimal64Builder).Append(2500) }},
		{"list", arrow.ListOf(arrow.PrimitiveTypes.Int64), func(b array.Builder) {
			lb := b.(*array.ListBuilder)
			lb.Append(true)
			lb.ValueBuilder().(*array.Int64Builder).AppendValues([]int64{1, 2}, []bool{true, false})
			lb.Append(true) // empty
		}},
		{"large list of strings", arrow.LargeListOf(arrow.BinaryTypes.String), func(b array.Builder) {
			lb := b.(*array.LargeListBuilder)
			lb.Append(true)
			lb.ValueBuilder().(*array.StringBuilder).AppendValues([]string{"a", "<b>"}, nil)
		}},
		{"fixed list", arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float64), func(b array.Builder) {
			lb := b.(*array.FixedSizeListBuilder)
			lb.Append(true)
			lb.ValueBuilder().(*array.Float64Builder).AppendValues([]float64{1, 2.5}, nil)
		}},
		{"list view", arrow.ListViewOf(arrow.PrimitiveTypes.Int16), func(b array.Builder) {
			lb := b.(*array.ListViewBuilder)
			lb.AppendWithSize(true, 2)
			lb.ValueBuilder().(*array.Int16Builder).AppendValues([]int16{4, 5}, nil)
		}},
		{"struct", arrow.StructOf(
			arrow.Field{Name: "z", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
			arrow.Field{Name: "a", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "m", Type: arrow.ListOf(arrow.FixedWidthTypes.Boolean), Nullable: true},
		), func(b array.Builder) {
			sb := b.(*array.StructBuilder)
			sb.Append(true)
			sb.FieldBuilder(0).(*array.Int64Builder).Append(1)
			sb.FieldBuilder(1).(*array.StringBuilder).AppendNull()
			lb := sb.FieldBuilder(2).(*array.ListBuilder)
			lb.Append(true)
			lb.ValueBuilder().(*array.BooleanBuilder).Append(true)
		}},
		{"struct with a repeated name", arrow.StructOf(
			arrow.Field{Name: "x", Type: arrow.PrimitiveTypes.Int64},
			arrow.Field{Name: "x", Type: arrow.BinaryTypes.String},
		), func(b array.Builder) {
			sb := b.(*array.StructBuilder)
			sb.Append(true)
			sb.FieldBuilder(0).(*array.Int64Builder).Append(1)
			sb.FieldBuilder(1).(*array.StringBuilder).Append("second wins")
		}},
		{"empty struct", arrow.StructOf(), func(b array.Builder) { b.(*array.StructBuilder).Append(true) }},
		{"map", arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float64), func(b array.Builder) {
			mb := b.(*array.MapBuilder)
			mb.Append(true)
			mb.KeyBuilder().(*array.StringBuilder).AppendValues([]string{"b", "a", "b", "&"}, nil)
			mb.ItemBuilder().(*array.Float64Builder).AppendValues([]float64{1, 2, 3, 4}, []bool{true, true, true, false})
			mb.Append(true) // empty
		}},
		{"map with int keys", arrow.MapOf(arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String), func(b array.Builder) {
			mb := b.(*array.MapBuilder)
			mb.Append(true)
			mb.KeyBuilder().(*array.Int32Builder).AppendValues([]int32{2, 1}, nil)
			mb.ItemBuilder().(*array.StringBuilder).AppendValues([]string{"x", ""}, []bool{true, false})
		}},
		{"dictionary", &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, func(b array.Builder) {
			db := b.(*array.BinaryDictionaryBuilder)
			for _, s := range []string{"a", "b", "a"} {
				_ = db.AppendString(s)
			}
		}},
	}
}

// buildColumn is c's array: its values, then a null (except for a null
// array, all nulls anyway).
func buildColumn(t *testing.T, mem memory.Allocator, c arrowColumn) arrow.Array {
	t.Helper()
	b := array.NewBuilder(mem, c.typ)
	defer b.Release()
	c.fill(b)
	b.AppendNull()
	return b.NewArray()
}

// rowPath is what the sinks' row path writes for rec: AppendRows, then the
// row encoder (or encoding/json for Std).
func rowPath(t *testing.T, rec arrow.RecordBatch, d Dialect, columns []string) ([]string, []bool) {
	t.Helper()
	rows, err := columnar.AppendRows(nil, rec)
	if err != nil {
		t.Fatalf("AppendRows: %v", err)
	}
	enc := Encoder{Columns: columns}
	out, failed := make([]string, len(rows)), make([]bool, len(rows))
	for i, r := range rows {
		var b []byte
		if d == Std {
			b, err = json.Marshal(map[string]any(r))
		} else {
			b, err = enc.Append(nil, r)
		}
		out[i], failed[i] = string(b), err != nil
	}
	return out, failed
}

// TestArrowEncoderMatchesRows pins the Arrow encoder to the row path: for
// every type the SQL path emits, each row encodes to the very bytes the
// row encoder (Lines) or encoding/json (Std) gives for its row.
func TestArrowEncoderMatchesRows(t *testing.T) {
	for _, d := range []Dialect{Lines, Std} {
		for _, c := range arrowColumns() {
			t.Run(c.name, func(t *testing.T) {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				defer mem.AssertSize(t, 0)
				arr := buildColumn(t, mem, c)
				defer arr.Release()
				// A second column puts the first one inside an object with
				// a neighbour, in both key orders.
				ib := array.NewInt64Builder(mem)
				defer ib.Release()
				for i := range arr.Len() {
					ib.Append(int64(i))
				}
				idx := ib.NewArray()
				defer idx.Release()
				schema := arrow.NewSchema([]arrow.Field{{Name: c.name, Type: c.typ, Nullable: true}, {Name: "i", Type: idx.DataType()}}, nil)
				rec := array.NewRecordBatch(schema, []arrow.Array{arr, idx}, int64(arr.Len()))
				defer rec.Release()
				for _, columns := range [][]string{nil, {"i", c.name}, {"missing", c.name}} {
					compare(t, rec, d, columns)
				}
			})
		}
	}
}

func compare(t *testing.T, rec arrow.RecordBatch, d Dialect, columns []string) {
	t.Helper()
	want, failed := rowPath(t, rec, d, columns)
	e := ArrowEncoder{Columns: columns, Dialect: d}
	rows, err := e.Bind(rec)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	if rows.Len() != len(want) {
		t.Fatalf("Len() = %d, want %d", rows.Len(), len(want))
	}
	for i := range want {
		got, err := rows.Append([]byte("prefix"), i)
		switch {
		case failed[i]:
			if err == nil {
				t.Errorf("dialect %d columns %v row %d: got %s, want an error as the row path gives", d, columns, i, got)
			}
		case err != nil:
			t.Errorf("dialect %d columns %v row %d: %v", d, columns, i, err)
		case string(got) != "prefix"+want[i]:
			t.Errorf("dialect %d columns %v row %d:\n got %s\nwant prefix%s", d, columns, i, got, want[i])
		}
	}
}

// TestArrowEncoderSpecialFloats: NaN and infinities are strings in lines
// and refused by the Std dialect, as encoding/json refuses them.
func TestArrowEncoderSpecialFloats(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	fb := array.NewFloat64Builder(mem)
	defer fb.Release()
	fb.AppendValues([]float64{math.NaN(), math.Inf(1), math.Inf(-1)}, nil)
	arr := fb.NewArray()
	defer arr.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "f", Type: arr.DataType()}}, nil), []arrow.Array{arr}, 3)
	defer rec.Release()
	for _, d := range []Dialect{Lines, Std} {
		compare(t, rec, d, nil)
	}
}

// TestArrowEncoderWholeBatch encodes one batch holding every column at once.
func TestArrowEncoderWholeBatch(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	var fields []arrow.Field
	var cols []arrow.Array
	n := 0
	for _, c := range arrowColumns() {
		arr := buildColumn(t, mem, c)
		defer arr.Release()
		fields, cols = append(fields, arrow.Field{Name: c.name, Type: c.typ, Nullable: true}), append(cols, arr)
		n = max(n, arr.Len())
	}
	// Every column cut to the shortest one's length.
	for _, a := range cols {
		n = min(n, a.Len())
	}
	for i, a := range cols {
		cols[i] = array.NewSlice(a, 0, int64(n))
		defer cols[i].Release()
	}
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, int64(n))
	defer rec.Release()
	compare(t, rec, Lines, []string{"utf8", "int64", "struct"})
	compare(t, rec, Std, nil)
	// Sliced batches read at their offset.
	tail := rec.NewSlice(1, int64(n))
	defer tail.Release()
	compare(t, tail, Lines, nil)
}

// TestArrowEncoderErrors: what AppendRows refuses, Bind or Append refuses.
func TestArrowEncoderErrors(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	ib.Append(1)
	i64 := ib.NewArray()
	defer i64.Release()
	dup := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "a", Type: i64.DataType()}, {Name: "a", Type: i64.DataType()}}, nil), []arrow.Array{i64, i64}, 1)
	defer dup.Release()
	if _, err := (&ArrowEncoder{}).Bind(dup); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("Bind(duplicate columns) = %v, want a duplicate column error", err)
	}

	ub := array.NewUint64Builder(mem)
	defer ub.Release()
	ub.Append(math.MaxUint64)
	u64 := ub.NewArray()
	defer u64.Release()
	over := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "u", Type: u64.DataType()}}, nil), []arrow.Array{u64}, 1)
	defer over.Release()
	rows, err := (&ArrowEncoder{}).Bind(over)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rows.Append(nil, 0); err == nil || !strings.Contains(err.Error(), "overflows int64") {
		t.Errorf("Append(uint64 max) = %v, want an overflow error", err)
	}

	tb := array.NewTimestampBuilder(mem, &arrow.TimestampType{Unit: arrow.Second})
	defer tb.Release()
	tb.Append(arrow.Timestamp(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()))
	ts := tb.NewArray()
	defer ts.Release()
	far := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "t", Type: ts.DataType()}}, nil), []arrow.Array{ts}, 1)
	defer far.Release()
	compare(t, far, Std, nil) // encoding/json refuses year 10000
	compare(t, far, Lines, nil)
}
