package columnar

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/stream"
)

// ValueReader returns element i of one array as the row value AppendRows
// would put in a row (see the package documentation): nil for a null,
// copies of strings and byte slices. It lets a sink read the few columns
// an expression needs, one row at a time, without a row map per record.
type ValueReader func(i int) (any, error)

// NewValueReader returns the ValueReader of arr; name is the column's name
// for errors. A type with no row mapping is an error naming the column.
// The reader reads arr, which must outlive its use.
func NewValueReader(name string, arr arrow.Array) (ValueReader, error) {
	d, err := decoder(name, arr)
	if err != nil {
		return nil, err
	}
	return ValueReader(d), nil
}

// CheckColumnNames returns an error naming the first column name s
// holds twice: a row would silently keep only one of them, so every
// conversion of a batch to rows, or to a sink's records, refuses it.
func CheckColumnNames(s *arrow.Schema) error {
	seen := make(map[string]bool, s.NumFields())
	for _, f := range s.Fields() {
		if seen[f.Name] {
			return fmt.Errorf("column %q: duplicate column name", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// RowFields reads the fields of a batch's rows one at a time, as the rows
// AppendRows makes of the batch hold them, for expressions that read a few
// fields of each row (it has the methods of transform.Fields). Select a
// row with At. It reads the batch, which must outlive it, and is not safe
// for concurrent use.
type RowFields struct {
	rec     arrow.RecordBatch
	index   map[string]int
	readers []ValueReader
	row     int
	err     error
}

// NewRowFields returns the RowFields of rec, at row 0. As AppendRows, it
// refuses a batch with two columns of one name or a column of a type with
// no row mapping.
func NewRowFields(rec arrow.RecordBatch) (*RowFields, error) {
	if err := CheckColumnNames(rec.Schema()); err != nil {
		return nil, fmt.Errorf("rows from batch: %w", err)
	}
	f := &RowFields{rec: rec, index: make(map[string]int, rec.NumCols()), readers: make([]ValueReader, rec.NumCols())}
	for j := range int(rec.NumCols()) {
		r, err := NewValueReader(rec.ColumnName(j), rec.Column(j))
		if err != nil {
			return nil, fmt.Errorf("rows from batch: %w", err)
		}
		f.index[rec.ColumnName(j)], f.readers[j] = j, r
	}
	return f, nil
}

// At selects row i and clears Err.
func (f *RowFields) At(i int) { f.row, f.err = i, nil }

// Field returns the named column's value in the selected row; ok is false
// when the batch has no such column. A value that has no row value (a
// uint64 above MaxInt64) reads as nil and sets Err.
func (f *RowFields) Field(name string) (any, bool) {
	j, ok := f.index[name]
	if !ok {
		return nil, false
	}
	v, err := f.readers[j](f.row)
	if err != nil && f.err == nil {
		f.err = fmt.Errorf("rows from batch: row %d: %w", f.row, err)
	}
	return v, true
}

// Row returns the selected row as AppendRows makes it. A failure sets
// Err.
func (f *RowFields) Row() stream.Row {
	row := make(stream.Row, len(f.readers))
	for j, r := range f.readers {
		v, err := r(f.row)
		if err != nil && f.err == nil {
			f.err = fmt.Errorf("rows from batch: row %d: %w", f.row, err)
		}
		row[f.rec.ColumnName(j)] = v
	}
	return row
}

// Err is the first failure to read a value since At.
func (f *RowFields) Err() error { return f.err }
