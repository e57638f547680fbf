// Package task runs one attempt of one task on an executor: read the range,
// apply the transforms, then write the rows to the sink (or fold them into a
// partial aggregate, or collect a sample for the driver), and report what was
// done and where the range ended.
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
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/stream"
	"github.com/sluicehq/sluice/pkg/transform"
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
	Readers  connectors.ReaderPool
	Pipeline *transform.Pipeline
	// SQL, when set, replaces Pipeline: the job's transforms are SQL and
	// run in DuckDB over the records as Arrow batches. BatchTime is the
	// batch's planned time, the query's current time.
	SQL       *sqltransform.Pipeline
	BatchTime time.Time
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

func run(ctx context.Context, a Attempt) (res Result, err error) {
	r, err := a.Readers.Open(ctx, a.Range)
	if err != nil {
		return res, fmt.Errorf("open reader for %s: %w", a.Range.Key(), err)
	}
	defer r.Close()

	var w, dl connectors.Writer
	defer func() {
		// Whatever was not committed is dropped: a later attempt replaces it.
		if w != nil {
			w.Abort()
		}
		if dl != nil {
			dl.Abort()
		}
	}()
	part := a.Range.Key()
	var agg *transform.Aggregator
	var sample bytes.Buffer
	switch {
	case a.Pipeline.Aggregating():
		agg = a.Pipeline.NewAggregator()
	case a.CollectRows > 0:
	default:
		if w, err = a.Sink.OpenWriter(ctx, connectors.WriteKey{Job: a.Job, Incarnation: a.Incarnation, Batch: a.Batch, Current: a.Current, Part: part, Columns: a.Pipeline.Columns()}); err != nil {
			return res, fmt.Errorf("open sink writer: %w", err)
		}
	}

	bad := func(row stream.Row, step string, cause error) error {
		switch a.OnError {
		case OnErrorSkip:
			res.Skipped++
			return nil
		case OnErrorDeadLetter:
			if dl == nil {
				var err error
				if dl, err = a.DeadLetter.OpenWriter(ctx, connectors.WriteKey{Job: a.Job, Incarnation: a.Incarnation, Batch: a.Batch, Current: a.Current, Part: part}); err != nil {
					return fmt.Errorf("open dead-letter writer: %w", err)
				}
			}
			out := row.Clone()
			out["error"] = fmt.Sprintf("%s: %v", step, cause)
			if err := dl.Write(ctx, []stream.Row{out}); err != nil {
				return fmt.Errorf("write dead letter: %w", err)
			}
			res.DeadLettered++
			return nil
		}
		return connectors.Permanent(fmt.Errorf("bad record in %s at %s: %s: %w (set onError: skip or deadLetter to keep going)",
			a.Range.Partition, describe(row), step, cause))
	}

	for {
		recs, rerr := r.Read(ctx)
		if len(recs) > 0 {
			rows := make([]stream.Row, 0, len(recs))
			for _, rec := range recs {
				res.BytesIn += int64(rec.Size)
				if rec.Err != nil {
					if err := bad(rec.Fields, "read", rec.Err); err != nil {
						return res, err
					}
					continue
				}
				rows = append(rows, rec.Fields)
			}
			res.RecordsIn += int64(len(recs))
			out, badRows := a.Pipeline.Process(rows)
			for _, b := range badRows {
				if err := bad(b.Row, b.Step, b.Err); err != nil {
					return res, err
				}
			}
			switch {
			case agg != nil:
				for _, row := range out {
					if err := agg.Add(row); err != nil {
						if errors.Is(err, transform.ErrTooManyGroups) {
							return res, connectors.Permanent(err)
						}
						if err := bad(row, "aggregate", err); err != nil {
							return res, err
						}
					}
				}
			case a.CollectRows > 0:
				if err := collect(&sample, &res, a.CollectRows, out); err != nil {
					return res, err
				}
			default:
				if len(out) > 0 {
					if err := w.Write(ctx, out); err != nil {
						return res, fmt.Errorf("write to sink: %w", err)
					}
				}
				res.RecordsOut += int64(len(out))
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return res, fmt.Errorf("read %s: %w", a.Range.Key(), rerr)
		}
	}
	res.End = r.End()
	if m, ok := r.(connectors.ReaderMetrics); ok {
		res.SourceMetrics = m.Metrics()
	}

	switch {
	case agg != nil:
		p, err := agg.MarshalBinary()
		if err != nil {
			return res, fmt.Errorf("encode partial aggregate: %w", err)
		}
		res.Partial = p
	case a.CollectRows > 0:
		res.Rows = sample.Bytes()
		res.RecordsOut = res.RowsTotal
	default:
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
	if dl != nil {
		if err := a.stillCurrent(ctx); err != nil {
			return res, fmt.Errorf("commit dead letters: %w", err)
		}
		if _, err := commit(ctx, dl, res.End); err != nil {
			return res, fmt.Errorf("commit dead letters: %w", err)
		}
		dl = nil
	}
	return res, nil
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
