package s3

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Each JSON line is one row as a JSON object, encoded as the file sink
// encodes its lines: keys in WriteKey.Columns order (then any others,
// sorted), []byte as base64, timestamps as RFC 3339 strings with
// nanoseconds, float64 always with a fraction or exponent (3.0, not 3) so
// readers keep floats and integers apart, and NaN and infinities as the
// strings "NaN", "Infinity" and "-Infinity". (The file sink's encoder is
// not exported, nor is the Kafka sink's copy; this is the same contract.)

// appendRowJSON appends row as a JSON object, columns first.
func appendRowJSON(b []byte, row stream.Row, columns []string) ([]byte, error) {
	keys := make([]string, 0, len(row))
	for _, c := range columns {
		if _, ok := row[c]; ok && !slices.Contains(keys, c) {
			keys = append(keys, c)
		}
	}
	extra := len(keys)
	for k := range row {
		if !slices.Contains(columns, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys[extra:])
	return appendObject(b, keys, row)
}

func appendObject(b []byte, keys []string, m map[string]any) ([]byte, error) {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendJSON(b, m[k]); err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

// appendJSON appends v as JSON.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case float64:
		return appendJSONFloat(b, x), nil
	case string:
		return appendJSONString(b, x), nil
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
			if b, err = appendJSON(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		return appendObject(b, sortedKeys(x), x)
	case stream.Row:
		return appendObject(b, sortedKeys(x), x)
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func appendJSONFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'f' && !bytes.ContainsAny(b[start:], ".") {
		b = append(b, ".0"...)
	}
	return b
}

// appendJSONString appends s quoted as JSON, leaving <, > and & alone.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
