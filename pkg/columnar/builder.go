package columnar

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Builder appends rows to an Arrow record batch of a fixed schema.
//
// Append checks a whole row before it touches any column builder, so a row
// that does not fit is rejected entirely and every column keeps the same
// length: the caller can route the bad row to its onError policy and go on
// appending. A Builder is not safe for concurrent use.
type Builder struct {
	rb    *array.RecordBuilder
	names []string
	cols  []encoder
	n     int
}

// NewBuilder returns a Builder for schema whose buffers come from mem. The
// caller must call Release when done with it.
//
// A column of a type the Builder cannot fill (see the package documentation)
// does not fail here but in every Append, with an error naming it: schemas
// reach us from SQL plans, and a constructor that cannot fail keeps call
// sites simple.
func NewBuilder(mem memory.Allocator, schema *arrow.Schema) *Builder {
	rb := array.NewRecordBuilder(mem, schema)
	b := &Builder{rb: rb, names: Names(schema)}
	for i, f := range schema.Fields() {
		b.cols = append(b.cols, newEncoder(f.Type, f.Nullable, rb.Field(i)))
	}
	return b
}

// Append appends row, taking each column's value from the row's key of the
// same name. A missing key or a nil value appends a null; keys that are not
// columns are ignored. A value that does not fit its column's type (a string
// for an int32 column, an int64 outside int32's range, a null in a
// non-nullable column) is an error naming the column, and nothing of the row
// is appended.
func (b *Builder) Append(row stream.Row) error {
	for i, e := range b.cols {
		if err := e.check(row[b.names[i]]); err != nil {
			return b.fitErr(i, err)
		}
	}
	for i, e := range b.cols {
		e.put(row[b.names[i]])
	}
	b.n++
	return nil
}

func (b *Builder) fitErr(col int, err error) error {
	path := b.names[col]
	if fe, ok := err.(*fitError); ok {
		path += fe.path
	}
	return fmt.Errorf("append row: column %q: %w", path, err)
}

// Len returns the number of rows appended since the last NewRecordBatch.
func (b *Builder) Len() int { return b.n }

// NewRecordBatch returns the rows appended so far as a record batch and
// resets the Builder for the next batch. The caller owns the batch and must
// Release it.
func (b *Builder) NewRecordBatch() arrow.RecordBatch {
	b.n = 0
	return b.rb.NewRecordBatch()
}

// Release frees the Builder's buffers, including rows not yet turned into a
// batch. Batches already returned stay valid.
func (b *Builder) Release() { b.rb.Release() }

// fitError says why a value does not fit a column. path locates the value
// inside the column ("[2].key" for a list of structs) and is empty for a
// top-level value.
type fitError struct {
	path string
	msg  string
}

func (e *fitError) Error() string { return e.msg }

func mismatch(v any, t arrow.DataType) *fitError {
	return &fitError{msg: fmt.Sprintf("cannot store %T in %s", v, t)}
}

// within prefixes the location of a nested value to err's path.
func within(err error, step string) error {
	if fe, ok := err.(*fitError); ok {
		fe.path = step + fe.path
	}
	return err
}

// encoder fills one column builder. check reports whether a value fits
// without touching the builder; put appends a value check accepted, and
// cannot fail. Splitting the two is what keeps a rejected row from being
// half appended.
type encoder interface {
	check(v any) error
	put(v any)
}

// nulls holds what every encoder needs to handle nil.
type nulls struct {
	typ      arrow.DataType
	nullable bool
}

func (n nulls) checkNull() error {
	if !n.nullable {
		return &fitError{msg: fmt.Sprintf("null in non-nullable %s", n.typ)}
	}
	return nil
}

func newEncoder(t arrow.DataType, nullable bool, b array.Builder) encoder {
	n := nulls{typ: t, nullable: nullable}
	switch t.ID() {
	case arrow.BOOL:
		return &boolEnc{n, b.(*array.BooleanBuilder)}
	case arrow.INT8:
		return &intEnc[int8]{n, b.(*array.Int8Builder), math.MinInt8, math.MaxInt8}
	case arrow.INT16:
		return &intEnc[int16]{n, b.(*array.Int16Builder), math.MinInt16, math.MaxInt16}
	case arrow.INT32:
		return &intEnc[int32]{n, b.(*array.Int32Builder), math.MinInt32, math.MaxInt32}
	case arrow.INT64:
		return &intEnc[int64]{n, b.(*array.Int64Builder), math.MinInt64, math.MaxInt64}
	case arrow.UINT8:
		return &uintEnc[uint8]{n, b.(*array.Uint8Builder), math.MaxUint8}
	case arrow.UINT16:
		return &uintEnc[uint16]{n, b.(*array.Uint16Builder), math.MaxUint16}
	case arrow.UINT32:
		return &uintEnc[uint32]{n, b.(*array.Uint32Builder), math.MaxUint32}
	case arrow.UINT64:
		return &uintEnc[uint64]{n, b.(*array.Uint64Builder), math.MaxUint64}
	case arrow.FLOAT32:
		return &floatEnc[float32]{n, b.(*array.Float32Builder)}
	case arrow.FLOAT64:
		return &floatEnc[float64]{n, b.(*array.Float64Builder)}
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return &stringEnc{n, b.(stringAppender)}
	case arrow.BINARY, arrow.LARGE_BINARY, arrow.BINARY_VIEW:
		return &binaryEnc{n, b.(binaryAppender), -1}
	case arrow.FIXED_SIZE_BINARY:
		return &binaryEnc{n, b.(binaryAppender), t.(*arrow.FixedSizeBinaryType).ByteWidth}
	case arrow.TIMESTAMP:
		return &timestampEnc{n, b.(*array.TimestampBuilder), t.(*arrow.TimestampType).Unit}
	case arrow.DATE32:
		return &dateEnc{n, b}
	case arrow.DATE64:
		return &dateEnc{n, b}
	case arrow.LIST, arrow.LARGE_LIST:
		lb := b.(array.ListLikeBuilder)
		ef := t.(arrow.ListLikeType).ElemField()
		return &listEnc{n, lb, newEncoder(ef.Type, ef.Nullable, lb.ValueBuilder()), -1}
	case arrow.FIXED_SIZE_LIST:
		lb := b.(*array.FixedSizeListBuilder)
		ft := t.(*arrow.FixedSizeListType)
		ef := ft.ElemField()
		return &listEnc{n, lb, newEncoder(ef.Type, ef.Nullable, lb.ValueBuilder()), int(ft.Len())}
	case arrow.STRUCT:
		sb := b.(*array.StructBuilder)
		st := t.(*arrow.StructType)
		e := &structEnc{nulls: n, b: sb}
		for i, f := range st.Fields() {
			e.names = append(e.names, f.Name)
			e.fields = append(e.fields, newEncoder(f.Type, f.Nullable, sb.FieldBuilder(i)))
		}
		return e
	case arrow.MAP:
		mb := b.(*array.MapBuilder)
		mt := t.(*arrow.MapType)
		if !isString(mt.KeyType()) {
			return unsupportedEnc{t}
		}
		return &mapEnc{n, mb,
			newEncoder(mt.KeyType(), false, mb.KeyBuilder()),
			newEncoder(mt.ItemType(), mt.ItemField().Nullable, mb.ItemBuilder())}
	}
	return unsupportedEnc{t}
}

func isString(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return true
	}
	return false
}

type unsupportedEnc struct{ typ arrow.DataType }

func (e unsupportedEnc) check(any) error {
	return &fitError{msg: fmt.Sprintf("unsupported column type %s", e.typ)}
}
func (unsupportedEnc) put(any) {}

type boolEnc struct {
	nulls
	b *array.BooleanBuilder
}

func (e *boolEnc) check(v any) error {
	switch v.(type) {
	case nil:
		return e.checkNull()
	case bool:
		return nil
	}
	return mismatch(v, e.typ)
}

func (e *boolEnc) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	e.b.Append(v.(bool))
}

// integer widens any Go integer to int64. above is true for a uint or uint64
// greater than MaxInt64, which only an unsigned column can hold.
func integer(v any) (n int64, above bool, ok bool) {
	switch x := v.(type) {
	case int64:
		return x, false, true
	case int:
		return int64(x), false, true
	case int32:
		return int64(x), false, true
	case int16:
		return int64(x), false, true
	case int8:
		return int64(x), false, true
	case uint8:
		return int64(x), false, true
	case uint16:
		return int64(x), false, true
	case uint32:
		return int64(x), false, true
	case uint64:
		return int64(x), x > math.MaxInt64, true
	case uint:
		return int64(x), uint64(x) > math.MaxInt64, true
	}
	return 0, false, false
}

type appender[T any] interface {
	Append(T)
	AppendNull()
}

type intEnc[T int8 | int16 | int32 | int64] struct {
	nulls
	b        appender[T]
	min, max int64
}

func (e *intEnc[T]) check(v any) error {
	if v == nil {
		return e.checkNull()
	}
	n, above, ok := integer(v)
	if !ok {
		return mismatch(v, e.typ)
	}
	if above || n < e.min || n > e.max {
		return &fitError{msg: fmt.Sprintf("%T value %v out of range for %s", v, v, e.typ)}
	}
	return nil
}

func (e *intEnc[T]) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	n, _, _ := integer(v)
	e.b.Append(T(n))
}

type uintEnc[T uint8 | uint16 | uint32 | uint64] struct {
	nulls
	b   appender[T]
	max uint64
}

func (e *uintEnc[T]) check(v any) error {
	if v == nil {
		return e.checkNull()
	}
	n, above, ok := integer(v)
	if !ok {
		return mismatch(v, e.typ)
	}
	if !above && (n < 0 || uint64(n) > e.max) {
		return &fitError{msg: fmt.Sprintf("%T value %v out of range for %s", v, v, e.typ)}
	}
	return nil
}

func (e *uintEnc[T]) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	// integer's int64 holds a uint64's bits unchanged, so the conversion
	// back is exact for values above MaxInt64 too.
	n, _, _ := integer(v)
	e.b.Append(T(uint64(n)))
}

// floatEnc also takes integers: SQL widens integers to floating point
// silently, and a count landing in a double column is no mistake.
type floatEnc[T float32 | float64] struct {
	nulls
	b appender[T]
}

func (e *floatEnc[T]) check(v any) error {
	switch v.(type) {
	case nil:
		return e.checkNull()
	case float64, float32:
		return nil
	}
	if _, _, ok := integer(v); ok {
		return nil
	}
	return mismatch(v, e.typ)
}

func (e *floatEnc[T]) put(v any) {
	switch x := v.(type) {
	case nil:
		e.b.AppendNull()
	case float64:
		e.b.Append(T(x))
	case float32:
		e.b.Append(T(x))
	case uint64:
		e.b.Append(T(x))
	case uint:
		e.b.Append(T(x))
	default:
		n, _, _ := integer(v)
		e.b.Append(T(n))
	}
}

type stringAppender interface {
	Append(string)
	AppendNull()
}

type stringEnc struct {
	nulls
	b stringAppender
}

func (e *stringEnc) check(v any) error {
	switch v.(type) {
	case nil:
		return e.checkNull()
	case string:
		return nil
	}
	return mismatch(v, e.typ)
}

func (e *stringEnc) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	e.b.Append(v.(string))
}

type binaryAppender interface {
	Append([]byte)
	AppendNull()
}

// binaryEnc also takes strings: every string is a valid byte string, and
// transforms often turn payloads into text.
type binaryEnc struct {
	nulls
	b     binaryAppender
	width int // fixed-size binary's byte width, or -1
}

func (e *binaryEnc) check(v any) error {
	var n int
	switch x := v.(type) {
	case nil:
		return e.checkNull()
	case []byte:
		n = len(x)
	case string:
		n = len(x)
	default:
		return mismatch(v, e.typ)
	}
	if e.width >= 0 && n != e.width {
		return &fitError{msg: fmt.Sprintf("%T of %d bytes in %s", v, n, e.typ)}
	}
	return nil
}

func (e *binaryEnc) put(v any) {
	switch x := v.(type) {
	case nil:
		e.b.AppendNull()
	case []byte:
		e.b.Append(x)
	case string:
		// Most binary builders take a string without copying it to a
		// []byte first; the fixed-size one does not.
		if sb, ok := e.b.(interface{ AppendString(string) }); ok {
			sb.AppendString(x)
		} else {
			e.b.Append([]byte(x))
		}
	}
}

type timestampEnc struct {
	nulls
	b    *array.TimestampBuilder
	unit arrow.TimeUnit
}

func (e *timestampEnc) check(v any) error {
	switch x := v.(type) {
	case nil:
		return e.checkNull()
	case time.Time:
		if _, err := arrow.TimestampFromTime(x, e.unit); err != nil {
			return &fitError{msg: fmt.Sprintf("time.Time %s out of range for %s", x.Format(time.RFC3339Nano), e.typ)}
		}
		return nil
	}
	return mismatch(v, e.typ)
}

func (e *timestampEnc) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	ts, _ := arrow.TimestampFromTime(v.(time.Time), e.unit)
	e.b.Append(ts)
}

// dateEnc stores a time's UTC calendar date, dropping the time of day, as
// every time we hand out is in UTC.
type dateEnc struct {
	nulls
	b array.Builder
}

func (e *dateEnc) check(v any) error {
	switch v.(type) {
	case nil:
		return e.checkNull()
	case time.Time:
		return nil
	}
	return mismatch(v, e.typ)
}

func (e *dateEnc) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	t := v.(time.Time).UTC()
	switch b := e.b.(type) {
	case *array.Date32Builder:
		b.Append(arrow.Date32FromTime(t))
	case *array.Date64Builder:
		// Date64FromTime keeps the time of day; Date64 is defined as midnight.
		b.Append(arrow.Date64FromTime(t.Truncate(24 * time.Hour)))
	}
}

type listEnc struct {
	nulls
	b    array.ListLikeBuilder
	elem encoder
	size int // fixed-size list's length, or -1
}

func (e *listEnc) check(v any) error {
	switch x := v.(type) {
	case nil:
		return e.checkNull()
	case []any:
		if e.size >= 0 && len(x) != e.size {
			return &fitError{msg: fmt.Sprintf("[]any of %d elements in %s", len(x), e.typ)}
		}
		for i, el := range x {
			if err := e.elem.check(el); err != nil {
				return within(err, fmt.Sprintf("[%d]", i))
			}
		}
		return nil
	}
	return mismatch(v, e.typ)
}

func (e *listEnc) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	e.b.Append(true)
	for _, el := range v.([]any) {
		e.elem.put(el)
	}
}

// structEnc fills a struct from a map by field name, like a row: a missing
// key is a null field and keys that are not fields are ignored.
type structEnc struct {
	nulls
	b      *array.StructBuilder
	names  []string
	fields []encoder
}

func asMap(v any) (map[string]any, bool) {
	switch x := v.(type) {
	case map[string]any:
		return x, true
	case stream.Row:
		return x, true
	}
	return nil, false
}

func (e *structEnc) check(v any) error {
	if v == nil {
		return e.checkNull()
	}
	m, ok := asMap(v)
	if !ok {
		return mismatch(v, e.typ)
	}
	for i, f := range e.fields {
		if err := f.check(m[e.names[i]]); err != nil {
			return within(err, "."+e.names[i])
		}
	}
	return nil
}

func (e *structEnc) put(v any) {
	if v == nil {
		e.b.AppendNull() // appends nulls to the fields as well
		return
	}
	m, _ := asMap(v)
	e.b.Append(true)
	for i, f := range e.fields {
		f.put(m[e.names[i]])
	}
}

// mapEnc fills a map column with string keys from a map[string]any, in key
// order so that equal rows give equal batches.
type mapEnc struct {
	nulls
	b         *array.MapBuilder
	key, item encoder
}

func (e *mapEnc) check(v any) error {
	if v == nil {
		return e.checkNull()
	}
	m, ok := asMap(v)
	if !ok {
		return mismatch(v, e.typ)
	}
	for k, x := range m {
		if err := e.item.check(x); err != nil {
			return within(err, fmt.Sprintf("[%q]", k))
		}
	}
	return nil
}

func (e *mapEnc) put(v any) {
	if v == nil {
		e.b.AppendNull()
		return
	}
	m, _ := asMap(v)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.b.Append(true)
	for _, k := range keys {
		e.key.put(k)
		e.item.put(m[k])
	}
}
