//go:build duckdb_arrow

package sqlengine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// JSONInference is what InferJSONSchema found in a sample of payloads.
type JSONInference struct {
	// Schema is the fields as a Spark DDL string ("amount BIGINT, branch
	// STRING"), which SparkSchema and from_json accept.
	Schema string
	// Objects is how many payloads were JSON objects and shaped it;
	// Skipped how many were not (malformed, or an array or scalar).
	Objects, Skipped int
}

// InferJSONSchema infers a Spark DDL schema from sample JSON payloads the way
// Spark's JSON source does (spark.read.json without a schema, its defaults):
// a field's type is the widest of the types it has across the objects;
// integers are BIGINT (DECIMAL(p,0) beyond its range, DOUBLE beyond 38
// digits), other numbers DOUBLE, and types that do not widen into each other
// (a string and a number) become STRING, as do fields that are only ever
// null. Strings stay STRING (Spark infers no timestamps by default). Fields
// are sorted by name at every level, as Spark sorts them. Payloads that are
// not JSON objects are skipped and counted, as Spark sets them aside as
// corrupt records; an error means no object was found, or two fields differ
// only in case (DuckDB's names are case-insensitive, so such a schema could
// not be decoded).
func InferJSONSchema(payloads [][]byte) (JSONInference, error) {
	var inf JSONInference
	var top *jsonType
	for _, p := range payloads {
		t, ok := inferPayload(p)
		if !ok {
			inf.Skipped++
			continue
		}
		inf.Objects++
		top = mergeJSONTypes(top, t)
	}
	if top == nil {
		return inf, fmt.Errorf("none of the %d sampled payloads is a JSON object", len(payloads))
	}
	ddl, err := top.ddlFields("")
	if err != nil {
		return inf, err
	}
	if ddl == "" {
		return inf, fmt.Errorf("the %d sampled JSON objects have no fields", inf.Objects)
	}
	inf.Schema = ddl
	return inf, nil
}

// jsonKind orders the kinds a JSON value infers to.
type jsonKind int

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonLong
	jsonDecimal // an integer beyond BIGINT: DECIMAL(precision, 0)
	jsonDouble
	jsonString
	jsonArray
	jsonStruct
)

// jsonType is an inferred type: a kind and, for an array, its elements' type,
// for a struct its fields, for a decimal its precision.
type jsonType struct {
	kind      jsonKind
	precision int
	elem      *jsonType
	fields    map[string]*jsonType
}

// inferPayload is the type of one payload, if it is a JSON object.
func inferPayload(p []byte) (*jsonType, bool) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false // trailing data: malformed, as from_json sees it
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, false
	}
	return inferValue(v), true
}

func inferValue(v any) *jsonType {
	switch x := v.(type) {
	case nil:
		return &jsonType{kind: jsonNull}
	case bool:
		return &jsonType{kind: jsonBool}
	case string:
		return &jsonType{kind: jsonString}
	case json.Number:
		return inferNumber(string(x))
	case []any:
		var elem *jsonType
		for _, e := range x {
			elem = mergeJSONTypes(elem, inferValue(e))
		}
		return &jsonType{kind: jsonArray, elem: elem}
	case map[string]any:
		t := &jsonType{kind: jsonStruct, fields: make(map[string]*jsonType, len(x))}
		for k, e := range x {
			t.fields[k] = inferValue(e)
		}
		return t
	}
	return &jsonType{kind: jsonString}
}

// inferNumber types a JSON number as Spark's parser does: integers that fit
// a long are BIGINT, longer ones DECIMAL(digits, 0) up to 38 digits, and
// everything else DOUBLE.
func inferNumber(s string) *jsonType {
	if strings.ContainsAny(s, ".eE") {
		return &jsonType{kind: jsonDouble}
	}
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &jsonType{kind: jsonLong}
	}
	digits := len(strings.TrimLeft(strings.TrimPrefix(s, "-"), "0"))
	if digits <= maxDecimalPrecision {
		return &jsonType{kind: jsonDecimal, precision: digits}
	}
	return &jsonType{kind: jsonDouble}
}

// maxDecimalPrecision is Spark's (and DuckDB's) widest DECIMAL.
const maxDecimalPrecision = 38

// longPrecision is the DECIMAL a BIGINT widens to (Spark's
// DecimalType.forType(LongType)).
const longPrecision = 20

// mergeJSONTypes is the type both a and b fit, following Spark's
// compatibleType: null takes the other type, numbers widen (BIGINT to
// DECIMAL to DOUBLE), structs merge field by field, arrays element by
// element, and anything else is STRING. a may be nil (nothing seen yet).
func mergeJSONTypes(a, b *jsonType) *jsonType {
	switch {
	case a == nil || a.kind == jsonNull:
		return b
	case b.kind == jsonNull:
		return a
	case a.kind == jsonStruct && b.kind == jsonStruct:
		for k, t := range b.fields {
			a.fields[k] = mergeJSONTypes(a.fields[k], t)
		}
		return a
	case a.kind == jsonArray && b.kind == jsonArray:
		switch {
		case a.elem == nil:
			a.elem = b.elem
		case b.elem != nil:
			a.elem = mergeJSONTypes(a.elem, b.elem)
		}
		return a
	case isNumeric(a.kind) && isNumeric(b.kind):
		if a.kind == jsonDouble || b.kind == jsonDouble {
			return &jsonType{kind: jsonDouble}
		}
		if a.kind == jsonLong && b.kind == jsonLong {
			return a
		}
		p := max(decimalPrecision(a), decimalPrecision(b))
		return &jsonType{kind: jsonDecimal, precision: p}
	case a.kind == b.kind:
		return a
	}
	return &jsonType{kind: jsonString}
}

func isNumeric(k jsonKind) bool { return k == jsonLong || k == jsonDecimal || k == jsonDouble }

func decimalPrecision(t *jsonType) int {
	if t.kind == jsonLong {
		return longPrecision
	}
	return t.precision
}

// ddl renders t as a Spark DDL type; "" for a struct without fields, which
// Spark drops (it holds nothing to decode).
func (t *jsonType) ddl(path string) (string, error) {
	if t == nil {
		return "STRING", nil // only nulls, or only empty arrays: Spark's StringType
	}
	switch t.kind {
	case jsonBool:
		return "BOOLEAN", nil
	case jsonLong:
		return "BIGINT", nil
	case jsonDecimal:
		return fmt.Sprintf("DECIMAL(%d,0)", t.precision), nil
	case jsonDouble:
		return "DOUBLE", nil
	case jsonArray:
		e, err := t.elem.ddl(path + "[]")
		if err != nil || e == "" {
			return e, err
		}
		return "ARRAY<" + e + ">", nil
	case jsonStruct:
		fs, err := t.ddlFields(path)
		if err != nil || fs == "" {
			return fs, err
		}
		return "STRUCT<" + fs + ">", nil
	}
	return "STRING", nil
}

// ddlFields renders a struct's fields, sorted by name, as "name TYPE, ...";
// path names the struct in errors ("" at the top).
func (t *jsonType) ddlFields(path string) (string, error) {
	names := make([]string, 0, len(t.fields))
	for k := range t.fields {
		names = append(names, k)
	}
	sort.Strings(names)
	seen := make(map[string]string, len(names))
	var b strings.Builder
	for _, n := range names {
		full := n
		if path != "" {
			full = path + "." + n
		}
		if other, ok := seen[strings.ToLower(n)]; ok {
			return "", fmt.Errorf("fields %q and %q differ only in case, which SQL cannot tell apart; give the schema, naming one of them", other, full)
		}
		seen[strings.ToLower(n)] = full
		typ, err := t.fields[n].ddl(full)
		if err != nil {
			return "", err
		}
		if typ == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ddlName(n))
		if t.kind == jsonStruct && path != "" {
			b.WriteString(": ")
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(typ)
	}
	return b.String(), nil
}

var plainName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ddlName quotes a field name for DDL when it is not a plain identifier.
func ddlName(n string) string {
	if plainName.MatchString(n) {
		return n
	}
	return "`" + strings.ReplaceAll(n, "`", "``") + "`"
}
