package columnar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/decimal256"
	"github.com/apache/arrow-go/v18/arrow/float16"
)

// RowCodecVersion is the first byte of every row a RowCodec encodes. The
// encodings are persisted (as keys and values of the state store), so the
// layout below must never change meaning: a change needs a new version, and
// Decode refuses versions it does not know instead of misreading them.
//
// # Layout, version 1
//
// A row is the version byte followed by the covered columns' values, in the
// codec's column order, with no separators and no column count: the schema
// says what comes next, and every value delimits itself, so the bytes of
// ("a", "bc") and ("ab", "c") differ. A value is
//
//	validity   1 byte: 0x00 null (nothing follows), 0x01 valid (the body follows)
//	body       by type:
//	  null                          none (only 0x00 is allowed)
//	  bool                          1 byte, 0x00 or 0x01
//	  int8, uint8                   1 byte
//	  int16, uint16, float16        2 bytes little-endian
//	  int32, uint32, date32, time32, month interval, decimal32
//	                                4 bytes little-endian
//	  int64, uint64, date64, time64, timestamp, duration, decimal64
//	                                8 bytes little-endian
//	  float32, float64              the IEEE 754 bits, 4 or 8 bytes little-endian
//	  day_time interval             days, milliseconds: 2 × 4 bytes little-endian
//	  month_day_nano interval       months, days (4 bytes), nanoseconds (8 bytes), little-endian
//	  decimal128                    16 bytes: low 64 bits, then high 64 bits, little-endian
//	  decimal256                    32 bytes: 4 × 64 bits, least significant first, little-endian
//	  string, large string, string view, binary, large binary, binary view
//	                                uvarint byte length, then the bytes
//	  fixed_size_binary(n)          the n bytes
//	  list, large list, list view, large list view
//	                                uvarint element count, then each element as a value
//	  fixed_size_list(n)            the n elements, each as a value
//	  struct                        each field as a value, in field order
//	  dictionary<int, string|binary>  the body of the dictionary's value
//
// Only the values are encoded, never the type: a timestamp's unit and zone,
// a decimal's precision and scale, field names and nullability come from the
// schema. Uvarints are encoding/binary's, and Decode refuses non-minimal ones,
// so every row has exactly one encoding and Decode followed by Append gives
// back the same bytes.
//
// Equal values give equal bytes, which is what makes the encoding a key.
// "Equal" is bitwise: -0.0 and 0.0, or two NaNs with different bits, are
// different keys, and so are a null list, an empty list and a list holding a
// null; the value under a null (a null struct's fields, a null fixed-size
// list's elements) is not encoded, so it never splits keys. A dictionary value
// encodes as the value it stands for, whatever its index, so batches with
// different dictionaries give the same keys; it encodes exactly as a column of
// the value type would. Nullability is not encoded either: declaring a column
// nullable or not does not change its bytes.
const RowCodecVersion byte = 1

// ErrUnsupportedType is wrapped by NewRowCodec's error for a column whose
// type (or a type nested in it) the codec cannot encode.
var ErrUnsupportedType = errors.New("unsupported type")

// ErrMalformedRow is wrapped by Decode's error for bytes that are not a row
// of the codec's columns: truncated, trailing, corrupt, or of an unknown
// version.
var ErrMalformedRow = errors.New("malformed encoded row")

const (
	nullByte  = 0x00
	validByte = 0x01
)

// RowCodec encodes the values of some columns of a schema, one row at a
// time, in the layout documented at RowCodecVersion. Group-by state uses one
// RowCodec for the key columns and one for the other columns. A RowCodec is
// safe for concurrent use.
type RowCodec struct {
	cols   []int
	names  []string
	types  []arrow.DataType
	values []valueCodec

	// checked is the last batch schema Append found to match, so that
	// checking column types costs once per batch rather than once per row.
	checked atomic.Pointer[arrow.Schema]
}

// NewRowCodec covers the columns cols (indexes into schema, in this order).
// A column whose type the codec cannot encode is refused with an error
// naming the column and its type, wrapping ErrUnsupportedType: callers turn
// it into a submit-time refusal rather than a failure on the first row.
func NewRowCodec(schema *arrow.Schema, cols []int) (*RowCodec, error) {
	c := &RowCodec{cols: append([]int(nil), cols...)}
	for _, col := range cols {
		if col < 0 || col >= schema.NumFields() {
			return nil, fmt.Errorf("row codec: column index %d out of range for %d columns", col, schema.NumFields())
		}
		f := schema.Field(col)
		v, err := newValueCodec(f.Type)
		if err != nil {
			return nil, fmt.Errorf("row codec: column %q of type %s: %w", f.Name, f.Type, err)
		}
		c.names = append(c.names, f.Name)
		c.types = append(c.types, f.Type)
		c.values = append(c.values, v)
	}
	return c, nil
}

// Append appends the encoding of row row of rec's covered columns to dst and
// returns the extended slice. rec must have the columns the codec was made
// for, at the same indexes and of the same types; otherwise, or if row is out
// of range, it returns an error and dst unchanged.
func (c *RowCodec) Append(dst []byte, rec arrow.RecordBatch, row int) ([]byte, error) {
	if row < 0 || int64(row) >= rec.NumRows() {
		return dst, fmt.Errorf("encode row: row %d out of range for %d rows", row, rec.NumRows())
	}
	if s := rec.Schema(); c.checked.Load() != s {
		if err := c.checkBatch(rec); err != nil {
			return dst, err
		}
		c.checked.Store(s)
	}
	dst = append(dst, RowCodecVersion)
	for i, col := range c.cols {
		dst = appendValue(dst, c.values[i], rec.Column(col), row)
	}
	return dst, nil
}

func (c *RowCodec) checkBatch(rec arrow.RecordBatch) error {
	for i, col := range c.cols {
		if col >= int(rec.NumCols()) {
			return fmt.Errorf("encode row: column %q: batch has only %d columns", c.names[i], rec.NumCols())
		}
		if t := rec.Column(col).DataType(); !arrow.TypeEqual(t, c.types[i]) {
			return fmt.Errorf("encode row: column %q: batch has type %s, codec %s", c.names[i], t, c.types[i])
		}
	}
	return nil
}

// Decode appends one encoded row to builders: the codec's i-th column goes
// to bs[i], which must be a builder of that column's type (for instance
// array.NewRecordBuilder(mem, schema).Field(col) for the same cols). Bytes
// that are truncated, have trailing data, are corrupt or of an unknown
// version give an error wrapping ErrMalformedRow, and never a panic.
//
// Decode checks the whole row before appending anything, so on error every
// builder keeps its length and the caller may go on with the next row.
func (c *RowCodec) Decode(bs []array.Builder, data []byte) error {
	if len(bs) != len(c.values) {
		return fmt.Errorf("decode row: %d builders for %d columns", len(bs), len(c.values))
	}
	for i, b := range bs {
		if b == nil || !arrow.TypeEqual(b.Type(), c.types[i]) {
			return fmt.Errorf("decode row: column %q: builder of type %v, codec %s", c.names[i], builderType(b), c.types[i])
		}
	}
	if err := c.read(data, nil); err != nil {
		return err
	}
	// Cannot fail on the bytes now; only a dictionary builder's own
	// insertion could, and then the error is the builder's.
	return c.read(data, bs)
}

func builderType(b array.Builder) any {
	if b == nil {
		return nil
	}
	return b.Type()
}

// read walks one encoded row, appending its values to bs, or only checking
// them when bs is nil.
func (c *RowCodec) read(data []byte, bs []array.Builder) error {
	if len(data) == 0 {
		return fmt.Errorf("decode row: %w: empty", ErrMalformedRow)
	}
	if data[0] != RowCodecVersion {
		return fmt.Errorf("decode row: %w: unknown version %d", ErrMalformedRow, data[0])
	}
	data = data[1:]
	for i, v := range c.values {
		var b array.Builder
		if bs != nil {
			b = bs[i]
		}
		var err error
		if data, err = readValue(data, v, b); err != nil {
			return fmt.Errorf("decode row: column %q: %w", c.names[i], err)
		}
	}
	if len(data) != 0 {
		return fmt.Errorf("decode row: %w: %d trailing bytes", ErrMalformedRow, len(data))
	}
	return nil
}

// valueCodec encodes and decodes the body of a valid value of one type;
// appendValue and readValue add the validity byte around it.
type valueCodec interface {
	// enc appends the body of a's valid value at index i. a has the
	// codec's type, which Append and NewRowCodec have checked.
	enc(dst []byte, a arrow.Array, i int) []byte
	// dec reads one body from the front of data and returns the rest. It
	// appends the value to b, which has the codec's type, or only checks
	// the bytes when b is nil.
	dec(data []byte, b array.Builder) ([]byte, error)
}

func appendValue(dst []byte, v valueCodec, a arrow.Array, i int) []byte {
	if _, ok := v.(nullCodec); ok {
		return append(dst, nullByte) // a null array has no validity bitmap
	}
	if d, ok := a.(*array.Dictionary); ok {
		// Encode what the index stands for, never the index: each batch
		// may bring its own dictionary.
		if d.IsNull(i) {
			return append(dst, nullByte)
		}
		a, i = d.Dictionary(), d.GetValueIndex(i)
	}
	if a.IsNull(i) {
		return append(dst, nullByte)
	}
	return v.enc(append(dst, validByte), a, i)
}

func readValue(data []byte, v valueCodec, b array.Builder) ([]byte, error) {
	if len(data) == 0 {
		return nil, errTruncated
	}
	switch data[0] {
	case nullByte:
		if b != nil {
			b.AppendNull()
		}
		return data[1:], nil
	case validByte:
		return v.dec(data[1:], b)
	}
	return nil, fmt.Errorf("%w: validity byte 0x%02x", ErrMalformedRow, data[0])
}

var errTruncated = fmt.Errorf("%w: truncated", ErrMalformedRow)

// readUvarint reads a minimal uvarint that fits an int: a longer encoding of
// the same number would decode fine but give a second encoding of one row.
func readUvarint(data []byte) (int, []byte, error) {
	x, n := binary.Uvarint(data)
	switch {
	case n == 0:
		return 0, nil, errTruncated
	case n < 0 || x > math.MaxInt:
		return 0, nil, fmt.Errorf("%w: length overflows", ErrMalformedRow)
	case n > 1 && data[n-1] == 0:
		return 0, nil, fmt.Errorf("%w: non-minimal length", ErrMalformedRow)
	}
	return int(x), data[n:], nil
}

func newValueCodec(t arrow.DataType) (valueCodec, error) {
	switch t.ID() {
	case arrow.NULL:
		return nullCodec{}, nil
	case arrow.BOOL:
		return boolCodec{}, nil
	case arrow.INT8:
		return fixed8[int8](), nil
	case arrow.UINT8:
		return fixed8[uint8](), nil
	case arrow.INT16:
		return fixed16[int16](), nil
	case arrow.UINT16:
		return fixed16[uint16](), nil
	case arrow.INT32:
		return fixed32[int32](), nil
	case arrow.UINT32:
		return fixed32[uint32](), nil
	case arrow.INT64:
		return fixed64[int64](), nil
	case arrow.UINT64:
		return fixed64[uint64](), nil
	case arrow.DATE32:
		return fixed32[arrow.Date32](), nil
	case arrow.DATE64:
		return fixed64[arrow.Date64](), nil
	case arrow.TIME32:
		return fixed32[arrow.Time32](), nil
	case arrow.TIME64:
		return fixed64[arrow.Time64](), nil
	case arrow.TIMESTAMP:
		return fixed64[arrow.Timestamp](), nil
	case arrow.DURATION:
		return fixed64[arrow.Duration](), nil
	case arrow.INTERVAL_MONTHS:
		return fixed32[arrow.MonthInterval](), nil
	case arrow.DECIMAL32:
		return fixed32[decimal.Decimal32](), nil
	case arrow.DECIMAL64:
		return fixed64[decimal.Decimal64](), nil
	case arrow.FLOAT16:
		return fixedCodec[float16.Num]{2,
			func(dst []byte, v float16.Num) []byte { return le.AppendUint16(dst, v.Uint16()) },
			func(b []byte) float16.Num { return float16.FromBits(le.Uint16(b)) }}, nil
	case arrow.FLOAT32:
		return fixedCodec[float32]{4,
			func(dst []byte, v float32) []byte { return le.AppendUint32(dst, math.Float32bits(v)) },
			func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) }}, nil
	case arrow.FLOAT64:
		return fixedCodec[float64]{8,
			func(dst []byte, v float64) []byte { return le.AppendUint64(dst, math.Float64bits(v)) },
			func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) }}, nil
	case arrow.INTERVAL_DAY_TIME:
		return fixedCodec[arrow.DayTimeInterval]{8,
			func(dst []byte, v arrow.DayTimeInterval) []byte {
				return le.AppendUint32(le.AppendUint32(dst, uint32(v.Days)), uint32(v.Milliseconds))
			},
			func(b []byte) arrow.DayTimeInterval {
				return arrow.DayTimeInterval{Days: int32(le.Uint32(b)), Milliseconds: int32(le.Uint32(b[4:]))}
			}}, nil
	case arrow.INTERVAL_MONTH_DAY_NANO:
		return fixedCodec[arrow.MonthDayNanoInterval]{16,
			func(dst []byte, v arrow.MonthDayNanoInterval) []byte {
				dst = le.AppendUint32(dst, uint32(v.Months))
				dst = le.AppendUint32(dst, uint32(v.Days))
				return le.AppendUint64(dst, uint64(v.Nanoseconds))
			},
			func(b []byte) arrow.MonthDayNanoInterval {
				return arrow.MonthDayNanoInterval{Months: int32(le.Uint32(b)), Days: int32(le.Uint32(b[4:])),
					Nanoseconds: int64(le.Uint64(b[8:]))}
			}}, nil
	case arrow.DECIMAL128:
		return fixedCodec[decimal128.Num]{16,
			func(dst []byte, v decimal128.Num) []byte {
				return le.AppendUint64(le.AppendUint64(dst, v.LowBits()), uint64(v.HighBits()))
			},
			func(b []byte) decimal128.Num { return decimal128.New(int64(le.Uint64(b[8:])), le.Uint64(b)) }}, nil
	case arrow.DECIMAL256:
		return fixedCodec[decimal256.Num]{32,
			func(dst []byte, v decimal256.Num) []byte {
				for _, w := range v.Array() { // least significant first
					dst = le.AppendUint64(dst, w)
				}
				return dst
			},
			func(b []byte) decimal256.Num {
				return decimal256.New(le.Uint64(b[24:]), le.Uint64(b[16:]), le.Uint64(b[8:]), le.Uint64(b))
			}}, nil
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return bytesCodec[string]{}, nil
	case arrow.BINARY, arrow.LARGE_BINARY, arrow.BINARY_VIEW:
		return bytesCodec[[]byte]{}, nil
	case arrow.FIXED_SIZE_BINARY:
		return fixedBinaryCodec{t.(*arrow.FixedSizeBinaryType).ByteWidth}, nil
	case arrow.LIST, arrow.LARGE_LIST, arrow.LIST_VIEW, arrow.LARGE_LIST_VIEW:
		elem, err := newValueCodec(t.(arrow.ListLikeType).Elem())
		if err != nil {
			return nil, err
		}
		return listCodec{elem, -1}, nil
	case arrow.FIXED_SIZE_LIST:
		ft := t.(*arrow.FixedSizeListType)
		elem, err := newValueCodec(ft.Elem())
		if err != nil {
			return nil, err
		}
		return listCodec{elem, int(ft.Len())}, nil
	case arrow.STRUCT:
		var s structCodec
		for _, f := range t.(*arrow.StructType).Fields() {
			v, err := newValueCodec(f.Type)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case arrow.DICTIONARY:
		// Only what DuckDB's ENUM exports, string values, and binary ones
		// that share their builder: other value types have a builder of
		// their own each, for a case we have not met.
		switch dt := t.(*arrow.DictionaryType); dt.ValueType.ID() {
		case arrow.STRING:
			return bytesCodec[string]{}, nil
		case arrow.BINARY:
			return bytesCodec[[]byte]{}, nil
		}
	}
	return nil, fmt.Errorf("%w %s", ErrUnsupportedType, t)
}

var le = binary.LittleEndian

// nullCodec is the null type's: its values are all null, so a valid one is
// corrupt.
type nullCodec struct{}

func (nullCodec) enc(dst []byte, _ arrow.Array, _ int) []byte { return dst }
func (nullCodec) dec(data []byte, _ array.Builder) ([]byte, error) {
	return nil, fmt.Errorf("%w: valid value of type null", ErrMalformedRow)
}

type boolCodec struct{}

func (boolCodec) enc(dst []byte, a arrow.Array, i int) []byte {
	if a.(*array.Boolean).Value(i) {
		return append(dst, 1)
	}
	return append(dst, 0)
}

func (boolCodec) dec(data []byte, b array.Builder) ([]byte, error) {
	if len(data) == 0 {
		return nil, errTruncated
	}
	if data[0] > 1 {
		return nil, fmt.Errorf("%w: bool byte 0x%02x", ErrMalformedRow, data[0])
	}
	if b != nil {
		b.(*array.BooleanBuilder).Append(data[0] == 1)
	}
	return data[1:], nil
}

// fixedCodec stores a fixed-width value as size bytes. T is the Go type of
// the array's Value and the builder's Append, which is how one codec serves
// int64, timestamps, durations and the like.
type fixedCodec[T any] struct {
	size int
	put  func(dst []byte, v T) []byte
	get  func(b []byte) T // b has at least size bytes
}

func (c fixedCodec[T]) enc(dst []byte, a arrow.Array, i int) []byte {
	return c.put(dst, a.(interface{ Value(int) T }).Value(i))
}

func (c fixedCodec[T]) dec(data []byte, b array.Builder) ([]byte, error) {
	if len(data) < c.size {
		return nil, errTruncated
	}
	if b != nil {
		b.(interface{ Append(T) }).Append(c.get(data))
	}
	return data[c.size:], nil
}

func fixed8[T ~int8 | ~uint8]() fixedCodec[T] {
	return fixedCodec[T]{1,
		func(dst []byte, v T) []byte { return append(dst, byte(v)) },
		func(b []byte) T { return T(b[0]) }}
}

func fixed16[T ~int16 | ~uint16]() fixedCodec[T] {
	return fixedCodec[T]{2,
		func(dst []byte, v T) []byte { return le.AppendUint16(dst, uint16(v)) },
		func(b []byte) T { return T(le.Uint16(b)) }}
}

func fixed32[T ~int32 | ~uint32]() fixedCodec[T] {
	return fixedCodec[T]{4,
		func(dst []byte, v T) []byte { return le.AppendUint32(dst, uint32(v)) },
		func(b []byte) T { return T(le.Uint32(b)) }}
}

func fixed64[T ~int64 | ~uint64]() fixedCodec[T] {
	return fixedCodec[T]{8,
		func(dst []byte, v T) []byte { return le.AppendUint64(dst, uint64(v)) },
		func(b []byte) T { return T(le.Uint64(b)) }}
}

// bytesCodec stores strings and byte strings as a uvarint length and the
// bytes. T is what the arrays' Value returns.
type bytesCodec[T string | []byte] struct{}

func (bytesCodec[T]) enc(dst []byte, a arrow.Array, i int) []byte {
	v := a.(interface{ Value(int) T }).Value(i)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func (bytesCodec[T]) dec(data []byte, b array.Builder) ([]byte, error) {
	n, data, err := readUvarint(data)
	if err != nil {
		return nil, err
	}
	if n > len(data) {
		return nil, errTruncated
	}
	if b != nil {
		if err := appendBytes(b, data[:n]); err != nil {
			return nil, err
		}
	}
	return data[n:], nil
}

// appendBytes appends v to a string or binary builder. The string builders'
// own Append takes a string, which would cost a copy; the binary builders
// they embed take the bytes and copy them into the column.
func appendBytes(b array.Builder, v []byte) error {
	switch b := b.(type) {
	case *array.StringBuilder:
		b.BinaryBuilder.Append(v)
	case *array.LargeStringBuilder:
		b.BinaryBuilder.Append(v)
	case *array.StringViewBuilder:
		b.BinaryViewBuilder.Append(v)
	case *array.BinaryBuilder:
		b.Append(v)
	case *array.BinaryViewBuilder:
		b.Append(v)
	case *array.BinaryDictionaryBuilder:
		return b.Append(v)
	default:
		return fmt.Errorf("cannot append bytes to %T", b)
	}
	return nil
}

type fixedBinaryCodec struct{ width int }

func (c fixedBinaryCodec) enc(dst []byte, a arrow.Array, i int) []byte {
	return append(dst, a.(*array.FixedSizeBinary).Value(i)...)
}

func (c fixedBinaryCodec) dec(data []byte, b array.Builder) ([]byte, error) {
	if len(data) < c.width {
		return nil, errTruncated
	}
	if b != nil {
		b.(*array.FixedSizeBinaryBuilder).Append(data[:c.width])
	}
	return data[c.width:], nil
}

// listCodec serves every list type: a list's value is the sequence of its
// elements, however the array lays them out.
type listCodec struct {
	elem valueCodec
	size int // fixed-size list's length, or -1: then the count is encoded
}

type listArray interface {
	ValueOffsets(i int) (start, end int64)
	ListValues() arrow.Array
}

func (c listCodec) enc(dst []byte, a arrow.Array, i int) []byte {
	l := a.(listArray)
	start, end := l.ValueOffsets(i)
	if c.size < 0 {
		dst = binary.AppendUvarint(dst, uint64(end-start))
	}
	values := l.ListValues()
	for j := start; j < end; j++ {
		dst = appendValue(dst, c.elem, values, int(j))
	}
	return dst
}

func (c listCodec) dec(data []byte, b array.Builder) ([]byte, error) {
	n := c.size
	if n < 0 {
		var err error
		if n, data, err = readUvarint(data); err != nil {
			return nil, err
		}
		// Every value takes at least its validity byte: a larger count
		// is corrupt, and would otherwise have us loop on nothing.
		if n > len(data) {
			return nil, errTruncated
		}
	}
	var elems array.Builder
	switch lb := b.(type) {
	case nil:
	case *array.ListViewBuilder:
		lb.AppendWithSize(true, n)
		elems = lb.ValueBuilder()
	case *array.LargeListViewBuilder:
		lb.AppendWithSize(true, n)
		elems = lb.ValueBuilder()
	case array.ListLikeBuilder:
		lb.Append(true)
		elems = lb.ValueBuilder()
	}
	for range n {
		var err error
		if data, err = readValue(data, c.elem, elems); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// structCodec holds one codec per field.
type structCodec []valueCodec

func (c structCodec) enc(dst []byte, a arrow.Array, i int) []byte {
	s := a.(*array.Struct)
	for j, f := range c {
		// Field arrays are already sliced to the struct's offset.
		dst = appendValue(dst, f, s.Field(j), i)
	}
	return dst
}

func (c structCodec) dec(data []byte, b array.Builder) ([]byte, error) {
	var sb *array.StructBuilder
	if b != nil {
		sb = b.(*array.StructBuilder)
		sb.Append(true)
	}
	for j, f := range c {
		var fb array.Builder
		if sb != nil {
			fb = sb.FieldBuilder(j)
		}
		var err error
		if data, err = readValue(data, f, fb); err != nil {
			return nil, err
		}
	}
	return data, nil
}
