// Package task runs one attempt of one task on an executor: read the range,
// run the job's SQL transforms over it (sql.go), then write the rows to the
// sink (or return partial aggregates, or collect a sample for the driver),
// and report what was done and where the range ended. A job without
// transforms copies its records to the sink (run): as Arrow batches when
// the reader fills them and the sink takes them, as rows otherwise.
//
// An attempt is deterministic given its range, which is what makes retries
// and speculative copies safe: the sink is written under the (job, batch,
// part) key and a commit replaces whatever an earlier attempt wrote.
package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Bad-record policies, as in the job spec's onError.
const (
	OnErrorFail       = "fail"
	OnErrorSkip       = "skip"
	OnErrorDeadLetter = "deadLetter"
)

// Attempt is everything one attempt needs.
type Attempt struct {
	Job         stream.JobID
	Incarnation string
	Batch       stream.BatchID
	Range       stream.Range
	// Readers opens the range.
	Readers connectors.ReaderPool
	// SQL is the job's transforms, run in DuckDB over the records as Arrow
	// batches; nil for a job without any, whose records go to the sink as
	// they are. BatchTime is the batch's planned time, the query's current
	// time.
	SQL       *sqltransform.Pipeline
	BatchTime time.Time
	// Source is the schema of the source's records. A job without
	// transforms whose reader fills Arrow batches (Kafka) and whose sink
	// takes them copies its records as batches of it instead of rows; nil
	// keeps the rows.
	Source *arrow.Schema
	// Allocator allocates the Arrow batches of a SQL job's records;
	// default memory.DefaultAllocator (tests pass a checked one).
	Allocator memory.Allocator
	// Sink receives the rows of a non-aggregating job unless CollectRows is
	// set. DeadLetter receives bad records under onError deadLetter.
	Sink       connectors.Sink
	DeadLetter connectors.Sink
	OnError    string
	// CollectRows > 0: instead of writing, return up to this many rows (JSON
	// lines) for the driver to show (console sink).
	CollectRows int
	// Current, when set, is asked right before the output is committed; an
	// error means the attempt may already run elsewhere (its executor lost
	// the driver), so the output is aborted instead.
	Current func() error
}

// Result is what the attempt reports.
type Result struct {
	RecordsIn, RecordsOut, BytesIn int64
	Skipped, DeadLettered          int64
	// End is the position just after the last record read.
	End stream.Position
	// Partial is the encoded partial aggregate of an aggregating job.
	Partial []byte
	// Rows are collected rows as JSON lines; RowsTotal counts all output rows.
	Rows      []byte
	RowsTotal int64
	// SourceMetrics are the reader's figures (connectors.ReaderMetrics).
	SourceMetrics map[string]float64
	Duration      time.Duration
}

// Run executes the attempt. The error is permanent (connectors.IsPermanent)
// when retrying cannot help: a bad record under onError fail, data loss, too
// many groups.
func Run(ctx context.Context, a Attempt) (Result, error) {
	start := time.Now()
	run := run
	if a.SQL != nil {
		run = runSQL
	}
	res, err := run(ctx, a)
	res.Duration = time.Since(start)
	return res, err
}

// run copies a range to the sink, for a job without transforms (or collects
// its rows for the driver): as Arrow batches (copyArrow) when it can, as
// the reader's rows otherwise. Records the reader could not unpack follow
// onError.
func run(ctx context.Context, a Attempt) (res Result, err error) {
	r, err := a.Readers.Open(ctx, a.Range)
	if err != nil {
		return res, fmt.Errorf("open reader for %s: %w", a.Range.Key(), err)
	}
	defer r.Close()

	var w connectors.Writer
	defer func() {
		// Whatever was not committed is dropped: a later attempt replaces it.
		if w != nil {
			w.Abort()
		}
	}()
	part := a.Range.Key()
	var sample bytes.Buffer
	if a.CollectRows == 0 {
		if w, err = a.Sink.OpenWriter(ctx, connectors.WriteKey{Job: a.Job, Incarnation: a.Incarnation, Batch: a.Batch, Current: a.Current, Part: part}); err != nil {
			return res, fmt.Errorf("open sink writer: %w", err)
		}
	}
	var dead []stream.Row
	var f filler
	aw, _ := w.(connectors.ArrowWriter)
	if aw != nil && a.Source != nil && !small(r) {
		f, _ = newFiller(r, sinkColumns(a.Source, a.Sink), a.allocator())
	}
	if f != nil {
		dead, err = copyArrow(ctx, a, f, aw, &res)
		f.Release()
	} else {
		dead, err = copyRows(ctx, a, r, w, &sample, &res)
	}
	if err != nil {
		return res, err
	}
	res.End = r.End()
	if m, ok := r.(connectors.ReaderMetrics); ok {
		res.SourceMetrics = m.Metrics()
	}
	if a.CollectRows > 0 {
		res.Rows = sample.Bytes()
		res.RecordsOut = res.RowsTotal
	} else {
		if err := a.stillCurrent(ctx); err != nil {
			return res, fmt.Errorf("commit sink output %s: %w", part, err)
		}
		end, err := commit(ctx, w, res.End)
		if err != nil {
			return res, fmt.Errorf("commit sink output %s: %w", part, err)
		}
		w = nil
		// When an earlier attempt of this task committed its output and died
		// before its end was recorded, the output holds that attempt's end:
		// it is the task's end and the rest is left to the next batch.
		res.End = end
	}
	return res, deadLetter(ctx, a, &res, dead)
}

// minArrowRecords is the smallest range copyArrow copies: its builder and
// batch cost about 10 µs a task more than a few rows (20 µs measured on a
// loaded executor, where make bench's scenario 3, at 1,024 ranges of one
// record a batch, spent 23 ms a batch executing instead of 13), and save
// about 0.6 µs a record (scenario 2: 1.48 against 2.10 CPU seconds per
// million records).
const minArrowRecords = 64

// small reports whether r says its range holds fewer than minArrowRecords
// records.
func small(r connectors.Reader) bool {
	s, ok := r.(connectors.RangeSizer)
	return ok && s.Remaining() < minArrowRecords
}

// copyRows is run's copy of the reader's rows: to w, or collected into
// sample for the driver (CollectRows). It returns the records to
// dead-letter.
func copyRows(ctx context.Context, a Attempt, r connectors.Reader, w connectors.Writer, sample *bytes.Buffer, res *Result) (dead []stream.Row, err error) {
	for {
		recs, rerr := r.Read(ctx)
		rows := make([]stream.Row, 0, len(recs))
		for _, rec := range recs {
			res.BytesIn += int64(rec.Size)
			if rec.Err == nil {
				rows = append(rows, rec.Fields)
				continue
			}
			if err := badRecord(&a, rec, &res.Skipped, &dead); err != nil {
				return dead, err
			}
		}
		res.RecordsIn += int64(len(recs))
		switch {
		case a.CollectRows > 0:
			if err := collect(sample, res, a.CollectRows, rows); err != nil {
				return dead, err
			}
		case len(rows) > 0:
			if err := w.Write(ctx, rows); err != nil {
				return dead, fmt.Errorf("write to sink: %w", err)
			}
			res.RecordsOut += int64(len(rows))
		}
		if errors.Is(rerr, io.EOF) {
			return dead, nil
		}
		if rerr != nil {
			return dead, fmt.Errorf("read %s: %w", a.Range.Key(), rerr)
		}
	}
}

// sinkColumns narrows schema, the source's, to the columns sink reads when
// it names them (connectors.ColumnReader), so that the reader builds
// nothing the sink would not read: for a Kafka → Kafka copy, the topic,
// partition and timestamps of every record.
func sinkColumns(schema *arrow.Schema, sink connectors.Sink) *arrow.Schema {
	cr, ok := sink.(connectors.ColumnReader)
	if !ok {
		return schema
	}
	names, ok := cr.ReadsColumns()
	if !ok {
		return schema
	}
	fields := make([]arrow.Field, 0, len(names))
	for _, f := range schema.Fields() {
		if slices.Contains(names, f.Name) {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 || len(fields) == schema.NumFields() {
		return schema
	}
	md := schema.Metadata()
	return arrow.NewSchema(fields, &md)
}

// copyArrow is run's copy for a reader that fills Arrow batches and a sink
// that takes them: the range goes to the sink as batches of the source's
// columns (a.Source, narrowed by sinkColumns) of up to sqlBatchRows
// records, built from the fetched records, without a map per record. The
// sink makes of a batch the records it makes of the same rows
// (connectors.ArrowWriter), and the readers' batches hold the rows their
// Read returns (columnar.KafkaBuilder, columnar.KinesisBuilder), so the
// output is the row path's. Records the reader could not unpack follow
// onError, as in copyRows; it returns those to dead-letter.
func copyArrow(ctx context.Context, a Attempt, f filler, aw connectors.ArrowWriter, res *Result) (dead []stream.Row, err error) {
	for {
		n, bytes, bad, rerr := f.fill(ctx)
		res.RecordsIn += int64(n)
		res.BytesIn += bytes
		for _, rec := range bad {
			if err := badRecord(&a, rec, &res.Skipped, &dead); err != nil {
				return dead, err
			}
		}
		done := errors.Is(rerr, io.EOF)
		if rerr != nil && !done {
			return dead, fmt.Errorf("read %s: %w", a.Range.Key(), rerr)
		}
		if f.Len() >= sqlBatchRows || done && f.Len() > 0 {
			rec := f.NewRecordBatch()
			err := aw.WriteArrow(ctx, rec)
			res.RecordsOut += rec.NumRows()
			rec.Release()
			if err != nil {
				return dead, fmt.Errorf("write to sink: %w", err)
			}
		}
		if done {
			return dead, nil
		}
	}
}

// collect adds rows to the sample of a console sink's task: the first max
// rows of the attempt as JSON lines, and all of them to res.RowsTotal.
func collect(sample *bytes.Buffer, res *Result, max int, rows []stream.Row) error {
	for _, row := range rows {
		if res.RowsTotal < int64(max) {
			line, err := json.Marshal(row)
			if err != nil {
				return connectors.Permanent(fmt.Errorf("encode row: %w", err))
			}
			sample.Write(line)
			sample.WriteByte('\n')
		}
		res.RowsTotal++
	}
	return nil
}

// allocator is what the attempt's Arrow batches come from.
func (a Attempt) allocator() memory.Allocator {
	if a.Allocator == nil {
		return memory.DefaultAllocator
	}
	return a.Allocator
}

// stillCurrent is nil while the attempt may commit.
func (a Attempt) stillCurrent(ctx context.Context) error {
	return connectors.WriteKey{Current: a.Current}.StillCurrent(ctx)
}

// commit commits w, through CommitEnd when the sink stores ends with its
// output, and returns the end the output holds.
func commit(ctx context.Context, w connectors.Writer, end stream.Position) (stream.Position, error) {
	if ec, ok := w.(connectors.EndCommitter); ok {
		return ec.CommitEnd(ctx, end)
	}
	return end, w.Commit(ctx)
}

// describe points at a record for an error message without dumping its
// payload (which may hold personal data).
func describe(row stream.Row) string {
	if off, ok := row["offset"]; ok {
		return fmt.Sprintf("offset %v", off)
	}
	if seq, ok := row["sequenceNumber"]; ok {
		return fmt.Sprintf("sequence number %v", seq)
	}
	return "a record"
}
