package columnar

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/stream"
)

// TestAppendErrors checks that a row that does not fit is rejected with an
// error naming the column and both types, and that nothing of it is
// appended: the next row goes in and all columns keep the same length.
func TestAppendErrors(t *testing.T) {
	good := kafkaRow([]byte("k"), []byte("v"), 1)
	good["headers"] = []any{map[string]any{"key": "h", "value": []byte("x")}}
	with := func(k string, v any) stream.Row {
		r := good.Clone()
		r[k] = v
		return r
	}
	tests := []struct {
		name   string
		schema *arrow.Schema
		row    stream.Row
		want   []string
	}{
		{"string for int32", KafkaSchema(true), with("partition", "7"), []string{`column "partition"`, "string", "int32"}},
		{"int32 overflow", KafkaSchema(true), with("partition", int64(math.MaxInt32)+1), []string{`column "partition"`, "int64", "2147483648", "out of range for int32"}},
		{"int32 underflow", KafkaSchema(true), with("timestampType", int64(math.MinInt32)-1), []string{`column "timestampType"`, "out of range for int32"}},
		{"float for int64", KafkaSchema(true), with("offset", 1.0), []string{`column "offset"`, "float64", "int64"}},
		{"int for string", KafkaSchema(true), with("topic", int64(1)), []string{`column "topic"`, "int64", "utf8"}},
		{"string for timestamp", KafkaSchema(true), with("timestamp", "2024-01-01"), []string{`column "timestamp"`, "string", "timestamp[ms, tz=UTC]"}},
		{"headers not a list", KafkaSchema(true), with("headers", "h"), []string{`column "headers"`, "string", "list<"}},
		{"header key wrong type", KafkaSchema(true), with("headers", []any{
			map[string]any{"key": "ok", "value": nil},
			map[string]any{"key": []byte("k"), "value": nil},
		}), []string{`column "headers[1].key"`, "[]uint8", "utf8"}},
		{"header not a map", KafkaSchema(true), with("headers", []any{"h"}), []string{`column "headers[0]"`, "string", "struct<"}},
		{"negative into uint8", arrow.NewSchema([]arrow.Field{{Name: "u", Type: arrow.PrimitiveTypes.Uint8, Nullable: true}}, nil),
			stream.Row{"u": int64(-1)}, []string{`column "u"`, "out of range for uint8"}},
		{"uint64 into int64", arrow.NewSchema([]arrow.Field{{Name: "i", Type: arrow.PrimitiveTypes.Int64, Nullable: true}}, nil),
			stream.Row{"i": uint64(math.MaxUint64)}, []string{`column "i"`, "uint64", "out of range for int64"}},
		{"null in non-nullable", arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil),
			stream.Row{}, []string{`column "id"`, "null in non-nullable int64"}},
		{"fixed size binary length", arrow.NewSchema([]arrow.Field{{Name: "f", Type: &arrow.FixedSizeBinaryType{ByteWidth: 4}, Nullable: true}}, nil),
			stream.Row{"f": []byte("abc")}, []string{`column "f"`, "3 bytes", "fixed_size_binary[4]"}},
		{"fixed size list length", arrow.NewSchema([]arrow.Field{{Name: "l", Type: arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Int64), Nullable: true}}, nil),
			stream.Row{"l": []any{int64(1)}}, []string{`column "l"`, "1 elements", "fixed_size_list"}},
		{"map item", arrow.NewSchema([]arrow.Field{{Name: "m", Type: arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Int32), Nullable: true}}, nil),
			stream.Row{"m": map[string]any{"a": "x"}}, []string{`column "m[\"a\"]"`, "string", "int32"}},
		{"unsupported column", arrow.NewSchema([]arrow.Field{{Name: "h", Type: arrow.FixedWidthTypes.Float16, Nullable: true}}, nil),
			stream.Row{"h": 1.0}, []string{`column "h"`, "unsupported column type float16"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			b := NewBuilder(mem, tt.schema)
			defer b.Release()
			// A bad row between good ones, to catch partial appends. Some
			// schemas reject an empty row too; then the bad row stands alone.
			emptyOK := b.Append(stream.Row{}) == nil
			before := b.Len()
			err := b.Append(tt.row)
			if err == nil {
				t.Fatal("Append succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if b.Len() != before {
				t.Errorf("Len() = %d after failed Append, want %d", b.Len(), before)
			}
			wantRows := int64(0)
			if emptyOK {
				if err := b.Append(stream.Row{}); err != nil {
					t.Fatalf("append after error: %v", err)
				}
				wantRows = 2
			}
			rec := b.NewRecordBatch()
			defer rec.Release()
			if rec.NumRows() != wantRows {
				t.Errorf("batch has %d rows, want %d", rec.NumRows(), wantRows)
			}
			for i, col := range rec.Columns() {
				if int64(col.Len()) != rec.NumRows() {
					t.Errorf("column %d has %d rows, batch %d", i, col.Len(), rec.NumRows())
				}
			}
		})
	}
}

// TestAppendAfterErrorKeepsRows pins the whole-row guarantee on the Kafka
// schema: good rows on either side of a rejected one come back intact.
func TestAppendAfterErrorKeepsRows(t *testing.T) {
	mem := checkedMem(t)
	b := NewBuilder(mem, KafkaSchema(true))
	defer b.Release()
	r1 := kafkaRow([]byte("a"), []byte("1"), 1)
	r1["headers"] = []any{map[string]any{"key": "h", "value": []byte("x")}}
	bad := kafkaRow([]byte("b"), []byte("2"), 2)
	// The first header and every scalar column fit; only the last header does not.
	bad["headers"] = []any{map[string]any{"key": "h", "value": nil}, map[string]any{"key": 5}}
	r3 := kafkaRow(nil, nil, 3)
	r3["headers"] = nil
	for i, r := range []stream.Row{r1, bad, r3} {
		err := b.Append(r)
		if (err != nil) != (i == 1) {
			t.Fatalf("row %d: err = %v", i, err)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	got, err := AppendRows(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	if want := []stream.Row{r1, r3}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows:\n got %#v\nwant %#v", got, want)
	}
}

func TestAppendRowsErrors(t *testing.T) {
	tests := []struct {
		name string
		make func(mem memory.Allocator) arrow.RecordBatch
		want []string
	}{
		{"uint64 above int64", func(mem memory.Allocator) arrow.RecordBatch {
			b := array.NewUint64Builder(mem)
			defer b.Release()
			b.AppendValues([]uint64{1, math.MaxUint64}, nil)
			return batchOf(b.NewArray(), "big")
		}, []string{`column "big"`, "uint64 value 18446744073709551615 overflows int64", "row 1"}},
		{"nested uint64", func(mem memory.Allocator) arrow.RecordBatch {
			b := array.NewListBuilder(mem, arrow.PrimitiveTypes.Uint64)
			defer b.Release()
			b.Append(true)
			b.ValueBuilder().(*array.Uint64Builder).Append(math.MaxUint64)
			return batchOf(b.NewArray(), "l")
		}, []string{`column "l[]"`, "overflows int64"}},
		{"unsupported type", func(mem memory.Allocator) arrow.RecordBatch {
			b := array.NewRunEndEncodedBuilder(mem, arrow.PrimitiveTypes.Int32, arrow.BinaryTypes.String)
			defer b.Release()
			b.Append(2)
			b.ValueBuilder().(*array.StringBuilder).Append("x")
			return batchOf(b.NewArray(), "ree")
		}, []string{`column "ree"`, "unsupported type run_end_encoded"}},
		{"duplicate names", func(mem memory.Allocator) arrow.RecordBatch {
			b := array.NewInt64Builder(mem)
			defer b.Release()
			b.Append(1)
			arr := b.NewArray()
			arr.Retain()
			s := arrow.NewSchema([]arrow.Field{{Name: "a", Type: arr.DataType()}, {Name: "a", Type: arr.DataType()}}, nil)
			rec := array.NewRecordBatch(s, []arrow.Array{arr, arr}, 1)
			arr.Release()
			arr.Release()
			return rec
		}, []string{`column "a"`, "duplicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			rec := tt.make(mem)
			defer rec.Release()
			prior := []stream.Row{{"x": int64(1)}}
			got, err := AppendRows(prior, rec)
			if err == nil {
				t.Fatal("AppendRows succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if len(got) != len(prior) {
				t.Errorf("AppendRows left %d rows, want the %d it was given", len(got), len(prior))
			}
		})
	}
}

// batchOf makes a one-column batch of arr, taking over the caller's reference.
func batchOf(arr arrow.Array, name string) arrow.RecordBatch {
	defer arr.Release()
	s := arrow.NewSchema([]arrow.Field{{Name: name, Type: arr.DataType(), Nullable: true}}, nil)
	return array.NewRecordBatch(s, []arrow.Array{arr}, int64(arr.Len()))
}

// TestAppendRowsCopies pins that rows do not alias the batch: a batch from
// DuckDB lives in C memory that is freed on Release, so a string or []byte
// pointing into it would change under the caller.
func TestAppendRowsCopies(t *testing.T) {
	mem := checkedMem(t)
	rows := []stream.Row{kafkaRow([]byte("key-1"), []byte(`{"a":1}`), 1)}
	rows[0]["headers"] = []any{map[string]any{"key": "trace", "value": []byte("abc")}}
	b := NewBuilder(mem, KafkaSchema(true))
	defer b.Release()
	if err := b.Append(rows[0]); err != nil {
		t.Fatal(err)
	}
	rec := b.NewRecordBatch()
	got, err := AppendRows(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	// Scribble over every buffer of the batch, as freed memory may be.
	var scribble func(d arrow.ArrayData)
	scribble = func(d arrow.ArrayData) {
		for _, buf := range d.Buffers() {
			if buf != nil {
				copy(buf.Bytes(), bytes.Repeat([]byte{'#'}, buf.Len()))
			}
		}
		for _, c := range d.Children() {
			scribble(c)
		}
	}
	for _, col := range rec.Columns() {
		scribble(col.Data())
	}
	rec.Release()
	if !reflect.DeepEqual(got, rows) {
		t.Errorf("rows changed with the batch's memory:\n got %#v\nwant %#v", got, rows)
	}
}

// TestAppendRowsSlice checks offsets: a sliced batch (as NewSlice or a
// DuckDB chunk gives) yields only its own rows, nested values included.
func TestAppendRowsSlice(t *testing.T) {
	mem := checkedMem(t)
	var rows []stream.Row
	for i := range 5 {
		r := kafkaRow([]byte{byte('a' + i)}, []byte{byte(i)}, int64(i))
		r["headers"] = []any{map[string]any{"key": strings.Repeat("h", i), "value": []byte{byte(i)}}}
		if i == 2 {
			r["headers"] = nil
		}
		rows = append(rows, r)
	}
	b := NewBuilder(mem, KafkaSchema(true))
	defer b.Release()
	for _, r := range rows {
		if err := b.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	part := rec.NewSlice(1, 4)
	defer part.Release()
	got, err := AppendRows(nil, part)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows[1:4]) {
		t.Errorf("slice rows:\n got %#v\nwant %#v", got, rows[1:4])
	}
}
