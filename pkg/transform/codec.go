package transform

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/stream"
)

// The value codec encodes row values self-delimitingly: a tag byte, then
// the payload. Group keys are the concatenated encodings of their values,
// so equal keys are equal bytes (maps are encoded with sorted keys), and
// partial aggregates carry values across processes without losing their
// types: int64 never becomes float64, a float64 keeps its exact bits
// (including -0 and NaN payloads), a timestamp keeps its instant, zone name
// and offset, and UTC stays time.UTC.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagInt    // zigzag varint
	tagFloat  // 8 bytes, little-endian IEEE 754 bits
	tagString // uvarint length, bytes
	tagBytes  // uvarint length, bytes
	tagTime   // varint unix seconds, uvarint nanoseconds, zone
	tagList   // uvarint count, values
	tagMap    // uvarint count, (uvarint key length, key, value) by sorted key
)

// Zone encodings after a tagTime.
const (
	zoneUTC   byte = 0 // time.UTC
	zoneFixed byte = 1 // varint offset seconds, uvarint name length, name
)

// maxUnixSeconds keeps decoded times inside what time.Time represents
// without overflow (about 146 billion years either way).
const maxUnixSeconds = 1 << 62

// maxCodecDepth bounds nesting when decoding untrusted bytes.
const maxCodecDepth = 10000

var errCorrupt = errors.New("corrupt partial aggregate")

// normalize maps the Go numeric types a custom transform may produce onto
// the row types, so that int(1) and int64(1) group together.
func normalize(v any) any {
	switch x := v.(type) {
	case nil, bool, int64, float64, string:
		return v
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int8:
		return int64(x)
	case uint32:
		return int64(x)
	case uint16:
		return int64(x)
	case uint8:
		return int64(x)
	case uint:
		if uint64(x) <= math.MaxInt64 {
			return int64(x)
		}
		return float64(x)
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x)
		}
		return float64(x)
	case float32:
		return float64(x)
	case stream.Row:
		return map[string]any(x)
	}
	return v
}

// appendValue appends the encoding of v (normalized) to b.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := normalize(v).(type) {
	case nil:
		return append(b, tagNull), nil
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case int64:
		return binary.AppendVarint(append(b, tagInt), x), nil
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x)), nil
	case string:
		b = binary.AppendUvarint(append(b, tagString), uint64(len(x)))
		return append(b, x...), nil
	case []byte:
		b = binary.AppendUvarint(append(b, tagBytes), uint64(len(x)))
		return append(b, x...), nil
	case time.Time:
		b = binary.AppendVarint(append(b, tagTime), x.Unix())
		b = binary.AppendUvarint(b, uint64(x.Nanosecond()))
		if x.Location() == time.UTC {
			return append(b, zoneUTC), nil
		}
		name, off := x.Zone()
		b = binary.AppendVarint(append(b, zoneFixed), int64(off))
		b = binary.AppendUvarint(b, uint64(len(name)))
		return append(b, name...), nil
	case []any:
		b = binary.AppendUvarint(append(b, tagList), uint64(len(x)))
		var err error
		for _, e := range x {
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]any:
		b = binary.AppendUvarint(append(b, tagMap), uint64(len(x)))
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var err error
		for _, k := range keys {
			b = binary.AppendUvarint(b, uint64(len(k)))
			b = append(b, k...)
			if b, err = appendValue(b, x[k]); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("unsupported value of type %T", v)
}

// decoder reads what appendValue wrote. Every read checks bounds: partials
// cross the network and a corrupt one must fail, not panic.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) byte1() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64le() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytesN reads a uvarint length and that many bytes (aliasing d.b).
func (d *decoder) bytesN() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d beyond the %d bytes left", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// count reads a uvarint element count, each element taking at least min
// bytes, so that a corrupt count cannot make us allocate much.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/min) {
		d.fail("count %d beyond the %d bytes left", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) value(depth int) any {
	if depth > maxCodecDepth {
		d.fail("nested deeper than %d", maxCodecDepth)
		return nil
	}
	switch tag := d.byte1(); tag {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt:
		return d.varint()
	case tagFloat:
		return math.Float64frombits(d.uint64le())
	case tagString:
		return string(d.bytesN())
	case tagBytes:
		return bytes.Clone(d.bytesN())
	case tagTime:
		sec := d.varint()
		nsec := d.uvarint()
		zone := d.byte1()
		if d.err != nil {
			return nil
		}
		if sec > maxUnixSeconds || sec < -maxUnixSeconds || nsec >= 1e9 {
			d.fail("time out of range")
			return nil
		}
		t := time.Unix(sec, int64(nsec))
		switch zone {
		case zoneUTC:
			return t.UTC()
		case zoneFixed:
			off := d.varint()
			name := string(d.bytesN())
			if off > 1<<31-1 || off < -1<<31 {
				d.fail("zone offset out of range")
			}
			if d.err != nil {
				return nil
			}
			return t.In(time.FixedZone(name, int(off)))
		}
		d.fail("unknown zone kind %d", zone)
		return nil
	case tagList:
		n := d.count(1)
		out := make([]any, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			out = append(out, d.value(depth+1))
		}
		return out
	case tagMap:
		n := d.count(2)
		out := make(map[string]any, n)
		for i := 0; i < n && d.err == nil; i++ {
			k := string(d.bytesN())
			out[k] = d.value(depth + 1)
		}
		return out
	default:
		if d.err == nil {
			d.fail("unknown value tag %d", tag)
		}
		return nil
	}
}

// Ranks order values of different kinds for sorting groups: null first,
// then bools, numbers, strings, bytes, timestamps, lists and maps.
func rank(v any) int {
	switch v.(type) {
	case nil:
		return 0
	case bool:
		return 1
	case int64, float64:
		return 2
	case string:
		return 3
	case []byte:
		return 4
	case time.Time:
		return 5
	case []any:
		return 6
	case map[string]any:
		return 7
	}
	return 8
}

// compareValues is a total order on row values, for sorting groups. Numbers
// compare by value whatever their type, with int64 before an equal float64
// and NaN after every other number. Values it calls equal may still differ
// (a timestamp in two zones); callers break ties on the encoding.
func compareValues(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return ra - rb
	}
	switch x := a.(type) {
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case int64, float64:
		if c := compareNumbers(a, b); c != 0 {
			return c
		}
		_, ai := a.(int64)
		_, bi := b.(int64)
		switch {
		case ai == bi:
			return 0
		case ai:
			return -1
		}
		return 1
	case string:
		return strings.Compare(x, b.(string))
	case []byte:
		return bytes.Compare(x, b.([]byte))
	case time.Time:
		return x.Compare(b.(time.Time))
	case []any:
		y := b.([]any)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := compareValues(x[i], y[i]); c != 0 {
				return c
			}
		}
		return len(x) - len(y)
	}
	// Maps and anything else: by encoding.
	ea, _ := appendValue(nil, a)
	eb, _ := appendValue(nil, b)
	return bytes.Compare(ea, eb)
}

// compareNumbers compares two int64 or float64 values exactly (an int64
// beyond 2^53 is not rounded to a float64 first). NaN is greater than every
// number and equal to itself.
func compareNumbers(a, b any) int {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpOrdered(x, y)
		case float64:
			return -compareFloatInt(y, x)
		}
	case float64:
		switch y := b.(type) {
		case int64:
			return compareFloatInt(x, y)
		case float64:
			xn, yn := math.IsNaN(x), math.IsNaN(y)
			switch {
			case xn && yn:
				return 0
			case xn:
				return 1
			case yn:
				return -1
			}
			return cmpOrdered(x, y)
		}
	}
	panic(fmt.Sprintf("compareNumbers(%T, %T)", a, b))
}

func compareFloatInt(f float64, i int64) int {
	switch {
	case math.IsNaN(f):
		return 1
	case f >= 1<<63:
		return 1
	case f < -(1 << 63):
		return -1
	}
	t := math.Trunc(f)
	if c := cmpOrdered(int64(t), i); c != 0 {
		return c
	}
	return cmpOrdered(f-t, 0)
}

func cmpOrdered[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
