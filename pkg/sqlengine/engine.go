//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Option configures Open. Only this package makes them.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	threads     int
	memoryLimit int64
	registry    *Registry
	log         *slog.Logger
	// planner makes the database ReadColumns plans in (Engine.planner):
	// it never reads an Arrow stream, so DuckDB may prune columns.
	planner bool
}

const (
	defaultMemoryLimit = 1 << 30
	minMemoryLimit     = 32 << 20
	maxThreads         = 1024
)

// WithThreads sets DuckDB's worker threads for the whole database: all
// queries share them. Default: runtime.GOMAXPROCS(0). 1 to 1024.
func WithThreads(n int) Option { return optionFunc(func(c *config) { c.threads = n }) }

// WithMemoryLimit caps the memory DuckDB uses for all queries together, in
// bytes. A query that needs more fails (nothing spills to disk). Default
// 1 GiB; at least 32 MiB.
func WithMemoryLimit(bytes int64) Option {
	return optionFunc(func(c *config) { c.memoryLimit = bytes })
}

// WithFunctions registers r's Go functions on the database. Default: none.
func WithFunctions(r *Registry) Option { return optionFunc(func(c *config) { c.registry = r }) }

// WithLogger sets the logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *config) { c.log = l }) }

func (c *config) validate() error {
	var errs []error
	if c.threads < 1 || c.threads > maxThreads {
		errs = append(errs, fmt.Errorf("WithThreads(%d): must be 1 to %d", c.threads, maxThreads))
	}
	if c.memoryLimit < minMemoryLimit {
		errs = append(errs, fmt.Errorf("WithMemoryLimit(%d): must be at least %d bytes (32 MiB)", c.memoryLimit, int64(minMemoryLimit)))
	}
	if c.log == nil {
		errs = append(errs, errors.New("WithLogger(nil): want a logger"))
	}
	return errors.Join(errs...)
}

// Engine is one in-memory DuckDB database with Sluice's settings and Spark's
// function names, shared by every query of a process. It is safe for
// concurrent use: each Run takes its own connection.
type Engine struct {
	cfg       config
	connector *duckdb.Connector
	db        *sql.DB // owns the connector: closing it closes the database
	seq       atomic.Uint64

	// life is cancelled when Close starts, which interrupts running queries.
	life context.Context
	stop context.CancelCauseFunc

	mu     sync.Mutex
	closed bool
	active int           // connections held by compiles, runs and unreleased results
	idle   chan struct{} // closed when closed && active == 0

	// planned is the planner database (see planner), opened on first use
	// and closed with this one.
	pmu     sync.Mutex
	planned *Engine

	// runIdle are the connections kept between runs (prepared.go);
	// runsActive counts the runs holding one from runSession, runsPeak the
	// most at once.
	rmu                  sync.Mutex
	runIdle              []*session
	runsActive, runsPeak int

	// free are the input slots no run holds (slot.go), oldest first.
	smu  sync.Mutex
	free []*slot
}

// Open opens the database. It validates every option first and reports all
// bad ones together, naming each; ctx bounds the setup.
//
// The database is locked down before Open returns, and user SQL cannot
// change any of this (lock_configuration):
//
//   - disabled_optimizers=unused_columns,filter_pushdown. duckdb-go's Arrow
//     view registers DuckDB's arrow_scan through the C API, whose stream
//     factory ignores the projection and the filters DuckDB pushes into it
//     and hands back every column and row. DuckDB then reads the wrong
//     columns and skips no rows: silently wrong results (duckdb/duckdb-go#24,
//     duckdb/duckdb#16050). Both optimizers must be off; either alone still
//     gives wrong rows (docs/notes/duckdb-arrow-spike.md measured it). The tests compare
//     every result read through the Arrow view with the same query over a
//     TEMP table copy, so a new pushdown shows up as a failure.
//   - enable_external_access=false, autoinstall/autoload_known_extensions=
//     false, allow_community_extensions=false: no files, no network, no
//     extensions (JSON, ICU and parquet are built in).
//   - errors_as_json=true: errors carry the byte offset of the token at
//     fault, which QueryError turns into a position in the user's text.
//   - temp_directory empty: nothing spills to disk; memory_limit is a limit.
//   - TimeZone=UTC: Spark's session time zone, as the Spark functions and
//     Arrow's timestamp[us, tz=UTC] outputs assume.
//   - default_null_order=nulls_first_on_asc_last_on_desc: Spark's.
//   - error_on_division_by_zero=false, ieee_floating_point_ops=false: x / 0
//     and x % 0 are NULL, as in Spark (without ANSI mode), not an error
//     (DuckDB 2.0's default for integers) or Infinity (for doubles).
//   - Arrow output as utf8/binary (not large or view types), pinned so that
//     output schemas do not change with DuckDB's defaults.
func Open(ctx context.Context, opts ...Option) (*Engine, error) {
	cfg := config{threads: runtime.GOMAXPROCS(0), memoryLimit: defaultMemoryLimit, log: slog.Default()}
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sqlengine: %w", err)
	}
	funcs := cfg.registry.snapshot()
	for _, f := range funcs {
		if f.err != nil {
			return nil, fmt.Errorf("sqlengine: WithFunctions: %w", f.err)
		}
	}

	settings := url.Values{}
	for k, v := range map[string]string{
		"threads":                      strconv.Itoa(cfg.threads),
		"memory_limit":                 strconv.FormatInt(cfg.memoryLimit, 10) + "B",
		"disabled_optimizers":          disabledOptimizers(cfg.planner),
		"autoinstall_known_extensions": "false",
		"autoload_known_extensions":    "false",
		"allow_community_extensions":   "false",
		"errors_as_json":               "true",
		"default_null_order":           "nulls_first_on_asc_last_on_desc",
		"error_on_division_by_zero":    "false",
		"ieee_floating_point_ops":      "false",
		"arrow_large_buffer_size":      "false",
		"produce_arrow_string_view":    "false",
		"arrow_lossless_conversion":    "false",
	} {
		settings.Set(k, v)
	}
	connector, err := duckdb.NewConnector("?"+settings.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("sqlengine: open database: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxIdleConns(0) // the setup connection is the only one db ever opens

	life, stop := context.WithCancelCause(context.Background())
	e := &Engine{cfg: cfg, connector: connector, db: db, life: life, stop: stop, idle: make(chan struct{})}
	if err := e.setup(ctx, funcs); err != nil {
		stop(ErrClosed)
		return nil, errors.Join(fmt.Errorf("sqlengine: %w", err), db.Close())
	}
	cfg.log.Debug("sqlengine: database open", "threads", cfg.threads, "memory_limit", cfg.memoryLimit, "functions", len(funcs))
	return e, nil
}

// disabledOptimizers are the DuckDB optimizers a database runs without.
// Queries over Arrow views need unused_columns and filter_pushdown off (see
// Open). The planner database reads no Arrow view and keeps both; it turns
// off what would make its plans over an empty table prove things about no
// rows instead of showing the reads: statistics_propagation (an empty
// table's statistics turn a filter into an empty result) and
// empty_result_pullup, and filter_pushdown, so that a column read only by a
// filter still shows in the scan's projections.
func disabledOptimizers(planner bool) string {
	if planner {
		return "filter_pushdown,statistics_propagation,empty_result_pullup"
	}
	return "unused_columns,filter_pushdown"
}

// setup registers the Go functions and the Spark macros, then locks the
// configuration. Functions and macros live in the database's catalog, so
// every later connection sees them.
func (e *Engine) setup(ctx context.Context, funcs []Func) error {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// Not in the DSN: TimeZone belongs to the ICU extension, and duckdb-go
	// applies DSN options in map order while an empty temp_directory is
	// refused once external access is off. So: in this order, before
	// anything else runs.
	for _, q := range []string{
		`SET GLOBAL TimeZone = 'UTC'`,
		`SET GLOBAL temp_directory = ''`,
		`SET GLOBAL enable_external_access = false`,
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	// Listing DuckDB's functions is a third of an Open: only when there
	// are Go functions to check, and not again for the planner database
	// of an engine that checked them.
	if len(funcs) > 0 && !e.cfg.planner {
		if err := refuseExisting(ctx, conn, funcs); err != nil {
			return err
		}
	}
	split, err := newCSVSplit()
	if err != nil {
		return fmt.Errorf("register %s: %w", CSVFunction, err)
	}
	if err := duckdb.RegisterScalarUDF(conn, CSVFunction, split); err != nil {
		return fmt.Errorf("register %s: %w", CSVFunction, err)
	}
	reject, err := newRejectFunc()
	if err != nil {
		return fmt.Errorf("register %s: %w", RejectFunction, err)
	}
	if err := duckdb.RegisterScalarUDF(conn, RejectFunction, reject); err != nil {
		return fmt.Errorf("register %s: %w", RejectFunction, err)
	}
	for _, f := range funcs {
		if err := duckdb.RegisterScalarUDF(conn, f.name, f.fn); err != nil {
			return fmt.Errorf("WithFunctions: register %q: %w", f.name, err)
		}
	}
	// In one call: duckdb-go prepares and runs each statement of it, but a
	// call per macro cost about a tenth of an Open more (BenchmarkOpen).
	if _, err := conn.ExecContext(ctx, strings.Join(sparkMacros, ";\n")); err != nil {
		return fmt.Errorf("create Spark macros: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SET GLOBAL lock_configuration = true`); err != nil {
		return fmt.Errorf("lock configuration: %w", err)
	}
	return nil
}

// refuseExisting fails when a user function would replace one of DuckDB's:
// a query that means DuckDB's function would silently call the Go one.
func refuseExisting(ctx context.Context, conn *sql.Conn, funcs []Func) error {
	rows, err := conn.QueryContext(ctx, `SELECT DISTINCT function_name FROM duckdb_functions()`)
	if err != nil {
		return fmt.Errorf("list functions: %w", err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fmt.Errorf("list functions: %w", err)
		}
		have[strings.ToLower(n)] = true
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list functions: %w", err)
	}
	for _, f := range funcs {
		if have[f.name] {
			return fmt.Errorf("WithFunctions: function %q already exists in DuckDB: pick another name", f.name)
		}
	}
	return nil
}

// acquire counts a user of a connection, or fails once Close has started.
func (e *Engine) acquire() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.active++
	return nil
}

func (e *Engine) releaseConn() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.active--
	if e.closed && e.active == 0 {
		close(e.idle)
	}
}

// session is one DuckDB connection with its Arrow interface, held for one
// compile or one run; a run's may be kept for later runs (prepared.go).
type session struct {
	e     *Engine
	conn  driver.Conn
	exec  driver.ExecerContext
	arrow *duckdb.Arrow
	once  sync.Once
	// prep is what runs prepared and set on the connection; only the
	// run holding it uses it.
	prep prepared
}

// connect opens a connection. The caller must call close, which also
// accounts for it in Close's wait.
func (e *Engine) connect(ctx context.Context) (*session, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	conn, err := e.connector.Connect(ctx)
	if err != nil {
		e.releaseConn()
		return nil, fmt.Errorf("sqlengine: connect: %w", err)
	}
	ar, err := duckdb.NewArrowFromConn(conn)
	if err != nil {
		conn.Close()
		e.releaseConn()
		return nil, fmt.Errorf("sqlengine: arrow interface: %w", err)
	}
	return &session{e: e, conn: conn, exec: conn.(driver.ExecerContext), arrow: ar}, nil
}

func (s *session) execContext(ctx context.Context, q string) error {
	_, err := s.exec.ExecContext(ctx, q, nil)
	return err
}

// close closes the connection, which drops its TEMP views and tables.
func (s *session) close() {
	s.once.Do(func() {
		if err := s.conn.Close(); err != nil {
			s.e.cfg.log.Warn("sqlengine: close connection", "err", err)
		}
		s.e.releaseConn()
	})
}

// nextSourceName returns a database-wide unique name for a registered Arrow
// stream. duckdb-go registers it as a view in the main schema, visible to
// every connection: two slots must never share a name.
func (e *Engine) nextSourceName() string {
	return "__sluice_src_" + strconv.FormatUint(e.seq.Add(1), 10)
}

// Close shuts the engine down:
//
//  1. Compile and Run fail with ErrClosed from now on.
//  2. Running queries are interrupted; their Run returns an error wrapping
//     ErrClosed.
//  3. Close waits until every connection is closed, which includes results
//     a caller has not released yet, or until ctx is done.
//  4. The database is closed. DuckDB keeps its memory alive for any
//     connection still open (step 3 timed out), so that is safe, but those
//     results should still be released.
//
// It returns ctx's error when step 3 timed out. Calling it again returns nil.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	if e.active == 0 {
		close(e.idle)
	}
	e.mu.Unlock()

	e.stop(ErrClosed)
	e.closeRunSessions()
	var waitErr error
	select {
	case <-e.idle:
	case <-ctx.Done():
		e.mu.Lock()
		n := e.active
		e.mu.Unlock()
		waitErr = fmt.Errorf("sqlengine: close: %d connections still open (unreleased results?): %w", n, ctx.Err())
	}
	// After the wait: a planner being opened holds a connection's count.
	e.pmu.Lock()
	planned := e.planned
	e.pmu.Unlock()
	if planned != nil {
		if err := planned.Close(ctx); err != nil {
			waitErr = errors.Join(waitErr, fmt.Errorf("sqlengine: close the planner database: %w", err))
		}
	}
	if err := e.db.Close(); err != nil {
		return errors.Join(waitErr, fmt.Errorf("sqlengine: close database: %w", err))
	}
	if waitErr == nil {
		// Every run gave its slot back and the database is gone.
		e.releaseSlots()
	}
	return waitErr
}
