package columnar

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/sluicehq/sluice/pkg/stream"
)

// AppendRows converts each row of rec to a stream.Row keyed by column name,
// appends them to dst and returns the extended slice. The values are copies:
// rec may live in memory DuckDB frees on Release, so no string or byte slice
// aliases its buffers and the caller may release rec as soon as this returns.
//
// A column of a type with no row mapping, a uint64 above MaxInt64, or two
// columns with the same name (which would silently drop one) is an error
// naming the column; dst is then returned with its original length.
func AppendRows(dst []stream.Row, rec arrow.RecordBatch) ([]stream.Row, error) {
	ncols := int(rec.NumCols())
	decs := make([]decodeFunc, ncols)
	names := make([]string, ncols)
	seen := make(map[string]bool, ncols)
	for j := range ncols {
		name := rec.ColumnName(j)
		if seen[name] {
			return dst, fmt.Errorf("rows from batch: column %q: duplicate column name", name)
		}
		seen[name] = true
		d, err := decoder(name, rec.Column(j))
		if err != nil {
			return dst, fmt.Errorf("rows from batch: %w", err)
		}
		decs[j], names[j] = d, name
	}
	start := len(dst)
	for i := range int(rec.NumRows()) {
		row := make(stream.Row, ncols)
		for j, d := range decs {
			v, err := d(i)
			if err != nil {
				clear(dst[start:])
				return dst[:start], fmt.Errorf("rows from batch: row %d: %w", i, err)
			}
			row[names[j]] = v
		}
		dst = append(dst, row)
	}
	return dst, nil
}

// decodeFunc returns the row value of element i of one array.
type decodeFunc func(i int) (any, error)

// decoder returns the decodeFunc for arr; path names arr in errors.
func decoder(path string, arr arrow.Array) (decodeFunc, error) {
	get, err := valueDecoder(path, arr)
	if err != nil {
		return nil, err
	}
	if _, ok := arr.(*array.Null); ok {
		return get, nil
	}
	return func(i int) (any, error) {
		if arr.IsNull(i) {
			return nil, nil
		}
		return get(i)
	}, nil
}

// val returns v as a value that cannot fail.
func val(v any) (any, error) { return v, nil }

// valueDecoder returns a decodeFunc that may assume element i is not null.
func valueDecoder(path string, arr arrow.Array) (decodeFunc, error) {
	switch a := arr.(type) {
	case *array.Null:
		return func(int) (any, error) { return nil, nil }, nil
	case *array.Boolean:
		return func(i int) (any, error) { return val(a.Value(i)) }, nil
	case *array.Int8:
		return func(i int) (any, error) { return val(int64(a.Value(i))) }, nil
	case *array.Int16:
		return func(i int) (any, error) { return val(int64(a.Value(i))) }, nil
	case *array.Int32:
		return func(i int) (any, error) { return val(int64(a.Value(i))) }, nil
	case *array.Int64:
		return func(i int) (any, error) { return val(a.Value(i)) }, nil
	case *array.Uint8:
		return func(i int) (any, error) { return val(int64(a.Value(i))) }, nil
	case *array.Uint16:
		return func(i int) (any, error) { return val(int64(a.Value(i))) }, nil
	case *array.Uint32:
		return func(i int) (any, error) { return val(int64(a.Value(i))) }, nil
	case *array.Uint64:
		return func(i int) (any, error) {
			v := a.Value(i)
			if v > math.MaxInt64 {
				return nil, fmt.Errorf("column %q: uint64 value %d overflows int64", path, v)
			}
			return int64(v), nil
		}, nil
	case *array.Float16:
		return func(i int) (any, error) { return val(float64(a.Value(i).Float32())) }, nil
	case *array.Float32:
		return func(i int) (any, error) { return val(float64(a.Value(i))) }, nil
	case *array.Float64:
		return func(i int) (any, error) { return val(a.Value(i)) }, nil

	// String and byte values alias the batch's buffers: copy them.
	case *array.String:
		return func(i int) (any, error) { return val(strings.Clone(a.Value(i))) }, nil
	case *array.LargeString:
		return func(i int) (any, error) { return val(strings.Clone(a.Value(i))) }, nil
	case *array.StringView:
		return func(i int) (any, error) { return val(strings.Clone(a.Value(i))) }, nil
	case *array.Binary:
		return func(i int) (any, error) { return val(cloneBytes(a.Value(i))) }, nil
	case *array.LargeBinary:
		return func(i int) (any, error) { return val(cloneBytes(a.Value(i))) }, nil
	case *array.BinaryView:
		return func(i int) (any, error) { return val(cloneBytes(a.Value(i))) }, nil
	case *array.FixedSizeBinary:
		return func(i int) (any, error) { return val(cloneBytes(a.Value(i))) }, nil

	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return func(i int) (any, error) { return val(a.Value(i).ToTime(unit)) }, nil
	case *array.Date32:
		return func(i int) (any, error) { return val(a.Value(i).ToTime()) }, nil
	case *array.Date64:
		// Date64 should hold midnights; truncate in case a writer did not.
		return func(i int) (any, error) { return val(a.Value(i).ToTime().Truncate(24 * time.Hour)) }, nil
	case *array.Time32:
		unit := a.DataType().(*arrow.Time32Type).Unit
		return func(i int) (any, error) { return val(a.Value(i).ToTime(unit).Format(timeOfDay)) }, nil
	case *array.Time64:
		unit := a.DataType().(*arrow.Time64Type).Unit
		return func(i int) (any, error) { return val(a.Value(i).ToTime(unit).Format(timeOfDay)) }, nil
	case *array.Duration:
		mult := a.DataType().(*arrow.DurationType).Unit.Multiplier()
		return func(i int) (any, error) {
			v := int64(a.Value(i))
			if v > math.MaxInt64/int64(mult) || v < math.MinInt64/int64(mult) {
				return nil, fmt.Errorf("column %q: duration %d%s overflows time.Duration", path, v, a.DataType().(*arrow.DurationType).Unit)
			}
			return (time.Duration(v) * mult).String(), nil
		}, nil
	case *array.MonthInterval:
		return func(i int) (any, error) { return val(isoInterval(int64(a.Value(i)), 0, 0)) }, nil
	case *array.DayTimeInterval:
		return func(i int) (any, error) {
			v := a.Value(i)
			return isoInterval(0, int64(v.Days), int64(v.Milliseconds)*int64(time.Millisecond)), nil
		}, nil
	case *array.MonthDayNanoInterval:
		return func(i int) (any, error) {
			v := a.Value(i)
			return isoInterval(int64(v.Months), int64(v.Days), v.Nanoseconds), nil
		}, nil

	case *array.Decimal32:
		scale := a.DataType().(*arrow.Decimal32Type).Scale
		return func(i int) (any, error) {
			v := a.Value(i)
			return decimalValue(scale, v.ToFloat64(scale), func() *big.Int { return big.NewInt(int64(v)) }), nil
		}, nil
	case *array.Decimal64:
		scale := a.DataType().(*arrow.Decimal64Type).Scale
		return func(i int) (any, error) {
			v := a.Value(i)
			return decimalValue(scale, v.ToFloat64(scale), func() *big.Int { return big.NewInt(int64(v)) }), nil
		}, nil
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return func(i int) (any, error) {
			v := a.Value(i)
			// DuckDB's SUM over integers is HUGEINT, exported as
			// decimal128(38, 0): the common case, kept free of big.Int.
			if scale == 0 {
				if n, fits := decimal128Int64(v); fits {
					return n, nil
				}
			}
			return decimalValue(scale, v.ToFloat64(scale), v.BigInt), nil
		}, nil
	case *array.Decimal256:
		scale := a.DataType().(*arrow.Decimal256Type).Scale
		return func(i int) (any, error) {
			v := a.Value(i)
			return decimalValue(scale, v.ToFloat64(scale), v.BigInt), nil
		}, nil

	case *array.Map: // before ListLike: a map is a list of key/item structs
		return mapDecoder(path, a)
	case array.ListLike:
		elems, err := decoder(path+"[]", a.ListValues())
		if err != nil {
			return nil, err
		}
		return func(i int) (any, error) {
			start, end := a.ValueOffsets(i)
			out := make([]any, 0, end-start)
			for k := start; k < end; k++ {
				v, err := elems(int(k))
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			return out, nil
		}, nil
	case *array.Struct:
		st := a.DataType().(*arrow.StructType)
		fields := make([]decodeFunc, a.NumField())
		for k := range fields {
			d, err := decoder(path+"."+st.Field(k).Name, a.Field(k))
			if err != nil {
				return nil, err
			}
			fields[k] = d
		}
		return func(i int) (any, error) {
			out := make(map[string]any, len(fields))
			for k, d := range fields {
				v, err := d(i)
				if err != nil {
					return nil, err
				}
				out[st.Field(k).Name] = v
			}
			return out, nil
		}, nil
	case *array.Dictionary:
		values, err := decoder(path, a.Dictionary())
		if err != nil {
			return nil, err
		}
		return func(i int) (any, error) { return values(a.GetValueIndex(i)) }, nil
	case array.ExtensionArray:
		return valueDecoder(path, a.Storage())
	}
	return nil, fmt.Errorf("column %q: unsupported type %s", path, arr.DataType())
}

// mapDecoder gives a map with string keys as map[string]any, the natural
// row shape. Other keys cannot be map[string]any keys, so those maps become
// []any of {"key", "value"} entries, as Spark's map_entries shows them.
func mapDecoder(path string, a *array.Map) (decodeFunc, error) {
	keys, err := decoder(path+".key", a.Keys())
	if err != nil {
		return nil, err
	}
	items, err := decoder(path+".value", a.Items())
	if err != nil {
		return nil, err
	}
	stringKeys := isString(a.DataType().(*arrow.MapType).KeyType())
	return func(i int) (any, error) {
		start, end := a.ValueOffsets(i)
		var m map[string]any
		var entries []any
		if stringKeys {
			m = make(map[string]any, end-start)
		} else {
			entries = make([]any, 0, end-start)
		}
		for k := start; k < end; k++ {
			key, err := keys(int(k))
			if err != nil {
				return nil, err
			}
			item, err := items(int(k))
			if err != nil {
				return nil, err
			}
			if stringKeys {
				m[key.(string)] = item
			} else {
				entries = append(entries, map[string]any{"key": key, "value": item})
			}
		}
		if stringKeys {
			return m, nil
		}
		return entries, nil
	}, nil
}

// timeOfDay is the layout of time32 and time64 values: microseconds are
// the finest unit SQL engines agree on.
const timeOfDay = "15:04:05.000000"

// cloneBytes copies b, keeping an empty value non-nil: only a null is nil.
func cloneBytes(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	return out
}

func decimal128Int64(v decimal128.Num) (int64, bool) {
	hi, lo := v.HighBits(), v.LowBits()
	if (hi == 0 && lo <= math.MaxInt64) || (hi == -1 && lo > math.MaxInt64) {
		return int64(lo), true
	}
	return 0, false
}

// decimalValue maps a decimal to a row value. With a positive scale it has a
// fraction and becomes a float64 (approximate, as JSON and most sinks would
// make it anyway). With scale 0 or below it is an integer: an int64 when it
// fits, else a float64, because rows have no wider integer type.
func decimalValue(scale int32, f float64, unscaled func() *big.Int) any {
	if scale > 0 {
		return f
	}
	n := unscaled()
	if scale < 0 {
		n.Mul(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-scale)), nil))
	}
	if n.IsInt64() {
		return n.Int64()
	}
	return f
}

// isoInterval renders an interval in ISO 8601 duration form ("P1M2DT3.5S"),
// which DuckDB, Postgres and Java all parse. Components keep their own sign,
// as Arrow stores them separately.
func isoInterval(months, days, nanos int64) string {
	var sb strings.Builder
	sb.WriteByte('P')
	if months != 0 {
		sb.WriteString(strconv.FormatInt(months, 10) + "M")
	}
	if days != 0 {
		sb.WriteString(strconv.FormatInt(days, 10) + "D")
	}
	if nanos != 0 || (months == 0 && days == 0) {
		sb.WriteByte('T')
		sign := ""
		if nanos < 0 {
			sign = "-"
		}
		u := uint64(nanos)
		if nanos < 0 {
			u = -u
		}
		s := strconv.FormatUint(u/1e9, 10)
		if frac := u % 1e9; frac != 0 {
			s += "." + strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
		}
		sb.WriteString(sign + s + "S")
	}
	return sb.String()
}
