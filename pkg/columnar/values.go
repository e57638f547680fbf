package columnar

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
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
