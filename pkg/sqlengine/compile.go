//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	duckdb "github.com/duckdb/duckdb-go/v2"
)

// CompileOption configures Compile. Only this package makes them.
type CompileOption interface{ applyCompile(*compileConfig) }

type compileOptionFunc func(*compileConfig)

func (f compileOptionFunc) applyCompile(c *compileConfig) { f(c) }

type compileConfig struct {
	view       string
	inputQuery string
}

// DefaultView is the name a query reads its input by, unless WithView says
// otherwise.
const DefaultView = "source"

// WithView names the input as the query reads it (FROM treasury_stream).
// Default DefaultView. A letter or underscore, then letters, digits and
// underscores; names starting with __sluice are the engine's.
func WithView(name string) CompileOption {
	return compileOptionFunc(func(c *compileConfig) { c.view = name })
}

// InputName is the name an input query (WithInputQuery) reads the run's
// input by.
const InputName = "__sluice_input"

// WithInputQuery defines the view the query reads (WithView's name) as q, a
// SELECT written by the program (not the user) over the run's input, which q
// names __sluice_input (InputName). Compile still takes the input's (the
// source's) schema; Run's input must match it. It lets a job run its decode
// step and the user's query as one DuckDB query per task.
//
// The user's query is checked as without it: it may read only its view, its
// CTEs and range/generate_series/unnest, and errors give positions in the
// user's text. q is trusted: an error in q (it does not parse or bind, or it
// reads __sluice_input more than once) is a plain error naming the input
// query, not a *QueryError. Default: none, the view is the input itself.
func WithInputQuery(q string) CompileOption {
	return compileOptionFunc(func(c *compileConfig) { c.inputQuery = q })
}

var viewName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Compiled is a query parsed and bound once against its input schema. It is
// immutable and safe for concurrent use; each Run takes its own connection.
type Compiled struct {
	e           *Engine
	query       string // as the user wrote it
	view        string
	inputQuery  string // defines view over the input (WithInputQuery), or ""
	input       *arrow.Schema
	output      *arrow.Schema
	sql         string   // what DuckDB runs
	pos         posMap   // maps positions in sql back to query
	base        string   // sql before the BIGINT wrapper, which Distribute rewrites
	basePos     posMap   // pos for base
	materialize bool     // the query reads its view more than once
	scans       int      // reads of the input stream in the plan
	names       []string // output column names, when sql wraps the query
	readsNow    bool     // sql or inputQuery names a function that reads the time WithNow pins
	// inputSelect, when not "", is what the view over a run's stream
	// selects instead of *: a narrowed Compiled's columns (Narrow).
	inputSelect string
}

// Query returns the query as the user wrote it.
func (c *Compiled) Query() string { return c.query }

// SQL returns the text DuckDB runs: the query after the Spark rewrites, in
// the BIGINT wrapper when it has one. For logs and debugging.
func (c *Compiled) SQL() string { return c.sql }

// View returns the name the query reads its input by.
func (c *Compiled) View() string { return c.view }

// InputQuery returns the query that defines the view (WithInputQuery), or
// "" when the view is the input itself.
func (c *Compiled) InputQuery() string { return c.inputQuery }

// InputSchema returns the schema Run's input must have.
func (c *Compiled) InputSchema() *arrow.Schema { return c.input }

// OutputSchema returns the schema of Run's results.
func (c *Compiled) OutputSchema() *arrow.Schema { return c.output }

// Compile parses and binds query against input, the Arrow schema of the
// rows the query reads as its view, and reports the output schema. It
// refuses, with a *QueryError wrapping ErrInvalidQuery:
//
//   - text DuckDB cannot parse (ErrSyntax), columns (ErrUnknownColumn),
//     functions (ErrUnknownFunction) and tables (ErrUnknownTable) that do
//     not exist, and every other binding error, at the position DuckDB gives;
//   - anything but one SELECT statement (COPY, ATTACH, PRAGMA, SET, CREATE,
//     INSTALL, LOAD..., or a second statement), table functions other than
//     range, generate_series and unnest, DESCRIBE/SUMMARIZE, parameters,
//     and CAST of a binary column to a string (ErrNotAllowed);
//   - a bad view name (Field "view") or schema (Field "schema").
//
// Other errors (a closed engine, a cancelled ctx) are returned as they are.
func (e *Engine) Compile(ctx context.Context, query string, input *arrow.Schema, opts ...CompileOption) (*Compiled, error) {
	cfg := compileConfig{view: DefaultView}
	for _, o := range opts {
		o.applyCompile(&cfg)
	}
	if err := validateInput(cfg.view, input); err != nil {
		return nil, err
	}
	if strings.TrimSpace(query) == "" {
		return nil, queryErrorAt(query, -1, ErrSyntax, "empty query")
	}
	rw := rewriteSpark(query)
	if rw.second >= 0 {
		return nil, queryErrorAt(query, rw.second, ErrNotAllowed, "a second statement: a SQL step runs exactly one SELECT")
	}
	m := posMap{edits: rw.edits}

	s, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()

	// 1. Parse, refuse what is not a single SELECT, check the tree.
	stmt, err := s.parse(ctx, query, rw.sql, m)
	if err != nil {
		return nil, err
	}
	binary := map[string]bool{}
	for _, f := range input.Fields() {
		if f.Type.ID() == arrow.BINARY || f.Type.ID() == arrow.LARGE_BINARY || f.Type.ID() == arrow.BINARY_VIEW {
			binary[strings.ToLower(f.Name)] = true
		}
	}
	ast := checkAST(stmt, query, m, cfg.view, binary)
	if ast.err != nil {
		return nil, ast.err
	}
	sql, m := translateLiterals(rw.sql, m, ast.literals)

	// 2. Bind against an empty stream with the input's schema, exactly as a
	// run sees it, plan, and learn the output schema.
	c := &Compiled{e: e, query: query, view: cfg.view, inputQuery: cfg.inputQuery, input: input, sql: sql, pos: m, readsNow: mentionsNow(sql, cfg.inputQuery)}
	if err := e.build(ctx, s, c, ast.recursive, true); err != nil {
		return nil, err
	}
	return c, nil
}

// inputQueryError is an error of the program's input query (WithInputQuery),
// not of the user's query.
type inputQueryError struct{ err error }

func (e *inputQueryError) Error() string { return "input query: " + e.err.Error() }
func (e *inputQueryError) Unwrap() error { return e.err }

// build completes c, whose e, query, view, inputQuery, input, sql and pos
// are set: it binds c.sql on s against an empty stream with the input's
// schema, exactly as a run sees it, decides whether runs read a copy of the
// view (recursive, or the plan reads the input more than once), adds the
// BIGINT wrapper and runs c over no rows to learn the Arrow schema DuckDB
// produces. user says c.sql is the user's query, whose attach failures are
// the schema's fault.
func (e *Engine) build(ctx context.Context, s *session, c *Compiled, recursive, user bool) error {
	empty, err := array.NewRecordReader(c.input, nil)
	if err != nil {
		return &QueryError{Field: "schema", Position: -1, Reason: err.Error(), Err: ErrInvalidQuery}
	}
	defer empty.Release()
	detach, err := s.attach(ctx, empty, c.view, c.inputQuery, c.inputSelect, false)
	if err != nil {
		var iq *inputQueryError
		switch {
		case ctx.Err() != nil:
			return err
		case errors.As(err, &iq):
			return fmt.Errorf("sqlengine: %w", err)
		case !user:
			return fmt.Errorf("sqlengine: attach input: %w", err)
		}
		return &QueryError{Field: "schema", Position: -1, Reason: fmt.Sprintf("DuckDB cannot read this Arrow schema: %v", err), Err: ErrInvalidQuery}
	}
	if c.inputQuery != "" {
		// The view is read through q once per read of the view: q itself must
		// read its input once, or even a single read of the view would scan
		// the one-shot stream twice.
		n, err := s.countScans(ctx, "SELECT * FROM "+quoteIdent(c.view))
		if err == nil && n != 1 {
			err = &inputQueryError{fmt.Errorf("reads %s %d times, want exactly once", InputName, n)}
		}
		if err != nil {
			detach()
			return fmt.Errorf("sqlengine: %w", err)
		}
	}
	hugeints, names, err := s.bind(ctx, c.query, c.sql, c.pos)
	if err == nil {
		c.scans, err = s.countScans(ctx, c.sql)
		// The Arrow view is a one-shot stream: a second scan of it sees no
		// rows, silently. A query that reads its view twice (a self-join, a
		// subquery on the same view, UNION of two reads) or re-reads it (a
		// recursive CTE) runs over a TEMP table copy instead.
		recursive = recursive || c.scans > 1
	}
	detach()
	if err != nil {
		return err
	}
	c.materialize = recursive
	c.base, c.basePos = c.sql, c.pos
	c.wrapBigint(hugeints, names)

	none, err := array.NewRecordReader(c.input, nil)
	if err != nil {
		return err
	}
	defer none.Release()
	out, err := c.Run(ctx, none)
	if err != nil {
		return err
	}
	c.output = out.Schema()
	out.Release()
	return nil
}

// translateLiterals replaces Spark patterns and schemas in sql (offsets in
// sql) with DuckDB's, and adds the edits to m. A literal is never inside a
// word rewriteSpark quoted, so its offsets map one to one.
func translateLiterals(sql string, m posMap, lits []literalEdit) (string, posMap) {
	if len(lits) == 0 {
		return sql, m
	}
	var b strings.Builder
	last := 0
	edits := slices.Clone(m.edits)
	for _, l := range lits {
		b.WriteString(sql[last:l.at])
		b.WriteString(l.text)
		last = l.at + l.oldLen
		at, _ := m.original(l.at)
		edits = append(edits, edit{at: at, oldLen: l.oldLen, newLen: l.newLen})
	}
	b.WriteString(sql[last:])
	slices.SortFunc(edits, func(a, b edit) int { return a.at - b.at })
	return b.String(), posMap{prefix: m.prefix, edits: edits}
}

func validateInput(view string, input *arrow.Schema) error {
	if !viewName.MatchString(view) || strings.HasPrefix(strings.ToLower(view), "__sluice") {
		return &QueryError{Field: "view", Position: -1, Err: ErrInvalidQuery,
			Reason: fmt.Sprintf("%q: want a letter or underscore, then letters, digits and underscores (not starting with __sluice)", view)}
	}
	if input == nil || input.NumFields() == 0 {
		return &QueryError{Field: "schema", Position: -1, Err: ErrInvalidQuery, Reason: "the input schema has no columns"}
	}
	seen := map[string]string{}
	for _, f := range input.Fields() {
		l := strings.ToLower(f.Name)
		if prev, ok := seen[l]; ok {
			return &QueryError{Field: "schema", Position: -1, Err: ErrInvalidQuery,
				Reason: fmt.Sprintf("columns %q and %q differ only in case, which SQL does not tell apart", prev, f.Name)}
		}
		seen[l] = f.Name
	}
	return nil
}

// parse returns DuckDB's parse tree of sql, refusing anything but a single
// SELECT. json_serialize_sql only parses: it runs nothing.
func (s *session) parse(ctx context.Context, query, sql string, m posMap) (any, error) {
	res, err := s.queryString(ctx, `SELECT CAST(json_serialize_sql(CAST($1 AS VARCHAR)) AS VARCHAR)`, sql)
	if err != nil {
		return nil, fmt.Errorf("sqlengine: parse: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(res))
	dec.UseNumber()
	var tree struct {
		Error      bool   `json:"error"`
		ErrorType  string `json:"error_type"`
		Message    string `json:"error_message"`
		Position   string `json:"position"`
		Statements []any  `json:"statements"`
	}
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("sqlengine: parse: read json_serialize_sql: %w", err)
	}
	switch {
	case tree.Error && tree.ErrorType == "parser":
		off := -1
		if p, err := json.Number(tree.Position).Int64(); err == nil {
			if o, ok := m.original(int(p)); ok {
				off = o
			}
		}
		return nil, queryErrorAt(query, off, ErrSyntax, tree.Message)
	case tree.Error && tree.ErrorType == "not implemented":
		// "Only SELECT statements can be serialized to json!"
		word, off := firstWord(query)
		return nil, queryErrorAt(query, off, ErrNotAllowed, fmt.Sprintf("a SQL step runs one SELECT statement, not %s", word))
	case tree.Error:
		return nil, queryErrorAt(query, -1, ErrInvalidQuery, tree.Message)
	case len(tree.Statements) != 1:
		return nil, queryErrorAt(query, -1, ErrNotAllowed, fmt.Sprintf("a SQL step runs exactly one SELECT, found %d statements", len(tree.Statements)))
	}
	return tree.Statements[0], nil
}

// bind prepares sql and returns which output columns are HUGEINT and every
// column's name. Preparing binds but does not run.
func (s *session) bind(ctx context.Context, query, sql string, m posMap) (hugeints []bool, names []string, err error) {
	st, err := s.conn.(driver.ConnPrepareContext).PrepareContext(ctx, sql)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, err
		}
		return nil, nil, fromDuck(err, query, m, nil)
	}
	defer st.Close()
	ds, ok := st.(*duckdb.Stmt)
	if !ok {
		return nil, nil, fmt.Errorf("sqlengine: bind: unexpected statement type %T", st)
	}
	if t, err := ds.StatementType(); err != nil || t != duckdb.STATEMENT_TYPE_SELECT {
		return nil, nil, queryErrorAt(query, -1, ErrNotAllowed, "a SQL step runs one SELECT statement")
	}
	if ds.NumInput() > 0 {
		return nil, nil, queryErrorAt(query, -1, ErrNotAllowed, "parameters ($1, ?) are not supported")
	}
	n, err := ds.ColumnCount()
	if err != nil {
		return nil, nil, fmt.Errorf("sqlengine: bind: %w", err)
	}
	for i := range n {
		t, err := ds.ColumnType(i)
		if err != nil {
			return nil, nil, fmt.Errorf("sqlengine: bind: column %d: %w", i, err)
		}
		name, err := ds.ColumnName(i)
		if err != nil {
			return nil, nil, fmt.Errorf("sqlengine: bind: column %d: %w", i, err)
		}
		hugeints = append(hugeints, t == duckdb.TYPE_HUGEINT)
		names = append(names, name)
	}
	return hugeints, names, nil
}

// countScans plans sql and counts the reads of Arrow streams in the plan
// (a recursive CTE counts as two: it re-reads its inputs).
func (s *session) countScans(ctx context.Context, sql string) (int, error) {
	plans, err := s.explain(ctx, sql)
	if err != nil {
		return 0, fmt.Errorf("sqlengine: %w", err)
	}
	n := 0
	walkJSON(plans, func(node map[string]any) {
		name, _ := node["name"].(string)
		switch {
		case strings.HasPrefix(name, "ARROW_SCAN"):
			n++
		case strings.HasPrefix(name, "RECURSIVE_"):
			n += 2
		}
	})
	return n, nil
}

// wrapBigint casts HUGEINT output columns to BIGINT. DuckDB sums integers
// into a 128-bit HUGEINT (Arrow decimal(38,0)); Spark's sum of integers is
// a bigint, and sinks expect one. A sum beyond int64 fails the run with a
// conversion error, as Spark's ANSI mode fails on overflow, rather than
// wrap. The wrapper renames columns by position, so duplicate output names
// survive.
func (c *Compiled) wrapBigint(hugeints []bool, names []string) {
	wrap := false
	for _, h := range hugeints {
		wrap = wrap || h
	}
	if !wrap {
		return
	}
	var sel, alias []string
	for i, name := range names {
		col := quoteIdent(fmt.Sprintf("__c%d", i))
		alias = append(alias, col)
		if hugeints[i] {
			col = "CAST(" + col + " AS BIGINT)"
		}
		sel = append(sel, col+" AS "+quoteIdent(name))
	}
	c.names = names
	prefix := "SELECT " + strings.Join(sel, ", ") + " FROM (\n"
	c.sql = prefix + c.sql + "\n) AS " + quoteIdent("__sluice_q") + "(" + strings.Join(alias, ", ") + ")"
	c.pos.prefix = len(prefix)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// queryString runs a query returning one string.
func (s *session) queryString(ctx context.Context, q string, args ...any) (string, error) {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	rows, err := s.conn.(driver.QueryerContext).QueryContext(ctx, q, nv)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	vals := make([]driver.Value, 1)
	if err := rows.Next(vals); err != nil {
		return "", err
	}
	str, ok := vals[0].(string)
	if !ok {
		return "", errors.New("not a string")
	}
	return str, nil
}
