package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// writer is one task attempt's output. Its methods are called by one
// goroutine.
//
// States: buffering (no transaction) → begun (transaction open, positions
// row locked) → done. A writer whose batch the positions row already holds
// (for the same incarnation of the job) is "skipping": it rolled back at
// once and drops every row.
type writer struct {
	s   *Sink
	key connectors.WriteKey
	// storedEnd is the end the committed attempt stored, when skipping a
	// replay of its batch; nil when it stored none.
	storedEnd stream.Position

	pending []stream.Row
	// pendingArrow are batches from WriteArrow, retained until flushed;
	// only one of pending and pendingArrow holds anything at a time.
	pendingArrow []arrow.RecordBatch
	arrowRows    int    // rows in pendingArrow
	tx           pgx.Tx // nil until begun, and after done
	begun        bool
	skip         bool
	rows         int64 // rows sent in this transaction
	done         bool
	failed       error
}

func (w *writer) Write(ctx context.Context, rows []stream.Row) error {
	switch {
	case w.done:
		return errors.New("postgres sink: write after commit or abort")
	case w.failed != nil:
		return w.failed
	case w.skip:
		return nil
	}
	if len(w.pendingArrow) > 0 {
		// Rows go to the table in the order they came (upserts: the last
		// write of a key wins).
		if err := w.fail(w.flushArrow(ctx)); err != nil {
			return err
		}
	}
	w.pending = append(w.pending, rows...)
	if len(w.pending) >= w.s.flushRows {
		return w.fail(w.flush(ctx))
	}
	return nil
}

var _ connectors.EndCommitter = (*writer)(nil)

// Commit writes what is buffered and records the batch in the positions
// table, in the transaction that holds the rows, then commits it. When the
// positions row already holds this batch or a later one of the same
// incarnation, the rows are dropped and Commit returns nil: an earlier
// attempt (or a concurrent one that got the row lock first) committed them.
// It stores no end; the driver uses it for outputs that span partitions.
func (w *writer) Commit(ctx context.Context) error {
	_, err := w.commit(ctx, nil)
	return err
}

// CommitEnd is Commit that also stores end in the positions row. When an
// earlier attempt of the same batch and incarnation committed, it writes
// nothing and returns the end that attempt stored (end itself when that
// attempt stored none), so the task reports what the table holds.
func (w *writer) CommitEnd(ctx context.Context, end stream.Position) (stream.Position, error) {
	return w.commit(ctx, end)
}

func (w *writer) commit(ctx context.Context, end stream.Position) (stream.Position, error) {
	switch {
	case w.done:
		return nil, errors.New("postgres sink: commit after commit or abort")
	case w.failed != nil:
		w.done = true
		return nil, w.failed
	}
	if err := w.flush(ctx); err != nil {
		w.finish(ctx)
		return nil, err
	}
	if !w.begun {
		if err := w.begin(ctx); err != nil {
			w.finish(ctx)
			return nil, err
		}
	}
	if w.skip {
		w.done = true
		if w.storedEnd != nil {
			return w.storedEnd, nil
		}
		return end, nil
	}
	s := w.s
	// A nil end is stored as NULL: "no end stored".
	var stored []byte
	if end != nil {
		stored = end
	}
	_, err := w.tx.Exec(ctx, "UPDATE "+s.set.positions.Sanitize()+
		" SET batch = $4, incarnation = $5, end_position = $6, row_count = $7, target_table = $8, committed_at = now()"+
		" WHERE job = $1 AND sink = $2 AND part = $3",
		string(w.key.Job), s.set.sinkName, w.key.Part, int64(w.key.Batch), w.key.Incarnation, stored, w.rows, s.set.table.Sanitize())
	if err != nil {
		w.finish(ctx)
		return nil, s.wrap("positions: record position", err)
	}
	err = w.tx.Commit(ctx)
	w.tx = nil
	w.done = true
	if err != nil {
		// The outcome is unknown when the connection broke during COMMIT;
		// a retry finds out from the positions row.
		return nil, s.wrap("commit", err)
	}
	return end, nil
}

// Abort rolls back whatever was sent. It is safe after Commit, when it does
// nothing.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.finish(context.Background())
	return nil
}

// finish rolls back and ends the writer.
func (w *writer) finish(ctx context.Context) {
	w.done = true
	w.rollback(ctx)
}

// rollback drops the buffered rows and rolls back an open transaction,
// returning its connection to the pool. It must run even when ctx ended, or
// the connection stays busy, so it is bounded on its own.
func (w *writer) rollback(ctx context.Context) {
	w.pending = nil
	w.releaseArrow()
	if w.tx != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = w.tx.Rollback(rctx)
		cancel()
		w.tx = nil
	}
}

// fail remembers a write error: the transaction is rolled back at once, and
// Commit returns the error.
func (w *writer) fail(err error) error {
	if err != nil {
		w.failed = err
		w.rollback(context.Background())
	}
	return err
}

// begin opens the transaction and takes the positions row's lock. The
// INSERT ... ON CONFLICT DO NOTHING makes sure the row exists (a concurrent
// first insert of the same key waits for the other transaction), and
// SELECT ... FOR UPDATE then blocks any other attempt at the same key until
// this transaction ends; whichever comes second sees the first's batch.
//
// A row of another incarnation (the job was deleted and submitted again
// under the same name) is no replay: this writer writes and its commit
// replaces the row.
func (w *writer) begin(ctx context.Context) error {
	s := w.s
	if err := s.ensurePositions(ctx); err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.wrap("begin", err)
	}
	w.tx, w.begun = tx, true
	pos := s.set.positions.Sanitize()
	b := &pgx.Batch{}
	// Wait for the row lock no longer than lockTimeout: a zombie attempt
	// holding it must not block this one forever (55P03, retried).
	b.Queue("SELECT set_config('lock_timeout', $1, true)", s.set.lockTimeout)
	b.Queue("INSERT INTO "+pos+" (job, sink, part, batch, incarnation) VALUES ($1, $2, $3, -1, $4) ON CONFLICT (job, sink, part) DO NOTHING",
		string(w.key.Job), s.set.sinkName, w.key.Part, w.key.Incarnation)
	var (
		committed   int64
		incarnation string
		storedEnd   []byte
	)
	b.Queue("SELECT batch, incarnation, end_position FROM "+pos+" WHERE job = $1 AND sink = $2 AND part = $3 FOR UPDATE",
		string(w.key.Job), s.set.sinkName, w.key.Part).QueryRow(func(row pgx.Row) error {
		return row.Scan(&committed, &incarnation, &storedEnd)
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return s.wrap("positions: lock position", err)
	}
	if incarnation != w.key.Incarnation {
		if committed >= 0 {
			s.log.Info("the positions row belongs to an earlier incarnation of the job (deleted and submitted again); replacing it",
				"job", w.key.Job, "batch", w.key.Batch, "part", w.key.Part, "rowBatch", committed, "table", s.set.table.Sanitize())
		}
		return nil
	}
	if committed >= int64(w.key.Batch) {
		w.skip = true
		level, msg := slog.LevelInfo, "batch already committed by an earlier attempt; writing nothing"
		if committed > int64(w.key.Batch) {
			// A zombie attempt of an earlier batch: the driver moved on
			// and ignores what it reports.
			level, msg = slog.LevelWarn, "the positions table holds a later batch of this job; writing nothing"
		} else {
			w.storedEnd = storedEnd
		}
		s.log.Log(ctx, level, msg, "job", w.key.Job, "batch", w.key.Batch, "part", w.key.Part,
			"committedBatch", committed, "table", s.set.table.Sanitize())
		w.rollback(ctx)
	}
	return nil
}

// flush sends the buffered rows or batches in the transaction, beginning
// it first.
func (w *writer) flush(ctx context.Context) error {
	if err := w.flushRows(ctx); err != nil {
		return err
	}
	return w.flushArrow(ctx)
}

// prepare makes sure the target exists (typed from cols and first, see
// ensureTable) and the transaction is begun.
func (w *writer) prepare(ctx context.Context, cols []column, first func(field string) any) error {
	if w.begun {
		return nil
	}
	s := w.s
	// Create the target before taking a connection for the transaction:
	// creating it takes one of its own, and writers holding every pooled
	// connection while waiting for another would deadlock.
	if err := s.ensurePositions(ctx); err != nil {
		return err
	}
	if err := s.ensureTable(ctx, cols, first); err != nil {
		return err
	}
	return w.begin(ctx)
}

// flushRows sends the buffered rows.
func (w *writer) flushRows(ctx context.Context) error {
	if len(w.pending) == 0 {
		return nil
	}
	s := w.s
	rows := w.pending
	w.pending = nil
	cols := s.set.chunkColumns(w.key.Columns, rows)
	if err := w.prepare(ctx, cols, firstInRows(rows)); err != nil {
		return err
	}
	if w.skip {
		return nil
	}
	vals, err := values(cols, rows)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("postgres sink: %w", err))
	}
	if s.set.upsert {
		idx, err := s.set.keyIndices(cols)
		if err != nil {
			return err
		}
		vals = dedupe(vals, idx)
	}
	return w.send(ctx, cols, pgx.CopyFromRows(vals), len(vals))
}

// keyIndices are the positions of the upsert's key columns in cols.
func (s *settings) keyIndices(cols []column) ([]int, error) {
	idx := make([]int, len(s.cfg.KeyColumns))
	for i, k := range s.cfg.KeyColumns {
		idx[i] = slices.IndexFunc(cols, func(c column) bool { return c.name == k })
		if idx[i] < 0 {
			return nil, connectors.Permanent(fmt.Errorf("postgres sink: key column %q is not among the rows' fields %v", k, colNames(cols)))
		}
	}
	return idx, nil
}

// send writes n rows of cols from src in the transaction, with COPY or
// INSERT as configured.
func (w *writer) send(ctx context.Context, cols []column, src pgx.CopyFromSource, n int) error {
	var err error
	if w.s.set.copy {
		err = w.copyRows(ctx, cols, src)
	} else {
		err = w.insertRows(ctx, cols, src, n)
	}
	if err != nil {
		return err
	}
	w.rows += int64(n)
	return nil
}

// stageTable is the per-transaction temporary table an upsert COPYs into.
var stageTable = pgx.Identifier{"pg_temp", "sluice_stage"}

func (w *writer) copyRows(ctx context.Context, cols []column, src pgx.CopyFromSource) error {
	s := w.s
	names := colNames(cols)
	if !s.set.upsert {
		if _, err := w.tx.CopyFrom(ctx, s.set.table, names, src); err != nil {
			return s.wrap("copy into "+s.set.table.Sanitize(), err)
		}
		return nil
	}
	// COPY cannot resolve conflicts: stage the rows in a temporary table
	// holding only these columns (no constraints, so identity or NOT NULL
	// columns left out do not fail the COPY), then upsert from it.
	list := identList(names)
	if _, err := w.tx.Exec(ctx, "CREATE TEMP TABLE sluice_stage ON COMMIT DROP AS SELECT "+list+
		" FROM "+s.set.table.Sanitize()+" WITH NO DATA"); err != nil {
		return s.wrap("stage rows", err)
	}
	if _, err := w.tx.CopyFrom(ctx, stageTable, names, src); err != nil {
		return s.wrap("copy into a staging table", err)
	}
	upsert := "INSERT INTO " + s.set.table.Sanitize() + " (" + list + ") SELECT " + list + " FROM " +
		stageTable.Sanitize() + s.set.conflictClause(cols)
	if _, err := w.tx.Exec(ctx, upsert); err != nil {
		return s.wrap("upsert into "+s.set.table.Sanitize(), err)
	}
	if _, err := w.tx.Exec(ctx, "DROP TABLE "+stageTable.Sanitize()); err != nil {
		return s.wrap("drop the staging table", err)
	}
	return nil
}

// insertRows sends the n rows of src with multi-row INSERTs.
func (w *writer) insertRows(ctx context.Context, cols []column, src pgx.CopyFromSource, n int) error {
	s := w.s
	per := max(1, min(1000, maxParams/len(cols)))
	args := make([]any, 0, per*len(cols))
	for start := 0; start < n; start += per {
		chunk := min(per, n-start)
		args = args[:0]
		for range chunk {
			if !src.Next() {
				if err := src.Err(); err != nil {
					return connectors.Permanent(fmt.Errorf("postgres sink: %w", err))
				}
				return fmt.Errorf("postgres sink: %d rows to insert, the source ended after %d", n, start)
			}
			r, err := src.Values()
			if err != nil {
				return connectors.Permanent(fmt.Errorf("postgres sink: %w", err))
			}
			args = append(args, r...)
		}
		if _, err := w.tx.Exec(ctx, s.set.insertSQL(cols, chunk), args...); err != nil {
			return s.wrap("insert into "+s.set.table.Sanitize(), err)
		}
	}
	return nil
}
