//go:build duckdb_arrow

package sqlengine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The checks here read DuckDB's own parse tree of the query
// (json_serialize_sql) before anything is bound. enable_external_access is
// already off, so they are a second line: a SQL step reads its view and
// nothing else, whatever DuckDB would allow. They also catch what DuckDB
// would accept but get wrong for a Spark user (CAST of Kafka's binary value
// to a string), and check constant datetime patterns and from_json schemas
// so that a bad one is reported at its position.
//
// The tree's format changes between DuckDB versions (json_serialize_sql is
// not a stable interface); the walk is generic over objects and keys, and
// the version is pinned in go.mod.

// allowedTableFunctions produce rows from their arguments only.
var allowedTableFunctions = map[string]bool{"range": true, "generate_series": true, "unnest": true}

// refusedTableRefs are FROM items that read DuckDB's catalog or internals.
var refusedTableRefs = map[string]string{
	"SHOW_REF":        "DESCRIBE, SHOW and SUMMARIZE are",
	"COLUMN_DATA":     "this table reference is",
	"DELIM_GET":       "this table reference is",
	"BOUND_TABLE_REF": "this table reference is",
}

var stringTypes = map[string]bool{"varchar": true, "string": true, "text": true, "char": true, "bpchar": true}

type astFinding struct {
	off    int // byte offset in the user's query, -1 if unknown
	kind   error
	reason string
}

type astCheck struct {
	m         posMap
	view      string          // lower case
	binary    map[string]bool // lower-case names of the input's binary columns
	ctes      map[string]bool
	recursive bool
	findings  []astFinding
	literals  []literalEdit
}

// literalEdit replaces a string literal of the parsed SQL (offsets in that
// text) with its DuckDB form.
type literalEdit struct {
	edit
	text string
}

// astResult is what the walk learnt.
type astResult struct {
	err       *QueryError   // the refusal nearest the start of the query
	recursive bool          // a recursive CTE re-reads its inputs
	literals  []literalEdit // Spark patterns and schemas to translate, ascending
}

// checkAST walks the serialised statement, whose locations are offsets into
// the SQL DuckDB parsed; m maps them back to the user's query.
func checkAST(stmt any, query string, m posMap, view string, binary map[string]bool) astResult {
	c := &astCheck{m: m, view: strings.ToLower(view), binary: binary, ctes: map[string]bool{}}
	walkJSON(stmt, c.collectCTEs)
	walkJSON(stmt, c.visit)
	res := astResult{recursive: c.recursive}
	var best *astFinding
	for i, f := range c.findings {
		if best == nil || f.off >= 0 && (best.off < 0 || f.off < best.off) {
			best = &c.findings[i]
		}
	}
	if best != nil {
		res.err = queryErrorAt(query, best.off, best.kind, best.reason)
	}
	slices.SortFunc(c.literals, func(a, b literalEdit) int { return a.at - b.at })
	res.literals = c.literals
	return res
}

func walkJSON(v any, visit func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		visit(x)
		for _, c := range x {
			walkJSON(c, visit)
		}
	case []any:
		for _, c := range x {
			walkJSON(c, visit)
		}
	}
}

func (c *astCheck) collectCTEs(n map[string]any) {
	cm, ok := n["cte_map"].(map[string]any)
	if !ok {
		return
	}
	entries, _ := cm["map"].([]any)
	for _, e := range entries {
		if kv, ok := e.(map[string]any); ok {
			if k, ok := kv["key"].(string); ok {
				c.ctes[strings.ToLower(k)] = true
			}
		}
	}
}

func (c *astCheck) add(n map[string]any, kind error, format string, args ...any) {
	c.findings = append(c.findings, astFinding{off: c.location(n), kind: kind, reason: fmt.Sprintf(format, args...)})
}

// location is a node's query_location mapped back to the user's query.
func (c *astCheck) location(n map[string]any) int {
	p, _, ok := rawLocation(n)
	if !ok {
		return -1
	}
	o, ok := c.m.original(p)
	if !ok {
		return -1
	}
	return o
}

// rawLocation is a node's offset and length in the SQL DuckDB parsed.
func rawLocation(n map[string]any) (at, length int, ok bool) {
	num, ok := n["query_location"].(json.Number)
	if !ok {
		return 0, 0, false
	}
	p, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || p < 0 {
		return 0, 0, false // DuckDB writes "no location" as 2^64-1
	}
	ln, _ := n["query_location_length"].(json.Number)
	l, err := strconv.ParseInt(string(ln), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return int(p), int(l), true
}

func (c *astCheck) visit(n map[string]any) {
	class, _ := n["class"].(string)
	typ, _ := n["type"].(string)
	if class == "" { // table references and query nodes have a type, no class
		switch {
		case typ == "RECURSIVE_CTE_NODE":
			c.recursive = true
		case typ == "BASE_TABLE":
			c.baseTable(n)
		case typ == "TABLE_FUNCTION":
			fn, _ := n["function"].(map[string]any)
			name, _ := fn["function_name"].(string)
			if !allowedTableFunctions[strings.ToLower(name)] {
				c.add(n, ErrNotAllowed, "table function %s is not allowed: a SQL step reads only its view %q (allowed: range, generate_series, unnest)", name, c.view)
			}
		case refusedTableRefs[typ] != "":
			c.add(n, ErrNotAllowed, "%s not allowed in a SQL step", refusedTableRefs[typ])
		}
		return
	}
	switch class {
	case "PARAMETER":
		c.add(n, ErrNotAllowed, "parameters ($1, ?) are not supported: a SQL step has no values to bind")
	case "CAST":
		c.cast(n)
	case "FUNCTION":
		c.function(n)
	}
}

func (c *astCheck) baseTable(n map[string]any) {
	name, _ := n["table_name"].(string)
	schema, _ := n["schema_name"].(string)
	catalog, _ := n["catalog_name"].(string)
	if schema != "" || catalog != "" {
		c.add(n, ErrUnknownTable, "table %s is not available: a SQL step reads only its view %q, unqualified", strings.Trim(catalog+"."+schema+"."+name, "."), c.view)
		return
	}
	if l := strings.ToLower(name); l != c.view && !c.ctes[l] {
		c.add(n, ErrUnknownTable, "table %q does not exist: a SQL step reads only its view %q and the query's own WITH tables", name, c.view)
	}
}

// cast refuses CAST(value AS STRING) on a binary input column. DuckDB's
// BLOB-to-VARCHAR cast escapes bytes ("{\x22a\x22:1}"), where Spark decodes
// UTF-8; JSON functions then see no valid document and return NULL, which
// would go unnoticed.
func (c *astCheck) cast(n map[string]any) {
	typeName := ""
	if te, ok := n["type_expr"].(map[string]any); ok {
		typeName, _ = te["type_name"].(string)
	} else if ct, ok := n["cast_type"].(map[string]any); ok {
		typeName, _ = ct["id"].(string)
	}
	child, _ := n["child"].(map[string]any)
	if !stringTypes[strings.ToLower(typeName)] || child == nil || child["class"] != "COLUMN_REF" {
		return
	}
	names, _ := child["column_names"].([]any)
	if len(names) == 0 {
		return
	}
	col, _ := names[len(names)-1].(string)
	if !c.binary[strings.ToLower(col)] {
		return
	}
	f := astFinding{off: c.location(n), kind: ErrNotAllowed, reason: fmt.Sprintf(
		"CAST(%s AS %s) of a binary column gives DuckDB's escaped text (\\x22 for a quote), not Spark's UTF-8 decoding: write decode(%s), or pass %s to from_json or get_json_object as it is",
		col, strings.ToUpper(typeName), col, col)}
	if o := c.location(child); o >= 0 && (f.off < 0 || o < f.off) {
		f.off = o // value::VARCHAR has its location at the ::
	}
	c.findings = append(c.findings, f)
}

// function translates the Spark pattern or schema literal of the functions
// in literalArgs. It must be a string literal: DuckDB needs a constant, and
// a pattern computed at run time would reach strftime untranslated.
func (c *astCheck) function(n map[string]any) {
	name, _ := n["function_name"].(string)
	name = strings.ToLower(name)
	k, ok := literalArgs[name]
	args := functionArgs(n)
	if !ok || len(args) != 2 {
		return
	}
	what := "datetime pattern"
	if k == ddlSchema {
		what = "schema"
	}
	lit, isString := stringConstant(args[1])
	at, length, hasLoc := rawLocation(args[1])
	switch {
	case !isString:
		c.add(args[1], ErrNotAllowed, "%s: the %s must be a string literal", name, what)
	case !hasLoc:
		c.add(n, ErrInvalidQuery, "%s: cannot locate the %s in the query", name, what)
	default:
		out, err := k.translate(lit)
		if err != nil {
			c.add(args[1], ErrInvalidQuery, "%s: %v", name, err)
			return
		}
		text := "'" + strings.ReplaceAll(out, "'", "''") + "'"
		c.literals = append(c.literals, literalEdit{edit: edit{at: at, oldLen: length, newLen: len(text)}, text: text})
	}
}

// functionArgs returns a function node's argument expressions. DuckDB 2.0
// writes them as {"name": ..., "expression": {...}}; 1.x as plain children.
func functionArgs(n map[string]any) []map[string]any {
	list, ok := n["arguments"].([]any)
	if !ok {
		list, _ = n["children"].([]any)
	}
	var out []map[string]any
	for _, a := range list {
		m, ok := a.(map[string]any)
		if !ok {
			continue
		}
		if e, ok := m["expression"].(map[string]any); ok {
			m = e
		}
		out = append(out, m)
	}
	return out
}

func stringConstant(n map[string]any) (string, bool) {
	if n["class"] != "CONSTANT" {
		return "", false
	}
	lit, _ := n["literal"].(map[string]any)
	if k, _ := lit["kind"].(string); k != "STRING" && k != "VARCHAR" {
		return "", false
	}
	s, ok := lit["text"].(string)
	return s, ok
}
