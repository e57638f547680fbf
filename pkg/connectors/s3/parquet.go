package s3

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/snappy"

	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/stream"
)

// colKind is a Parquet column's type as the sink infers it.
type colKind int

const (
	kindNull colKind = iota // only nulls so far
	kindBool
	kindInt
	kindDouble
	kindString
	kindBytes
	kindTime
	kindJSON
)

func (k colKind) node() parquet.Node {
	var n parquet.Node
	switch k {
	case kindBool:
		n = parquet.Leaf(parquet.BooleanType)
	case kindInt:
		n = parquet.Int(64)
	case kindDouble:
		n = parquet.Leaf(parquet.DoubleType)
	case kindBytes:
		n = parquet.Leaf(parquet.ByteArrayType)
	case kindTime:
		n = parquet.Timestamp(parquet.Microsecond)
	case kindJSON:
		n = parquet.JSON()
	default: // kindString, kindNull
		n = parquet.String()
	}
	return parquet.Optional(n)
}

// kindOf is the column kind of one value.
func kindOf(v any) colKind {
	switch v.(type) {
	case nil:
		return kindNull
	case bool:
		return kindBool
	case int64, int, int32:
		return kindInt
	case float64, float32:
		return kindDouble
	case string:
		return kindString
	case []byte:
		return kindBytes
	case time.Time:
		return kindTime
	case map[string]any, stream.Row, []any:
		return kindJSON
	}
	return kindString
}

// merge combines the kinds of two values of one column: integers and
// doubles make a double column; any other disagreement makes a string
// column holding each value's text.
func merge(a, b colKind) colKind {
	switch {
	case a == b || b == kindNull:
		return a
	case a == kindNull:
		return b
	case (a == kindInt && b == kindDouble) || (a == kindDouble && b == kindInt):
		return kindDouble
	}
	return kindString
}

// inferSchema types every field of rows (see the package documentation).
func inferSchema(rows []stream.Row) (*parquet.Schema, map[string]colKind) {
	kinds := map[string]colKind{}
	for _, r := range rows {
		for k, v := range r {
			prev, seen := kinds[k]
			if !seen {
				kinds[k] = kindOf(v)
				continue
			}
			kinds[k] = merge(prev, kindOf(v))
		}
	}
	group := parquet.Group{}
	for name, k := range kinds {
		group[name] = k.node()
	}
	return parquet.NewSchema("row", group), kinds
}

// writeParquet encodes rows as one Parquet file (one row group per 64 MiB
// of pages as parquet-go decides, Snappy compression) into out.
func writeParquet(out io.Writer, rows []stream.Row) error {
	schema, kinds := inferSchema(rows)
	cols := schema.Columns() // leaf paths, in the schema's (alphabetical) order
	names := make([]string, len(cols))
	for i, path := range cols {
		names[i] = path[0]
	}
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
	for i, r := range rows {
		pr := make(parquet.Row, len(names))
		for c, name := range names {
			v, err := parquetValue(r[name], kinds[name])
			if err != nil {
				return fmt.Errorf("row %d field %q: %w", i+1, name, err)
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
	if err := flush(); err != nil {
		return err
	}
	return w.Close()
}

// parquetValue converts v to a value of a column of kind k.
func parquetValue(v any, k colKind) (parquet.Value, error) {
	if v == nil {
		return parquet.NullValue(), nil
	}
	switch k {
	case kindBool:
		return parquet.BooleanValue(v.(bool)), nil
	case kindInt:
		switch x := v.(type) {
		case int64:
			return parquet.Int64Value(x), nil
		case int:
			return parquet.Int64Value(int64(x)), nil
		case int32:
			return parquet.Int64Value(int64(x)), nil
		}
	case kindDouble:
		switch x := v.(type) {
		case float64:
			return parquet.DoubleValue(x), nil
		case float32:
			return parquet.DoubleValue(float64(x)), nil
		case int64:
			return parquet.DoubleValue(float64(x)), nil
		case int:
			return parquet.DoubleValue(float64(x)), nil
		case int32:
			return parquet.DoubleValue(float64(x)), nil
		}
	case kindBytes:
		return parquet.ByteArrayValue(v.([]byte)), nil
	case kindTime:
		return parquet.Int64Value(v.(time.Time).UnixMicro()), nil
	case kindJSON:
		b, err := rowjson.AppendValue(nil, v)
		if err != nil {
			return parquet.Value{}, err
		}
		return parquet.ByteArrayValue(b), nil
	case kindString, kindNull:
		return parquet.ByteArrayValue([]byte(textOf(v))), nil
	}
	return parquet.Value{}, fmt.Errorf("%T does not fit the column", v)
}

// textOf renders a value of a column that mixes types.
func textOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return string(rowjson.AppendFloat(nil, x))
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	b, err := rowjson.AppendValue(nil, v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
