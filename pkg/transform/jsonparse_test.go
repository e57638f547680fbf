package transform

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// referenceDecode is what the brief asks decode json to be: json.Decoder
// with UseNumber, one object and nothing after it, integers as int64 and
// other numbers as float64.
func referenceDecode(data []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, errors.New("trailing data")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("not an object")
	}
	out, err := convertNumbers(m)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func convertNumbers(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return i, nil
		}
		return x.Float64()
	case []any:
		for i := range x {
			c, err := convertNumbers(x[i])
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	case map[string]any:
		for k := range x {
			c, err := convertNumbers(x[k])
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
	}
	return v, nil
}

func parseToMap(p *jsonParser, data []byte) (map[string]any, error) {
	kvs, err := p.parseObject(data)
	if err != nil {
		return nil, err
	}
	m := make(map[string]any, len(kvs))
	for _, e := range kvs {
		m[e.k] = e.v
	}
	return m, nil
}

var jsonSeeds = []string{
	`{"branch":"Kazan","currency":"RUB","amount":-42}`,
	`{"a":1.5,"b":-0,"c":-0.0,"d":1e3,"e":12345678901234567890,"f":1E-7,"g":9223372036854775807,"h":-9223372036854775808}`,
	`{"nested":{"x":[1,[2,{"y":null}],true,false,"s"]},"empty":{},"list":[]}`,
	` { "k" : "v" } `,
	`{"esc":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800\udbff\u0041"}`,
	"{\"raw\":\"caf\xc3\xa9 \xff bad\"}",
	`{"dup":1,"dup":2}`,
	`{"a":1,}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":-}`, `{"a":1e}`, `{"a":tru}`, `{"a":"x` + "\n" + `"}`,
	`{"a":"\x"}`, `{"a":"\u12"}`, `{"a":1e400}`, `[1]`, `"s"`, `{}x`, `{"a" 1}`, `{a:1}`, ``, `   `, `{`, `{"a":[1,2}`,
}

func TestJSONParserMatchesEncodingJSON(t *testing.T) {
	var p jsonParser
	for _, s := range jsonSeeds {
		checkAgainstReference(t, &p, []byte(s))
	}
}

// FuzzJSONParser checks the hand-written parser against encoding/json.
// Invariant: for every input, both accept or both reject, and when they
// accept they produce equal values (same types: int64 for integer literals
// that fit, float64 otherwise; same strings after escape and UTF-8 repair).
func FuzzJSONParser(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	var p jsonParser // reused across inputs, as Process reuses it
	f.Fuzz(func(t *testing.T, data []byte) { checkAgainstReference(t, &p, data) })
}

func checkAgainstReference(t *testing.T, p *jsonParser, data []byte) {
	t.Helper()
	want, wantErr := referenceDecode(data)
	got, err := parseToMap(p, data)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("input %q: parser error %v, encoding/json error %v", data, err, wantErr)
	}
	if err != nil {
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("input %q (-encoding/json +parser):\n%s", data, diff)
	}
}

func TestJSONParserDepth(t *testing.T) {
	var p jsonParser
	deep := `{"a":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`
	if _, err := p.parseObject([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Errorf("parse of %d nested arrays = %v, want a depth error", maxJSONDepth+1, err)
	}
	ok := `{"a":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`
	if _, err := p.parseObject([]byte(ok)); err != nil {
		t.Errorf("parse at the depth limit: %v", err)
	}
}
