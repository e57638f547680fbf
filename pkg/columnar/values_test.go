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

// TestValueReaderMatchesAppendRows: every value a column's ValueReader
// reads is what AppendRows gives for the same batch.
func TestValueReaderMatchesAppendRows(t *testing.T) {
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
	for j := range int(rec.NumCols()) {
		name := rec.ColumnName(j)
		r, err := NewValueReader(name, rec.Column(j))
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range want {
			got, err := r(i)
			if err != nil || !cmp.Equal(got, w[name]) {
				t.Errorf("row %d: column %q = %#v, %v; want %#v", i, name, got, err, w[name])
			}
		}
	}
}

func TestValueReaderErrors(t *testing.T) {
	mem := checkedMem(t)
	ub := array.NewUint64Builder(mem)
	defer ub.Release()
	ub.AppendValues([]uint64{1, math.MaxUint64}, nil)
	u := ub.NewArray()
	defer u.Release()
	r, err := NewValueReader("u", u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r(1); err == nil || !strings.Contains(err.Error(), "overflows int64") {
		t.Errorf("reading MaxUint64: %v, want an overflow", err)
	}
	if v, err := r(0); v != int64(1) || err != nil {
		t.Errorf("reading 1 = %v, %v", v, err)
	}
	dup := arrow.NewSchema([]arrow.Field{{Name: "u", Type: u.DataType()}, {Name: "u", Type: u.DataType()}}, nil)
	if err := CheckColumnNames(dup); err == nil || !strings.Contains(err.Error(), `column "u": duplicate column name`) {
		t.Errorf("CheckColumnNames(duplicate columns) = %v", err)
	}
}
