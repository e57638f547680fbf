//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// RunOption configures one Run. Only this package makes them.
type RunOption interface{ applyRun(*runConfig) }

type runOptionFunc func(*runConfig)

func (f runOptionFunc) applyRun(c *runConfig) { f(c) }

type runConfig struct {
	now     time.Time
	rejects *Rejects
}

// WithRejects collects the records the query drops through RejectFunction
// (a decode step's bad records under onError skip or deadLetter) in r, which
// the caller reads once Run returned.
func WithRejects(r *Rejects) RunOption { return runOptionFunc(func(c *runConfig) { c.rejects = r }) }

// WithNow pins the current time the query sees: current_timestamp,
// current_timestamp(), now(), current_date, current_date() and
// unix_timestamp(). Spark fixes it once per micro-batch; passing the batch's
// time keeps every task of a batch, and every replay of it, on one instant.
// Default: DuckDB's, the start of the query.
func WithNow(t time.Time) RunOption { return runOptionFunc(func(c *runConfig) { c.now = t }) }

// Run runs the query over in, one task's batches, and returns the result.
//
// The query runs to completion inside Run (DuckDB materialises the result),
// so Run has read in (all of it, unless the query stopped early, as with
// LIMIT) when it returns; it retains in while it reads and releases its own
// reference, and the caller still releases its own. in's schema must equal
// InputSchema (ErrSchemaMismatch otherwise).
//
// The caller must Release the result, which holds a DuckDB connection until
// then. Its records are at most 2048 rows each and live in C memory freed by
// their last Release: valid until the next call to Next unless retained, and
// strings read from them (array.String.Value) alias that memory, so copy
// what must outlive the record.
//
// Cancelling ctx interrupts the query; the error then wraps ctx's error.
// ctx still applies while the result is read: Next stops once it is done.
// An error DuckDB raises while running is a *QueryError wrapping
// ErrExecution; an error from in is wrapped as it is. Runs may go on
// concurrently, each on its own connection.
func (c *Compiled) Run(ctx context.Context, in array.RecordReader, opts ...RunOption) (array.RecordReader, error) {
	var cfg runConfig
	for _, o := range opts {
		o.applyRun(&cfg)
	}
	if !in.Schema().Equal(c.input) {
		return nil, fmt.Errorf("%w: got %s, compiled for %s", ErrSchemaMismatch, in.Schema(), c.input)
	}
	// The query's context ends with the caller's, or when the engine
	// closes; it lives until the result is released, because reading the
	// result checks it.
	rctx, cancel := context.WithCancelCause(ctx)
	stopAfter := context.AfterFunc(c.e.life, func() { cancel(ErrClosed) })
	cleanup := func() {
		stopAfter()
		cancel(nil)
	}
	// A run whose input is inline reuses a connection and its prepared
	// statements (prepared.go); one that materialises it creates TEMP
	// objects, on a connection of its own.
	pooled := !c.materialize
	var s *session
	var err error
	if pooled {
		s, err = c.e.runSession(rctx)
	} else {
		s, err = c.e.connect(rctx)
	}
	if err != nil {
		cleanup()
		return nil, err
	}
	// giveBack ends the run's hold on s: a pooled connection is kept for
	// a later run if the run left it sound (ok), others are closed.
	giveBack := func(ok bool) {
		if pooled {
			c.e.putRunSession(s, ok)
		} else {
			s.close()
		}
	}
	fail := func(err error) (array.RecordReader, error) {
		giveBack(false)
		cleanup()
		return nil, err
	}
	var vars []string
	if cfg.rejects != nil {
		vars = append(vars, runVariable)
	}
	pinNow := !cfg.now.IsZero() && c.readsNow
	if pinNow {
		vars = append(vars, nowVariable)
	}
	if err := s.resetVariables(rctx, vars...); err != nil {
		return fail(fmt.Errorf("sqlengine: run: %w", err))
	}
	if cfg.rejects != nil {
		id, unregister := registerRejects(cfg.rejects)
		prev := cleanup
		cleanup = func() { unregister(); prev() }
		if err := s.setVariable(rctx, runVariable, "'"+id+"'"); err != nil {
			return fail(fmt.Errorf("sqlengine: run: name the run: %w", err))
		}
	}
	// Pinning the time is a statement of its own, a tenth of a small
	// task's cost: only for queries that can read it.
	if pinNow {
		v := "TIMESTAMPTZ '" + cfg.now.UTC().Format("2006-01-02 15:04:05.999999-07:00") + "'"
		if err := s.setVariable(rctx, nowVariable, v); err != nil {
			return fail(fmt.Errorf("sqlengine: run: pin the time: %w", err))
		}
	}
	sql, pos := c.sql, c.pos
	var detach func()
	if c.materialize {
		detach, err = s.attach(rctx, in, c.view, c.inputQuery, c.inputSelect, true)
	} else {
		var with string
		detach, with, err = s.attachInline(in, c.view, c.inputQuery, c.inputSelect)
		sql = with + sql + "\n)"
		pos.prefix += len(with)
	}
	if err != nil {
		var iq *inputQueryError
		if rctx.Err() == nil && in.Err() == nil && errors.As(err, &iq) {
			// Copying the view ran the input query over the rows: its
			// failure (a malformed JSON value) is the batch's, and has no
			// place in the user's text.
			return fail(fmt.Errorf("sqlengine: run: %w: %w", ErrExecution, err))
		}
		return fail(c.runError(rctx, in, err, pos))
	}
	if pooled {
		name, header, perr := s.prepare(rctx, sql)
		pos.prefix += len(header)
		if perr != nil {
			detach()
			return fail(c.runError(rctx, in, perr, pos))
		}
		sql = "EXECUTE " + name
	}
	rr, err := s.arrow.QueryContext(rctx, sql)
	// The result is materialised: DuckDB is done with the input.
	detach()
	if err != nil {
		return fail(c.runError(rctx, in, err, pos))
	}
	res := &result{RecordReader: rr, finish: func() {
		// A result read to its end or released early leaves the
		// connection as sound as a fresh one; one whose run was
		// interrupted while it was read does not.
		giveBack(rctx.Err() == nil)
		cleanup()
	}}
	res.refs.Store(1)
	return res, nil
}

// runError classifies an error of a run: the context's, the input's, or the
// query's, whose place in the SQL DuckDB ran pos maps back to the query.
func (c *Compiled) runError(ctx context.Context, in array.RecordReader, err error, pos posMap) error {
	if ctx.Err() != nil {
		// DuckDB's own error is only "Interrupted!".
		return fmt.Errorf("sqlengine: run interrupted: %w", context.Cause(ctx))
	}
	if ierr := in.Err(); ierr != nil {
		return fmt.Errorf("sqlengine: run: read input: %w", ierr)
	}
	err = fromDuck(err, c.query, pos, ErrExecution)
	var qe *QueryError
	if !errors.As(err, &qe) {
		return fmt.Errorf("sqlengine: run: %w", err)
	}
	if len(c.names) > 0 {
		// A failure in the BIGINT wrapper names its internal columns.
		qe.Reason = wrapperColumn.ReplaceAllStringFunc(qe.Reason, func(m string) string {
			i, _ := strconv.Atoi(m[len(`column __c`):])
			if i >= len(c.names) {
				return m
			}
			return "column " + quoteIdent(c.names[i]) + " (a sum of integers is a BIGINT, as in Spark)"
		})
	}
	return err
}

var wrapperColumn = regexp.MustCompile(`column __c[0-9]+`)

// RunBatches is Run over a slice of batches, collecting the result. The
// caller releases each returned record (and still owns in).
func (c *Compiled) RunBatches(ctx context.Context, in []arrow.RecordBatch, opts ...RunOption) ([]arrow.RecordBatch, error) {
	rdr, err := array.NewRecordReader(c.input, in)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchemaMismatch, err)
	}
	defer rdr.Release()
	res, err := c.Run(ctx, rdr, opts...)
	if err != nil {
		return nil, err
	}
	defer res.Release()
	var out []arrow.RecordBatch
	for res.Next() {
		r := res.RecordBatch()
		r.Retain()
		out = append(out, r)
	}
	if err := res.Err(); err != nil {
		for _, r := range out {
			r.Release()
		}
		return nil, fmt.Errorf("sqlengine: read result: %w", err)
	}
	return out, nil
}

// result is DuckDB's reader over a materialised result, owning the
// connection it came from: the last Release frees the result and gives the
// connection back (kept for a later run, or closed).
type result struct {
	array.RecordReader
	refs   atomic.Int64
	finish func()
}

func (r *result) Retain() { r.refs.Add(1) }

func (r *result) Release() {
	if r.refs.Add(-1) == 0 {
		r.RecordReader.Release()
		r.finish()
	}
}

// attachInline registers in as a stream for one query, without a statement
// of its own for the view: with is the start of the SQL to run, which names
// the stream view (and the input query over it, as the TEMP view
// __sluice_input) in a WITH clause and opens a subquery for the compiled
// SQL, to be closed after it with "\n)". A task's run saves the two CREATE
// statements attach would parse and bind, a quarter of a small task's cost
// (sqltransform's BenchmarkSmallTask). detach gives the input's slot back, as attach's does.
func (s *session) attachInline(in array.RecordReader, view, inputQuery, sel string) (detach func(), with string, err error) {
	name, detach, err := s.register(in)
	if err != nil {
		return nil, "", err
	}
	stream := "SELECT " + selectList(sel) + " FROM " + quoteIdent(name)
	if inputQuery == "" {
		return detach, "WITH " + quoteIdent(view) + " AS (" + stream + ") SELECT * FROM (\n", nil
	}
	return detach, "WITH " + InputName + " AS (" + stream + "), " + quoteIdent(view) + " AS (" + inputQuery + "\n) SELECT * FROM (\n", nil
}

// selectList is what the view over a run's stream selects: sel (a narrowed
// Compiled's, see Narrow), or every column.
func selectList(sel string) string {
	if sel == "" {
		return "*"
	}
	return sel
}

// register makes in readable under name on this connection, through a
// slot (slot.go); detach gives the slot back, after which the name reads
// no rows. Call detach once DuckDB is done reading in: when the query's
// result is materialised.
func (s *session) register(in array.RecordReader) (name string, detach func(), err error) {
	sl, err := s.e.takeSlot(s, in.Schema())
	if err != nil {
		return "", nil, fmt.Errorf("register input: %w", err)
	}
	sl.r.set(in)
	done := false
	detach = func() {
		if !done {
			done = true
			s.e.putSlot(s, sl)
		}
	}
	return sl.name, detach, nil
}

// attach makes in readable as view on this connection. duckdb-go registers
// an Arrow stream as a view in the database's main schema, visible to every
// connection, and the stream can be read once. So in is read through a
// slot's internal name (register), the user's name is a connection-local
// TEMP view over it (or a TEMP table copy when the query reads it more
// than once), and detach gives the slot back.
//
// With an input query q, the stream is the TEMP view __sluice_input and the
// user's view is q over it (or a TEMP table holding q's result). Errors
// creating those are *inputQueryError. sel is what the view selects from
// the stream (selectList).
func (s *session) attach(ctx context.Context, in array.RecordReader, view, inputQuery, sel string, materialize bool) (detach func(), err error) {
	name, detach, err := s.register(in)
	if err != nil {
		return nil, err
	}
	kind := "VIEW"
	if materialize {
		// SELECT * in schema order is the one read that the pushdown bug
		// cannot get wrong.
		kind = "TABLE"
	}
	// OR REPLACE: a session that binds more than one query (Distribute)
	// attaches more than once.
	stream := "SELECT " + selectList(sel) + " FROM " + quoteIdent(name)
	create := "CREATE OR REPLACE TEMP " + kind + " " + quoteIdent(view) + " AS " + stream
	if inputQuery != "" {
		input := "CREATE OR REPLACE TEMP VIEW " + InputName + " AS " + stream
		if err := s.execContext(ctx, input); err != nil {
			detach()
			return nil, err
		}
		create = "CREATE OR REPLACE TEMP " + kind + " " + quoteIdent(view) + " AS " + inputQuery
		if err := s.execContext(ctx, create); err != nil {
			detach()
			return nil, &inputQueryError{err}
		}
	} else if err := s.execContext(ctx, create); err != nil {
		detach()
		return nil, err
	}
	if materialize {
		detach()
	}
	return detach, nil
}
