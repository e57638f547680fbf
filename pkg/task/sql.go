package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/stream"
)

// sqlBatchRows is how many records the reader side gathers into one Arrow
// batch for DuckDB. A query's cost per batch is small but not nothing, and
// DuckDB splits its work among threads by batch: 16k rows keep both (the
// DuckDB spike, docs/notes/duckdb-arrow-spike.md, measured 16k-64k as the
// sweet spot).
const sqlBatchRows = 16 << 10

// runSQL is run for a job whose transforms are SQL: the task's records go to
// DuckDB as Arrow batches through one query, whose output goes to the sink,
// or back to the driver as partial aggregates, or as collected rows.
func runSQL(ctx context.Context, a Attempt) (res Result, err error) {
	r, err := a.Readers.Open(ctx, a.Range)
	if err != nil {
		return res, fmt.Errorf("open reader for %s: %w", a.Range.Key(), err)
	}
	defer r.Close()

	src := newRecordSource(ctx, r, &a, a.allocator())
	var rejects *sqlengine.Rejects
	switch a.SQL.OnBad() {
	case sqltransform.SkipBad:
		rejects = &sqlengine.Rejects{}
	case sqltransform.KeepBad:
		rejects = &sqlengine.Rejects{Keep: maxDeadLetters}
	}
	out, err := a.SQL.RunTask(ctx, src, a.BatchTime, rejects)
	src.Release()
	st := src.stats()
	res.RecordsIn, res.BytesIn, res.Skipped = st.in, st.bytes, st.skipped
	if st.err != nil {
		if out != nil {
			out.Release()
		}
		return res, st.err
	}
	if err != nil {
		if errors.Is(err, sqlengine.ErrExecution) {
			// The same records fail the same way again: a bad record
			// under onError fail, a failed cast, an overflow.
			return res, connectors.Permanent(fmt.Errorf("query over %s: %w", a.Range.Key(), err))
		}
		return res, fmt.Errorf("query over %s: %w", a.Range.Key(), err)
	}
	defer out.Release()
	res.End = r.End()
	if m, ok := r.(connectors.ReaderMetrics); ok {
		res.SourceMetrics = m.Metrics()
	}
	if rejects != nil && a.SQL.OnBad() == sqltransform.SkipBad {
		res.Skipped += rejects.Count()
	}
	if rejects != nil && a.SQL.OnBad() == sqltransform.KeepBad && rejects.Count() > int64(rejects.Keep) {
		return res, connectors.Permanent(fmt.Errorf("%d bad records in %s, more than the %d a task dead-letters: fix what writes them, or set onError: skip",
			rejects.Count(), a.Range.Key(), rejects.Keep))
	}
	if err := emitSQL(ctx, a, out, &res); err != nil {
		return res, err
	}
	dead := st.dead
	if rejects != nil && a.SQL.OnBad() == sqltransform.KeepBad {
		dead = append(dead, deadLetterRows(rejects.Records())...)
	}
	return res, deadLetter(ctx, a, &res, dead)
}

// maxDeadLetters bounds the bad records one SQL task holds for its
// dead-letter sink (they are written once the query is done); beyond it
// the task fails rather than hold them all in memory.
const maxDeadLetters = 100000

// deadLetterRows are the records a decode dropped as dead-letter rows:
// each record's columns and "error", the reason.
func deadLetterRows(bad []sqlengine.Reject) []stream.Row {
	rows := make([]stream.Row, len(bad))
	for i, b := range bad {
		row := make(stream.Row, len(b.Record)+1)
		for k, v := range b.Record {
			if n, ok := v.(int32); ok { // DuckDB's INTEGER: rows hold int64
				v = int64(n)
			}
			row[k] = v
		}
		row["error"] = b.Reason
		rows[i] = row
	}
	return rows
}

// deadLetter writes a task's bad records, if any, to the dead-letter sink
// under the task's key and the end res holds, and counts them in res.
func deadLetter(ctx context.Context, a Attempt, res *Result, dead []stream.Row) error {
	if len(dead) == 0 {
		return nil
	}
	if err := writeDeadLetters(ctx, a, res.End, dead); err != nil {
		return err
	}
	res.DeadLettered = int64(len(dead))
	return nil
}

// writeDeadLetters writes a SQL task's bad records to the dead-letter sink
// under the task's key.
func writeDeadLetters(ctx context.Context, a Attempt, end stream.Position, rows []stream.Row) error {
	key := connectors.WriteKey{Job: a.Job, Incarnation: a.Incarnation, Batch: a.Batch, Current: a.Current, Part: a.Range.Key()}
	return writeAll(ctx, a.DeadLetter, key, rows, end, "dead letters")
}

// writeAll writes rows to s under key as one output and commits it with
// end, unless the attempt is no longer current (key.Current); what names
// the output in errors. Nothing is left behind when it fails.
func writeAll(ctx context.Context, s connectors.Sink, key connectors.WriteKey, rows []stream.Row, end stream.Position, what string) error {
	w, err := s.OpenWriter(ctx, key)
	if err != nil {
		return fmt.Errorf("open the writer of %s: %w", what, err)
	}
	if err := w.Write(ctx, rows); err != nil {
		w.Abort()
		return fmt.Errorf("write %s: %w", what, err)
	}
	if err := key.StillCurrent(ctx); err != nil {
		w.Abort()
		return fmt.Errorf("commit %s: %w", what, err)
	}
	if _, err := commit(ctx, w, end); err != nil {
		return fmt.Errorf("commit %s: %w", what, err)
	}
	return nil
}

// emitSQL hands a SQL task's query output on: partial aggregates to the
// result, collected rows to the result, or rows to the sink, committed.
func emitSQL(ctx context.Context, a Attempt, out array.RecordReader, res *Result) error {
	switch {
	case a.SQL.Aggregating() || a.SQL.Dedups():
		// Partial aggregates, or the rows to deduplicate: either goes to
		// the driver, which routes it to the state partitions.
		var parts []arrow.RecordBatch
		defer func() {
			for _, p := range parts {
				p.Release()
			}
		}()
		for out.Next() {
			rec := out.RecordBatch()
			rec.Retain()
			parts = append(parts, rec)
		}
		if err := out.Err(); err != nil {
			return fmt.Errorf("read partial aggregate: %w", err)
		}
		p, err := columnar.EncodeIPC(out.Schema(), parts)
		if err != nil {
			return fmt.Errorf("encode partial aggregate: %w", err)
		}
		res.Partial = p
		return nil
	case a.CollectRows > 0:
		var sample bytes.Buffer
		var rows []stream.Row
		var err error
		for out.Next() {
			if rows, err = columnar.AppendRows(rows[:0], out.RecordBatch()); err != nil {
				return connectors.Permanent(fmt.Errorf("convert query output: %w", err))
			}
			if err := collect(&sample, res, a.CollectRows, rows); err != nil {
				return err
			}
		}
		if err := out.Err(); err != nil {
			return fmt.Errorf("read query output: %w", err)
		}
		res.Rows, res.RecordsOut = sample.Bytes(), res.RowsTotal
		return nil
	}

	w, err := a.Sink.OpenWriter(ctx, connectors.WriteKey{Job: a.Job, Incarnation: a.Incarnation, Batch: a.Batch, Current: a.Current, Part: a.Range.Key(), Columns: a.SQL.Columns()})
	if err != nil {
		return fmt.Errorf("open sink writer: %w", err)
	}
	defer func() {
		if w != nil {
			w.Abort()
		}
	}()
	// A sink that takes Arrow gets each batch as the query made it: no
	// map per record. Others get rows, copied out of the batch (DuckDB's
	// C memory), so the slice may be reused once the sink has them.
	aw, _ := w.(connectors.ArrowWriter)
	var rows []stream.Row
	for out.Next() {
		rec := out.RecordBatch()
		switch {
		case rec.NumRows() == 0:
		case aw != nil:
			if err := aw.WriteArrow(ctx, rec); err != nil {
				return fmt.Errorf("write to sink: %w", err)
			}
		default:
			if rows, err = columnar.AppendRows(rows[:0], rec); err != nil {
				return connectors.Permanent(fmt.Errorf("convert query output: %w", err))
			}
			if err := w.Write(ctx, rows); err != nil {
				return fmt.Errorf("write to sink: %w", err)
			}
			rows = make([]stream.Row, 0, len(rows))
		}
		res.RecordsOut += rec.NumRows()
	}
	if err := out.Err(); err != nil {
		return fmt.Errorf("read query output: %w", err)
	}
	if err := a.stillCurrent(ctx); err != nil {
		return fmt.Errorf("commit sink output %s: %w", a.Range.Key(), err)
	}
	end, err := commit(ctx, w, res.End)
	if err != nil {
		return fmt.Errorf("commit sink output %s: %w", a.Range.Key(), err)
	}
	w = nil
	res.End = end
	return nil
}

// recordSource is the task's reader as an Arrow record reader for DuckDB,
// which pulls it from its own threads while the query runs: batches of up
// to sqlBatchRows records, built as they are read.
//
// It builds them one of two ways. The row path appends the rows Read
// returns to a columnar.Builder. The reader's path, taken when the reader
// fills batches itself (a filler: Kafka's and Kinesis' readers) and the
// query reads its source's columns (all of them, or those the pipeline
// kept: sqltransform leaves out the ones the query does not read), has the
// reader append its records to a columnar.KafkaBuilder or KinesisBuilder:
// the same batches without a map per record, which was most of a Kafka SQL
// task's cost.
type recordSource struct {
	ctx context.Context
	r   connectors.Reader
	a   *Attempt
	b   *columnar.Builder // the row path; nil on the reader's path
	f   filler            // the reader's path (Kafka, Kinesis)

	refs atomic.Int64

	mu   sync.Mutex // DuckDB may call from different threads, one at a time
	cur  arrow.RecordBatch
	done bool
	st   sourceStats
}

// newRecordSource returns the source of a's query over r, with one
// reference, whose batches come from mem.
func newRecordSource(ctx context.Context, r connectors.Reader, a *Attempt, mem memory.Allocator) *recordSource {
	s := &recordSource{ctx: ctx, r: r, a: a}
	s.refs.Store(1)
	if f, ok := newFiller(r, a.SQL.Source(), mem); ok {
		s.f = f
		return s
	}
	s.b = columnar.NewBuilder(mem, a.SQL.Source())
	return s
}

type sourceStats struct {
	in, bytes, skipped int64
	dead               []stream.Row // records the reader could not unpack, for the dead-letter sink
	err                error        // the task's own error (a bad record under onError fail, a read failure)
}

func (s *recordSource) stats() sourceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *recordSource) Schema() *arrow.Schema { return s.a.SQL.Source() }

func (s *recordSource) Next() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.Release()
		s.cur = nil
	}
	for !s.done && s.st.err == nil && s.lenLocked() < sqlBatchRows {
		var rerr error
		if s.f != nil {
			rerr = s.fillLocked()
		} else {
			rerr = s.readRowsLocked()
		}
		switch {
		case errors.Is(rerr, io.EOF):
			s.done = true
		case rerr != nil && s.st.err == nil:
			s.st.err = fmt.Errorf("read %s: %w", s.a.Range.Key(), rerr)
		}
	}
	if s.st.err != nil || s.lenLocked() == 0 {
		return false
	}
	if s.f != nil {
		s.cur = s.f.NewRecordBatch()
	} else {
		s.cur = s.b.NewRecordBatch()
	}
	return true
}

// readRowsLocked is one Read of the row path: its rows go to the Builder,
// counted, and a bad one fails the task or is skipped (onError). It returns
// Read's error.
func (s *recordSource) readRowsLocked() error {
	recs, rerr := s.r.Read(s.ctx)
	for _, rec := range recs {
		s.st.in++
		s.st.bytes += int64(rec.Size)
		if rec.Err != nil {
			if s.st.err = badRecord(s.a, rec, &s.st.skipped, &s.st.dead); s.st.err != nil {
				break
			}
			continue
		}
		if err := s.b.Append(rec.Fields); err != nil {
			s.st.err = connectors.Permanent(fmt.Errorf("record in %s at %s: %w", s.a.Range.Partition, describe(rec.Fields), err))
			break
		}
	}
	return rerr
}

// fillLocked is one fill of the reader's path: the reader appends its
// records to the batch being built, and one it could not unpack fails the
// task or is skipped or kept (onError). It returns the reader's error.
func (s *recordSource) fillLocked() error {
	n, bytes, bad, rerr := s.f.fill(s.ctx)
	s.st.in += int64(n)
	s.st.bytes += bytes
	for _, rec := range bad {
		if s.st.err = badRecord(s.a, rec, &s.st.skipped, &s.st.dead); s.st.err != nil {
			break
		}
	}
	return rerr
}

// lenLocked is how many records the batch being built holds.
func (s *recordSource) lenLocked() int {
	if s.f != nil {
		return s.f.Len()
	}
	return s.b.Len()
}

func (s *recordSource) RecordBatch() arrow.RecordBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Record is RecordBatch under its deprecated name (array.RecordReader).
func (s *recordSource) Record() arrow.RecordBatch { return s.RecordBatch() }

func (s *recordSource) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.err
}

func (s *recordSource) Retain() { s.refs.Add(1) }

func (s *recordSource) Release() {
	if s.refs.Add(-1) != 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.Release()
		s.cur = nil
	}
	if s.f != nil {
		s.f.Release()
	} else {
		s.b.Release()
	}
}
