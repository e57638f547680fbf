package transform

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pkg/stream"
)

type decodeStep struct {
	format  string // json, csv or raw
	field   string // "" = value if present, else data
	columns []string
	header  bool
	comma   rune
}

// payload finds the payload field of row.
func (d *decodeStep) payload(row stream.Row) (string, any, error) {
	name := d.field
	if name == "" {
		name = "value"
		if _, ok := row[name]; !ok {
			name = "data"
			if _, ok := row[name]; !ok {
				return "", nil, errors.New(`no payload field: the row has neither "value" nor "data" (set decode.field)`)
			}
		}
	}
	v, ok := row[name]
	if !ok {
		return "", nil, fmt.Errorf("no such field %q", name)
	}
	switch v.(type) {
	case []byte, string:
		return name, v, nil
	case nil:
		return "", nil, fmt.Errorf("payload field %q is null", name)
	}
	return "", nil, fmt.Errorf("payload field %q is %s, want bytes or string", name, typeName(v))
}

func payloadBytes(v any) []byte {
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	return v.([]byte)
}

// apply decodes row into one row, or, for a CSV payload of several lines,
// many.
func (d *decodeStep) apply(s *scratch, row stream.Row) (stream.Row, []stream.Row, error) {
	name, pv, err := d.payload(row)
	if err != nil {
		return nil, nil, err
	}
	switch d.format {
	case "json":
		kvs, err := s.json.parseObject(payloadBytes(pv))
		if err != nil {
			return nil, nil, err
		}
		return merge(row, name, len(kvs), func(out stream.Row) {
			for _, kv := range kvs {
				out[kv.k] = kv.v
			}
		}), nil, nil
	case "csv":
		many, err := d.csv(row, name, payloadBytes(pv))
		return nil, many, err
	default: // raw
		var text string
		switch v := pv.(type) {
		case string:
			text = v
		case []byte:
			if !utf8.Valid(v) {
				return nil, nil, fmt.Errorf("payload field %q is not valid UTF-8 text", name)
			}
			text = string(v)
		}
		out := row.Clone()
		out[name] = text
		return out, nil, nil
	}
}

// merge builds a row of row's fields, without the payload field, overlaid
// by the n decoded fields that fill writes.
func merge(row stream.Row, payload string, n int, fill func(stream.Row)) stream.Row {
	out := make(stream.Row, len(row)-1+n)
	for k, v := range row {
		if k != payload {
			out[k] = v
		}
	}
	fill(out)
	return out
}

func (d *decodeStep) csv(row stream.Row, payload string, data []byte) ([]stream.Row, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = d.comma
	r.FieldsPerRecord = -1
	names := d.columns
	if d.header {
		hdr, err := r.Read()
		if err == io.EOF {
			return nil, errors.New("csv payload has no header line")
		}
		if err != nil {
			return nil, fmt.Errorf("csv header: %w", err)
		}
		if names == nil {
			seen := make(map[string]bool, len(hdr))
			for _, h := range hdr {
				if h == "" {
					return nil, errors.New("csv header has an empty column name")
				}
				if seen[h] {
					return nil, fmt.Errorf("csv header names column %q twice", h)
				}
				seen[h] = true
			}
			names = hdr
		}
	}
	var out []stream.Row
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("csv: %w", err)
		}
		if len(rec) != len(names) {
			line, _ := r.FieldPos(0)
			return nil, fmt.Errorf("csv line %d has %d fields, want %d", line, len(rec), len(names))
		}
		out = append(out, merge(row, payload, len(names), func(o stream.Row) {
			for i, n := range names {
				o[n] = rec[i]
			}
		}))
	}
	if out == nil {
		if !d.header {
			return nil, errors.New("csv payload is empty")
		}
		out = []stream.Row{} // a header alone is a payload of zero rows
	}
	return out, nil
}

// typeName names a row value's type for messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case int64:
		return "int64"
	case float64:
		return "float64"
	case string:
		return "string"
	case []byte:
		return "bytes"
	case time.Time:
		return "timestamp"
	case []any:
		return "list"
	case map[string]any, stream.Row:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}
