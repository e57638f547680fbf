package columnar

import (
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/decimal256"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/stream"
)

// checkedMem returns an allocator that fails the test if anything it handed
// out is still allocated when the test ends.
func checkedMem(t *testing.T) *memory.CheckedAllocator {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// roundTrip appends rows to a Builder of s and converts the batch back.
func roundTrip(t *testing.T, mem memory.Allocator, s *arrow.Schema, rows []stream.Row) []stream.Row {
	t.Helper()
	b := NewBuilder(mem, s)
	defer b.Release()
	for i, r := range rows {
		if err := b.Append(r); err != nil {
			t.Fatalf("append row %d: %v", i, err)
		}
	}
	if b.Len() != len(rows) {
		t.Fatalf("Len() = %d, want %d", b.Len(), len(rows))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	if b.Len() != 0 {
		t.Fatalf("Len() after NewRecordBatch = %d, want 0", b.Len())
	}
	if !rec.Schema().Equal(s) {
		t.Fatalf("batch schema %s, want %s", rec.Schema(), s)
	}
	got, err := AppendRows(nil, rec)
	if err != nil {
		t.Fatalf("AppendRows: %v", err)
	}
	return got
}

func kafkaRow(key, value []byte, offset int64, headers ...[2]any) stream.Row {
	r := stream.Row{
		"key": nil, "value": nil,
		"topic": "orders", "partition": int64(7), "offset": offset,
		"timestamp":     stream.Timestamp(1_700_000_000_123 + offset),
		"timestampType": int64(0),
	}
	if key != nil {
		r["key"] = key
	}
	if value != nil {
		r["value"] = value
	}
	if headers != nil {
		var hs []any
		for _, h := range headers {
			hs = append(hs, map[string]any{"key": h[0], "value": h[1]})
		}
		r["headers"] = hs
	}
	return r
}

func TestKafkaRoundTrip(t *testing.T) {
	withHeaders := func(r stream.Row) stream.Row {
		if _, ok := r["headers"]; !ok {
			r["headers"] = nil // as the reader sets it: null when there are none
		}
		return r
	}
	tests := []struct {
		name    string
		headers bool
		rows    []stream.Row
	}{
		{"plain", false, []stream.Row{
			kafkaRow([]byte("user-1"), []byte(`{"id":1,"amount":12.5}`), 100),
			kafkaRow([]byte("user-2"), []byte(`{"id":2,"amount":3}`), 101),
		}},
		{"nil key, tombstone, empty value", false, []stream.Row{
			kafkaRow(nil, []byte(`{"id":3}`), 102),
			kafkaRow([]byte("user-1"), nil, 103), // tombstone: null value
			kafkaRow([]byte{}, []byte{}, 104),    // empty is not null
			kafkaRow(nil, nil, 105),
		}},
		{"headers", true, []stream.Row{
			withHeaders(kafkaRow([]byte("k"), []byte("v"), 1, [2]any{"trace-id", []byte("abc")}, [2]any{"empty", nil}, [2]any{"", []byte{}})),
			withHeaders(kafkaRow([]byte("k"), nil, 2)),
			withHeaders(kafkaRow(nil, []byte("v"), 3, [2]any{"only", []byte{0, 1, 0xff}})),
		}},
		{"int32 bounds", false, []stream.Row{
			{"partition": int64(math.MaxInt32), "timestampType": int64(math.MinInt32), "offset": int64(math.MaxInt64)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			got := roundTrip(t, mem, KafkaSchema(tt.headers), tt.rows)
			want := make([]stream.Row, len(tt.rows))
			for i, r := range tt.rows {
				// Every column comes back, null when the row lacked it.
				want[i] = stream.Row{}
				for _, n := range Names(KafkaSchema(tt.headers)) {
					want[i][n] = r[n]
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}

func TestKinesisRoundTrip(t *testing.T) {
	arrival := time.Date(2024, 3, 1, 12, 30, 45, 678_000_000, time.UTC)
	rows := []stream.Row{
		{
			"data": []byte(`{"event":"click"}`), "stream": "clicks", "shardId": "shardId-000000000001",
			"sequenceNumber": "49590338271490256608559692538361571095921575989136588898", "subSequenceNumber": int64(0),
			"partitionKey": "user-9", "approximateArrivalTimestamp": arrival,
		},
		{ // a second user record of the same KPL aggregate
			"data": []byte{}, "stream": "clicks", "shardId": "shardId-000000000001",
			"sequenceNumber": "49590338271490256608559692538361571095921575989136588898", "subSequenceNumber": int64(1),
			"partitionKey": "", "approximateArrivalTimestamp": arrival,
		},
		{ // a corrupt aggregate: what is known, the rest null
			"data": []byte{0xf3, 0x89, 0x9a, 0xc2}, "stream": "clicks", "shardId": "shardId-000000000002",
			"sequenceNumber": "1", "subSequenceNumber": nil, "partitionKey": nil, "approximateArrivalTimestamp": nil,
		},
	}
	mem := checkedMem(t)
	got := roundTrip(t, mem, KinesisSchema(), rows)
	if !reflect.DeepEqual(got, rows) {
		t.Errorf("round trip:\n got %#v\nwant %#v", got, rows)
	}
}

func TestSchemas(t *testing.T) {
	tests := []struct {
		name   string
		schema *arrow.Schema
		want   string
	}{
		{"kafka", KafkaSchema(false), "key:binary value:binary topic:utf8 partition:int32 offset:int64 timestamp:timestamp[ms, tz=UTC] timestampType:int32"},
		{"kafka headers", KafkaSchema(true), "key:binary value:binary topic:utf8 partition:int32 offset:int64 timestamp:timestamp[ms, tz=UTC] timestampType:int32 headers:list<item: struct<key: utf8 nullable, value: binary nullable>, nullable>"},
		{"kinesis", KinesisSchema(), "partitionKey:utf8 data:binary stream:utf8 shardId:utf8 sequenceNumber:utf8 approximateArrivalTimestamp:timestamp[ms, tz=UTC] subSequenceNumber:int64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var parts, names []string
			for _, f := range tt.schema.Fields() {
				names = append(names, f.Name)
				if !f.Nullable {
					t.Errorf("column %q is not nullable", f.Name)
				}
				parts = append(parts, f.Name+":"+f.Type.String())
			}
			if got := strings.Join(parts, " "); got != tt.want {
				t.Errorf("schema\n got %s\nwant %s", got, tt.want)
			}
			if got := Names(tt.schema); !reflect.DeepEqual(got, names) {
				t.Errorf("Names = %q, want %q", got, names)
			}
		})
	}
}

// TestBuilderTypes covers every column type the Builder fills: a value, a
// missing key and a nil each round trip through AppendRows.
func TestBuilderTypes(t *testing.T) {
	local := time.FixedZone("CET", 3600)
	ts := time.Date(2024, 2, 29, 23, 59, 58, 123_456_789, local)
	day := time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		typ  arrow.DataType
		in   any
		want any
	}{
		{"bool", arrow.FixedWidthTypes.Boolean, true, true},
		{"int8", arrow.PrimitiveTypes.Int8, int64(-128), int64(-128)},
		{"int16 from int", arrow.PrimitiveTypes.Int16, 300, int64(300)},
		{"int32", arrow.PrimitiveTypes.Int32, int64(-5), int64(-5)},
		{"int64", arrow.PrimitiveTypes.Int64, int64(math.MinInt64), int64(math.MinInt64)},
		{"uint8", arrow.PrimitiveTypes.Uint8, int64(255), int64(255)},
		{"uint16", arrow.PrimitiveTypes.Uint16, int64(65535), int64(65535)},
		{"uint32", arrow.PrimitiveTypes.Uint32, int64(math.MaxUint32), int64(math.MaxUint32)},
		{"uint64", arrow.PrimitiveTypes.Uint64, int64(math.MaxInt64), int64(math.MaxInt64)},
		{"float32", arrow.PrimitiveTypes.Float32, 1.5, 1.5},
		{"float64", arrow.PrimitiveTypes.Float64, -0.1, -0.1},
		{"float64 from int64", arrow.PrimitiveTypes.Float64, int64(42), 42.0},
		{"utf8", arrow.BinaryTypes.String, "héllo", "héllo"},
		{"large utf8", arrow.BinaryTypes.LargeString, "", ""},
		{"utf8 view", arrow.BinaryTypes.StringView, "a string longer than twelve bytes", "a string longer than twelve bytes"},
		{"binary", arrow.BinaryTypes.Binary, []byte{0, 1, 2}, []byte{0, 1, 2}},
		{"binary from string", arrow.BinaryTypes.Binary, "text", []byte("text")},
		{"large binary", arrow.BinaryTypes.LargeBinary, []byte{}, []byte{}},
		{"binary view", arrow.BinaryTypes.BinaryView, []byte("a payload longer than twelve bytes"), []byte("a payload longer than twelve bytes")},
		{"fixed size binary", &arrow.FixedSizeBinaryType{ByteWidth: 3}, []byte("abc"), []byte("abc")},
		{"fixed size binary from string", &arrow.FixedSizeBinaryType{ByteWidth: 2}, "ab", []byte("ab")},
		{"timestamp s", &arrow.TimestampType{Unit: arrow.Second}, ts, ts.Truncate(time.Second).UTC()},
		{"timestamp ms UTC", &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}, ts, ts.Truncate(time.Millisecond).UTC()},
		{"timestamp us zoned", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "Europe/Paris"}, ts, ts.Truncate(time.Microsecond).UTC()},
		{"timestamp ns", &arrow.TimestampType{Unit: arrow.Nanosecond}, ts, ts.UTC()},
		{"timestamp before 1970", &arrow.TimestampType{Unit: arrow.Millisecond}, time.UnixMilli(-1500).UTC(), time.UnixMilli(-1500).UTC()},
		{"date32", arrow.FixedWidthTypes.Date32, day.Add(13 * time.Hour), day},
		{"date32 before 1970", arrow.FixedWidthTypes.Date32, time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)},
		{"date32 of a zoned time", arrow.FixedWidthTypes.Date32, ts, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"date64", arrow.FixedWidthTypes.Date64, day.Add(time.Minute), day},
		{"list", arrow.ListOf(arrow.PrimitiveTypes.Int64), []any{int64(1), nil, int64(3)}, []any{int64(1), nil, int64(3)}},
		{"empty list", arrow.ListOf(arrow.PrimitiveTypes.Int64), []any{}, []any{}},
		{"large list", arrow.LargeListOf(arrow.BinaryTypes.String), []any{"a", "b"}, []any{"a", "b"}},
		{"fixed size list", arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float64), []any{1.0, nil}, []any{1.0, nil}},
		{"struct", arrow.StructOf(
			arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
			arrow.Field{Name: "b", Type: arrow.ListOf(arrow.StructOf(arrow.Field{Name: "c", Type: arrow.BinaryTypes.String, Nullable: true})), Nullable: true},
			arrow.Field{Name: "missing", Type: arrow.FixedWidthTypes.Boolean, Nullable: true},
		),
			map[string]any{"a": int64(1), "b": []any{map[string]any{"c": "x"}, nil, map[string]any{}}, "extra": "ignored"},
			map[string]any{"a": int64(1), "b": []any{map[string]any{"c": "x"}, nil, map[string]any{"c": nil}}, "missing": nil}},
		{"struct from Row", arrow.StructOf(arrow.Field{Name: "a", Type: arrow.BinaryTypes.String, Nullable: true}),
			stream.Row{"a": "x"}, map[string]any{"a": "x"}},
		{"map", arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64),
			map[string]any{"b": int64(2), "a": nil}, map[string]any{"a": nil, "b": int64(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			s := arrow.NewSchema([]arrow.Field{{Name: "c", Type: tt.typ, Nullable: true}}, nil)
			got := roundTrip(t, mem, s, []stream.Row{{"c": tt.in}, {}, {"c": nil}})
			want := []stream.Row{{"c": tt.want}, {"c": nil}, {"c": nil}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}

// TestReadTypes covers the Arrow types DuckDB may return that the Builder
// does not fill: each array holds one value and one null.
func TestReadTypes(t *testing.T) {
	big70 := new(big.Int).Lsh(big.NewInt(1), 70)
	tests := []struct {
		name string
		typ  arrow.DataType
		fill func(b array.Builder)
		want any
	}{
		{"null", arrow.Null, func(b array.Builder) { b.AppendNull() }, nil},
		{"float16", arrow.FixedWidthTypes.Float16, func(b array.Builder) { b.(*array.Float16Builder).Append(float16.New(1.5)) }, 1.5},
		{"uint64 max int64", arrow.PrimitiveTypes.Uint64, func(b array.Builder) { b.(*array.Uint64Builder).Append(math.MaxInt64) }, int64(math.MaxInt64)},
		{"time32 ms", arrow.FixedWidthTypes.Time32ms, func(b array.Builder) { b.(*array.Time32Builder).Append(3723004) }, "01:02:03.004000"},
		{"time32 s", arrow.FixedWidthTypes.Time32s, func(b array.Builder) { b.(*array.Time32Builder).Append(86399) }, "23:59:59.000000"},
		{"time64 us", arrow.FixedWidthTypes.Time64us, func(b array.Builder) { b.(*array.Time64Builder).Append(3723004005) }, "01:02:03.004005"},
		{"time64 ns", arrow.FixedWidthTypes.Time64ns, func(b array.Builder) { b.(*array.Time64Builder).Append(3723004005006) }, "01:02:03.004005"},
		{"duration ms", arrow.FixedWidthTypes.Duration_ms, func(b array.Builder) { b.(*array.DurationBuilder).Append(90500) }, "1m30.5s"},
		{"duration s negative", arrow.FixedWidthTypes.Duration_s, func(b array.Builder) { b.(*array.DurationBuilder).Append(-3600) }, "-1h0m0s"},
		{"month interval", arrow.FixedWidthTypes.MonthInterval, func(b array.Builder) { b.(*array.MonthIntervalBuilder).Append(14) }, "P14M"},
		{"day time interval", arrow.FixedWidthTypes.DayTimeInterval, func(b array.Builder) {
			b.(*array.DayTimeIntervalBuilder).Append(arrow.DayTimeInterval{Days: 2, Milliseconds: 1500})
		}, "P2DT1.5S"},
		{"month day nano interval", arrow.FixedWidthTypes.MonthDayNanoInterval, func(b array.Builder) {
			b.(*array.MonthDayNanoIntervalBuilder).Append(arrow.MonthDayNanoInterval{Months: 1, Days: -2, Nanoseconds: -3})
		}, "P1M-2DT-0.000000003S"},
		{"zero interval", arrow.FixedWidthTypes.MonthDayNanoInterval, func(b array.Builder) {
			b.(*array.MonthDayNanoIntervalBuilder).Append(arrow.MonthDayNanoInterval{})
		}, "PT0S"},
		{"decimal32 fraction", &arrow.Decimal32Type{Precision: 5, Scale: 1}, func(b array.Builder) { b.(*array.Decimal32Builder).Append(15) }, 1.5},
		{"decimal64 integer", &arrow.Decimal64Type{Precision: 10, Scale: 0}, func(b array.Builder) { b.(*array.Decimal64Builder).Append(-7) }, int64(-7)},
		{"decimal128 fraction", &arrow.Decimal128Type{Precision: 10, Scale: 2}, func(b array.Builder) { b.(*array.Decimal128Builder).Append(decimal128.FromI64(12345)) }, 123.45},
		{"decimal128 hugeint", &arrow.Decimal128Type{Precision: 38, Scale: 0}, func(b array.Builder) { b.(*array.Decimal128Builder).Append(decimal128.FromI64(math.MinInt64)) }, int64(math.MinInt64)},
		{"decimal128 beyond int64", &arrow.Decimal128Type{Precision: 38, Scale: 0}, func(b array.Builder) { b.(*array.Decimal128Builder).Append(decimal128.FromBigInt(big70)) }, math.Pow(2, 70)},
		{"decimal128 negative scale", &arrow.Decimal128Type{Precision: 5, Scale: -2}, func(b array.Builder) { b.(*array.Decimal128Builder).Append(decimal128.FromI64(123)) }, int64(12300)},
		{"decimal256 integer", &arrow.Decimal256Type{Precision: 40, Scale: 0}, func(b array.Builder) { b.(*array.Decimal256Builder).Append(decimal256.FromI64(-5)) }, int64(-5)},
		{"decimal256 fraction", &arrow.Decimal256Type{Precision: 40, Scale: 3}, func(b array.Builder) { b.(*array.Decimal256Builder).Append(decimal256.FromI64(-2500)) }, -2.5},
		{"dictionary", &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, func(b array.Builder) {
			db := b.(*array.BinaryDictionaryBuilder)
			_ = db.AppendString("a")
			_ = db.AppendString("b")
		}, "b"},
		{"map with int keys", arrow.MapOf(arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String), func(b array.Builder) {
			mb := b.(*array.MapBuilder)
			mb.Append(true)
			mb.KeyBuilder().(*array.Int32Builder).Append(1)
			mb.ItemBuilder().(*array.StringBuilder).Append("x")
			mb.KeyBuilder().(*array.Int32Builder).Append(2)
			mb.ItemBuilder().(*array.StringBuilder).AppendNull()
		}, []any{map[string]any{"key": int64(1), "value": "x"}, map[string]any{"key": int64(2), "value": nil}}},
		{"list view", arrow.ListViewOf(arrow.PrimitiveTypes.Int16), func(b array.Builder) {
			lb := b.(*array.ListViewBuilder)
			lb.AppendWithSize(true, 2)
			lb.ValueBuilder().(*array.Int16Builder).AppendValues([]int16{4, 5}, nil)
		}, []any{int64(4), int64(5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			b := array.NewBuilder(mem, tt.typ)
			defer b.Release()
			tt.fill(b)
			b.AppendNull()
			arr := b.NewArray()
			defer arr.Release()
			// Dictionary values are read through their indices: read the last value.
			rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "c", Type: tt.typ, Nullable: true}}, nil), []arrow.Array{arr}, int64(arr.Len()))
			defer rec.Release()
			last := rec.NewSlice(int64(arr.Len()-2), int64(arr.Len()))
			defer last.Release()
			got, err := AppendRows(nil, last)
			if err != nil {
				t.Fatalf("AppendRows: %v", err)
			}
			want := []stream.Row{{"c": tt.want}, {"c": nil}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("rows:\n got %#v\nwant %#v", got, want)
			}
		})
	}
}
