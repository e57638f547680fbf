package columnar

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// codecCase is one column type with four values in JSON, nulls included.
type codecCase struct {
	name string
	typ  arrow.DataType
	json string
}

var window = arrow.StructOf(
	arrow.Field{Name: "start", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	arrow.Field{Name: "end", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
)

var codecCases = []codecCase{
	{"null", arrow.Null, `[null, null, null, null]`},
	{"bool", arrow.FixedWidthTypes.Boolean, `[true, false, null, true]`},
	{"int8", arrow.PrimitiveTypes.Int8, `[-128, 127, null, 0]`},
	{"int16", arrow.PrimitiveTypes.Int16, `[-32768, 32767, null, 1]`},
	{"int32", arrow.PrimitiveTypes.Int32, `[-2147483648, 2147483647, null, -1]`},
	{"int64", arrow.PrimitiveTypes.Int64, `[-9223372036854775808, 9223372036854775807, null, 42]`},
	{"uint8", arrow.PrimitiveTypes.Uint8, `[0, 255, null, 7]`},
	{"uint16", arrow.PrimitiveTypes.Uint16, `[0, 65535, null, 7]`},
	{"uint32", arrow.PrimitiveTypes.Uint32, `[0, 4294967295, null, 7]`},
	{"uint64", arrow.PrimitiveTypes.Uint64, `[0, 18446744073709551615, null, 7]`},
	{"float16", arrow.FixedWidthTypes.Float16, `[1.5, -2, null, 0]`},
	{"float32", arrow.PrimitiveTypes.Float32, `[1.5, -3.25e30, null, 0]`},
	{"float64", arrow.PrimitiveTypes.Float64, `[1.5, -1e300, null, 5e-324]`},
	{"string", arrow.BinaryTypes.String, `["", "héllo", null, "a\u0000b"]`},
	{"large_string", arrow.BinaryTypes.LargeString, `["", "x", null, "yz"]`},
	{"string_view", arrow.BinaryTypes.StringView, `["", "short", null, "a string longer than twelve bytes"]`},
	{"binary", arrow.BinaryTypes.Binary, `["", "AAEC", null, "/w=="]`},
	{"large_binary", arrow.BinaryTypes.LargeBinary, `["", "AAEC", null, "/w=="]`},
	{"binary_view", arrow.BinaryTypes.BinaryView, `["", "AAEC", null, "AAECAwQFBgcICQoLDA0ODw=="]`},
	{"fixed_size_binary", &arrow.FixedSizeBinaryType{ByteWidth: 3}, `["AAEC", "AAAA", null, "////"]`},
	{"date32", arrow.FixedWidthTypes.Date32, `["1970-01-01", "2024-02-29", null, "1900-12-31"]`},
	{"date64", arrow.FixedWidthTypes.Date64, `["1970-01-01", "2024-02-29", null, "1900-12-31"]`},
	{"time32", arrow.FixedWidthTypes.Time32ms, `["00:00:00", "23:59:59.999", null, "12:00:00"]`},
	{"time64", arrow.FixedWidthTypes.Time64ns, `["00:00:00", "23:59:59.999999999", null, "12:00:00"]`},
	{"timestamp_tz", &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "Europe/Paris"}, `[0, -1, null, 1700000000000000]`},
	{"timestamp_ns", arrow.FixedWidthTypes.Timestamp_ns, `[0, -1, null, 1700000000000000000]`},
	{"duration", arrow.FixedWidthTypes.Duration_us, `[0, -1, null, 90000000]`},
	{"decimal32", &arrow.Decimal32Type{Precision: 9, Scale: 2}, `["1.23", "-9999999.99", null, "0"]`},
	{"decimal64", &arrow.Decimal64Type{Precision: 18, Scale: 3}, `["1.234", "-999999999999999.999", null, "0"]`},
	{"decimal128", &arrow.Decimal128Type{Precision: 38, Scale: 0},
		`["99999999999999999999999999999999999999", "-99999999999999999999999999999999999999", null, "0"]`},
	{"decimal128_scaled", &arrow.Decimal128Type{Precision: 18, Scale: 4}, `["-1.5", "12345678901234.5678", null, "0.0001"]`},
	{"decimal256", &arrow.Decimal256Type{Precision: 76, Scale: 0},
		`["1", "-9999999999999999999999999999999999999999999999999999999999999999999999999999", null, "0"]`},
	{"interval_month", arrow.FixedWidthTypes.MonthInterval, `[{"months": 1}, {"months": -14}, null, {"months": 0}]`},
	{"interval_day_time", arrow.FixedWidthTypes.DayTimeInterval,
		`[{"days": 1, "milliseconds": 2}, {"days": -1, "milliseconds": -86399999}, null, {"days": 0, "milliseconds": 0}]`},
	{"interval_month_day_nano", arrow.FixedWidthTypes.MonthDayNanoInterval,
		`[{"months": 1, "days": 2, "nanoseconds": 3}, {"months": -1, "days": -2, "nanoseconds": -9223372036854775808}, null, {"months": 0, "days": 0, "nanoseconds": 0}]`},
	{"list_int64", arrow.ListOf(arrow.PrimitiveTypes.Int64), `[[1, null, 3], [], null, [null]]`},
	{"large_list_string", arrow.LargeListOf(arrow.BinaryTypes.String), `[["a", "bc"], [], null, [null, ""]]`},
	{"list_view", arrow.ListViewOf(arrow.PrimitiveTypes.Int32), `[[1, null], [], null, [7]]`},
	{"large_list_view", arrow.LargeListViewOf(arrow.PrimitiveTypes.Int32), `[[1, null], [], null, [7]]`},
	{"fixed_size_list", arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float64), `[[1, 2], [null, 3], null, [null, null]]`},
	{"list_list", arrow.ListOf(arrow.ListOf(arrow.BinaryTypes.String)), `[[["a"], [], null], [], null, [[null]]]`},
	{"list_null", arrow.ListOf(arrow.Null), `[[null, null], [], null, [null]]`},
	{"window_struct", window, `[{"start": 0, "end": 60000000}, {"start": null, "end": 1}, null, {"start": null, "end": null}]`},
	{"struct_nested", arrow.StructOf(
		arrow.Field{Name: "k", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "l", Type: arrow.ListOf(window), Nullable: true},
		arrow.Field{Name: "d", Type: &arrow.Decimal128Type{Precision: 38, Scale: 0}},
	), `[{"k": "x", "l": [{"start": 1, "end": 2}, null], "d": "5"}, {"k": null, "l": null, "d": "-1"}, null, {"k": "", "l": [], "d": "0"}]`},
	{"empty_struct", arrow.StructOf(), `[{}, {}, null, {}]`},
	{"list_struct", arrow.ListOf(arrow.StructOf(arrow.Field{Name: "a", Type: arrow.FixedSizeListOf(1, arrow.PrimitiveTypes.Int8), Nullable: true})),
		`[[{"a": [1]}, {"a": null}, null], [], null, [{"a": [null]}]]`},
}

// dictColumn is a dictionary<int8, utf8> column (DuckDB's ENUM): values
// "b", null, "a", "b" over the dictionary ["a", "b"].
func dictColumn(t testing.TB, mem memory.Allocator) arrow.Array {
	t.Helper()
	dt := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
	b := array.NewDictionaryBuilder(mem, dt).(*array.BinaryDictionaryBuilder)
	defer b.Release()
	init := mustJSON(t, mem, arrow.BinaryTypes.String, `["a", "b"]`)
	defer init.Release()
	if err := b.InsertStringDictValues(init.(*array.String)); err != nil {
		t.Fatal(err)
	}
	for _, v := range []*string{ptr("b"), nil, ptr("a"), ptr("b")} {
		if v == nil {
			b.AppendNull()
		} else if err := b.AppendString(*v); err != nil {
			t.Fatal(err)
		}
	}
	return b.NewArray()
}

func ptr[T any](v T) *T { return &v }

func mustJSON(t testing.TB, mem memory.Allocator, typ arrow.DataType, js string) arrow.Array {
	t.Helper()
	arr, _, err := array.FromJSON(mem, typ, strings.NewReader(js))
	if err != nil {
		t.Fatalf("%s from %s: %v", typ, js, err)
	}
	return arr
}

// allTypesBatch returns a batch with one column per codecCase and a
// dictionary column last.
func allTypesBatch(t testing.TB, mem memory.Allocator) arrow.RecordBatch {
	t.Helper()
	var fields []arrow.Field
	var cols []arrow.Array
	for _, tc := range codecCases {
		fields = append(fields, arrow.Field{Name: tc.name, Type: tc.typ, Nullable: true})
		cols = append(cols, mustJSON(t, mem, tc.typ, tc.json))
	}
	d := dictColumn(t, mem)
	fields = append(fields, arrow.Field{Name: "dictionary", Type: d.DataType(), Nullable: true})
	cols = append(cols, d)
	rec := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, 4)
	for _, c := range cols {
		c.Release()
	}
	return rec
}

// roundTripRows encodes the rows of rec's cols, decodes them into a new
// batch of those columns, and checks that encoding the new batch's rows
// gives the same bytes again.
func roundTripRows(t *testing.T, mem memory.Allocator, rec arrow.RecordBatch, cols []int) arrow.RecordBatch {
	t.Helper()
	c, err := NewRowCodec(rec.Schema(), cols)
	if err != nil {
		t.Fatal(err)
	}
	var fields []arrow.Field
	for _, col := range cols {
		fields = append(fields, rec.Schema().Field(col))
	}
	rb := array.NewRecordBuilder(mem, arrow.NewSchema(fields, nil))
	defer rb.Release()
	var encoded [][]byte
	for row := range int(rec.NumRows()) {
		buf, err := c.Append(nil, rec, row)
		if err != nil {
			t.Fatalf("row %d: %v", row, err)
		}
		if err := c.Decode(rb.Fields(), buf); err != nil {
			t.Fatalf("row %d: decode %x: %v", row, buf, err)
		}
		encoded = append(encoded, buf)
	}
	got := rb.NewRecordBatch()
	all := make([]int, len(cols))
	for i := range all {
		all[i] = i
	}
	again, err := NewRowCodec(got.Schema(), all)
	if err != nil {
		t.Fatal(err)
	}
	for row, want := range encoded {
		if b, err := again.Append(nil, got, row); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("row %d: re-encoded as %x (%v), want %x", row, b, err, want)
		}
	}
	return got
}

// sameValues is array.Equal, except that dictionary arrays compare by the
// values they stand for: decoding builds its own dictionary.
func sameValues(a, b arrow.Array) bool {
	da, ok1 := a.(*array.Dictionary)
	db, ok2 := b.(*array.Dictionary)
	if !ok1 || !ok2 {
		return array.Equal(a, b)
	}
	if a.Len() != b.Len() {
		return false
	}
	for i := range a.Len() {
		if a.IsNull(i) != b.IsNull(i) || a.IsValid(i) && da.ValueStr(i) != db.ValueStr(i) {
			return false
		}
	}
	return true
}

func TestRowCodecRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := allTypesBatch(t, mem)
	defer rec.Release()

	for col, f := range rec.Schema().Fields() {
		t.Run(f.Name, func(t *testing.T) {
			got := roundTripRows(t, mem, rec, []int{col})
			defer got.Release()
			if !sameValues(got.Column(0), rec.Column(col)) {
				t.Fatalf("got %v, want %v", got.Column(0), rec.Column(col))
			}
		})
	}

	t.Run("all columns reversed", func(t *testing.T) {
		var cols []int
		for i := int(rec.NumCols()) - 1; i >= 0; i-- {
			cols = append(cols, i)
		}
		got := roundTripRows(t, mem, rec, cols)
		defer got.Release()
		for i, col := range cols {
			if !sameValues(got.Column(i), rec.Column(col)) {
				t.Fatalf("column %s: got %v, want %v", rec.ColumnName(col), got.Column(i), rec.Column(col))
			}
		}
	})

	t.Run("sliced batch", func(t *testing.T) {
		// Offsets into every buffer, nested ones included, must be honoured.
		sl := rec.NewSlice(1, 4)
		defer sl.Release()
		cols := make([]int, sl.NumCols())
		for i := range cols {
			cols[i] = i
		}
		got := roundTripRows(t, mem, sl, cols)
		defer got.Release()
		for i := range cols {
			if !sameValues(got.Column(i), sl.Column(i)) {
				t.Fatalf("column %s: got %v, want %v", sl.ColumnName(i), got.Column(i), sl.Column(i))
			}
		}
	})
}

func TestRowCodecFloatBits(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	vals := []float64{0, math.Copysign(0, -1), math.NaN(), math.Float64frombits(0x7ff8000000000000), math.Float64frombits(0xfff8000000000001), math.Inf(-1)}
	b := array.NewFloat64Builder(mem)
	b.AppendValues(vals, nil)
	arr := b.NewArray()
	b.Release()
	s := arrow.NewSchema([]arrow.Field{{Name: "f", Type: arrow.PrimitiveTypes.Float64}}, nil)
	rec := array.NewRecordBatch(s, []arrow.Array{arr}, int64(len(vals)))
	arr.Release()
	defer rec.Release()

	got := roundTripRows(t, mem, rec, []int{0})
	defer got.Release()
	seen := map[string]int{}
	c, _ := NewRowCodec(s, []int{0})
	for i, v := range vals {
		if g := got.Column(0).(*array.Float64).Value(i); math.Float64bits(g) != math.Float64bits(v) {
			t.Errorf("value %d: got bits %x, want %x", i, math.Float64bits(g), math.Float64bits(v))
		}
		key, _ := c.Append(nil, rec, i)
		if j, dup := seen[string(key)]; dup {
			t.Errorf("values %d and %d share key %x", j, i, key)
		}
		seen[string(key)] = i
	}
}

// TestRowCodecNullStructChildren checks that what lies under a null struct
// neither reaches the bytes nor breaks decoding: DuckDB need not null the
// children of a null parent.
func TestRowCodecNullStructChildren(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	start := mustJSON(t, mem, window.Field(0).Type, `[1, 1]`)
	end := mustJSON(t, mem, window.Field(1).Type, `[2, 3]`)
	valid := memory.NewBufferBytes([]byte{0b01}) // row 1 is null
	data := array.NewData(window, 2, []*memory.Buffer{valid}, []arrow.ArrayData{start.Data(), end.Data()}, 1, 0)
	st := array.NewStructData(data)
	data.Release()
	start.Release()
	end.Release()
	s := arrow.NewSchema([]arrow.Field{{Name: "w", Type: window, Nullable: true}}, nil)
	rec := array.NewRecordBatch(s, []arrow.Array{st}, 2)
	st.Release()
	defer rec.Release()

	c, _ := NewRowCodec(s, []int{0})
	got, err := c.Append(nil, rec, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{RowCodecVersion, 0}; !bytes.Equal(got, want) {
		t.Fatalf("null struct encodes as %x, want %x", got, want)
	}
	rb := array.NewRecordBuilder(mem, s)
	defer rb.Release()
	if err := c.Decode(rb.Fields(), got); err != nil {
		t.Fatal(err)
	}
	out := rb.NewRecordBatch()
	defer out.Release()
	if !out.Column(0).IsNull(0) {
		t.Fatalf("decoded %v, want null", out.Column(0))
	}
}

func TestRowCodecDeterminism(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	str := arrow.BinaryTypes.String
	schema := func(types ...arrow.DataType) *arrow.Schema {
		var fs []arrow.Field
		for i, typ := range types {
			fs = append(fs, arrow.Field{Name: fmt.Sprintf("c%d", i), Type: typ, Nullable: true})
		}
		return arrow.NewSchema(fs, nil)
	}
	batch := func(s *arrow.Schema, js ...string) arrow.RecordBatch {
		var cols []arrow.Array
		for i, f := range s.Fields() {
			cols = append(cols, mustJSON(t, mem, f.Type, js[i]))
		}
		rec := array.NewRecordBatch(s, cols, int64(cols[0].Len()))
		for _, c := range cols {
			c.Release()
		}
		return rec
	}
	enc := func(rec arrow.RecordBatch, row int) string {
		cols := make([]int, rec.NumCols())
		for i := range cols {
			cols[i] = i
		}
		c, err := NewRowCodec(rec.Schema(), cols)
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.Append(nil, rec, row)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	tests := []struct {
		name   string
		s      *arrow.Schema
		a, b   []string // one JSON array per column, for two batches
		ra, rb int      // the rows compared
		equal  bool
	}{
		{"same key, other batch and row", schema(str, arrow.PrimitiveTypes.Int64),
			[]string{`["x", "a"]`, `[0, 1]`}, []string{`["a"]`, `[1]`}, 1, 0, true},
		{"split between columns", schema(str, str),
			[]string{`["a"]`, `["bc"]`}, []string{`["ab"]`, `["c"]`}, 0, 0, false},
		{"null vs empty string", schema(str),
			[]string{`[null]`}, []string{`[""]`}, 0, 0, false},
		{"null vs empty binary", schema(arrow.BinaryTypes.Binary),
			[]string{`[null]`}, []string{`[""]`}, 0, 0, false},
		{"null list vs empty list", schema(arrow.ListOf(arrow.PrimitiveTypes.Int32)),
			[]string{`[null]`}, []string{`[[]]`}, 0, 0, false},
		{"empty list vs list of null", schema(arrow.ListOf(arrow.PrimitiveTypes.Int32)),
			[]string{`[[]]`}, []string{`[[null]]`}, 0, 0, false},
		{"list boundaries", schema(arrow.ListOf(str), arrow.ListOf(str)),
			[]string{`[["a", "b"]]`, `[[]]`}, []string{`[["a"]]`, `[["b"]]`}, 0, 0, false},
		{"null struct vs struct of nulls", schema(window),
			[]string{`[null]`}, []string{`[{"start": null, "end": null}]`}, 0, 0, false},
		{"equal windows", schema(window),
			[]string{`[{"start": 1, "end": 2}, {"start": 0, "end": 60}]`}, []string{`[{"start": 0, "end": 60}]`}, 1, 0, true},
		{"zero vs minus zero", schema(arrow.PrimitiveTypes.Float64),
			[]string{`[0.0]`}, []string{`[-0.0]`}, 0, 0, false},
		{"int64 0 vs null", schema(arrow.PrimitiveTypes.Int64),
			[]string{`[0]`}, []string{`[null]`}, 0, 0, false},
		{"decimal equal", schema(&arrow.Decimal128Type{Precision: 38, Scale: 0}),
			[]string{`["12", "123456789012345678901234567890"]`}, []string{`["123456789012345678901234567890"]`}, 1, 0, true},
		{"decimal differs", schema(&arrow.Decimal128Type{Precision: 38, Scale: 0}),
			[]string{`["1"]`}, []string{`["18446744073709551616"]`}, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := batch(tc.s, tc.a...), batch(tc.s, tc.b...)
			defer a.Release()
			defer b.Release()
			ka, kb := enc(a, tc.ra), enc(b, tc.rb)
			if (ka == kb) != tc.equal {
				t.Fatalf("keys %x and %x: equal = %v, want %v", ka, kb, ka == kb, tc.equal)
			}
		})
	}

	t.Run("dictionary index does not matter", func(t *testing.T) {
		d := dictColumn(t, mem) // "b" has index 1
		defer d.Release()
		plain := mustJSON(t, mem, str, `["b"]`)
		defer plain.Release()
		dictType := d.DataType()
		recD := array.NewRecordBatch(schema(dictType), []arrow.Array{d}, 4)
		defer recD.Release()
		recS := array.NewRecordBatch(schema(str), []arrow.Array{plain}, 1)
		defer recS.Release()
		if k0, k3, ks := enc(recD, 0), enc(recD, 3), enc(recS, 0); k0 != k3 || k0 != ks {
			t.Fatalf("dictionary rows 0, 3 and plain string: %x, %x, %x", k0, k3, ks)
		}
	})

	t.Run("golden bytes", func(t *testing.T) {
		// The layout is persisted: these bytes must never change.
		rec := batch(schema(str, arrow.PrimitiveTypes.Int32, arrow.ListOf(arrow.PrimitiveTypes.Int16)),
			`["ab"]`, `[-2]`, `[[1, null]]`)
		defer rec.Release()
		want := "\x01" + "\x01\x02ab" + "\x01\xfe\xff\xff\xff" + "\x01\x02\x01\x01\x00\x00"
		if got := enc(rec, 0); got != want {
			t.Fatalf("got %x, want %x", got, want)
		}
	})
}

func TestRowCodecRefusesType(t *testing.T) {
	dense := arrow.DenseUnionOf([]arrow.Field{{Name: "i", Type: arrow.PrimitiveTypes.Int32}}, []arrow.UnionTypeCode{0})
	tests := []struct {
		name string
		typ  arrow.DataType
	}{
		{"map", arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64)},
		{"union", dense},
		{"list of map", arrow.ListOf(arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int64))},
		{"struct with union", arrow.StructOf(arrow.Field{Name: "u", Type: dense})},
		{"int dictionary", &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.PrimitiveTypes.Int64}},
		{"run-end encoded", arrow.RunEndEncodedOf(arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := arrow.NewSchema([]arrow.Field{
				{Name: "ok", Type: arrow.PrimitiveTypes.Int64},
				{Name: "bad_col", Type: tc.typ, Nullable: true},
			}, nil)
			_, err := NewRowCodec(s, []int{0, 1})
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), `"bad_col"`) {
				t.Fatalf("error %q: want ErrUnsupportedType naming bad_col", err)
			}
			if _, err := NewRowCodec(s, []int{0}); err != nil {
				t.Fatalf("codec without the column: %v", err)
			}
		})
	}
	if _, err := NewRowCodec(arrow.NewSchema(nil, nil), []int{0}); err == nil {
		t.Fatal("column index out of range: no error")
	}
}

func TestRowCodecMisuse(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	s := arrow.NewSchema([]arrow.Field{{Name: "k", Type: arrow.BinaryTypes.String}}, nil)
	c, err := NewRowCodec(s, []int{0})
	if err != nil {
		t.Fatal(err)
	}
	other := arrow.NewSchema([]arrow.Field{{Name: "k", Type: arrow.BinaryTypes.LargeString}}, nil)
	arr := mustJSON(t, mem, arrow.BinaryTypes.LargeString, `["a"]`)
	rec := array.NewRecordBatch(other, []arrow.Array{arr}, 1)
	arr.Release()
	defer rec.Release()
	if dst, err := c.Append([]byte("p"), rec, 0); err == nil || string(dst) != "p" {
		t.Fatalf("Append of a large_string batch: %q, %v", dst, err)
	}
	if _, err := c.Append(nil, rec, 5); err == nil {
		t.Fatal("Append of row 5 of 1: no error")
	}
	rb := array.NewRecordBuilder(mem, other)
	defer rb.Release()
	if err := c.Decode(rb.Fields(), []byte{RowCodecVersion, 1, 0}); err == nil {
		t.Fatal("Decode into a large_string builder: no error")
	}
	if err := c.Decode(nil, []byte{RowCodecVersion, 1, 0}); err == nil {
		t.Fatal("Decode into no builders: no error")
	}

	// No columns (the key of an aggregate without GROUP BY) is the version
	// byte alone.
	none, err := NewRowCodec(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := none.Append(nil, rec, 0); err != nil || !bytes.Equal(b, []byte{RowCodecVersion}) {
		t.Fatalf("no columns: %x, %v", b, err)
	}
	if err := none.Decode(nil, []byte{RowCodecVersion}); err != nil {
		t.Fatalf("no columns: decode: %v", err)
	}
}

// malformedCodec covers every kind of value, for the malformed-input tests.
func malformedCodec(t testing.TB, mem memory.Allocator) (*RowCodec, arrow.RecordBatch) {
	rec := allTypesBatch(t, mem)
	cols := make([]int, rec.NumCols())
	for i := range cols {
		cols[i] = i
	}
	c, err := NewRowCodec(rec.Schema(), cols)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// decodeChecked decodes data and checks that Decode either appended one row
// to every builder or, on error, none.
func decodeChecked(t testing.TB, c *RowCodec, rb *array.RecordBuilder, data []byte) error {
	before := rb.Field(0).Len()
	err := c.Decode(rb.Fields(), data)
	want := before
	if err == nil {
		want++
	}
	for i, b := range rb.Fields() {
		if b.Len() != want {
			t.Fatalf("decode %x (err %v): column %d has %d rows, want %d", data, err, i, b.Len(), want)
		}
	}
	return err
}

func TestRowCodecMalformed(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	c, rec := malformedCodec(t, mem)
	defer rec.Release()
	rb := array.NewRecordBuilder(mem, rec.Schema())
	defer rb.Release()

	var valid [][]byte
	for row := range int(rec.NumRows()) {
		b, err := c.Append(nil, rec, row)
		if err != nil {
			t.Fatal(err)
		}
		valid = append(valid, b)
	}
	for _, v := range valid {
		for n := range len(v) {
			if err := decodeChecked(t, c, rb, v[:n]); !errors.Is(err, ErrMalformedRow) {
				t.Fatalf("truncated to %d of %d bytes: %v", n, len(v), err)
			}
		}
		if err := decodeChecked(t, c, rb, append(v[:len(v):len(v)], 0)); !errors.Is(err, ErrMalformedRow) {
			t.Fatalf("trailing byte: %v", err)
		}
		if err := decodeChecked(t, c, rb, v); err != nil {
			t.Fatalf("valid row: %v", err)
		}
	}
	for name, data := range map[string][]byte{
		"unknown version":   {2, 0},
		"validity byte 2":   {RowCodecVersion, 2},
		"valid null":        {RowCodecVersion, 1},
		"non-minimal count": {RowCodecVersion, 1, 0x80, 0x00},
	} {
		k, err := NewRowCodec(arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.Null}}, nil), []int{0})
		if name == "non-minimal count" {
			k, err = NewRowCodec(arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.BinaryTypes.String}}, nil), []int{0})
		}
		if err != nil {
			t.Fatal(err)
		}
		kb := array.NewRecordBuilder(mem, arrow.NewSchema([]arrow.Field{{Name: "x", Type: k.types[0]}}, nil))
		if err := decodeChecked(t, k, kb, data); !errors.Is(err, ErrMalformedRow) {
			t.Errorf("%s: %v", name, err)
		}
		kb.Release()
	}

	// Random bytes, and valid rows with bytes flipped, with a fixed seed:
	// FuzzRowCodecDecode explores further.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var data []byte
		if rng.IntN(2) == 0 {
			data = make([]byte, rng.IntN(64))
			for i := range data {
				data[i] = byte(rng.Uint32())
			}
			if len(data) > 0 {
				data[0] = RowCodecVersion
			}
		} else {
			data = bytes.Clone(valid[rng.IntN(len(valid))])
			for range 1 + rng.IntN(3) {
				data[rng.IntN(len(data))] = byte(rng.Uint32())
			}
		}
		_ = decodeChecked(t, c, rb, data)
	}
	out := rb.NewRecordBatch()
	out.Release()
}

func FuzzRowCodecDecode(f *testing.F) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	c, rec := malformedCodec(f, mem)
	for row := range int(rec.NumRows()) {
		b, err := c.Append(nil, rec, row)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{RowCodecVersion})
	f.Cleanup(func() {
		rec.Release()
		mem.AssertSize(f, 0)
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		rb := array.NewRecordBuilder(mem, rec.Schema())
		defer rb.Release()
		if err := decodeChecked(t, c, rb, data); err != nil {
			return
		}
		// Whatever decodes is the one encoding of what it decodes to.
		got := rb.NewRecordBatch()
		defer got.Release()
		again, err := c.Append(nil, got, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decoded %x, re-encoded as %x", data, again)
		}
	})
}

// BenchmarkRowCodec encodes and decodes group-by state rows: a (string,
// string, int64) key and a (decimal128(38,0), int64) value.
func BenchmarkRowCodec(b *testing.B) {
	const n = 4096
	mem := memory.NewGoAllocator()
	s := arrow.NewSchema([]arrow.Field{
		{Name: "tenant", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "user", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "bucket", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "sum", Type: &arrow.Decimal128Type{Precision: 38, Scale: 0}, Nullable: true},
		{Name: "count", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
	bld := array.NewRecordBuilder(mem, s)
	defer bld.Release()
	for i := range n {
		bld.Field(0).(*array.StringBuilder).Append(fmt.Sprintf("tenant-%02d", i%16))
		bld.Field(1).(*array.StringBuilder).Append(fmt.Sprintf("user-%06d", i))
		bld.Field(2).(*array.Int64Builder).Append(int64(i) * 60_000)
		bld.Field(3).(*array.Decimal128Builder).Append(decimal128.FromI64(int64(i) * 1_000_003))
		bld.Field(4).(*array.Int64Builder).Append(int64(i))
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	key, err := NewRowCodec(s, []int{0, 1, 2})
	if err != nil {
		b.Fatal(err)
	}
	val, err := NewRowCodec(s, []int{3, 4})
	if err != nil {
		b.Fatal(err)
	}

	b.Run("encode", func(b *testing.B) {
		var kb, vb []byte
		b.ReportAllocs()
		for b.Loop() {
			for row := range n {
				kb, _ = key.Append(kb[:0], rec, row)
				vb, _ = val.Append(vb[:0], rec, row)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/row")
	})

	keys, vals := make([][]byte, n), make([][]byte, n)
	for row := range n {
		keys[row], _ = key.Append(nil, rec, row)
		vals[row], _ = val.Append(nil, rec, row)
	}
	b.Run("decode", func(b *testing.B) {
		out := array.NewRecordBuilder(mem, s)
		defer out.Release()
		kbs, vbs := out.Fields()[:3], out.Fields()[3:]
		b.ReportAllocs()
		for b.Loop() {
			for row := range n {
				if err := key.Decode(kbs, keys[row]); err != nil {
					b.Fatal(err)
				}
				if err := val.Decode(vbs, vals[row]); err != nil {
					b.Fatal(err)
				}
			}
			out.NewRecordBatch().Release()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/row")
	})
}
