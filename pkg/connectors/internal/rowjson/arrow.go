package rowjson

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/sluicehq/sluice/pkg/columnar"
)

// Dialect is the JSON a row becomes.
type Dialect int

const (
	// Lines is this package's encoding (Encoder, Append): the file, S3 and
	// Kafka sinks' lines.
	Lines Dialect = iota
	// Std is what encoding/json's Marshal makes of the row map: keys
	// sorted, <, > and & escaped, floats without a forced fraction, NaN,
	// infinities and years outside 0-9999 refused. The Kinesis sink's
	// default data has always been that.
	Std
)

// ArrowEncoder appends the rows of Arrow record batches as JSON objects:
// byte for byte what Encoder (or, with Std, json.Marshal) appends for the
// rows columnar.AppendRows makes of the same batch, but read straight from
// the columns, so that no map, boxed value or copied string is made per
// record. Bind it to a batch, then Append row by row.
type ArrowEncoder struct {
	// Columns, when set, come first in that order (Lines only; Std sorts
	// every key as encoding/json does).
	Columns []string
	Dialect Dialect
}

// ArrowRows appends the rows of one batch. It reads the batch, which must
// outlive it; it is not safe for concurrent use.
type ArrowRows struct {
	fields []arrowField
	n      int
}

type arrowField struct {
	prefix []byte // `{"name":` or `,"name":`
	app    appendFunc
}

// appendFunc appends element i of an array as JSON.
type appendFunc func(b []byte, i int) ([]byte, error)

// Bind prepares the encoding of rec's rows. A column of a type with no row
// mapping, or two columns with the same name, is an error naming it.
func (e *ArrowEncoder) Bind(rec arrow.RecordBatch) (*ArrowRows, error) {
	if err := columnar.CheckColumnNames(rec.Schema()); err != nil {
		return nil, err
	}
	ncols := int(rec.NumCols())
	order := make([]int, 0, ncols)
	if e.Dialect == Lines && len(e.Columns) > 0 {
		// As Encoder.Append: the given columns that the row holds, then
		// the others, sorted.
		placed := make([]bool, ncols)
		for _, c := range e.Columns {
			for j := range ncols {
				if !placed[j] && rec.ColumnName(j) == c {
					placed[j] = true
					order = append(order, j)
					break
				}
			}
		}
		extra := len(order)
		for j := range ncols {
			if !placed[j] {
				order = append(order, j)
			}
		}
		slices.SortFunc(order[extra:], func(a, b int) int { return cmp.Compare(rec.ColumnName(a), rec.ColumnName(b)) })
	} else {
		for j := range ncols {
			order = append(order, j)
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(rec.ColumnName(a), rec.ColumnName(b)) })
	}
	r := &ArrowRows{fields: make([]arrowField, len(order)), n: int(rec.NumRows())}
	for k, j := range order {
		name := rec.ColumnName(j)
		app, err := arrowAppender(e.Dialect, name, rec.Column(j))
		if err != nil {
			return nil, err
		}
		sep := byte(',')
		if k == 0 {
			sep = '{'
		}
		prefix := append([]byte{sep}, e.Dialect.appendKey(nil, name)...)
		r.fields[k] = arrowField{prefix: append(prefix, ':'), app: app}
	}
	return r, nil
}

// Len is the number of rows of the bound batch.
func (r *ArrowRows) Len() int { return r.n }

// Append appends row i as one JSON object. An error names the field, as a
// path for nested ones.
func (r *ArrowRows) Append(b []byte, i int) ([]byte, error) {
	if len(r.fields) == 0 {
		return append(b, "{}"...), nil
	}
	for _, f := range r.fields {
		b = append(b, f.prefix...)
		var err error
		if b, err = f.app(b, i); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
	}
	return append(b, '}'), nil
}

func (d Dialect) appendKey(b []byte, s string) []byte {
	if d == Std {
		return appendStdString(b, s)
	}
	return appendString(b, s)
}

// appendString appends s as the dialect writes strings.
func (d Dialect) appendString(b []byte, s string) []byte { return d.appendKey(b, s) }

func (d Dialect) appendFloat(b []byte, f float64) ([]byte, error) {
	if d == Lines {
		return appendFloat(b, f), nil
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

func (d Dialect) appendTime(b []byte, t time.Time) ([]byte, error) {
	if d == Std {
		// time.Time.MarshalJSON's limit.
		if y := t.Year(); y < 0 || y >= 10000 {
			return nil, errors.New("json: Time.MarshalJSON: year outside of range [0,9999]")
		}
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendValue appends a row value (as a ValueReader gives it) in the
// dialect.
func (d Dialect) appendValue(b []byte, v any) ([]byte, error) {
	if d == Lines {
		return appendValue(b, v)
	}
	// The values a ValueReader gives for the types arrowAppender leaves to
	// it (times of day, durations and intervals are strings, decimals
	// int64 or float64).
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendStdString(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case float64:
		return d.appendFloat(b, x)
	}
	return nil, fmt.Errorf("unexpected row value %T", v)
}

// arrowAppender returns the appendFunc of arr; path names it in errors. It
// mirrors columnar's decoder: each case appends what appendValue appends
// for the value that decoder gives.
func arrowAppender(d Dialect, path string, arr arrow.Array) (appendFunc, error) {
	app, err := valueAppender(d, path, arr)
	if err != nil {
		return nil, err
	}
	if _, ok := arr.(*array.Null); ok || arr.NullN() == 0 {
		return app, nil
	}
	return func(b []byte, i int) ([]byte, error) {
		if arr.IsNull(i) {
			return append(b, "null"...), nil
		}
		return app(b, i)
	}, nil
}

// valueAppender returns an appendFunc that may assume element i is not
// null.
func valueAppender(d Dialect, path string, arr arrow.Array) (appendFunc, error) {
	switch a := arr.(type) {
	case *array.Null:
		return func(b []byte, _ int) ([]byte, error) { return append(b, "null"...), nil }, nil
	case *array.Boolean:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendBool(b, a.Value(i)), nil }, nil
	case *array.Int8:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendInt(b, int64(a.Value(i)), 10), nil }, nil
	case *array.Int16:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendInt(b, int64(a.Value(i)), 10), nil }, nil
	case *array.Int32:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendInt(b, int64(a.Value(i)), 10), nil }, nil
	case *array.Int64:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendInt(b, a.Value(i), 10), nil }, nil
	case *array.Uint8:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendUint(b, uint64(a.Value(i)), 10), nil }, nil
	case *array.Uint16:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendUint(b, uint64(a.Value(i)), 10), nil }, nil
	case *array.Uint32:
		return func(b []byte, i int) ([]byte, error) { return strconv.AppendUint(b, uint64(a.Value(i)), 10), nil }, nil
	case *array.Uint64:
		return func(b []byte, i int) ([]byte, error) {
			v := a.Value(i)
			if v > math.MaxInt64 {
				// Rows have no unsigned 64-bit integers: AppendRows refuses it too.
				return nil, fmt.Errorf("column %q: uint64 value %d overflows int64", path, v)
			}
			return strconv.AppendUint(b, v, 10), nil
		}, nil
	case *array.Float16:
		return func(b []byte, i int) ([]byte, error) { return d.appendFloat(b, float64(a.Value(i).Float32())) }, nil
	case *array.Float32:
		return func(b []byte, i int) ([]byte, error) { return d.appendFloat(b, float64(a.Value(i))) }, nil
	case *array.Float64:
		return func(b []byte, i int) ([]byte, error) { return d.appendFloat(b, a.Value(i)) }, nil

	// Strings and bytes are read in place: nothing is kept.
	case *array.String:
		return func(b []byte, i int) ([]byte, error) { return d.appendString(b, a.Value(i)), nil }, nil
	case *array.LargeString:
		return func(b []byte, i int) ([]byte, error) { return d.appendString(b, a.Value(i)), nil }, nil
	case *array.StringView:
		return func(b []byte, i int) ([]byte, error) { return d.appendString(b, a.Value(i)), nil }, nil
	case *array.Binary:
		return func(b []byte, i int) ([]byte, error) { return appendBase64(b, a.Value(i)), nil }, nil
	case *array.LargeBinary:
		return func(b []byte, i int) ([]byte, error) { return appendBase64(b, a.Value(i)), nil }, nil
	case *array.BinaryView:
		return func(b []byte, i int) ([]byte, error) { return appendBase64(b, a.Value(i)), nil }, nil
	case *array.FixedSizeBinary:
		return func(b []byte, i int) ([]byte, error) { return appendBase64(b, a.Value(i)), nil }, nil

	case *array.Timestamp:
		unit := a.DataType().(*arrow.TimestampType).Unit
		return func(b []byte, i int) ([]byte, error) { return d.appendTime(b, a.Value(i).ToTime(unit)) }, nil
	case *array.Date32:
		return func(b []byte, i int) ([]byte, error) { return d.appendTime(b, a.Value(i).ToTime()) }, nil
	case *array.Date64:
		return func(b []byte, i int) ([]byte, error) {
			return d.appendTime(b, a.Value(i).ToTime().Truncate(24*time.Hour))
		}, nil
	case *array.Decimal128:
		if a.DataType().(*arrow.Decimal128Type).Scale == 0 {
			// DuckDB's HUGEINT (SUM over integers): mostly fits int64.
			slow, err := valueOf(d, path, arr)
			if err != nil {
				return nil, err
			}
			return func(b []byte, i int) ([]byte, error) {
				if n, ok := decimal128Int64(a.Value(i)); ok {
					return strconv.AppendInt(b, n, 10), nil
				}
				return slow(b, i)
			}, nil
		}

	case *array.Map: // before ListLike: a map is a list of key/item structs
		return mapAppender(d, path, a)
	case array.ListLike:
		elems, err := arrowAppender(d, path+"[]", a.ListValues())
		if err != nil {
			return nil, err
		}
		return func(b []byte, i int) ([]byte, error) {
			start, end := a.ValueOffsets(i)
			b = append(b, '[')
			for k := start; k < end; k++ {
				if k > start {
					b = append(b, ',')
				}
				var err error
				if b, err = elems(b, int(k)); err != nil {
					return nil, err
				}
			}
			return append(b, ']'), nil
		}, nil
	case *array.Struct:
		return structAppender(d, path, a)
	case *array.Dictionary:
		values, err := arrowAppender(d, path, a.Dictionary())
		if err != nil {
			return nil, err
		}
		return func(b []byte, i int) ([]byte, error) { return values(b, a.GetValueIndex(i)) }, nil
	case array.ExtensionArray:
		return valueAppender(d, path, a.Storage())
	}
	// The rare types (times of day, durations, intervals, decimals with a
	// scale): the row value, encoded. Unsupported types fail here.
	return valueOf(d, path, arr)
}

// valueOf appends what columnar's ValueReader gives.
func valueOf(d Dialect, path string, arr arrow.Array) (appendFunc, error) {
	read, err := columnar.NewValueReader(path, arr)
	if err != nil {
		return nil, err
	}
	return func(b []byte, i int) ([]byte, error) {
		v, err := read(i)
		if err != nil {
			return nil, err
		}
		return d.appendValue(b, v)
	}, nil
}

// structAppender writes a struct as the map[string]any it is in a row:
// fields sorted by name, and of two fields with one name the later, which
// overwrites the earlier in the map.
func structAppender(d Dialect, path string, a *array.Struct) (appendFunc, error) {
	st := a.DataType().(*arrow.StructType)
	order := make([]int, a.NumField())
	for k := range order {
		order[k] = k
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(st.Field(x).Name, st.Field(y).Name) })
	kept := order[:0]
	for k, f := range order {
		if k+1 < len(order) && st.Field(order[k+1]).Name == st.Field(f).Name {
			continue
		}
		kept = append(kept, f)
	}
	fields := make([]arrowField, len(kept))
	for k, f := range kept {
		name := st.Field(f).Name
		app, err := arrowAppender(d, path+"."+name, a.Field(f))
		if err != nil {
			return nil, err
		}
		sep := byte(',')
		if k == 0 {
			sep = '{'
		}
		prefix := append([]byte{sep}, d.appendKey(nil, name)...)
		fields[k] = arrowField{prefix: append(prefix, ':'), app: app}
	}
	return func(b []byte, i int) ([]byte, error) {
		if len(fields) == 0 {
			return append(b, "{}"...), nil
		}
		for _, f := range fields {
			b = append(b, f.prefix...)
			var err error
			if b, err = f.app(b, i); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}, nil
}

// mapAppender writes a map with string keys as the map[string]any it is in
// a row (keys sorted, the last of equal keys winning), and other maps as
// their list of {"key", "value"} entries.
func mapAppender(d Dialect, path string, a *array.Map) (appendFunc, error) {
	items, err := arrowAppender(d, path+".value", a.Items())
	if err != nil {
		return nil, err
	}
	var keyAt func(k int) string
	switch keys := a.Keys().(type) {
	case *array.String:
		keyAt = keys.Value
	case *array.LargeString:
		keyAt = keys.Value
	case *array.StringView:
		keyAt = keys.Value
	}
	if keyAt == nil {
		keys, err := arrowAppender(d, path+".key", a.Keys())
		if err != nil {
			return nil, err
		}
		return func(b []byte, i int) ([]byte, error) {
			start, end := a.ValueOffsets(i)
			b = append(b, '[')
			for k := start; k < end; k++ {
				if k > start {
					b = append(b, ',')
				}
				b = append(b, `{"key":`...)
				var err error
				if b, err = keys(b, int(k)); err != nil {
					return nil, err
				}
				b = append(b, `,"value":`...)
				if b, err = items(b, int(k)); err != nil {
					return nil, err
				}
				b = append(b, '}')
			}
			return append(b, ']'), nil
		}, nil
	}
	var order []int // reused: the encoder is used by one goroutine
	return func(b []byte, i int) ([]byte, error) {
		start, end := a.ValueOffsets(i)
		order = order[:0]
		for k := int(start); k < int(end); k++ {
			order = append(order, k)
		}
		slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(keyAt(x), keyAt(y)) })
		b = append(b, '{')
		first := true
		for n, k := range order {
			if n+1 < len(order) && keyAt(order[n+1]) == keyAt(k) {
				continue // a later entry of the same key wins
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = d.appendKey(b, keyAt(k))
			b = append(b, ':')
			var err error
			if b, err = items(b, k); err != nil {
				return nil, fmt.Errorf("field %q: %w", keyAt(k), err)
			}
		}
		return append(b, '}'), nil
	}, nil
}

func appendBase64(b, v []byte) []byte {
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

func decimal128Int64(v decimal128.Num) (int64, bool) {
	hi, lo := v.HighBits(), v.LowBits()
	if (hi == 0 && lo <= math.MaxInt64) || (hi == -1 && lo > math.MaxInt64) {
		return int64(lo), true
	}
	return 0, false
}

// appendStdString appends s as encoding/json does.
func appendStdString(b []byte, s string) []byte { return appendQuoted(b, s, true) }
