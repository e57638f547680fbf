//go:build duckdb_arrow

// Package sinkexpr evaluates the per-record options of the Kafka and Kinesis
// sinks (a record's key, value, topic, headers, partition, partition key...),
// which are SQL expressions over the rows the sink receives, in the dialect
// of a job's transforms (pkg/sqlengine: DuckDB with Spark's function names).
//
// An option that is one column name (amount, "weird-name") is read straight
// from its column: no SQL runs for it. The others are evaluated together,
// once per batch, as one query on the process's shared engine
// (sqltransform.SharedEngine):
//
//	SELECT (<key>) AS "__o0", (<value>) AS "__o1", ... FROM __sink
//
// whose result columns the sink reads by row index. The row path (rows
// without a batch: jobs without transforms, dead letters, stateful outputs)
// converts the rows to a batch of the sink's schema and runs the same query,
// so that both paths give the same values. Values are read as
// columnar.AppendRows reads a batch (nil for NULL, int64, float64, string,
// []byte, time.Time, []any, map[string]any), which is how the sinks turn
// them into bytes.
package sinkexpr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/stream"
)

// View is the name the options' query reads the sink's rows by. It is not
// a name users write: an expression names columns, not the view.
const View = "__sink"

// compileTimeout bounds compiling the options' query (milliseconds
// normally; this only guards a stuck engine).
const compileTimeout = time.Minute

// Option is one per-record option of a sink.
type Option struct {
	// Field names the option in errors, relative to the sink's block
	// ("key", "headers.trace").
	Field string
	// Text is the SQL expression as the user wrote it.
	Text string
	// Want, when set, checks the type of the option's result (the column's
	// type for a column name); its error is the reason the option is
	// refused. The sinks check the values at run time too.
	Want func(arrow.DataType) error
}

// Error is a refused option: Field is the Option's, Reason says what is
// wrong and, for a problem in the text, at which character position of it
// (0-based).
type Error struct {
	Field  string
	Reason string
}

func (e *Error) Error() string { return e.Field + ": " + e.Reason }

// Set is a sink's options compiled for the rows it receives. It is safe for
// concurrent use.
type Set struct {
	opts   []option
	schema *arrow.Schema // the rows' schema; nil when not known

	mu    sync.Mutex
	plans []*plan // one per batch schema seen; usually one
}

type option struct {
	Option
	column string // the name, when Text is one column name
	quoted bool   // column was quoted: it matches exactly
}

// New checks opts' texts and, when schema (the rows' columns) is known,
// compiles them against it, refusing unknown columns and functions, type
// errors, aggregates and window functions: every problem is an *Error
// naming its option, the first of each option's, joined. Without a schema
// only each text's shape is checked (one expression): the sinks then
// compile the query for each batch's schema as it comes, and cannot take
// rows.
func New(opts []Option, schema *arrow.Schema) (*Set, error) {
	s := &Set{schema: schema}
	var errs []error
	for _, o := range opts {
		if strings.TrimSpace(o.Text) == "" {
			errs = append(errs, &Error{Field: o.Field, Reason: "is empty: a SQL expression over the rows' columns"})
			continue
		}
		if err := sqlengine.CheckExpression(o.Text); err != nil {
			errs = append(errs, &Error{Field: o.Field, Reason: err.Error() + celHint(o.Text)})
			continue
		}
		opt := option{Option: o}
		opt.column, opt.quoted, _ = sqlengine.ColumnName(o.Text)
		s.opts = append(s.opts, opt)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if schema != nil {
		ctx, cancel := context.WithTimeout(context.Background(), compileTimeout)
		defer cancel()
		if _, err := s.plan(ctx, schema); err != nil {
			return nil, err
		}
		if rows := RowsSchema(schema); !rows.Equal(schema) {
			// The row path's batches: refuse now what would fail there.
			if _, err := s.plan(ctx, rows); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Schema is the rows' schema New was given, or nil.
func (s *Set) Schema() *arrow.Schema { return s.schema }

// NeedsSQL reports whether some option is more than a column name of the
// rows (with the schema unknown, more than one name).
func (s *Set) NeedsSQL() bool {
	for _, o := range s.opts {
		if o.column == "" || (s.schema != nil && columnIndex(s.schema, o.column, o.quoted) < 0) {
			return true
		}
	}
	return false
}

// Columns returns the columns of the rows that the options read, one per
// option, when each option is one of them by name; ok is false when the
// schema is unknown or some option is an expression (a query may read any
// column).
func (s *Set) Columns() (names []string, ok bool) {
	if s.schema == nil || s.NeedsSQL() {
		return nil, false
	}
	for _, o := range s.opts {
		names = append(names, s.schema.Field(columnIndex(s.schema, o.column, o.quoted)).Name)
	}
	return names, true
}

// plan is the options compiled for one schema of batches.
type plan struct {
	schema *arrow.Schema
	// col[k] is the input column option k reads directly, or -1; out[k]
	// the query's output column holding its values, or -1.
	col, out []int
	query    *sqlengine.Compiled // nil when every option is a column
}

// plan returns the options' plan for batches of schema, compiling it on
// first use.
func (s *Set) plan(ctx context.Context, schema *arrow.Schema) (*plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.plans {
		if p.schema.Equal(schema) {
			return p, nil
		}
	}
	p, err := s.compile(ctx, schema)
	if err != nil {
		return nil, err
	}
	s.plans = append(s.plans, p)
	return p, nil
}

// compile builds the plan for schema: column names are looked up, the
// other options are compiled together as one query, each in its own
// parentheses and lines so that an error places itself in one option.
func (s *Set) compile(ctx context.Context, schema *arrow.Schema) (*plan, error) {
	p := &plan{schema: schema, col: make([]int, len(s.opts)), out: make([]int, len(s.opts))}
	var q query
	q.write("SELECT ")
	n := 0
	var errs []error
	for k, o := range s.opts {
		p.col[k], p.out[k] = -1, -1
		if o.column != "" {
			if j := columnIndex(schema, o.column, o.quoted); j >= 0 {
				p.col[k] = j
				if err := o.check(schema.Field(j).Type); err != nil {
					errs = append(errs, err)
				}
				continue
			}
		}
		if n > 0 {
			q.write(", ")
		}
		q.write("(")
		q.option(k, o.Text)
		q.write(fmt.Sprintf("\n) AS \"__o%d\"", n))
		p.out[k] = n
		n++
	}
	if n == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return p, nil
	}
	q.write(" FROM " + View)
	eng, err := sqltransform.SharedEngine(ctx)
	if err != nil {
		return nil, err
	}
	c, err := eng.Compile(ctx, q.text, schema, sqlengine.WithView(View))
	if err != nil {
		// An aggregate beside a computed option makes the query fail
		// with GROUP BY advice for the other one: name the aggregate.
		if aggs := s.aggregating(ctx, eng, schema, p); len(aggs) > 0 {
			return nil, errors.Join(append(errs, aggs...)...)
		}
		return nil, errors.Join(append(errs, s.queryError(err, &q))...)
	}
	// A per-record option gives one value per row: an aggregate would
	// give one per batch, a window function one that depends on how the
	// rows fell into batches.
	d, err := eng.Distribute(ctx, c)
	if err != nil {
		return nil, errors.Join(append(errs, s.queryError(err, &q))...)
	}
	if d.Final != nil {
		aggs := s.aggregating(ctx, eng, schema, p)
		if len(aggs) == 0 {
			aggs = []error{&Error{Field: s.opts[0].Field, Reason: "the options aggregate the rows: a per-record option is computed from each row alone"}}
		}
		return nil, errors.Join(append(errs, aggs...)...)
	}
	for k, o := range s.opts {
		if p.out[k] >= 0 {
			t := c.OutputSchema().Field(p.out[k]).Type
			if err := o.check(t); err != nil {
				errs = append(errs, err)
			} else if err := readable(t); err != nil {
				errs = append(errs, &Error{Field: o.Field, Reason: err.Error()})
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.query = c
	return p, nil
}

func (o option) check(t arrow.DataType) error {
	if o.Want == nil || t.ID() == arrow.NULL {
		return nil
	}
	if err := o.Want(t); err != nil {
		return &Error{Field: o.Field, Reason: err.Error()}
	}
	return nil
}

// aggregating returns an error for each option computed by the query that
// aggregates the rows, compiling each alone; none when no option does on
// its own.
func (s *Set) aggregating(ctx context.Context, eng *sqlengine.Engine, schema *arrow.Schema, p *plan) []error {
	var errs []error
	for k, o := range s.opts {
		if p.out[k] < 0 {
			continue
		}
		c, err := eng.Compile(ctx, "SELECT ("+o.Text+"\n) FROM "+View, schema, sqlengine.WithView(View))
		if err != nil {
			continue
		}
		if d, err := eng.Distribute(ctx, c); err == nil && d.Final != nil {
			errs = append(errs, &Error{Field: o.Field, Reason: "aggregates the rows (count, sum, ...): a per-record option is computed from each row alone"})
		}
	}
	return errs
}

// readable refuses a result type Eval cannot hand to a sink: a union
// (Arrow Go cannot concatenate one), also inside a list, map or struct.
func readable(t arrow.DataType) error {
	switch t := t.(type) {
	case arrow.UnionType:
		return fmt.Errorf("gives a %s, which a sink cannot write: cast it to one type", t)
	case arrow.ListLikeType:
		return readable(t.Elem())
	case *arrow.StructType:
		for _, f := range t.Fields() {
			if err := readable(f.Type); err != nil {
				return err
			}
		}
	}
	return nil
}

// queryError reports err, a compile error of q, at the option it points
// into, with the position in that option's text.
func (s *Set) queryError(err error, q *query) error {
	var qe *sqlengine.QueryError
	if !errors.As(err, &qe) {
		return fmt.Errorf("compile the sink's expressions: %w", err)
	}
	reason := fmt.Sprintf("%v: %s", qe.Err, qe.Reason)
	if qe.Position >= 0 {
		for _, sp := range q.spans {
			// +2: the "\n)" after the text, where the parser places an
			// expression that ends too early ("amount +").
			if qe.Position >= sp.start && qe.Position <= sp.end+2 {
				o := s.opts[sp.opt]
				pos := min(qe.Position, sp.end) - sp.start
				return &Error{Field: o.Field, Reason: fmt.Sprintf("position %d: %s%s", pos, reason, celHint(o.Text))}
			}
		}
	}
	// No place (DuckDB names none for some binding errors): blame the
	// option whose text holds what the error quotes, else the first.
	for _, sp := range q.spans {
		o := s.opts[sp.opt]
		for _, quoted := range quotedNames(qe.Reason) {
			if strings.Contains(o.Text, quoted) {
				return &Error{Field: o.Field, Reason: reason + celHint(o.Text)}
			}
		}
	}
	o := s.opts[q.spans[0].opt]
	return &Error{Field: o.Field, Reason: reason + celHint(o.Text)}
}

// quotedNames returns the "..." parts of a DuckDB message.
func quotedNames(msg string) []string {
	var out []string
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(msg[i+1:], '"')
		if j < 0 {
			return out
		}
		if j > 0 {
			out = append(out, msg[i+1:i+1+j])
		}
		msg = msg[i+j+2:]
	}
}

// query is the options' SELECT being written, with where each option's
// text went, in characters (QueryError's unit).
type query struct {
	text  string
	chars int
	spans []span
}

type span struct{ start, end, opt int }

func (q *query) write(s string) {
	q.text += s
	q.chars += utf8.RuneCountInString(s)
}

func (q *query) option(k int, text string) {
	start := q.chars
	q.write(text)
	q.spans = append(q.spans, span{start: start, end: q.chars, opt: k})
}

// columnIndex is the index of the column name names in s, -1 if none: a
// quoted name matches exactly, a bare one in any case, as SQL does.
func columnIndex(s *arrow.Schema, name string, quoted bool) int {
	for i, f := range s.Fields() {
		if f.Name == name || (!quoted && strings.EqualFold(f.Name, name)) {
			return i
		}
	}
	return -1
}

// celHint explains, when text looks like the CEL the options used to be,
// how SQL writes it.
func celHint(text string) string {
	var hints []string
	for _, h := range []struct{ cel, sql string }{
		{"string(", "CAST(x AS STRING)"},
		{"int(", "CAST(x AS BIGINT)"},
		{"double(", "CAST(x AS DOUBLE)"},
		{"row.", "the column's name"},
		{"row[", "the column's name"},
		{"&&", "AND"},
		{"? ", "CASE WHEN c THEN a ELSE b END"},
		{"has(", "x IS NOT NULL"},
		{".lowerAscii()", "lower(x)"},
		{".upperAscii()", "upper(x)"},
		{`"`, "'text' for a string (\"x\" names a column)"},
	} {
		if strings.Contains(text, h.cel) {
			hints = append(hints, strings.TrimSuffix(h.cel, " ")+" → "+h.sql)
		}
	}
	if len(hints) == 0 {
		return ""
	}
	return " (sink options are SQL expressions, no longer CEL: " + strings.Join(hints, "; ") + ")"
}

// Values are the options' values over one batch's rows. Release them once
// read.
type Values struct {
	arrays  []arrow.Array // per option; nil for a column of rows
	readers []columnar.ValueReader
	release []func()
	n       int
}

// Len is the number of rows.
func (v *Values) Len() int { return v.n }

// Value returns option k's value in row i, as columnar.AppendRows reads
// it (nil for NULL).
func (v *Values) Value(k, i int) (any, error) { return v.readers[k](i) }

// Array returns option k's values as an Arrow array, for a caller that
// copies bytes or strings straight out of it; nil on the row path when the
// option is a column of the rows (Value then reads the row).
func (v *Values) Array(k int) arrow.Array { return v.arrays[k] }

// Release frees the arrays.
func (v *Values) Release() {
	for _, r := range v.release {
		r()
	}
	v.release = nil
}

// Eval evaluates the options over rec: columns are read from rec, every
// other option in one query, whose values are copied to mem. rec must
// outlive the Values. An error of the
// query over these rows (a failed cast) wraps sqlengine.ErrExecution.
func (s *Set) Eval(ctx context.Context, mem memory.Allocator, rec arrow.RecordBatch) (*Values, error) {
	p, err := s.plan(ctx, rec.Schema())
	if err != nil {
		return nil, err
	}
	n := int(rec.NumRows())
	v := &Values{arrays: make([]arrow.Array, len(s.opts)), readers: make([]columnar.ValueReader, len(s.opts)), n: n}
	var out []arrow.Array // the query's columns, concatenated over its batches
	if p.query != nil && n > 0 {
		in, err := compact(mem, rec)
		if err != nil {
			return nil, err
		}
		out, err = run(ctx, mem, p.query, in)
		in.Release()
		if err != nil {
			return nil, err
		}
		v.release = append(v.release, func() {
			for _, a := range out {
				a.Release()
			}
		})
	}
	for k, o := range s.opts {
		var a arrow.Array
		switch {
		case p.col[k] >= 0:
			a = rec.Column(p.col[k])
		case n == 0:
			// No rows, no query: an empty array reads nothing.
			a = array.MakeArrayOfNull(mem, arrow.Null, 0)
			v.release = append(v.release, a.Release)
		default:
			a = out[p.out[k]]
		}
		r, err := columnar.NewValueReader(o.Field, a)
		if err != nil {
			v.Release()
			return nil, err
		}
		v.arrays[k], v.readers[k] = a, r
	}
	return v, nil
}

// compact returns rec, retained, or when a column is a slice of a larger
// array (an offset other than 0) a copy of rec whose columns start at 0:
// DuckDB's Arrow scan reads the fields of a sliced struct column at the
// wrong rows. The caller releases the result.
func compact(mem memory.Allocator, rec arrow.RecordBatch) (arrow.RecordBatch, error) {
	sliced := false
	for _, c := range rec.Columns() {
		sliced = sliced || c.Data().Offset() != 0
	}
	if !sliced {
		rec.Retain()
		return rec, nil
	}
	cols := make([]arrow.Array, rec.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for j, c := range rec.Columns() {
		a, err := array.Concatenate([]arrow.Array{c}, mem)
		if err != nil {
			return nil, fmt.Errorf("copy a sliced batch: %w", err)
		}
		cols[j] = a
	}
	return array.NewRecordBatch(rec.Schema(), cols, rec.NumRows()), nil
}

// run runs c over rec and returns its columns as one array each, in mem
// (DuckDB's result lives in C memory until released). It checks the
// query gave a value per row.
func run(ctx context.Context, mem memory.Allocator, c *sqlengine.Compiled, rec arrow.RecordBatch) ([]arrow.Array, error) {
	res, err := c.RunBatches(ctx, []arrow.RecordBatch{rec})
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, r := range res {
			r.Release()
		}
	}()
	ncols := c.OutputSchema().NumFields()
	out := make([]arrow.Array, ncols)
	rows := 0
	for _, r := range res {
		rows += int(r.NumRows())
	}
	if rows != int(rec.NumRows()) {
		return nil, fmt.Errorf("the sink's expressions gave %d values for %d rows", rows, rec.NumRows())
	}
	for j := range ncols {
		parts := make([]arrow.Array, len(res))
		for i, r := range res {
			parts[i] = r.Column(j)
		}
		a, err := array.Concatenate(parts, mem)
		if err != nil {
			for _, done := range out[:j] {
				done.Release()
			}
			return nil, fmt.Errorf("read the sink's expressions: %w", err)
		}
		out[j] = a
	}
	return out, nil
}

// EvalRows evaluates the options over rows, as Eval over the same rows in
// a batch of the Set's schema: when an option needs SQL the rows are
// converted to one, in mem (a key missing from a row is NULL); columns are
// read from the rows. It fails when an option needs SQL and New had no schema,
// or a row's value does not fit its column's type.
func (s *Set) EvalRows(ctx context.Context, mem memory.Allocator, rows []stream.Row) (*Values, error) {
	v := &Values{arrays: make([]arrow.Array, len(s.opts)), readers: make([]columnar.ValueReader, len(s.opts)), n: len(rows)}
	if s.NeedsSQL() {
		if s.schema == nil {
			return nil, errors.New("the sink's expressions need the schema of its rows")
		}
		b := columnar.NewBuilder(mem, RowsSchema(s.schema))
		defer b.Release()
		for i, row := range rows {
			if err := b.Append(row); err != nil {
				return nil, fmt.Errorf("row %d: %w", i, err)
			}
		}
		rec := b.NewRecordBatch()
		ev, err := s.Eval(ctx, mem, rec)
		if err != nil {
			rec.Release()
			return nil, err
		}
		ev.release = append(ev.release, rec.Release)
		v = ev
	}
	for k, o := range s.opts {
		if o.column == "" {
			continue // evaluated above
		}
		name := o.column
		if s.schema != nil {
			j := columnIndex(s.schema, o.column, o.quoted)
			if j < 0 {
				continue // not a column: evaluated above
			}
			name = s.schema.Field(j).Name
		}
		// A column of the rows is read from them as it is; without a
		// schema, a bare name matches a key in any case, as SQL matches
		// a column (and as Eval does over a batch of the same rows).
		exact := o.quoted || s.schema != nil
		v.arrays[k] = nil
		v.readers[k] = func(i int) (any, error) { return rowValue(rows[i], name, exact), nil }
	}
	return v, nil
}

// rowValue is row's value of the column name: the key name, or unless
// exact the first key equal to it in any case (in key order, so that the
// choice does not change from row to row).
func rowValue(row stream.Row, name string, exact bool) any {
	if v, ok := row[name]; ok || exact {
		return v
	}
	var found string
	for key := range row {
		if strings.EqualFold(key, name) && (found == "" || key < found) {
			found = key
		}
	}
	if found == "" {
		return nil
	}
	return row[found]
}

// RowsSchema is schema with each type a row cannot be built back into
// replaced by the type of the value rows hold for it (columnar's mapping):
// a decimal becomes a BIGINT (scale 0 or less) or a DOUBLE, times,
// durations and intervals strings. Rows of a query's output convert back to
// a batch of it, which the row path evaluates the options over; only those
// columns' SQL types differ from the Arrow path's.
func RowsSchema(schema *arrow.Schema) *arrow.Schema {
	fields := make([]arrow.Field, schema.NumFields())
	for i, f := range schema.Fields() {
		f.Type = rowsType(f.Type)
		fields[i] = f
	}
	md := schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

func rowsType(t arrow.DataType) arrow.DataType {
	switch t := t.(type) {
	case arrow.DecimalType:
		if t.GetScale() <= 0 {
			return arrow.PrimitiveTypes.Int64
		}
		return arrow.PrimitiveTypes.Float64
	case *arrow.Time32Type, *arrow.Time64Type, *arrow.DurationType,
		*arrow.MonthIntervalType, *arrow.DayTimeIntervalType, *arrow.MonthDayNanoIntervalType:
		return arrow.BinaryTypes.String
	case *arrow.DictionaryType:
		return rowsType(t.ValueType)
	case arrow.ExtensionType:
		return rowsType(t.StorageType())
	case *arrow.MapType:
		if t.KeyType().ID() != arrow.STRING {
			return t
		}
		m := arrow.MapOf(t.KeyType(), rowsType(t.ItemType()))
		m.KeysSorted = t.KeysSorted
		return m
	case *arrow.ListType:
		f := t.ElemField()
		f.Type = rowsType(f.Type)
		return arrow.ListOfField(f)
	case *arrow.LargeListType:
		f := t.ElemField()
		f.Type = rowsType(f.Type)
		return arrow.LargeListOfField(f)
	case *arrow.StructType:
		fields := t.Fields()
		for i := range fields {
			fields[i].Type = rowsType(fields[i].Type)
		}
		return arrow.StructOf(fields...)
	}
	return t
}
