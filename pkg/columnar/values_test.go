package columnar

import (
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

// TestRowFieldsMatchAppendRows: every field RowFields reads, and every row
// it builds, is what AppendRows gives for the same batch.
func TestRowFieldsMatchAppendRows(t *testing.T) {
	mem := checkedMem(t)
	s := arrow.NewSchema([]arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "topic", Type: arrow.BinaryTypes.String},
		{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
	}, nil)
	rows := []stream.Row{
		{"key": []byte("k"), "value": []byte{}, "topic": "t", "n": int64(1), "tags": []any{"a"}},
		{"topic": "u", "tags": []any{}},
	}
	b := NewBuilder(mem, s)
	defer b.Release()
	for _, r := range rows {
		if err := b.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	want, err := AppendRows(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewRowFields(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		f.At(i)
		for name, v := range w {
			got, ok := f.Field(name)
			if !ok || !cmp.Equal(got, v) {
				t.Errorf("row %d: Field(%q) = %#v, %v; want %#v", i, name, got, ok, v)
			}
		}
		if _, ok := f.Field("missing"); ok {
			t.Errorf("row %d: Field(missing) found", i)
		}
		if diff := cmp.Diff(w, f.Row()); diff != "" || f.Err() != nil {
			t.Errorf("row %d: Row() (-AppendRows +RowFields):\n%s (err %v)", i, diff, f.Err())
		}
	}
}

func TestRowFieldsErrors(t *testing.T) {
	mem := checkedMem(t)
	ub := array.NewUint64Builder(mem)
	defer ub.Release()
	ub.AppendValues([]uint64{1, math.MaxUint64}, nil)
	u := ub.NewArray()
	defer u.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "u", Type: u.DataType()}}, nil), []arrow.Array{u}, 2)
	defer rec.Release()
	f, err := NewRowFields(rec)
	if err != nil {
		t.Fatal(err)
	}
	f.At(1)
	if _, ok := f.Field("u"); !ok || f.Err() == nil || !strings.Contains(f.Err().Error(), "overflows int64") {
		t.Errorf("Field(u) of MaxUint64: Err() = %v, want an overflow", f.Err())
	}
	f.At(0)
	if v, _ := f.Field("u"); v != int64(1) || f.Err() != nil {
		t.Errorf("after At(0): Field(u) = %v, Err() = %v", v, f.Err())
	}

	dup := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "u", Type: u.DataType()}, {Name: "u", Type: u.DataType()}}, nil), []arrow.Array{u, u}, 2)
	defer dup.Release()
	if _, err := NewRowFields(dup); err == nil || !strings.Contains(err.Error(), `column "u": duplicate column name`) {
		t.Errorf("NewRowFields(duplicate columns) = %v", err)
	}
}
