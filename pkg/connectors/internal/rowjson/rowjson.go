// Package rowjson encodes rows as JSON objects, the one line format the
// file, S3 and Kafka sinks share: keys in column order (then any others,
// sorted), []byte as base64, timestamps as RFC 3339 strings with
// nanoseconds, float64 always with a fraction or exponent (3.0, not 3) so
// readers keep floats and integers apart, NaN and infinities as the strings
// "NaN", "Infinity" and "-Infinity", and nested maps with sorted keys.
//
// ArrowEncoder writes the same objects straight from the columns of an
// Arrow record batch (a SQL task's output): byte for byte what Encoder
// writes for the rows columnar.AppendRows makes of the batch, without a map,
// a boxed value or a copied string per record. Its Std dialect writes what
// encoding/json's Marshal makes of such a row instead (the Kinesis sink's
// default data).
package rowjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Encoder appends rows as JSON objects. Columns, when set, come first in
// that order. It reuses a key buffer, so it is not safe for concurrent use.
type Encoder struct {
	Columns []string
	keys    []string
}

// Append appends r to b as one JSON object. An error names the field, as a
// path for nested ones.
func (e *Encoder) Append(b []byte, r stream.Row) ([]byte, error) {
	keys := e.keys[:0]
	if len(e.Columns) > 0 {
		for _, c := range e.Columns {
			if _, ok := r[c]; ok {
				keys = append(keys, c)
			}
		}
		if len(keys) < len(r) {
			extra := len(keys)
			for k := range r {
				if !slices.Contains(e.Columns, k) {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys[extra:])
		}
	} else {
		for k := range r {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	e.keys = keys
	return appendObject(b, keys, r)
}

// appendValue appends v as JSON.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case float64:
		return appendFloat(b, x), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case string:
		return appendString(b, x), nil
	case []byte:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case time.Time:
		b = append(b, '"')
		b = x.AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		return appendMap(b, x)
	case stream.Row:
		return appendMap(b, x)
	}
	// Anything else a custom transform produced: as encoding/json sees it.
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

func appendMap(b []byte, m map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return appendObject(b, keys, m)
}

// appendObject appends m as a JSON object with its fields in keys order. An
// error names the field, so a nested one reads as a path.
func appendObject(b []byte, keys []string, m map[string]any) ([]byte, error) {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, m[k]); err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	// encoding/json's choice of notation, plus a ".0" on whole numbers.
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
		return b
	}
	if !bytes.ContainsAny(b[start:], ".e") {
		b = append(b, ".0"...)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped for JavaScript readers. Unlike encoding/json it leaves <, >
// and & alone.
func appendString(b []byte, s string) []byte { return appendQuoted(b, s, false) }

// appendQuoted is appendString, or with std what encoding/json writes:
// also <, > and & escaped (\u003c, \u003e, \u0026), and backspace and form
// feed as \b and \f.
func appendQuoted(b []byte, s string, std bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && !(std && (c == '<' || c == '>' || c == '&')) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch {
			case c == '"', c == '\\':
				b = append(b, '\\', c)
			case std && c == '\b':
				b = append(b, '\\', 'b')
			case std && c == '\f':
				b = append(b, '\\', 'f')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// Append appends r to b with columns first; for callers without a
// long-lived Encoder.
func Append(b []byte, r stream.Row, columns []string) ([]byte, error) {
	e := Encoder{Columns: columns}
	return e.Append(b, r)
}

// AppendValue appends one value as JSON, encoded as inside a row.
func AppendValue(b []byte, v any) ([]byte, error) { return appendValue(b, v) }

// AppendFloat appends f as inside a row: always with a fraction or exponent,
// NaN and infinities as strings.
func AppendFloat(b []byte, f float64) []byte { return appendFloat(b, f) }
