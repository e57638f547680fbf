package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/discard"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/stream"
)

// memKinesis serves one shard's user records, chunk at a time, as the
// Kinesis reader does: rows from Read and, when arrow is set, batches from
// ReadKinesisArrow, with a record it could not unpack (Err set) every
// badEvery records (none when 0).
type memKinesis struct {
	n, chunk, badEvery int
	arrow              bool
	// Calls of each kind, to tell which path a task took.
	reads, arrowReads atomic.Int64
}

func (p *memKinesis) Open(context.Context, stream.Range) (connectors.Reader, error) {
	rd := &memKinesisReader{p: p}
	if p.arrow {
		return &memKinesisArrowReader{rd}, nil
	}
	return rd, nil
}
func (p *memKinesis) Close() error { return nil }

type memKinesisReader struct {
	p   *memKinesis
	pos int
}

// user is user record i's values as the Kinesis reader holds them, and
// whether it could not be unpacked.
func (r *memKinesisReader) user(i int) (data []byte, key, seq string, sub, arrival int64, bad bool) {
	data = fmt.Appendf(nil, `{"branch":"b%d","amount":%d}`, i%3, i)
	if i%7 == 5 {
		data = []byte{}
	}
	bad = r.p.badEvery > 0 && i%r.p.badEvery == r.p.badEvery-1
	return data, fmt.Sprintf("user-%d", i%5), fmt.Sprintf("49590%035d", i/4), int64(i % 4), 1_700_000_000_000 + int64(i), bad
}

// rec is user record i as the Kinesis reader's Read returns it.
func (r *memKinesisReader) rec(i int) stream.Record {
	data, key, seq, sub, arrival, bad := r.user(i)
	rec := stream.Record{Fields: stream.Row{
		"data": data, "stream": "orders", "shardId": "shardId-000000000001",
		"sequenceNumber": seq, "subSequenceNumber": sub, "partitionKey": key,
		"approximateArrivalTimestamp": time.UnixMilli(arrival).UTC(),
	}, Size: len(data)}
	if bad {
		rec.Err = errors.New("kinesis: corrupt KPL aggregate")
	}
	return rec
}

func (r *memKinesisReader) next() (from, to int) {
	to = min(r.pos+r.p.chunk, r.p.n)
	from, r.pos = r.pos, to
	return from, to
}

func (r *memKinesisReader) Read(context.Context) ([]stream.Record, error) {
	r.p.reads.Add(1)
	from, to := r.next()
	if from == to {
		return nil, io.EOF
	}
	out := make([]stream.Record, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, r.rec(i))
	}
	return out, nil
}
func (r *memKinesisReader) End() stream.Position { return stream.Position(fmt.Sprint(r.pos)) }
func (r *memKinesisReader) Close() error         { return nil }

type memKinesisArrowReader struct{ *memKinesisReader }

func (r *memKinesisArrowReader) ReadKinesisArrow(_ context.Context, b *columnar.KinesisBuilder) (int, int64, []stream.Record, error) {
	r.p.arrowReads.Add(1)
	from, to := r.next()
	if from == to {
		return 0, 0, nil, io.EOF
	}
	var bytes int64
	var bad []stream.Record
	for i := from; i < to; i++ {
		data, key, seq, sub, arrival, isBad := r.user(i)
		bytes += int64(len(data))
		if isBad {
			bad = append(bad, r.rec(i))
			continue
		}
		b.Append(key, data, "orders", "shardId-000000000001", seq, arrival, sub)
	}
	return to - from, bytes, bad, nil
}

// TestCopyArrowKinesis: a job without transforms copies a Kinesis range to
// a sink that takes Arrow as batches of the Kinesis columns; the file, the
// counts and the dead letters are the row path's, under each onError.
func TestCopyArrowKinesis(t *testing.T) {
	for _, onError := range []string{OnErrorSkip, OnErrorDeadLetter, OnErrorFail} {
		t.Run(onError, func(t *testing.T) {
			root, deadRoot := t.TempDir(), t.TempDir()
			sink, err := file.New(file.Config{Path: root})
			if err != nil {
				t.Fatal(err)
			}
			dead, err := file.New(file.Config{Path: deadRoot})
			if err != nil {
				t.Fatal(err)
			}
			run := func(job string, s connectors.Sink) (*memKinesis, Result, error) {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				defer mem.AssertSize(t, 0)
				pool := &memKinesis{n: 40_000, chunk: 1000, badEvery: 997, arrow: true}
				res, err := Run(context.Background(), Attempt{Job: stream.JobID(job), Batch: 1, Range: stream.Range{Partition: "orders/shardId-000000000001"},
					Readers: pool, Source: columnar.KinesisSchema(), Sink: s, DeadLetter: dead, Allocator: mem, OnError: onError})
				res.Duration = 0
				return pool, res, err
			}
			arrowPool, arrowRes, arrowErr := run("arrow", sink)
			rowsPool, rowsRes, rowsErr := run("rows", rowsOnlySink{sink})
			if arrowPool.arrowReads.Load() == 0 || arrowPool.reads.Load() != 0 || rowsPool.arrowReads.Load() != 0 {
				t.Fatalf("paths: arrow job %d Arrow reads, %d reads; rows job %d Arrow reads", arrowPool.arrowReads.Load(), arrowPool.reads.Load(), rowsPool.arrowReads.Load())
			}
			if onError == OnErrorFail {
				if !connectors.IsPermanent(arrowErr) || fmt.Sprint(arrowErr) != fmt.Sprint(rowsErr) {
					t.Fatalf("errors: arrow %v, rows %v", arrowErr, rowsErr)
				}
				return
			}
			if arrowErr != nil || rowsErr != nil {
				t.Fatalf("errors: arrow %v, rows %v", arrowErr, rowsErr)
			}
			if diff := cmp.Diff(rowsRes, arrowRes); diff != "" {
				t.Fatalf("results (-rows +arrow):\n%s", diff)
			}
			const bad = 40_000 / 997
			if arrowRes.RecordsIn != 40_000 || arrowRes.RecordsOut != 40_000-bad || arrowRes.Skipped+arrowRes.DeadLettered != bad {
				t.Fatalf("result %+v", arrowRes)
			}
			read := func(root, job string) string {
				b, err := os.ReadFile(filepath.Join(root, job, "batch=1", "part-orders=shardId-000000000001.jsonl"))
				if err != nil && !(errors.Is(err, os.ErrNotExist) && root == deadRoot && onError == OnErrorSkip) {
					t.Fatal(err)
				}
				return string(b)
			}
			if got, want := read(root, "arrow"), read(root, "rows"); got != want || strings.Count(want, "\n") != 40_000-bad {
				t.Errorf("the Arrow path wrote %d bytes, the row path %d (%d lines): they differ", len(got), len(want), strings.Count(want, "\n"))
			}
			if got, want := read(deadRoot, "arrow"), read(deadRoot, "rows"); got != want {
				t.Errorf("dead letters: the Arrow path wrote\n%.300s\nthe row path\n%.300s", got, want)
			}
		})
	}
}

// TestSQLKinesisArrowPath: a SQL task over a Kinesis reader that fills
// Arrow batches gives what the row path gives, for an aggregate and for a
// row-wise query over some of the columns, with records the reader could
// not unpack skipped.
func TestSQLKinesisArrowPath(t *testing.T) {
	eng := sqlEngine(t)
	for _, q := range []string{
		`select j.branch, sum(j.amount) as total, count(*) as n, max(approximateArrivalTimestamp) as last from (select from_json(data, 'branch STRING, amount BIGINT') as j, approximateArrivalTimestamp from source) group by j.branch`,
		`select partitionKey, "sequenceNumber", subSequenceNumber, octet_length(data) as len from source where subSequenceNumber <> 2`,
	} {
		t.Run(q[:30], func(t *testing.T) {
			p, err := sqltransform.Compile(context.Background(), eng, sqltransform.Config{Source: columnar.KinesisSchema(),
				Steps: []sqltransform.Step{{Path: "transforms[0]", SQL: &sqltransform.SQL{Query: q}}}})
			if err != nil {
				t.Fatal(err)
			}
			var sinks [2]*memSink
			var results [2]Result
			for i, arrow := range []bool{false, true} {
				sinks[i] = &memSink{}
				pool := &memKinesis{n: 30_000, chunk: 700, badEvery: 1001, arrow: arrow}
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				res, err := Run(context.Background(), Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "orders/shardId-000000000001"},
					Readers: pool, SQL: p, Sink: sinks[i], Allocator: mem, OnError: OnErrorSkip})
				mem.AssertSize(t, 0)
				if err != nil {
					t.Fatalf("arrow=%v: %v", arrow, err)
				}
				if arrow && (pool.reads.Load() != 0 || pool.arrowReads.Load() == 0) {
					t.Fatalf("arrow: %d reads, %d Arrow reads", pool.reads.Load(), pool.arrowReads.Load())
				}
				res.Duration = 0
				results[i] = res
			}
			// DuckDB's threads give a partial aggregate's groups in any
			// order: compare them as sorted rows.
			var partials [2][]string
			for i := range results {
				partials[i] = partialRows(t, results[i].Partial)
				results[i].Partial = nil
			}
			if diff := cmp.Diff(results[0], results[1]); diff != "" {
				t.Fatalf("results (-rows +arrow):\n%s", diff)
			}
			if results[1].RecordsIn != 30_000 || results[1].Skipped != 29 {
				t.Fatalf("result %+v", results[1])
			}
			if p.Aggregating() {
				if diff := cmp.Diff(partials[0], partials[1]); diff != "" || len(partials[1]) == 0 {
					t.Fatalf("partial aggregates (-rows +arrow):\n%s", diff)
				}
				return
			}
			if diff := cmp.Diff(sinks[0].rows, sinks[1].rows); diff != "" || len(sinks[1].rows["orders/shardId-000000000001"]) == 0 {
				t.Fatalf("sink rows (-rows +arrow):\n%s", diff)
			}
		})
	}
}

// BenchmarkCopyKinesis copies 100k in-memory Kinesis records (reads of
// 10k, the reader's default) to the discard sink, as rows and as Arrow
// batches.
func BenchmarkCopyKinesis(b *testing.B) {
	for _, arrow := range []bool{false, true} {
		b.Run(map[bool]string{false: "rows", true: "arrow"}[arrow], func(b *testing.B) {
			const n = 100_000
			b.ReportAllocs()
			for b.Loop() {
				pool := &memKinesis{n: n, chunk: 10_000, arrow: arrow}
				if _, err := Run(context.Background(), Attempt{Job: "j", Batch: 1, Range: stream.Range{Partition: "s/0"},
					Readers: pool, Source: columnar.KinesisSchema(), Sink: discard.New(), OnError: OnErrorFail}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// partialRows is an encoded partial aggregate's rows, printed and sorted.
func partialRows(t *testing.T, partial []byte) []string {
	t.Helper()
	if partial == nil {
		return nil
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	_, batches, err := columnar.DecodeIPC(mem, partial)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range batches {
		rows, err := columnar.AppendRows(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			out = append(out, fmt.Sprint(r))
		}
		b.Release()
	}
	sort.Strings(out)
	return out
}
