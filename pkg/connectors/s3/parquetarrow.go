package s3

import (
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"

	"github.com/sluicehq/sluice/pkg/columnar"
)

// writeParquetArrow encodes the rows of parts as one Parquet file: the file
// writeParquet writes for the rows columnar.AppendRows makes of them, byte
// for byte (same inferred schema, same values), read from the columns.
// The schema stays the documented, inferred one rather than the batch's
// own Arrow types (pqarrow), so that an object's columns do not depend on
// whether the job's transforms were SQL.
func writeParquetArrow(out io.Writer, parts []arrowPart) error {
	kinds := map[string]colKind{}
	for _, p := range parts {
		for j, f := range p.rec.Schema().Fields() {
			k, err := arrowKind(f.Name, p.rec.Column(j), p)
			if err != nil {
				return err
			}
			if prev, seen := kinds[f.Name]; seen {
				k = merge(prev, k)
			}
			kinds[f.Name] = k
		}
	}
	group := parquet.Group{}
	for name, k := range kinds {
		group[name] = k.node()
	}
	schema := parquet.NewSchema("row", group)
	cols := schema.Columns()
	w := parquet.NewWriter(out, schema, parquet.Compression(&snappy.Codec{}),
		parquet.CreatedBy("sluice", "", ""))
	buf := make([]parquet.Row, 0, 512)
	flush := func() error {
		if _, err := w.WriteRows(buf); err != nil {
			return err
		}
		buf = buf[:0]
		return nil
	}
	n := 0 // rows so far, for errors
	for _, p := range parts {
		vals := make([]parquetColumn, len(cols))
		for c, path := range cols {
			name := path[0]
			j := p.rec.Schema().FieldIndices(name)
			if len(j) == 0 {
				vals[c] = func(int) (parquet.Value, error) { return parquet.NullValue(), nil }
				continue
			}
			v, err := parquetColumnOf(name, p.rec.Column(j[0]), kinds[name])
			if err != nil {
				return err
			}
			vals[c] = v
		}
		for k := range p.len() {
			i := p.row(k)
			n++
			pr := make(parquet.Row, len(cols))
			for c, value := range vals {
				v, err := value(i)
				if err != nil {
					return fmt.Errorf("row %d field %q: %w", n, cols[c][0], err)
				}
				if v.IsNull() {
					pr[c] = v.Level(0, 0, c)
				} else {
					pr[c] = v.Level(0, 1, c)
				}
			}
			buf = append(buf, pr)
			if len(buf) == cap(buf) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return w.Close()
}

// parquetColumn gives the Parquet value of row i of one column.
type parquetColumn func(i int) (parquet.Value, error)

// parquetColumnOf reads arr as a column of kind k: straight from the array
// for the common types when k is their own kind, else through the row
// value and parquetValue, as the row path converts it.
func parquetColumnOf(name string, arr arrow.Array, k colKind) (parquetColumn, error) {
	static, exact := staticKind(arr.DataType())
	if exact && static == k {
		var get parquetColumn
		switch a := arr.(type) {
		case *array.Boolean:
			get = func(i int) (parquet.Value, error) { return parquet.BooleanValue(a.Value(i)), nil }
		case *array.Int64:
			get = func(i int) (parquet.Value, error) { return parquet.Int64Value(a.Value(i)), nil }
		case *array.Int32:
			get = func(i int) (parquet.Value, error) { return parquet.Int64Value(int64(a.Value(i))), nil }
		case *array.Float64:
			get = func(i int) (parquet.Value, error) { return parquet.DoubleValue(a.Value(i)), nil }
		case *array.String:
			get = func(i int) (parquet.Value, error) { return parquet.ByteArrayValue([]byte(a.Value(i))), nil }
		case *array.Binary:
			get = func(i int) (parquet.Value, error) { return parquet.ByteArrayValue(nonNil(a.Value(i))), nil }
		case *array.Timestamp:
			unit := a.DataType().(*arrow.TimestampType).Unit
			get = func(i int) (parquet.Value, error) {
				return parquet.Int64Value(a.Value(i).ToTime(unit).UnixMicro()), nil
			}
		}
		if get != nil {
			return func(i int) (parquet.Value, error) {
				if arr.IsNull(i) {
					return parquet.NullValue(), nil
				}
				return get(i)
			}, nil
		}
	}
	read, err := columnar.NewValueReader(name, arr)
	if err != nil {
		return nil, err
	}
	return func(i int) (parquet.Value, error) {
		v, err := read(i)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquetValue(v, k)
	}, nil
}

// nonNil keeps an empty value apart from a null, as a row's copied []byte
// is.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// arrowKind is the kind inferSchema gives the column from the part's rows'
// values: kindNull when they are all null, else the type's kind, or, for
// types whose row values vary in type (integral decimals: int64 or, when
// too big, float64), the kinds of the values merged.
func arrowKind(name string, arr arrow.Array, p arrowPart) (colKind, error) {
	static, exact := staticKind(arr.DataType())
	if exact {
		if static == kindNull || arr.NullN() == arr.Len() {
			return kindNull, nil
		}
		if arr.NullN() == 0 {
			return static, nil
		}
		for k := range p.len() {
			if !arr.IsNull(p.row(k)) {
				return static, nil
			}
		}
		return kindNull, nil
	}
	read, err := columnar.NewValueReader(name, arr)
	if err != nil {
		return 0, err
	}
	kind := kindNull
	for k := range p.len() {
		v, err := read(p.row(k))
		if err != nil {
			return 0, err
		}
		kind = merge(kind, kindOf(v))
	}
	return kind, nil
}

// staticKind is the kind of every non-null row value of an Arrow type
// (exact), or false when the values' kinds vary and must be looked at.
func staticKind(t arrow.DataType) (colKind, bool) {
	switch t.ID() {
	case arrow.NULL:
		return kindNull, true
	case arrow.BOOL:
		return kindBool, true
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64, arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		return kindInt, true
	case arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return kindDouble, true
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW,
		arrow.TIME32, arrow.TIME64, arrow.DURATION,
		arrow.INTERVAL_MONTHS, arrow.INTERVAL_DAY_TIME, arrow.INTERVAL_MONTH_DAY_NANO:
		return kindString, true
	case arrow.BINARY, arrow.LARGE_BINARY, arrow.BINARY_VIEW, arrow.FIXED_SIZE_BINARY:
		return kindBytes, true
	case arrow.TIMESTAMP, arrow.DATE32, arrow.DATE64:
		return kindTime, true
	case arrow.LIST, arrow.LARGE_LIST, arrow.FIXED_SIZE_LIST, arrow.LIST_VIEW, arrow.LARGE_LIST_VIEW, arrow.STRUCT, arrow.MAP:
		return kindJSON, true
	case arrow.DECIMAL32, arrow.DECIMAL64, arrow.DECIMAL128, arrow.DECIMAL256:
		if t.(arrow.DecimalType).GetScale() > 0 {
			return kindDouble, true
		}
	}
	return kindNull, false
}
