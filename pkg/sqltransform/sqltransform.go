//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"encoding/json"
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
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Step is one transform of a SQL job, with its path in the spec
// (transforms[1]) for errors. Exactly one of Decode, SQL, Filter, Select
// and Aggregate is set; the last three are shorthands for a query
// (shorthand.go).
type Step struct {
	Path   string
	Decode *Decode
	SQL    *SQL
	// Filter is a SQL condition: the rows where it is true are kept.
	Filter string
	// Select lists the output columns (a non-nil empty list is refused).
	Select    []SelectField
	Aggregate *Aggregate
}

// Decode turns the payload column into columns.
type Decode struct {
	// Format is json, csv or raw.
	Format string
	// Field is the payload column; default value (Kafka) or data (Kinesis).
	Field string
	// Schema is the fields as a Spark DDL string: required for json; for
	// csv, the columns' names and types (instead of Columns).
	Schema string
	// Columns names a csv record's fields, as strings.
	Columns []string
	// Header: csv payloads start with a header line, which is skipped.
	Header bool
	// Delimiter separates csv fields; default ",".
	Delimiter string
}

// SQL is a query over the rows before the step, read as View.
type SQL struct {
	View  string // default sqlengine.DefaultView
	Query string
}

// Config is what Compile needs.
type Config struct {
	// Source is the Arrow schema of the source's records (pkg/columnar).
	Source *arrow.Schema
	Steps  []Step
	// OnBad is what a decode does with a record whose payload does not
	// decode: fail the task naming it (the default), or drop it and report
	// it to the run's sqlengine.Rejects, counted (SkipBad) or whole
	// (KeepBad, for a dead-letter sink).
	OnBad BadRecords
	// OutputMode, when set, makes the aggregate keep its groups across
	// batches (MergeState); OutputModePath names its field for errors
	// (default "outputMode").
	OutputMode     OutputMode
	OutputModePath string
	// WatermarkColumn, with OutputMode, is the event-time column of the
	// aggregating query's input (a job's watermark.column): the tasks then
	// report each group's largest event time and rows, and MergeState drops
	// late groups and completes groups the watermark passed.
	WatermarkColumn string
	// DropDuplicates, when set, makes a row-wise query's rows be written
	// once per key (MergeState), instead of OutputMode.
	DropDuplicates *Dedup
}

// BadRecords is what a decode does with records that do not decode.
type BadRecords int

const (
	FailOnBad BadRecords = iota // the query fails, naming the record (onError fail)
	SkipBad                     // dropped and counted (onError skip)
	KeepBad                     // dropped and handed over whole (onError deadLetter)
)

// Pipeline is a SQL job's transforms compiled for its source schema. It is
// immutable and safe for concurrent use.
type Pipeline struct {
	onBad   BadRecords
	source  *arrow.Schema
	dist    *sqlengine.Distributed
	columns []string
	state   *stateStep // nil: no state across batches
}

// Aggregating reports whether the query aggregates: tasks then return
// partial states (RunTask) that the driver merges (RunFinal).
func (p *Pipeline) Aggregating() bool { return p.dist.Final != nil }

// Columns is the output column order: the query's columns.
func (p *Pipeline) Columns() []string { return p.columns }

// OutputSchema is the schema of the rows the job's sink receives: the
// query's output, merged (Final) for an aggregating one. Sinks check their
// per-record expressions against it.
func (p *Pipeline) OutputSchema() *arrow.Schema {
	if p.dist.Final != nil {
		return p.dist.Final.OutputSchema()
	}
	return p.dist.Task.OutputSchema()
}

// OnBad is what the pipeline's decode does with bad records: with SkipBad
// and KeepBad, RunTask reports them to its rejects.
func (p *Pipeline) OnBad() BadRecords { return p.onBad }

// Source is the schema RunTask's input must have.
func (p *Pipeline) Source() *arrow.Schema { return p.source }

// PartialSchema is the schema of an aggregating pipeline's task output.
func (p *Pipeline) PartialSchema() *arrow.Schema { return p.dist.Task.OutputSchema() }

// RunTask runs the task's part over in (records of Source's schema): the
// whole query for a row-wise pipeline, the partial aggregate otherwise. now
// is the batch's time, which the query's current_timestamp and
// unix_timestamp() see. rejects receives the records a decode dropped; it
// must be set when OnBad is SkipBad or KeepBad. The caller releases the
// result.
func (p *Pipeline) RunTask(ctx context.Context, in array.RecordReader, now time.Time, rejects *sqlengine.Rejects) (array.RecordReader, error) {
	opts := []sqlengine.RunOption{sqlengine.WithNow(now)}
	if rejects != nil {
		opts = append(opts, sqlengine.WithRejects(rejects))
	}
	return p.dist.Task.Run(ctx, in, opts...)
}

// RunFinal merges the partial outputs of all of a batch's tasks into the
// query's result. The caller releases the result; partials stay the
// caller's.
func (p *Pipeline) RunFinal(ctx context.Context, partials []arrow.RecordBatch, now time.Time) (array.RecordReader, error) {
	if p.dist.Final == nil {
		return nil, errors.New("sqltransform: RunFinal on a row-wise pipeline")
	}
	in, err := array.NewRecordReader(p.PartialSchema(), partials)
	if err != nil {
		return nil, fmt.Errorf("read partial aggregates: %w", err)
	}
	defer in.Release()
	return p.dist.Final.Run(ctx, in, sqlengine.WithNow(now))
}

// Compile composes cfg's steps into one query and compiles it against the
// source schema with eng. Every problem is a *FieldError naming the
// field (transforms[1].sql.query) and, for a query, the line, column and
// position in it; several are joined.
func Compile(ctx context.Context, eng *sqlengine.Engine, cfg Config) (*Pipeline, error) {
	// pruneSource plans in eng's planner database, which a process opens
	// at its first compile (a driver's first SubmitJob, an executor's
	// first task): open it on the other core while compile works, not
	// after it (BenchmarkFirstCompile). An error opening it comes back
	// where the planner is used.
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		_ = eng.OpenPlanner(ctx)
	}()
	defer func() { <-opened }()
	p, err := compile(ctx, eng, cfg)
	if err != nil {
		return nil, err
	}
	cfg, p = pruneDecode(ctx, eng, cfg, p)
	return pruneSource(ctx, cfg, p), nil
}

func compile(ctx context.Context, eng *sqlengine.Engine, cfg Config) (*Pipeline, error) {
	var errs []error
	fieldErr := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	input := "" // the SQL defining the rows before the current step; "" is the source itself
	var last *sqlengine.Compiled
	var lastRef stepRef
	for i, st := range cfg.Steps {
		switch {
		case st.Decode != nil:
			if last != nil {
				fieldErr(st.Path+".decode", "must come before the sql steps (decode the payload first, then query it)")
				continue
			}
			q, err := decodeQuery(cfg.Source, input, *st.Decode, st.Path+".decode", cfg.OnBad)
			if err != nil {
				// Later steps read what it decodes: they cannot be checked.
				return nil, errors.Join(append(errs, err)...)
			}
			input = q
		case st.SQL != nil || st.Filter != "" || st.Select != nil || st.Aggregate != nil:
			if last != nil {
				// The previous step feeds this one; it must be row-wise.
				d, err := eng.Distribute(ctx, last)
				if err != nil {
					errs = append(errs, lastRef.err(err))
					continue
				}
				if d.Final != nil {
					fieldErr(lastRef.field, "an aggregating step must be the job's last (its groups are merged on the driver); fold the next step into it as an outer query")
					continue
				}
				// Each part on its own lines: a query may end with a -- comment.
				input = fmt.Sprintf("WITH %s AS (%s\n) SELECT * FROM (%s\n)", quoteIdent(last.View()), inputOrSource(input), last.SQL())
			}
			ref := stepRef{path: st.Path + ".sql", field: st.Path + ".sql.query"}
			var query string
			opts := []sqlengine.CompileOption{}
			if st.SQL != nil {
				query = st.SQL.Query
				if st.SQL.View != "" {
					opts = append(opts, sqlengine.WithView(st.SQL.View))
				}
			} else {
				g, kind, err := shorthandQuery(st, sqlengine.DefaultView)
				if err != nil {
					return nil, errors.Join(append(errs, err)...)
				}
				ref = stepRef{path: st.Path, field: st.Path + "." + kind, kind: kind, gen: g}
				query = g.query
			}
			if input != "" {
				opts = append(opts, sqlengine.WithInputQuery(input))
			}
			c, err := eng.Compile(ctx, query, cfg.Source, opts...)
			if err != nil {
				// Later steps cannot be checked without this one.
				return nil, errors.Join(append(errs, ref.err(err))...)
			}
			last, lastRef = c, ref
		default:
			fieldErr(fmt.Sprintf("transforms[%d]", i), "empty transform (one of decode, sql, filter, select, aggregate)")
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if last == nil && input != "" {
		// Decode steps alone: the decoded rows are the output.
		c, err := eng.Compile(ctx, "SELECT * FROM "+quoteIdent(sqlengine.DefaultView), cfg.Source, sqlengine.WithInputQuery(input))
		if err != nil {
			return nil, fmt.Errorf("transforms: %w", err)
		}
		last, lastRef = c, stepRef{path: "transforms", field: "transforms"}
	}
	if last == nil {
		return nil, &FieldError{Field: "transforms", Reason: "a SQL pipeline needs a step"}
	}
	var dopts []sqlengine.DistributeOption
	if cfg.OutputMode != PerBatch && cfg.DropDuplicates == nil && cfg.WatermarkColumn != "" {
		if err := checkEventTime(ctx, eng, cfg.Source, last, lastRef, cfg.WatermarkColumn); err != nil {
			return nil, err
		}
		dopts = append(dopts, sqlengine.WithEventTime(cfg.WatermarkColumn))
	}
	d, err := eng.Distribute(ctx, last, dopts...)
	if err != nil {
		return nil, lastRef.err(err)
	}
	p := &Pipeline{onBad: cfg.OnBad, source: cfg.Source, dist: d}
	out := d.Task.OutputSchema()
	if d.Final != nil {
		out = d.Final.OutputSchema()
	}
	for _, f := range out.Fields() {
		p.columns = append(p.columns, f.Name)
	}
	switch {
	case cfg.DropDuplicates != nil:
		if err := p.compileDedup(*cfg.DropDuplicates, lastRef, cfg.WatermarkColumn); err != nil {
			return nil, err
		}
	case cfg.OutputMode != PerBatch:
		path := cfg.OutputModePath
		if path == "" {
			path = "outputMode"
		}
		if err := p.compileState(cfg.OutputMode, path, lastRef, cfg.WatermarkColumn); err != nil {
			return nil, err
		}
	}
	if d.UsesSession && (p.state == nil || p.state.sessionKey < 0) {
		return nil, &FieldError{Field: lastRef.field, Reason: "session_window(ts, gap) is a GROUP BY key of a stateful aggregate (outputMode): the sessions of a key are merged in its state, across tasks and batches"}
	}
	return p, nil
}

// stepRef names the step whose query an error is about: path is the
// step's block (transforms[1].sql, transforms[2]), field the whole query's
// field (transforms[1].sql.query, transforms[2].aggregate); a shorthand
// step's generated query places errors in the fields they came from.
type stepRef struct {
	path, field, kind string
	gen               *generated
}

// err reports a compile error of the step's query under its field.
func (r stepRef) err(err error) error {
	if r.gen != nil {
		return r.gen.fieldError(r.path, r.kind, err)
	}
	return queryFieldError(r.path, err)
}

// queryFieldError turns a compile error of the step at path (…sql) into a
// field error: a *sqlengine.QueryError names its field and place; anything
// else (a closed engine) is returned as it is.
func queryFieldError(path string, err error) error {
	var qe *sqlengine.QueryError
	if !errors.As(err, &qe) {
		return fmt.Errorf("%s: %w", path, err)
	}
	reason := fmt.Sprintf("%v: %s", qe.Err, qe.Reason)
	if qe.Position >= 0 {
		reason = fmt.Sprintf("line %d, column %d (position %d): %s", qe.Line, qe.Column, qe.Position, reason)
	}
	return &FieldError{Field: path + "." + qe.Field, Reason: reason}
}

func inputOrSource(input string) string {
	if input == "" {
		return "SELECT * FROM __sluice_input"
	}
	return input
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteString(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// decodeQuery is the SELECT that decodes d's payload column of the rows
// defined by input (the source when ""): the decoded fields first, then the
// other columns, as the CEL decode merges them. A record that does not
// decode fails the query with DuckDB's error() naming it, or is dropped and
// reported to the run's rejects (onBad).
func decodeQuery(source *arrow.Schema, input string, d Decode, path string, onBad BadRecords) (string, error) {
	from := "__sluice_input"
	if input != "" {
		from = "(" + input + ")"
	}
	field := d.Field
	if field == "" {
		switch {
		case hasField(source, "value"):
			field = "value"
		case hasField(source, "data"):
			field = "data"
		}
	}
	if input == "" && !hasField(source, field) {
		return "", &FieldError{Field: path + ".field", Reason: fmt.Sprintf("%q is not a column of the source (columns: %s)", field, strings.Join(names(source), ", "))}
	}
	col := quoteIdent(field)
	// The payload as text; NULL (a tombstone) stays NULL. Invalid UTF-8
	// is malformed like bad JSON.
	text := fmt.Sprintf("try(__sluice_text(%s))", col)
	bad := badRecords{path: path, where: recordWhere(source), onBad: onBad, record: recordArgs(source, input, field)}
	switch d.Format {
	case "raw":
		if d.Schema != "" {
			return "", &FieldError{Field: path + ".schema", Reason: "applies to formats json and csv"}
		}
		check := fmt.Sprintf("%s IS NULL OR %s IS NOT NULL", col, text)
		return fmt.Sprintf("SELECT * REPLACE (%s AS %s) FROM %s %s", text, col, from, bad.clause(check, "payload that is not UTF-8 text")), nil
	case "json":
		if d.Schema == "" {
			return "", &FieldError{Field: path + ".schema", Reason: `is required unless this decode is the job's first step (whose schema the driver infers from the source's records at submit): the payload's fields and types as a Spark DDL string, like "branch STRING, amount BIGINT"`}
		}
		structure, fields, err := sqlengine.SparkSchema(d.Schema)
		if err != nil {
			return "", &FieldError{Field: path + ".schema", Reason: err.Error()}
		}
		sel := make([]string, 0, len(fields)+1)
		for _, f := range fields {
			sel = append(sel, fmt.Sprintf("__sluice_j.%s AS %s", quoteIdent(f), quoteIdent(f)))
		}
		// The source's other columns follow, unless a decoded field has
		// the same name (then the decoded value wins, as in the CEL decode).
		exclude := []string{col, "__sluice_j"}
		for _, f := range fields {
			if input == "" && hasField(source, f) && !strings.EqualFold(f, field) {
				exclude = append(exclude, quoteIdent(f))
			}
		}
		sel = append(sel, fmt.Sprintf("* EXCLUDE (%s)", strings.Join(exclude, ", ")))
		// Checked after the transform, so that json_valid parses only the
		// payloads the transform gave nothing for (malformed, or JSON that
		// is not an object of the schema's types): each record's JSON is
		// parsed once, not twice. OR evaluates its second operand only for
		// the rows its first leaves false.
		check := fmt.Sprintf("%s IS NULL OR __sluice_j IS NOT NULL OR coalesce(json_valid(%s), false)", col, text)
		return fmt.Sprintf("SELECT %s FROM (SELECT *, try(json_transform(%s, %s)) AS __sluice_j FROM %s) %s",
			strings.Join(sel, ", "), text, quoteString(structure), from, bad.clause(check, "malformed JSON")), nil
	case "csv":
		return csvQuery(source, input, d, path, col, text, from, bad)
	case "":
		return "", &FieldError{Field: path + ".format", Reason: "is required (json, csv or raw)"}
	default:
		return "", &FieldError{Field: path + ".format", Reason: fmt.Sprintf("%q is not one of json, csv, raw", d.Format)}
	}
}

// csvQuery decodes CSV payloads: each record's lines become rows (a
// record may hold several), their fields the columns named by Columns
// (strings) or Schema (cast to its types; NULL where a field does not
// convert). A payload that is not CSV is a bad record.
func csvQuery(source *arrow.Schema, input string, d Decode, path, col, text, from string, bad badRecords) (string, error) {
	if d.Format != "csv" {
		return "", fmt.Errorf("csvQuery: format %q", d.Format)
	}
	type field struct{ name, typ string }
	var fields []field
	switch {
	case d.Schema != "" && len(d.Columns) > 0:
		return "", &FieldError{Field: path + ".columns", Reason: "give columns or schema, not both"}
	case d.Schema != "":
		structure, names, err := sqlengine.SparkSchema(d.Schema)
		if err != nil {
			return "", &FieldError{Field: path + ".schema", Reason: err.Error()}
		}
		types := map[string]any{}
		if err := json.Unmarshal([]byte(structure), &types); err != nil {
			return "", fmt.Errorf("%s.schema: %w", path, err)
		}
		for _, n := range names {
			t, ok := types[n].(string)
			if !ok {
				return "", &FieldError{Field: path + ".schema", Reason: fmt.Sprintf("field %q: a csv field is a scalar (STRING, BIGINT, DOUBLE, BOOLEAN, DATE, TIMESTAMP...), not an array, map or struct", n)}
			}
			fields = append(fields, field{n, t})
		}
	case len(d.Columns) > 0:
		for _, n := range d.Columns {
			fields = append(fields, field{n, "VARCHAR"})
		}
	default:
		return "", &FieldError{Field: path + ".columns", Reason: "names a csv record's fields up front: give columns (strings) or schema (a Spark DDL string with types); header: true skips a header line, it does not name the fields"}
	}
	delim := d.Delimiter
	if delim == "" {
		delim = ","
	}
	if r, n := utf8.DecodeRuneInString(delim); n != len(delim) || r == '"' || r == '\r' || r == '\n' {
		return "", &FieldError{Field: path + ".delimiter", Reason: fmt.Sprintf("%q: want one character other than a quote or a line break", delim)}
	}
	sel := make([]string, 0, len(fields)+1)
	exclude := []string{col, "__sluice_rows", "__sluice_r"}
	for i, f := range fields {
		v := fmt.Sprintf("__sluice_r[%d]", i+1)
		if f.typ != "VARCHAR" {
			v = fmt.Sprintf("TRY_CAST(%s AS %s)", v, f.typ)
		}
		sel = append(sel, fmt.Sprintf("%s AS %s", v, quoteIdent(f.name)))
		if input == "" && hasField(source, f.name) && !strings.EqualFold(f.name, col) {
			exclude = append(exclude, quoteIdent(f.name))
		}
	}
	sel = append(sel, fmt.Sprintf("* EXCLUDE (%s)", strings.Join(exclude, ", ")))
	rows := fmt.Sprintf("%s(%s, %s)", sqlengine.CSVFunction, text, quoteString(delim))
	if d.Header {
		rows = fmt.Sprintf("(%s)[2:]", rows) // each payload's first line names the fields
	}
	check := fmt.Sprintf("%s IS NULL OR __sluice_rows IS NOT NULL", col)
	return fmt.Sprintf("SELECT %s FROM (SELECT *, unnest(__sluice_rows) AS __sluice_r FROM (SELECT *, %s AS __sluice_rows FROM %s) %s)",
		strings.Join(sel, ", "), rows, from, bad.clause(check, "a payload that is not CSV")), nil
}

// badRecords writes a decode's WHERE clause, which keeps the records whose
// payload decodes and fails on the others or reports them.
type badRecords struct {
	path   string     // the decode step's field, for messages
	where  string     // SQL naming the record (recordWhere)
	onBad  BadRecords // what to do with the others
	record string     // KeepBad: the record's name/value arguments to RejectFunction
}

// clause keeps the records for which ok holds; what names the problem of
// the others.
func (b badRecords) clause(ok, what string) string {
	switch b.onBad {
	case SkipBad, KeepBad:
		// CASE runs the ELSE branch only for the rows that take it, once
		// each: every dropped record is reported exactly once.
		args := fmt.Sprintf("getvariable('__sluice_run'), %s", quoteString(b.path+": "+what))
		if b.onBad == KeepBad && b.record != "" {
			args += ", " + b.record
		}
		return fmt.Sprintf("WHERE CASE WHEN %s THEN true ELSE %s(%s) END", ok, sqlengine.RejectFunction, args)
	}
	return fmt.Sprintf("WHERE CASE WHEN %s THEN true ELSE error(%s || %s || %s) END", ok,
		quoteString("bad record in "), b.where, quoteString(": "+b.path+": "+what+" (set onError: skip or deadLetter to keep going)"))
}

// recordArgs are the name/value pairs RejectFunction receives for a bad
// record: every source column for a decode of the source, the payload
// column for a decode of an earlier step's output.
func recordArgs(source *arrow.Schema, input, payload string) string {
	var args []string
	if input != "" {
		return fmt.Sprintf("%s, %s", quoteString(payload), quoteIdent(payload))
	}
	for _, f := range source.Fields() {
		args = append(args, quoteString(f.Name), quoteIdent(f.Name))
	}
	return strings.Join(args, ", ")
}

// recordWhere is a SQL expression naming the record being read, without its
// payload (which may hold personal data).
func recordWhere(s *arrow.Schema) string {
	switch {
	case hasField(s, "offset") && hasField(s, "topic") && hasField(s, "partition"):
		return `"topic" || '/' || CAST("partition" AS VARCHAR) || ' at offset ' || CAST("offset" AS VARCHAR)`
	case hasField(s, "sequenceNumber") && hasField(s, "shardId"):
		return `"shardId" || ' at sequence number ' || "sequenceNumber"`
	}
	return "'a record'"
}

func hasField(s *arrow.Schema, name string) bool {
	_, ok := s.FieldsByName(name)
	return ok
}

func names(s *arrow.Schema) []string {
	out := make([]string, 0, s.NumFields())
	for _, f := range s.Fields() {
		out = append(out, f.Name)
	}
	return out
}

// The process's engine: one DuckDB database shared by every SQL job of a
// driver or executor, opened on first use (a process that runs no SQL job
// never pays for it) and never closed (it holds no goroutines; DuckDB's
// threads end with the process).
var shared struct {
	mu   sync.Mutex
	opts []sqlengine.Option
	eng  *sqlengine.Engine
}

// ErrEngineOpen is returned by ConfigureEngine once the shared engine is
// open: its options apply at opening only.
var ErrEngineOpen = errors.New("sqltransform: the shared SQL engine is already open")

// ConfigureEngine sets the options SharedEngine opens the engine with
// (threads, memory limit, Go functions). Call it at start-up, before any job
// is compiled; the options are validated when the engine opens.
func ConfigureEngine(opts ...sqlengine.Option) error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.eng != nil {
		return ErrEngineOpen
	}
	shared.opts = opts
	return nil
}

// SharedEngine returns the process's engine, opening it on first use with
// ConfigureEngine's options (by default one thread per CPU and a 1 GiB
// memory limit).
func SharedEngine(ctx context.Context) (*sqlengine.Engine, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.eng != nil {
		return shared.eng, nil
	}
	eng, err := sqlengine.Open(ctx, shared.opts...)
	if err != nil {
		return nil, fmt.Errorf("open the SQL engine: %w", err)
	}
	shared.eng = eng
	return eng, nil
}

// Merge runs the final step of an aggregating pipeline over the partial
// aggregates of a batch's tasks (RunTask's output, as columnar.EncodeIPC
// encodes it; an empty one is a task that read nothing) and returns the
// query's rows. An error of the query itself wraps sqlengine.ErrExecution
// and is permanent: the same partials fail the same way.
func (p *Pipeline) Merge(ctx context.Context, partials [][]byte, now time.Time) ([]stream.Row, error) {
	var rows []stream.Row
	err := p.MergeEach(ctx, partials, now, func(b arrow.RecordBatch) error {
		var err error
		if rows, err = columnar.AppendRows(rows, b); err != nil {
			return connectors.Permanent(fmt.Errorf("convert merged rows: %w", err))
		}
		return nil
	})
	return rows, err
}

// MergeEach is Merge handing the merged groups to fn as the final query's
// Arrow batches, for a sink that takes them (connectors.ArrowWriter). A
// batch is valid during the call only (it is DuckDB's memory); fn's error
// ends the merge and is returned.
func (p *Pipeline) MergeEach(ctx context.Context, partials [][]byte, now time.Time, fn func(arrow.RecordBatch) error) error {
	var batches []arrow.RecordBatch
	defer func() { releaseBatches(batches) }()
	for i, data := range partials {
		if len(data) == 0 {
			continue
		}
		schema, bs, err := columnar.DecodeIPC(memory.DefaultAllocator, data)
		batches = append(batches, bs...)
		if err != nil {
			return fmt.Errorf("decode partial aggregate %d: %w", i, err)
		}
		if !schema.Equal(p.PartialSchema()) {
			return fmt.Errorf("partial aggregate %d: schema %s, want %s (was it written by another version of the job?)", i, schema, p.PartialSchema())
		}
	}
	out, err := p.RunFinal(ctx, batches, now)
	if err != nil {
		if errors.Is(err, sqlengine.ErrExecution) {
			return connectors.Permanent(err)
		}
		return err
	}
	defer out.Release()
	for out.Next() {
		if err := fn(out.RecordBatch()); err != nil {
			return err
		}
	}
	if err := out.Err(); err != nil {
		return fmt.Errorf("read merged rows: %w", err)
	}
	return nil
}
