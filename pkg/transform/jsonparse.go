package transform

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonParser decodes a JSON object into row fields. It accepts exactly what
// encoding/json accepts and produces what a json.Decoder with UseNumber
// produces, except that numbers become int64 for integer literals that fit
// and float64 otherwise (FuzzJSONParser holds it to that). It exists because
// decoding is most of a simple pipeline's cost: it reuses its buffers across
// records and interns short strings, so a typical small record costs one map
// and its non-repeating string values.
//
// A parser is not safe for concurrent use; each Process call has its own.
type jsonParser struct {
	data  []byte
	pos   int
	depth int
	// kvs and vals are stacks shared by nested objects and arrays: a
	// container's members are collected on top, copied into a value of
	// exactly the right size, and popped.
	kvs  []kv
	vals []any
	buf  []byte
	// keys and strs intern short strings: object keys as strings, string
	// values boxed in an interface, so that neither the string nor its box
	// is allocated again.
	keys map[string]string
	strs map[string]any
}

type kv struct {
	k string
	v any
}

const (
	// maxJSONDepth matches encoding/json's nesting limit.
	maxJSONDepth = 10000
	// Strings up to maxInternLen bytes are interned, up to maxInterned of
	// them: field names and low-cardinality values (currencies, branches)
	// then cost no allocation.
	maxInternLen = 32
	maxInterned  = 4096
)

var errNotObject = errors.New("payload is not a JSON object")

// parseObject parses data, which must hold one JSON object, and returns its
// members in order (later duplicates win when put in a map). The result is
// valid until the next call.
func (p *jsonParser) parseObject(data []byte) ([]kv, error) {
	p.data, p.pos, p.depth = data, 0, 0
	p.kvs, p.vals = p.kvs[:0], p.vals[:0]
	defer func() { p.data = nil }()
	p.skipSpace()
	if p.pos == len(data) {
		return nil, fmt.Errorf("%w: the payload is empty", errNotObject)
	}
	if c := data[p.pos]; c != '{' {
		return nil, fmt.Errorf("%w: it starts with %s", errNotObject, quoteChar(c))
	}
	if err := p.members(); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(data) {
		return nil, p.syntaxError("after the top-level object")
	}
	return p.kvs, nil
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func quoteChar(c byte) string {
	if c == '\'' {
		return `'\''`
	}
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("byte 0x%02x", c)
	}
	return "'" + string(rune(c)) + "'"
}

func (p *jsonParser) syntaxError(where string) error {
	if p.pos >= len(p.data) {
		return fmt.Errorf("invalid JSON: unexpected end of input %s", where)
	}
	return fmt.Errorf("invalid JSON: unexpected %s at offset %d %s", quoteChar(p.data[p.pos]), p.pos, where)
}

// members parses an object whose '{' is at p.pos, leaving its members on top
// of p.kvs.
func (p *jsonParser) members() error {
	p.depth++
	if p.depth > maxJSONDepth {
		return fmt.Errorf("invalid JSON: nested deeper than %d", maxJSONDepth)
	}
	p.pos++ // '{'
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return nil
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.syntaxError("where an object key should start")
		}
		k, err := p.key()
		if err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.syntaxError("after an object key")
		}
		p.pos++
		p.skipSpace()
		v, err := p.value()
		if err != nil {
			return err
		}
		p.kvs = append(p.kvs, kv{k, v})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.syntaxError("in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			p.depth--
			return nil
		default:
			return p.syntaxError("after an object value")
		}
	}
}

func (p *jsonParser) value() (any, error) {
	if p.pos >= len(p.data) {
		return nil, p.syntaxError("where a value should start")
	}
	switch c := p.data[p.pos]; {
	case c == '"':
		return p.strValue()
	case c == '{':
		base := len(p.kvs)
		if err := p.members(); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(p.kvs)-base)
		for _, e := range p.kvs[base:] {
			m[e.k] = e.v
		}
		clear(p.kvs[base:]) // drop references for the GC
		p.kvs = p.kvs[:base]
		return m, nil
	case c == '[':
		return p.array()
	case c == 't':
		return p.literal("true", true)
	case c == 'f':
		return p.literal("false", false)
	case c == 'n':
		return p.literal("null", nil)
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	}
	return nil, p.syntaxError("where a value should start")
}

func (p *jsonParser) literal(word string, v any) (any, error) {
	end := p.pos + len(word)
	if end > len(p.data) || string(p.data[p.pos:end]) != word {
		// Point at the first byte that differs.
		for i := 0; i < len(word) && p.pos < len(p.data) && p.data[p.pos] == word[i]; i++ {
			p.pos++
		}
		return nil, p.syntaxError("in literal " + word)
	}
	p.pos = end
	return v, nil
}

func (p *jsonParser) array() (any, error) {
	p.depth++
	if p.depth > maxJSONDepth {
		return nil, fmt.Errorf("invalid JSON: nested deeper than %d", maxJSONDepth)
	}
	p.pos++ // '['
	p.skipSpace()
	base := len(p.vals)
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return []any{}, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.vals = append(p.vals, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.syntaxError("in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
			continue
		case ']':
			p.pos++
			p.depth--
			out := make([]any, len(p.vals)-base)
			copy(out, p.vals[base:])
			clear(p.vals[base:])
			p.vals = p.vals[:base]
			return out, nil
		}
		return nil, p.syntaxError("after an array element")
	}
}

func (p *jsonParser) number() (any, error) {
	d := p.data
	start := p.pos
	i := p.pos
	if d[i] == '-' {
		i++
	}
	digits := func() bool {
		s := i
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
		}
		return i > s
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		digits()
	default:
		p.pos = i
		return nil, p.syntaxError("in a number")
	}
	integer := true
	if i < len(d) && d[i] == '.' {
		i++
		integer = false
		if !digits() {
			p.pos = i
			return nil, p.syntaxError("after a decimal point")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		integer = false
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if !digits() {
			p.pos = i
			return nil, p.syntaxError("in an exponent")
		}
	}
	p.pos = i
	lit := d[start:i]
	if integer {
		if n, err := strconv.ParseInt(string(lit), 10, 64); err == nil {
			return n, nil
		}
		// Too big for int64: a float, as json.Number.Float64 would give.
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: number %s is out of range for a 64-bit float", lit)
	}
	return f, nil
}

// key parses a string literal whose opening quote is at p.pos.
func (p *jsonParser) key() (string, error) {
	raw, err := p.str()
	if err != nil {
		return "", err
	}
	if k, ok := p.keys[string(raw)]; ok {
		return k, nil
	}
	k := string(raw)
	if len(k) <= maxInternLen && len(p.keys) < maxInterned {
		if p.keys == nil {
			p.keys = make(map[string]string)
		}
		p.keys[k] = k
	}
	return k, nil
}

// strValue parses a string literal whose opening quote is at p.pos, as a
// row value.
func (p *jsonParser) strValue() (any, error) {
	raw, err := p.str()
	if err != nil {
		return nil, err
	}
	if v, ok := p.strs[string(raw)]; ok {
		return v, nil
	}
	var v any = string(raw)
	if len(raw) <= maxInternLen && len(p.strs) < maxInterned {
		if p.strs == nil {
			p.strs = make(map[string]any)
		}
		p.strs[string(raw)] = v
	}
	return v, nil
}

// str parses a string literal whose opening quote is at p.pos and returns
// its decoded bytes, which alias the input or the parser's buffer and are
// valid until the next call.
func (p *jsonParser) str() ([]byte, error) {
	d := p.data
	start := p.pos + 1
	for i := start; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			p.pos = i + 1
			return d[start:i], nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return p.slowStr(start, i)
		}
	}
	p.pos = len(d)
	return nil, p.syntaxError("in a string")
}

// slowStr finishes a string with escapes, control characters or non-ASCII
// bytes, decoding it as encoding/json does: invalid UTF-8 bytes and unpaired
// surrogates become U+FFFD.
func (p *jsonParser) slowStr(start, i int) ([]byte, error) {
	d := p.data
	b := append(p.buf[:0], d[start:i]...)
	defer func() { p.buf = b[:0] }()
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return b, nil
		case c < 0x20:
			p.pos = i
			return nil, p.syntaxError("in a string (control characters must be escaped)")
		case c == '\\':
			if i+1 >= len(d) {
				p.pos = len(d)
				return nil, p.syntaxError("in a string escape")
			}
			switch e := d[i+1]; e {
			case '"', '\\', '/':
				b = append(b, e)
				i += 2
			case 'b':
				b = append(b, '\b')
				i += 2
			case 'f':
				b = append(b, '\f')
				i += 2
			case 'n':
				b = append(b, '\n')
				i += 2
			case 'r':
				b = append(b, '\r')
				i += 2
			case 't':
				b = append(b, '\t')
				i += 2
			case 'u':
				r := hex4(d[i+2:])
				if r < 0 {
					p.pos = i + 2
					return nil, p.syntaxError("in a \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
						r2 = hex4(d[i+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						i += 6
						r = dec
					} else {
						r = unicode.ReplacementChar
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				p.pos = i + 1
				return nil, p.syntaxError("in a string escape")
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, d[i:i+size]...)
			}
			i += size
		}
	}
	p.pos = len(d)
	return nil, p.syntaxError("in a string")
}

// hex4 decodes the 4 hex digits at the start of b, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
