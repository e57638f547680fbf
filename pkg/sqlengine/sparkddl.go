//go:build duckdb_arrow

package sqlengine

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// sparkSchema translates a Spark DDL schema string, as from_json takes it
// ("a STRING, b BIGINT, c ARRAY<STRUCT<x: INT>>"), into the structure
// argument of DuckDB's json_transform ({"a":"VARCHAR","b":"BIGINT",
// "c":[{"x":"INTEGER"}]}). A string that already is such a structure (it
// starts with { after blanks) is passed through, so DuckDB's own from_json
// calls keep working.
//
// Types: STRING, VARCHAR(n), CHAR(n), BOOLEAN, TINYINT/BYTE, SMALLINT/SHORT,
// INT/INTEGER, BIGINT/LONG, FLOAT/REAL, DOUBLE, DECIMAL/DEC/NUMERIC[(p[,s])]
// (Spark's default DECIMAL(10,0)), DATE, TIMESTAMP and TIMESTAMP_LTZ (an
// instant: TIMESTAMPTZ), TIMESTAMP_NTZ (TIMESTAMP), ARRAY<t>, MAP<k,v> and
// STRUCT<name: t, ...>. Field names may be `quoted`; NOT NULL and COMMENT
// '...' are accepted and ignored, as Spark's from_json ignores them.
func sparkSchema(ddl string) (string, error) {
	if s := strings.TrimSpace(ddl); strings.HasPrefix(s, "{") {
		return s, nil
	}
	p := &ddlParser{src: ddl}
	fields, err := p.fields(0)
	if err != nil {
		return "", err
	}
	if p.peek() != "" {
		return "", p.errorf("unexpected %q", p.peek())
	}
	if len(fields) == 0 {
		return "", fmt.Errorf("schema %q: no fields", ddl)
	}
	b, err := json.Marshal(orderedStruct(fields))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// ddlType is a parsed Spark type: a scalar DuckDB type name, or a list, map
// or struct of them.
type ddlType struct {
	scalar   string
	elem     *ddlType // ARRAY
	key, val *ddlType // MAP
	fields   []ddlField
	isStruct bool
}

type ddlField struct {
	name string
	typ  *ddlType
}

// orderedStruct marshals as a JSON object keeping the fields' order, which
// becomes the order of the STRUCT's fields.
type orderedStruct []ddlField

func (o orderedStruct) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range o {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(f.name)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(jsonForm(f.typ))
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}

// jsonForm is t as json_transform's structure names it: a type name, [elem]
// or a nested object. Maps have no JSON form and are written as a DuckDB
// type name.
func jsonForm(t *ddlType) any {
	switch {
	case t.elem != nil:
		return []any{jsonForm(t.elem)}
	case t.isStruct:
		return orderedStruct(t.fields)
	case t.key != nil:
		return t.duckName()
	}
	return t.scalar
}

// duckName is the DuckDB type name of t (for map keys and values).
func (t *ddlType) duckName() string {
	switch {
	case t.elem != nil:
		return t.elem.duckName() + "[]"
	case t.key != nil:
		return "MAP(" + t.key.duckName() + ", " + t.val.duckName() + ")"
	case t.isStruct:
		parts := make([]string, len(t.fields))
		for i, f := range t.fields {
			parts[i] = `"` + strings.ReplaceAll(f.name, `"`, `""`) + `" ` + f.typ.duckName()
		}
		return "STRUCT(" + strings.Join(parts, ", ") + ")"
	}
	return t.scalar
}

type ddlParser struct {
	src string
	i   int
}

func (p *ddlParser) errorf(format string, args ...any) error {
	return fmt.Errorf("schema %q at character %d: %s", p.src, p.i, fmt.Sprintf(format, args...))
}

func (p *ddlParser) skip() {
	for p.i < len(p.src) && strings.IndexByte(" \t\r\n", p.src[p.i]) >= 0 {
		p.i++
	}
}

// peek returns the next token without consuming it: a word, a `quoted`
// name, a number or one punctuation character.
func (p *ddlParser) peek() string {
	save := p.i
	t := p.next()
	p.i = save
	return t
}

func (p *ddlParser) next() string {
	p.skip()
	if p.i >= len(p.src) {
		return ""
	}
	start := p.i
	c := p.src[p.i]
	switch {
	case c == '`':
		p.i = skipQuoted(p.src, p.i, '`', false)
	case c == '\'':
		p.i = skipQuoted(p.src, p.i, '\'', false)
	case isWordByte(c):
		for p.i < len(p.src) && isWordByte(p.src[p.i]) {
			p.i++
		}
	default:
		p.i++
	}
	return p.src[start:p.i]
}

func (p *ddlParser) expect(s string) error {
	if t := p.next(); t != s {
		return p.errorf("want %q, found %q", s, t)
	}
	return nil
}

// fields parses name type [NOT NULL] [COMMENT '...'] (, ...)*, up to the end
// or (at depth > 0) up to the > that closes a STRUCT.
func (p *ddlParser) fields(depth int) ([]ddlField, error) {
	var out []ddlField
	seen := map[string]bool{}
	for {
		if t := p.peek(); t == "" || depth > 0 && t == ">" {
			return out, nil
		}
		name := p.next()
		switch {
		case strings.HasPrefix(name, "`"):
			name = strings.ReplaceAll(name[1:len(name)-1], "``", "`")
		case name == "" || !isWordStart(name[0]):
			return nil, p.errorf("want a field name, found %q", name)
		}
		if seen[name] {
			return nil, p.errorf("duplicate field %q", name)
		}
		seen[name] = true
		if p.peek() == ":" {
			p.next()
		}
		t, err := p.typ()
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(p.peek(), "not") {
			p.next()
			if !strings.EqualFold(p.next(), "null") {
				return nil, p.errorf("want NULL after NOT")
			}
		}
		if strings.EqualFold(p.peek(), "comment") {
			p.next()
			if c := p.next(); !strings.HasPrefix(c, "'") {
				return nil, p.errorf("want a quoted comment, found %q", c)
			}
		}
		out = append(out, ddlField{name: name, typ: t})
		if p.peek() != "," {
			return out, nil
		}
		p.next()
	}
}

var ddlScalars = map[string]string{
	"string": "VARCHAR", "varchar": "VARCHAR", "char": "VARCHAR",
	"boolean": "BOOLEAN", "bool": "BOOLEAN",
	"tinyint": "TINYINT", "byte": "TINYINT",
	"smallint": "SMALLINT", "short": "SMALLINT",
	"int": "INTEGER", "integer": "INTEGER",
	"bigint": "BIGINT", "long": "BIGINT",
	"float": "FLOAT", "real": "FLOAT",
	"double":        "DOUBLE",
	"date":          "DATE",
	"timestamp":     "TIMESTAMPTZ",
	"timestamp_ltz": "TIMESTAMPTZ",
	"timestamp_ntz": "TIMESTAMP",
}

func (p *ddlParser) typ() (*ddlType, error) {
	p.skip()
	at := p.i
	w := strings.ToLower(p.next())
	switch w {
	case "array":
		if err := p.expect("<"); err != nil {
			return nil, err
		}
		e, err := p.typ()
		if err != nil {
			return nil, err
		}
		return &ddlType{elem: e}, p.expect(">")
	case "map":
		if err := p.expect("<"); err != nil {
			return nil, err
		}
		k, err := p.typ()
		if err != nil {
			return nil, err
		}
		if err := p.expect(","); err != nil {
			return nil, err
		}
		v, err := p.typ()
		if err != nil {
			return nil, err
		}
		return &ddlType{key: k, val: v}, p.expect(">")
	case "struct":
		if err := p.expect("<"); err != nil {
			return nil, err
		}
		fs, err := p.fields(1)
		if err != nil {
			return nil, err
		}
		return &ddlType{isStruct: true, fields: fs}, p.expect(">")
	case "decimal", "dec", "numeric":
		prec, scale := 10, 0
		if p.peek() == "(" {
			p.next()
			var err error
			if prec, err = p.int(); err != nil {
				return nil, err
			}
			if p.peek() == "," {
				p.next()
				if scale, err = p.int(); err != nil {
					return nil, err
				}
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
		}
		if prec < 1 || prec > 38 || scale < 0 || scale > prec {
			return nil, p.errorf("DECIMAL(%d,%d): precision must be 1 to 38 and scale 0 to the precision", prec, scale)
		}
		return &ddlType{scalar: fmt.Sprintf("DECIMAL(%d,%d)", prec, scale)}, nil
	}
	s, ok := ddlScalars[w]
	if !ok {
		p.i = at
		return nil, p.errorf("unknown or unsupported type %q (supported: STRING, BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), DATE, TIMESTAMP, TIMESTAMP_NTZ, ARRAY<t>, MAP<k,v>, STRUCT<...>)", w)
	}
	if (w == "varchar" || w == "char") && p.peek() == "(" {
		p.next()
		if _, err := p.int(); err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
	}
	return &ddlType{scalar: s}, nil
}

func (p *ddlParser) int() (int, error) {
	t := p.next()
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, p.errorf("want a number, found %q", t)
	}
	return n, nil
}
