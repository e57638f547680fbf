package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Option tunes New.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger    *slog.Logger
	flushRows int
}

// WithLogger sets where the sink logs skipped replays. Default
// slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithFlushRows sets how many rows a writer buffers before it opens its
// transaction and sends them; until then a task's rows stay in memory and
// the transaction is short. Default 10000.
func WithFlushRows(n int) Option { return optionFunc(func(o *options) { o.flushRows = n }) }

// defaultConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout, so that an address that drops packets fails the attempt
// with a reason instead of waiting for the task timeout.
const defaultConnectTimeout = 15 * time.Second

// Sink writes task outputs to one PostgreSQL table. It is safe for
// concurrent use; writers are independent of each other.
type Sink struct {
	set  *settings
	pool *pgxpool.Pool
	log  *slog.Logger
	// flushRows: see WithFlushRows.
	flushRows int
	// connStr is the configured URL, whose password is scrubbed from error
	// messages in every spelling; password is the one pgx resolved (from
	// the URL, PGPASSWORD or ~/.pgpass), scrubbed as it is.
	connStr, password string

	mu sync.Mutex // guards the flags below
	// positionsReady and tableReady: CREATE TABLE IF NOT EXISTS done for
	// the positions table and the target (CreateTable only).
	positionsReady, tableReady bool
}

var _ connectors.Sink = (*Sink)(nil)

// New validates cfg and returns a sink. It does not connect: connections
// are made by the first commit and pooled (pgxpool) until Close.
func New(cfg Config, opts ...Option) (*Sink, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	o := options{logger: slog.Default(), flushRows: 10000}
	for _, opt := range opts {
		opt.apply(&o)
	}
	switch {
	case o.logger == nil:
		return nil, errors.New("postgres sink: WithLogger: logger must not be nil")
	case o.flushRows <= 0:
		return nil, fmt.Errorf("postgres sink: WithFlushRows: must be positive (got %d)", o.flushRows)
	}
	if set.pool.ConnConfig.ConnectTimeout == 0 {
		set.pool.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), set.pool)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %s", scrub(err.Error(), cfg.URL))
	}
	return &Sink{
		set: set, pool: pool, log: o.logger, flushRows: o.flushRows,
		connStr: cfg.URL, password: set.pool.ConnConfig.Password,
	}, nil
}

// Close closes the pool, waiting for connections in use to be released.
func (s *Sink) Close() error {
	s.pool.Close()
	return nil
}

// OpenWriter returns a writer for key. It does no I/O.
func (s *Sink) OpenWriter(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if key.Job == "" {
		return nil, errors.New("postgres sink: empty job")
	}
	return &writer{s: s, key: key}, nil
}

// Commit is what the positions table holds for one (job, sink, part).
type Commit struct {
	// Incarnation of the job that committed (WriteKey.Incarnation).
	Incarnation string
	Batch       stream.BatchID
	// End is the task end stored by CommitEnd; nil when the output was
	// committed by Commit (the driver's aggregate writes) or by a sink
	// version before ends were stored.
	End stream.Position
}

// Committed returns the last commit of (job, part) by this sink, and false
// when there is none. It reads the positions table; tools and tests use it
// to see what a replay would skip.
func (s *Sink) Committed(ctx context.Context, job stream.JobID, part string) (Commit, bool, error) {
	var c Commit
	var b int64
	var end []byte
	err := s.pool.QueryRow(ctx, "SELECT batch, incarnation, end_position FROM "+s.set.positions.Sanitize()+
		" WHERE job = $1 AND sink = $2 AND part = $3", string(job), s.set.sinkName, part).Scan(&b, &c.Incarnation, &end)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Commit{}, false, nil
	case err != nil:
		return Commit{}, false, s.wrap("read positions", err)
	case b < 0:
		return Commit{}, false, nil
	}
	c.Batch, c.End = stream.BatchID(b), end
	return c, true, nil
}

// ensurePositions creates the positions table, or adds the columns an older
// layout lacks, once per sink (CreateTable).
func (s *Sink) ensurePositions(ctx context.Context) error {
	s.mu.Lock()
	ready := s.positionsReady
	s.mu.Unlock()
	if ready || !s.set.cfg.CreateTable {
		return nil
	}
	if err := s.createLocked(ctx, s.set.positions, s.set.createPositionsSQL()); err != nil {
		return err
	}
	// A table of the first layout lacks incarnation and end_position. The
	// ALTER runs only then: even when it adds nothing it takes an ACCESS
	// EXCLUSIVE lock, which would queue behind every open writer.
	var have int
	if err := s.pool.QueryRow(ctx, positionsColumnsSQL, s.set.positions.Sanitize()).Scan(&have); err != nil {
		return s.wrap("inspect positions table "+s.set.positions.Sanitize(), err)
	}
	if have < 2 {
		if err := s.createLocked(ctx, s.set.positions, s.set.migratePositionsSQL()); err != nil {
			return err
		}
		s.log.Info("added the columns incarnation and end_position to the positions table", "table", s.set.positions.Sanitize())
	}
	s.mu.Lock()
	s.positionsReady = true
	s.mu.Unlock()
	return nil
}

// ensureTable creates the target table once per sink (CreateTable), typed
// from cols and the first non-null value of each in the rows about to be
// written (first).
func (s *Sink) ensureTable(ctx context.Context, cols []column, first func(field string) any) error {
	s.mu.Lock()
	ready := s.tableReady
	s.mu.Unlock()
	if ready || !s.set.cfg.CreateTable {
		return nil
	}
	if err := s.createLocked(ctx, s.set.table, s.set.createTableSQLOf(cols, first)); err != nil {
		return err
	}
	s.mu.Lock()
	s.tableReady = true
	s.mu.Unlock()
	return nil
}

// createLocked runs a CREATE TABLE IF NOT EXISTS (or the ALTER TABLE that
// brings the positions table of an older layout up to date) under a transaction-scoped
// advisory lock on the table's name. Concurrent CREATE TABLE IF NOT EXISTS
// of one name can fail with a unique violation in pg_type (the check and
// the insert are not atomic), and every task of a batch starts at once.
func (s *Sink) createLocked(ctx context.Context, table pgx.Identifier, ddl ...string) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.wrap("create table "+table.Sanitize(), err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "sluice:create:"+table.Sanitize()); err != nil {
		return s.wrap("create table "+table.Sanitize(), err)
	}
	for _, stmt := range ddl {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return s.wrap("create table "+table.Sanitize(), err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.wrap("create table "+table.Sanitize(), err)
	}
	return nil
}

// forgetTables makes the next writer create the tables again, after an
// error saying one is missing (dropped while the job ran).
func (s *Sink) forgetTables() {
	s.mu.Lock()
	s.positionsReady, s.tableReady = false, false
	s.mu.Unlock()
}
