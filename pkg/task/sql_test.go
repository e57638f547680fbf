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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/stream"
)

// kafkaPool serves Kafka-shaped records: partition p holds values[p], read
// in chunks of chunk records.
type kafkaPool struct {
	values map[string][]string // partition key "t/0" -> payloads
	chunk  int
	errAt  map[string]int // partition -> index of a record the reader could not unpack
}

func (p *kafkaPool) Open(_ context.Context, r stream.Range) (connectors.Reader, error) {
	return &kafkaReader{p: p, part: string(r.Partition)}, nil
}
func (p *kafkaPool) Close() error { return nil }

type kafkaReader struct {
	p    *kafkaPool
	part string
	pos  int
}

func (r *kafkaReader) Read(context.Context) ([]stream.Record, error) {
	vals := r.p.values[r.part]
	if r.pos >= len(vals) {
		return nil, io.EOF
	}
	end := min(r.pos+r.p.chunk, len(vals))
	var out []stream.Record
	var n int
	fmt.Sscanf(r.part, "t/%d", &n)
	for i := r.pos; i < end; i++ {
		rec := stream.Record{Fields: stream.Row{
			"key": nil, "value": []byte(vals[i]), "topic": "t", "partition": int64(n), "offset": int64(i),
			"timestamp": time.UnixMilli(1_700_000_000_000 + int64(i)).UTC(), "timestampType": int64(0),
		}, Size: len(vals[i])}
		if at, ok := r.p.errAt[r.part]; ok && at == i {
			rec.Err = errors.New("corrupt aggregate")
		}
		out = append(out, rec)
	}
	r.pos = end
	return out, nil
}
func (r *kafkaReader) End() stream.Position { return stream.Position(fmt.Sprint(r.pos)) }
func (r *kafkaReader) Close() error         { return nil }

// memSink keeps committed rows by part.
type memSink struct {
	mu   sync.Mutex
	rows map[string][]stream.Row
	cols map[string][]string
}

func (s *memSink) OpenWriter(_ context.Context, k connectors.WriteKey) (connectors.Writer, error) {
	return &memWriter{s: s, key: k}, nil
}
func (s *memSink) Close() error { return nil }

type memWriter struct {
	s    *memSink
	key  connectors.WriteKey
	rows []stream.Row
}

func (w *memWriter) Write(_ context.Context, rows []stream.Row) error {
	w.rows = append(w.rows, rows...)
	return nil
}
func (w *memWriter) Commit(context.Context) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if w.s.rows == nil {
		w.s.rows, w.s.cols = map[string][]stream.Row{}, map[string][]string{}
	}
	w.s.rows[w.key.Part], w.s.cols[w.key.Part] = w.rows, w.key.Columns
	return nil
}
func (w *memWriter) Abort() error { return nil }

func sqlEngine(t *testing.T) *sqlengine.Engine {
	t.Helper()
	eng, err := sqlengine.Open(context.Background(), sqlengine.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(context.Background()) })
	return eng
}

func sqlPipeline(t *testing.T, eng *sqlengine.Engine, skip bool, steps ...sqltransform.Step) *sqltransform.Pipeline {
	t.Helper()
	onBad := sqltransform.FailOnBad
	if skip {
		onBad = sqltransform.SkipBad
	}
	return sqlPipelineOnBad(t, eng, onBad, steps...)
}

func sqlPipelineOnBad(t *testing.T, eng *sqlengine.Engine, onBad sqltransform.BadRecords, steps ...sqltransform.Step) *sqltransform.Pipeline {
	t.Helper()
	p, err := sqltransform.Compile(context.Background(), eng, sqltransform.Config{Source: columnar.KafkaSchema(false), Steps: steps, OnBad: onBad})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var seedSteps = []sqltransform.Step{
	{Path: "transforms[0]", Decode: &sqltransform.Decode{Format: "json", Schema: "branch STRING, currency STRING, amount BIGINT"}},
	{Path: "transforms[1]", SQL: &sqltransform.SQL{View: "treasury_stream", Query: `
		select from_unixtime(unix_timestamp()) as curr_time, t.branch as branch_name,
		       t.currency as currency_code, sum(amount) as batch_value
		from treasury_stream t group by t.branch, t.currency`}},
}

// TestSQLSeedQueryAcrossTasks runs the treasury query as a job would: each
// partition's task over its records (in small reads and in one), the
// partial aggregates merged as the driver does, and the sums compared with
// a plain Go computation; the batch's time is what the query sees.
func TestSQLSeedQueryAcrossTasks(t *testing.T) {
	eng := sqlEngine(t)
	p := sqlPipeline(t, eng, false, seedSteps...)
	if !p.Aggregating() {
		t.Fatal("the seed query should aggregate")
	}
	branches, currencies := []string{"Kazan", "SPB", "Surgut"}, []string{"RUB", "USD"}
	pool := &kafkaPool{values: map[string][]string{}, chunk: 7}
	want := map[string]int64{}
	for part, n := range map[string]int{"t/0": 40000, "t/1": 3, "t/2": 0} {
		for i := range n {
			b, c, a := branches[i%3], currencies[(i/3)%2], int64(i%201-100)
			pool.values[part] = append(pool.values[part], fmt.Sprintf(`{"branch":%q,"currency":%q,"amount":%d}`, b, c, a))
			want[b+"/"+c] += a
		}
	}
	batchTime := time.Date(2026, 12, 5, 6, 30, 0, 0, time.UTC)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	var partials [][]byte
	var in int64
	for _, part := range []string{"t/0", "t/1", "t/2"} {
		res, err := Run(context.Background(), Attempt{Job: "j", Batch: 1, Range: stream.Range{Partition: stream.PartitionID(part)},
			Readers: pool, SQL: p, BatchTime: batchTime, Allocator: mem, OnError: OnErrorFail})
		if err != nil {
			t.Fatalf("task %s: %v", part, err)
		}
		in += res.RecordsIn
		partials = append(partials, res.Partial)
	}
	mem.AssertSize(t, 0)
	if in != 40003 {
		t.Fatalf("records in = %d, want 40003", in)
	}
	rows, err := p.Merge(context.Background(), partials, batchTime)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range rows {
		if r["curr_time"] != "2026-12-05 06:30:00" {
			t.Fatalf("curr_time = %v, want the batch's time", r["curr_time"])
		}
		got[r["branch_name"].(string)+"/"+r["currency_code"].(string)] = r["batch_value"].(int64)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("sums (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"curr_time", "branch_name", "currency_code", "batch_value"}, p.Columns()); diff != "" {
		t.Fatalf("columns (-want +got):\n%s", diff)
	}
}

// TestSQLRowWise: a row-wise query writes its rows to the sink under the
// task's key with the query's column order, or collects them for a console
// sink; bad payloads fail the task naming the record, or are dropped.
func TestSQLRowWise(t *testing.T) {
	eng := sqlEngine(t)
	values := []string{`{"a":1,"s":"x"}`, `not json`, `{"a":2,"s":"y"}`, "\xff\xfe", `{"a":3}`}
	steps := []sqltransform.Step{
		{Path: "transforms[0]", Decode: &sqltransform.Decode{Format: "json", Schema: "a BIGINT, s STRING"}},
		{Path: "transforms[1]", SQL: &sqltransform.SQL{Query: `select a * 10 as a10, upper(s) as s, "offset" from source where a <> 2`}},
	}
	for _, tc := range []struct {
		name         string
		onError      string
		errAt        map[string]int
		want         []stream.Row
		wantErr      string
		skipped      int64
		deadLettered int64
	}{
		{name: "fail", onError: OnErrorFail, wantErr: "bad record in t/0 at offset 1: transforms[0].decode: malformed JSON"},
		{name: "skip", onError: OnErrorSkip, skipped: 2, want: []stream.Row{
			{"a10": int64(10), "s": "X", "offset": int64(0)}, {"a10": int64(30), "s": nil, "offset": int64(4)}}},
		{name: "unreadable record skipped", onError: OnErrorSkip, errAt: map[string]int{"t/0": 0}, skipped: 3, want: []stream.Row{
			{"a10": int64(30), "s": nil, "offset": int64(4)}}},
		{name: "unreadable record fails", onError: OnErrorFail, errAt: map[string]int{"t/0": 0}, wantErr: "bad record in t/0 at offset 0: read: corrupt aggregate"},
		{name: "unreadable record dead-lettered", onError: OnErrorDeadLetter, errAt: map[string]int{"t/0": 0}, deadLettered: 3, want: []stream.Row{
			{"a10": int64(30), "s": nil, "offset": int64(4)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			onBad := map[string]sqltransform.BadRecords{OnErrorFail: sqltransform.FailOnBad, OnErrorSkip: sqltransform.SkipBad,
				OnErrorDeadLetter: sqltransform.KeepBad}[tc.onError]
			p := sqlPipelineOnBad(t, eng, onBad, steps...)
			sink, dead := &memSink{}, &memSink{}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			res, err := Run(context.Background(), Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "t/0"},
				Readers: &kafkaPool{values: map[string][]string{"t/0": values}, chunk: 2, errAt: tc.errAt},
				SQL:     p, Sink: sink, DeadLetter: dead, Allocator: mem, OnError: tc.onError})
			mem.AssertSize(t, 0)
			if tc.wantErr != "" {
				if err == nil || !connectors.IsPermanent(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want a permanent error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, sink.rows["t/0"]); diff != "" {
				t.Fatalf("rows (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"a10", "s", "offset"}, sink.cols["t/0"]); diff != "" {
				t.Fatalf("columns (-want +got):\n%s", diff)
			}
			if res.RecordsIn != 5 || res.RecordsOut != int64(len(tc.want)) || res.Skipped != tc.skipped || res.DeadLettered != tc.deadLettered ||
				int64(len(dead.rows["t/0"])) != tc.deadLettered || string(res.End) != "5" {
				t.Fatalf("result %+v", res)
			}
		})
	}
	t.Run("deadLetter", func(t *testing.T) {
		p := sqlPipelineOnBad(t, eng, sqltransform.KeepBad, steps...)
		sink, dead := &memSink{}, &memSink{}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		res, err := Run(context.Background(), Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "t/0"},
			Readers: &kafkaPool{values: map[string][]string{"t/0": values}, chunk: 2},
			SQL:     p, Sink: sink, DeadLetter: dead, Allocator: mem, OnError: OnErrorDeadLetter})
		mem.AssertSize(t, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.DeadLettered != 2 || res.Skipped != 0 || len(sink.rows["t/0"]) != 2 {
			t.Fatalf("result %+v, %d rows in the sink", res, len(sink.rows["t/0"]))
		}
		ts := func(i int64) time.Time { return time.UnixMilli(1_700_000_000_000 + i).UTC() }
		want := []stream.Row{
			{"key": nil, "value": []byte("not json"), "topic": "t", "partition": int64(0), "offset": int64(1), "timestamp": ts(1),
				"timestampType": int64(0), "error": "transforms[0].decode: malformed JSON"},
			{"key": nil, "value": []byte("\xff\xfe"), "topic": "t", "partition": int64(0), "offset": int64(3), "timestamp": ts(3),
				"timestampType": int64(0), "error": "transforms[0].decode: malformed JSON"},
		}
		got := dead.rows["t/0"]
		sort.Slice(got, func(i, j int) bool { return got[i]["offset"].(int64) < got[j]["offset"].(int64) })
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("dead letters (-want +got):\n%s", diff)
		}
	})
	t.Run("collect", func(t *testing.T) {
		p := sqlPipeline(t, eng, true, steps...)
		res, err := Run(context.Background(), Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "t/0"},
			Readers: &kafkaPool{values: map[string][]string{"t/0": values}, chunk: 2}, SQL: p, CollectRows: 1, OnError: OnErrorSkip})
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Rows) != `{"a10":10,"offset":0,"s":"X"}`+"\n" || res.RowsTotal != 2 {
			t.Fatalf("rows %q, total %d", res.Rows, res.RowsTotal)
		}
	})
}

// memKafka is an in-memory Kafka partition set whose readers return rows as
// the Kafka reader's Read does and, when arrow is set, also implement
// connectors.KafkaArrowReader as it does: the two paths of a SQL task.
type memKafka struct {
	values map[string][][]byte // partition key "t/0" -> payloads
	chunk  int
	arrow  bool
	// Calls of each kind, to tell which path a task took.
	reads, arrowReads atomic.Int64
}

func (p *memKafka) Open(_ context.Context, r stream.Range) (connectors.Reader, error) {
	var n int32
	fmt.Sscanf(string(r.Partition), "t/%d", &n)
	rd := &memKafkaReader{p: p, vals: p.values[string(r.Partition)], part: n}
	if p.arrow {
		return &memKafkaArrowReader{rd}, nil
	}
	return rd, nil
}
func (p *memKafka) Close() error { return nil }

type memKafkaReader struct {
	p    *memKafka
	vals [][]byte
	part int32
	pos  int
}

func (r *memKafkaReader) key(i int) []byte {
	if i%3 == 0 {
		return nil
	}
	return r.vals[i][:2]
}

func (r *memKafkaReader) Read(context.Context) ([]stream.Record, error) {
	r.p.reads.Add(1)
	if r.pos >= len(r.vals) {
		return nil, io.EOF
	}
	end := min(r.pos+r.p.chunk, len(r.vals))
	out := make([]stream.Record, 0, end-r.pos)
	for i := r.pos; i < end; i++ {
		row := stream.Row{
			"key": nil, "value": r.vals[i], "topic": "t", "partition": int64(r.part), "offset": int64(i),
			"timestamp": stream.Timestamp(1_700_000_000_000 + int64(i)), "timestampType": int64(0),
		}
		if k := r.key(i); k != nil {
			row["key"] = k
		}
		out = append(out, stream.Record{Fields: row, Size: len(r.key(i)) + len(r.vals[i])})
	}
	r.pos = end
	return out, nil
}
func (r *memKafkaReader) End() stream.Position { return stream.Position(fmt.Sprint(r.pos)) }
func (r *memKafkaReader) Close() error         { return nil }

type memKafkaArrowReader struct{ *memKafkaReader }

func (r *memKafkaArrowReader) Remaining() int64 { return int64(len(r.vals) - r.pos) }

func (r *memKafkaArrowReader) ReadKafkaArrow(_ context.Context, b *columnar.KafkaBuilder) (int, int64, error) {
	r.p.arrowReads.Add(1)
	if r.pos >= len(r.vals) {
		return 0, 0, io.EOF
	}
	end := min(r.pos+r.p.chunk, len(r.vals))
	var bytes int64
	for i := r.pos; i < end; i++ {
		b.Append("t", r.part, int64(i), r.key(i), r.vals[i], 1_700_000_000_000+int64(i), 0, nil)
		bytes += int64(len(r.key(i)) + len(r.vals[i]))
	}
	n := end - r.pos
	r.pos = end
	return n, bytes, nil
}

// seedValues returns n seed payloads and adds their sums to want.
func seedValues(n int, want map[string]int64) [][]byte {
	branches, currencies := []string{"Kazan", "SPB", "Surgut"}, []string{"RUB", "USD"}
	out := make([][]byte, n)
	for i := range out {
		b, c, a := branches[i%3], currencies[(i/3)%2], int64(i%201-100)
		out[i] = fmt.Appendf(nil, `{"branch":%q,"currency":%q,"amount":%d}`, b, c, a)
		if want != nil {
			want[b+"/"+c] += a
		}
	}
	return out
}

// runSeed runs the seed query's tasks over pool's partitions and merges the
// partials; it returns the task results and the sums.
func runSeed(t testing.TB, p *sqltransform.Pipeline, pool connectors.ReaderPool, mem memory.Allocator, parts ...string) ([]Result, map[string]int64) {
	batchTime := time.Date(2026, 12, 5, 6, 30, 0, 0, time.UTC)
	var partials [][]byte
	var results []Result
	for _, part := range parts {
		res, err := Run(context.Background(), Attempt{Job: "j", Batch: 1, Range: stream.Range{Partition: stream.PartitionID(part)},
			Readers: pool, SQL: p, BatchTime: batchTime, Allocator: mem, OnError: OnErrorFail})
		if err != nil {
			t.Fatalf("task %s: %v", part, err)
		}
		partials = append(partials, res.Partial)
		res.Duration, res.Partial = 0, nil
		results = append(results, res)
	}
	rows, err := p.Merge(context.Background(), partials, batchTime)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range rows {
		got[r["branch_name"].(string)+"/"+r["currency_code"].(string)] = r["batch_value"].(int64)
	}
	return results, got
}

// TestSQLKafkaArrowPath: a reader that appends Kafka records straight to
// Arrow (connectors.KafkaArrowReader) is used for the Kafka schema, and the
// task gives what the row path gives: the same sums and sink rows, records
// in, bytes, end and skipped, all batches released.
func TestSQLKafkaArrowPath(t *testing.T) {
	eng := sqlEngine(t)
	want := map[string]int64{}
	values := map[string][][]byte{"t/0": seedValues(40000, want), "t/1": seedValues(3, want), "t/2": nil}

	t.Run("seed query", func(t *testing.T) {
		p := sqlPipeline(t, eng, false, seedSteps...)
		var results [2][]Result
		for i, arrow := range []bool{false, true} {
			pool := &memKafka{values: values, chunk: 700, arrow: arrow}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			res, got := runSeed(t, p, pool, mem, "t/0", "t/1", "t/2")
			mem.AssertSize(t, 0)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("arrow=%v: sums (-want +got):\n%s", arrow, diff)
			}
			if arrow && (pool.reads.Load() != 0 || pool.arrowReads.Load() == 0) || !arrow && pool.arrowReads.Load() != 0 {
				t.Fatalf("arrow=%v: %d reads, %d arrow reads", arrow, pool.reads.Load(), pool.arrowReads.Load())
			}
			results[i] = res
		}
		if diff := cmp.Diff(results[0], results[1]); diff != "" {
			t.Fatalf("results (-rows +arrow):\n%s", diff)
		}
		if results[1][0].RecordsIn != 40000 || results[1][0].BytesIn == 0 || string(results[1][0].End) != "40000" {
			t.Fatalf("result %+v", results[1][0])
		}
	})

	t.Run("row-wise with bad records", func(t *testing.T) {
		vals := [][]byte{[]byte(`{"a":1,"s":"x"}`), []byte(`not json`), []byte(`{"a":2,"s":"y"}`), []byte("\xff\xfe"), []byte(`{"a":3}`)}
		steps := []sqltransform.Step{
			{Path: "transforms[0]", Decode: &sqltransform.Decode{Format: "json", Schema: "a BIGINT, s STRING"}},
			{Path: "transforms[1]", SQL: &sqltransform.SQL{Query: `select a * 10 as a10, upper(s) as s, "offset", key, "timestamp" from source where a <> 2`}},
		}
		p := sqlPipeline(t, eng, true, steps...)
		var sinks [2]*memSink
		var results [2]Result
		for i, arrow := range []bool{false, true} {
			sinks[i] = &memSink{}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			res, err := Run(context.Background(), Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "t/0"},
				Readers: &memKafka{values: map[string][][]byte{"t/0": vals}, chunk: 2, arrow: arrow},
				SQL:     p, Sink: sinks[i], Allocator: mem, OnError: OnErrorSkip})
			mem.AssertSize(t, 0)
			if err != nil {
				t.Fatalf("arrow=%v: %v", arrow, err)
			}
			res.Duration = 0
			results[i] = res
		}
		if diff := cmp.Diff(results[0], results[1]); diff != "" {
			t.Fatalf("results (-rows +arrow):\n%s", diff)
		}
		if diff := cmp.Diff(sinks[0].rows, sinks[1].rows); diff != "" {
			t.Fatalf("sink rows (-rows +arrow):\n%s", diff)
		}
		if len(sinks[1].rows["t/0"]) != 2 || results[1].RecordsIn != 5 || string(results[1].End) != "5" {
			t.Fatalf("arrow: rows %v, result %+v", sinks[1].rows, results[1])
		}
	})

	t.Run("other schema takes the row path", func(t *testing.T) {
		// A query over a schema that is not the Kafka source's (a Kinesis
		// job) never asks a reader for Kafka batches.
		p, err := sqltransform.Compile(context.Background(), eng, sqltransform.Config{Source: columnar.KinesisSchema(),
			Steps: []sqltransform.Step{{Path: "transforms[0]", SQL: &sqltransform.SQL{Query: `select count(*) as n from source`}}}})
		if err != nil {
			t.Fatal(err)
		}
		pool := &memKafka{values: map[string][][]byte{"t/0": seedValues(10, nil)}, chunk: 4, arrow: true}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		if _, err := Run(context.Background(), Attempt{Job: "j", Batch: 1, Range: stream.Range{Partition: "t/0"},
			Readers: pool, SQL: p, Allocator: mem, OnError: OnErrorFail}); err != nil {
			t.Fatal(err)
		}
		mem.AssertSize(t, 0)
		if pool.arrowReads.Load() != 0 || pool.reads.Load() == 0 {
			t.Fatalf("%d reads, %d arrow reads", pool.reads.Load(), pool.arrowReads.Load())
		}
	})
}

// BenchmarkSQLSeedQueryKafka runs the seed query's task over 500k in-memory
// Kafka records (one partition, reads of 10k as the Kafka reader's default)
// through the row path and the Kafka Arrow path.
func BenchmarkSQLSeedQueryKafka(b *testing.B) {
	const n = 500_000
	p := benchPipeline(b, seedSteps...)
	values := map[string][][]byte{"t/0": seedValues(n, nil)}
	for _, arrow := range []bool{false, true} {
		name := "rows"
		if arrow {
			name = "arrow"
		}
		b.Run(name, func(b *testing.B) {
			benchTask(b, Attempt{SQL: p}, &memKafka{values: values, chunk: 10_000, arrow: arrow}, n)
		})
	}
}

// rowsOnly hides a reader's KafkaArrowReader: the task takes the row path.
type rowsOnly struct{ connectors.ReaderPool }

func (p rowsOnly) Open(ctx context.Context, r stream.Range) (connectors.Reader, error) {
	rd, err := p.ReaderPool.Open(ctx, r)
	if err != nil {
		return nil, err
	}
	return rowReader{rd}, nil
}

type rowReader struct{ connectors.Reader }

func (r rowReader) Metrics() map[string]float64 {
	return r.Reader.(connectors.ReaderMetrics).Metrics()
}

// TestSQLOverKafkaReader runs the seed query, and a row-wise query over
// the headers, through the Kafka reader on an in-process Kafka (kfake), by
// both paths: the Arrow path must give what the row path gives.
func TestSQLOverKafkaReader(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want := map[string]int64{}
	var recs []*kgo.Record
	for i, v := range seedValues(5000, want) {
		rec := &kgo.Record{Topic: "t", Partition: int32(i % 2), Value: v}
		if i%3 == 0 {
			rec.Key = []byte(fmt.Sprint(i))
		}
		if i%3 == 1 { // in t/1 (odd i): offsets divisible by 3
			rec.Headers = []kgo.RecordHeader{{Key: "h", Value: []byte(fmt.Sprint(i))}, {Key: "null"}}
		}
		recs = append(recs, rec)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	eng := sqlEngine(t)
	for _, headers := range []bool{false, true} {
		t.Run(fmt.Sprintf("headers=%v", headers), func(t *testing.T) {
			cfg := kafka.Config{BootstrapServers: fake.ListenAddrs()[0], Subscribe: []string{"t"}, StartingOffsets: "earliest", FailOnDataLoss: true, IncludeHeaders: headers}
			seed, err := sqltransform.Compile(ctx, eng, sqltransform.Config{Source: columnar.KafkaSchema(headers), Steps: seedSteps})
			if err != nil {
				t.Fatal(err)
			}
			query := `select "offset", key, value, "timestamp", timestampType, partition, topic from source`
			if headers {
				query = `select "offset", headers from source`
			}
			rowWise, err := sqltransform.Compile(ctx, eng, sqltransform.Config{Source: columnar.KafkaSchema(headers),
				Steps: []sqltransform.Step{{Path: "transforms[0]", SQL: &sqltransform.SQL{Query: query}}}})
			if err != nil {
				t.Fatal(err)
			}
			var results [2][]Result
			var sinks [2]*memSink
			for i, arrow := range []bool{false, true} {
				pool, err := kafka.NewReaderPool(cfg, kafka.WithMaxRecordsPerRead(700))
				if err != nil {
					t.Fatal(err)
				}
				defer pool.Close()
				var readers connectors.ReaderPool = pool
				if !arrow {
					readers = rowsOnly{pool}
				}
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				var got map[string]int64
				results[i], got = runSeed(t, seed, &rangePool{readers, stream.Position("2500")}, mem, "t/0", "t/1")
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("arrow=%v: sums (-want +got):\n%s", arrow, diff)
				}
				// The partitions' next ranges come from the warm readers.
				sinks[i] = &memSink{}
				res, err := Run(ctx, Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "t/1", From: stream.Position("2000"), Until: stream.Position("2500")},
					Readers: readers, SQL: rowWise, Sink: sinks[i], Allocator: mem, OnError: OnErrorFail})
				if err != nil {
					t.Fatal(err)
				}
				res.Duration = 0
				results[i] = append(results[i], res)
				mem.AssertSize(t, 0)
			}
			if diff := cmp.Diff(results[0], results[1]); diff != "" {
				t.Fatalf("results (-rows +arrow):\n%s", diff)
			}
			if diff := cmp.Diff(sinks[0].rows, sinks[1].rows); diff != "" {
				t.Fatalf("sink rows (-rows +arrow):\n%s", diff)
			}
			if rows := sinks[1].rows["t/1"]; len(rows) != 500 {
				t.Fatalf("sink wrote %d rows of t/1, want 500", len(rows))
			}
			withHeaders := 0
			for _, r := range sinks[1].rows["t/1"] {
				if r["headers"] != nil {
					withHeaders++
				}
			}
			if headers && withHeaders != 167 {
				t.Fatalf("%d rows with headers, want 167", withHeaders)
			}
		})
	}
}

// rangePool opens partition ranges [0, until) whatever the range asks:
// runSeed names partitions only.
type rangePool struct {
	connectors.ReaderPool
	until stream.Position
}

func (p *rangePool) Open(ctx context.Context, r stream.Range) (connectors.Reader, error) {
	return p.ReaderPool.Open(ctx, stream.Range{Partition: r.Partition, From: stream.Position("0"), Until: p.until})
}

// rowsOnlySink hides the connectors.ArrowWriter of its sink's writers, so
// that a task takes the row path to the same sink.
type rowsOnlySink struct{ connectors.Sink }

type rowsOnlyWriter struct{ connectors.Writer }

func (s rowsOnlySink) OpenWriter(ctx context.Context, k connectors.WriteKey) (connectors.Writer, error) {
	w, err := s.Sink.OpenWriter(ctx, k)
	if err != nil {
		return nil, err
	}
	return rowsOnlyWriter{w}, nil
}

// TestSQLArrowSink runs a SQL task whose query emits many column types into
// the file sink twice: through its connectors.ArrowWriter, and through the
// row path (its WriteArrow hidden). The files must be byte for byte equal,
// and the counts the same.
func TestSQLArrowSink(t *testing.T) {
	eng := sqlEngine(t)
	var values []string
	for i := range 40 {
		if i%7 == 3 {
			values = append(values, `{"a":null,"s":null}`)
			continue
		}
		values = append(values, fmt.Sprintf(`{"a":%d,"s":"s<%d>\n\"q\""}`, i-10, i))
	}
	steps := []sqltransform.Step{
		{Path: "transforms[0]", Decode: &sqltransform.Decode{Format: "json", Schema: "a BIGINT, s STRING"}},
		{Path: "transforms[1]", SQL: &sqltransform.SQL{Query: `
			select "offset", a * 10 as a10, upper(s) as s, "timestamp", cast(s as blob) as raw, a / 3 as ratio,
			       cast(a as decimal(10, 2)) as price, cast(a as hugeint) * 1000000000000 as total, [a, a + 1] as l,
			       {'x': a, 'y': s} as st, map(['k', 'j'], [a, 2]) as m, date '2024-01-01' + cast(a as integer) as day,
			       a % 2 = 0 as even, cast(a as tinyint) as small, cast(a as float) as f32,
			       to_timestamp(a) as ts, interval (a) minute as iv, cast('12:34:56' as time) as tod
			from source where a is null or a <> 2`}},
	}
	p := sqlPipeline(t, eng, false, steps...)
	root := t.TempDir()
	sink, err := file.New(file.Config{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	run := func(job string, s connectors.Sink) Result {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		res, err := Run(context.Background(), Attempt{Job: stream.JobID(job), Batch: 1, Range: stream.Range{Partition: "t/0"},
			Readers: &kafkaPool{values: map[string][]string{"t/0": values}, chunk: 7}, SQL: p, Sink: s, Allocator: mem})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	arrowRes, rowsRes := run("arrow", sink), run("rows", rowsOnlySink{sink})
	if arrowRes.RecordsOut != 39 || rowsRes.RecordsOut != arrowRes.RecordsOut || arrowRes.RecordsIn != 40 {
		t.Fatalf("results: arrow %+v, rows %+v; want 39 records out of 40", arrowRes, rowsRes)
	}
	read := func(job string) string {
		b, err := os.ReadFile(filepath.Join(root, job, "batch=1", "part-t=0.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want, got := read("rows"), read("arrow")
	if got != want {
		t.Errorf("the Arrow path wrote\n%s\nthe row path\n%s", got, want)
	}
	if !strings.Contains(want, `"total":`) || strings.Count(want, "\n") != 39 {
		t.Errorf("unexpected output:\n%s", want)
	}
}

// BenchmarkSQLPassThroughSink runs a pass-through query (select * from
// source, the Kafka schema) over 200k in-memory Kafka records into the file
// sink and into the Kafka sink (kfake, key and value copied), each through
// its connectors.ArrowWriter and through the row path: what the Arrow path
// of the sinks saves per record.
func BenchmarkSQLPassThroughSink(b *testing.B) {
	const n = 200_000
	p := benchQuery(b, "select * from source")
	values := map[string][][]byte{"t/0": seedValues(n, nil)}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	ks, err := kafka.NewSink(kafka.SinkConfig{BootstrapServers: fake.ListenAddrs()[0], Topic: "out", Key: "key", Value: "value"})
	if err != nil {
		b.Fatal(err)
	}
	defer ks.Close()
	fs, err := file.New(file.Config{Path: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	for _, sk := range []struct {
		name string
		sink connectors.Sink
	}{{"file", fs}, {"kafka", ks}} {
		for _, arrowPath := range []bool{false, true} {
			name, sink := sk.name+"/rows", connectors.Sink(rowsOnlySink{sk.sink})
			if arrowPath {
				name, sink = sk.name+"/arrow", sk.sink
			}
			b.Run(name, func(b *testing.B) {
				benchTask(b, Attempt{SQL: p, Sink: sink}, &memKafka{values: values, chunk: 10_000, arrow: true}, n)
			})
		}
	}
}

// BenchmarkSQLCountKafka runs scenario 1c's task (select count(*), no
// decode) over 500k in-memory Kafka records by the Kafka Arrow path: what
// the engine costs a task over reading.
func BenchmarkSQLCountKafka(b *testing.B) {
	const n = 500_000
	p := benchQuery(b, "select count(*) as n from source")
	benchTask(b, Attempt{SQL: p}, &memKafka{values: map[string][][]byte{"t/0": seedValues(n, nil)}, chunk: 10_000, arrow: true}, n)
}

// benchQuery compiles query over the Kafka schema: benchPipeline of one
// SQL step.
func benchQuery(b *testing.B, query string) *sqltransform.Pipeline {
	b.Helper()
	return benchPipeline(b, sqltransform.Step{Path: "transforms[0]", SQL: &sqltransform.SQL{Query: query}})
}

// benchPipeline compiles steps over the Kafka schema on an engine of two
// threads, closed when b ends.
func benchPipeline(b *testing.B, steps ...sqltransform.Step) *sqltransform.Pipeline {
	b.Helper()
	eng, err := sqlengine.Open(context.Background(), sqlengine.WithThreads(2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = eng.Close(context.Background()) })
	p, err := sqltransform.Compile(context.Background(), eng, sqltransform.Config{Source: columnar.KafkaSchema(false), Steps: steps})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// benchTask runs a (its SQL, Source and Sink) over partition t/0 of pool,
// n records, once per iteration as the next batch, and reports records per
// second. Every record must be read, and with a sink written.
func benchTask(b *testing.B, a Attempt, pool *memKafka, n int64) {
	b.Helper()
	a.Job, a.Range, a.Readers, a.BatchTime, a.OnError = "j", stream.Range{Partition: "t/0"}, pool, time.Unix(0, 0), OnErrorFail
	b.ReportAllocs()
	for b.Loop() {
		a.Batch++
		res, err := Run(context.Background(), a)
		if err != nil || res.RecordsIn != n || a.Sink != nil && res.RecordsOut != n {
			b.Fatalf("task: %v, %d records in, %d out", err, res.RecordsIn, res.RecordsOut)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rec/s")
}

// TestCopyArrow: a job without transforms copies a Kafka range to a sink
// that takes Arrow as Arrow batches of the source's columns, batch after
// batch; the file is byte for byte what the row path writes, the counts the
// same. A sink that takes only rows gets rows, and so does any sink for a
// range of fewer than minArrowRecords records.
func TestCopyArrow(t *testing.T) {
	for _, n := range []int{40_000, minArrowRecords, minArrowRecords - 1} { // 40k: more than one batch
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			values := map[string][][]byte{"t/0": seedValues(n, nil)}
			root := t.TempDir()
			sink, err := file.New(file.Config{Path: root})
			if err != nil {
				t.Fatal(err)
			}
			run := func(job string, s connectors.Sink) (Result, *memKafka) {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				defer mem.AssertSize(t, 0)
				pool := &memKafka{values: values, chunk: 1000, arrow: true}
				res, err := Run(context.Background(), Attempt{Job: stream.JobID(job), Batch: 1, Range: stream.Range{Partition: "t/0"},
					Readers: pool, Source: columnar.KafkaSchema(false), Sink: s, Allocator: mem, OnError: OnErrorFail})
				if err != nil {
					t.Fatal(err)
				}
				return res, pool
			}
			arrowRes, arrowPool := run("arrow", sink)
			rowsRes, rowsPool := run("rows", rowsOnlySink{sink})
			wantArrow := n >= minArrowRecords
			if (arrowPool.arrowReads.Load() > 0) != wantArrow || (arrowPool.reads.Load() > 0) == wantArrow || rowsPool.arrowReads.Load() != 0 {
				t.Fatalf("paths: arrow job %d Arrow reads, %d reads; rows job %d Arrow reads", arrowPool.arrowReads.Load(), arrowPool.reads.Load(), rowsPool.arrowReads.Load())
			}
			if arrowRes.RecordsIn != int64(n) || arrowRes.RecordsOut != int64(n) || arrowRes.BytesIn != rowsRes.BytesIn ||
				rowsRes.RecordsIn != int64(n) || rowsRes.RecordsOut != int64(n) || string(arrowRes.End) != string(rowsRes.End) {
				t.Fatalf("results: arrow %+v, rows %+v", arrowRes, rowsRes)
			}
			read := func(job string) string {
				b, err := os.ReadFile(filepath.Join(root, job, "batch=1", "part-t=0.jsonl"))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			if got, want := read("arrow"), read("rows"); got != want || strings.Count(want, "\n") != n {
				t.Errorf("the Arrow path wrote %d bytes, the row path %d (%d lines): they differ", len(got), len(want), strings.Count(want, "\n"))
			}
		})
	}
}

// headerKafka is a Kafka partition whose records have headers, keys,
// tombstones and empty values, read as the Kafka reader reads them with
// includeHeaders: rows (Read) or Arrow (ReadKafkaArrow).
type headerKafka struct{ n int }

func (p headerKafka) Open(context.Context, stream.Range) (connectors.Reader, error) {
	return &headerReader{n: p.n}, nil
}
func (headerKafka) Close() error { return nil }

type headerReader struct{ n, pos int }

func (r *headerReader) rec(i int) (key, value []byte, hs []columnar.KafkaHeader) {
	key, value = []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf(`{"i":%d}`, i))
	switch i % 4 {
	case 1:
		key, value = nil, nil // a tombstone without a key
	case 2:
		key, value = []byte{}, []byte{}
		hs = []columnar.KafkaHeader{{Key: "trace", Value: []byte("x\"y")}, {Key: "none", Value: nil}}
	case 3:
		hs = []columnar.KafkaHeader{{Key: "", Value: []byte{0, 0xff}}}
	}
	return key, value, hs
}

// Read returns the rows of the records' Arrow batch: those are the Kafka
// reader's rows (columnar's TestKafkaBuilderMatchesBuilder).
func (r *headerReader) Read(ctx context.Context) ([]stream.Record, error) {
	kb := columnar.NewKafkaBuilder(memory.NewGoAllocator(), true)
	defer kb.Release()
	from := r.pos
	_, _, err := r.ReadKafkaArrow(ctx, kb)
	rec := kb.NewRecordBatch()
	defer rec.Release()
	rows, cerr := columnar.AppendRows(nil, rec)
	if cerr != nil {
		return nil, cerr
	}
	out := make([]stream.Record, len(rows))
	for i, row := range rows {
		key, value, _ := r.rec(from + i)
		out[i] = stream.Record{Fields: row, Size: len(key) + len(value)}
	}
	return out, err
}

func (r *headerReader) ReadKafkaArrow(_ context.Context, b *columnar.KafkaBuilder) (int, int64, error) {
	var bytes int64
	n := 0
	for ; r.pos < r.n; r.pos++ {
		key, value, hs := r.rec(r.pos)
		b.Append("t", 0, int64(r.pos), key, value, 1_700_000_000_000+int64(r.pos), 1, hs)
		bytes += int64(len(key) + len(value))
		n++
	}
	return n, bytes, io.EOF
}

func (r *headerReader) End() stream.Position { return stream.Position(fmt.Sprint(r.pos)) }
func (r *headerReader) Close() error         { return nil }

// TestCopyArrowHeaders: with headers, null keys, tombstones and empty
// values, a job without transforms writes by Arrow batches what it writes
// by rows, to the file sink and to the Kafka sink.
func TestCopyArrowHeaders(t *testing.T) {
	const n = 200
	root := t.TempDir()
	fs, err := file.New(file.Config{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	run := func(job string, s connectors.Sink) {
		t.Helper()
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		defer mem.AssertSize(t, 0)
		res, err := Run(context.Background(), Attempt{Job: stream.JobID(job), Batch: 1, Range: stream.Range{Partition: "t/0"},
			Readers: headerKafka{n: n}, Source: columnar.KafkaSchema(true), Sink: s, Allocator: mem, OnError: OnErrorFail})
		if err != nil || res.RecordsOut != n {
			t.Fatalf("%s: %v, %d records out", job, err, res.RecordsOut)
		}
	}
	run("arrow", fs)
	run("rows", rowsOnlySink{fs})
	read := func(job string) string {
		b, err := os.ReadFile(filepath.Join(root, job, "batch=1", "part-t=0.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := read("arrow"), read("rows"); got != want || !strings.Contains(want, `"headers":[{"key":"trace"`) {
		t.Errorf("file sink: the Arrow path wrote\n%.600s\nthe row path\n%.600s", got, want)
	}

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "arrow", "rows"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	for _, topic := range []string{"arrow", "rows"} {
		ks, err := kafka.NewSink(kafka.SinkConfig{BootstrapServers: fake.ListenAddrs()[0], Topic: topic, Key: "key"}) // the value: every column as JSON, headers too
		if err != nil {
			t.Fatal(err)
		}
		var s connectors.Sink = ks
		if topic == "rows" {
			s = rowsOnlySink{ks}
		}
		run(topic, s)
		ks.Close()
	}
	got := consumeArrowAndRows(t, fake.ListenAddrs(), n)
	if fmt.Sprint(got["arrow"]) != fmt.Sprint(got["rows"]) {
		t.Errorf("Kafka sink: the Arrow path produced\n%.600v\nthe row path\n%.600v", got["arrow"], got["rows"])
	}
}

// consumeArrowAndRows reads n records from each of the topics arrow and
// rows, each as its key, value and headers.
func consumeArrowAndRows(t *testing.T, addrs []string, n int) map[string][]string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("arrow", "rows"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string][]string{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(got["arrow"])+len(got["rows"]) < 2*n {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d and %d records: %v", len(got["arrow"]), len(got["rows"]), err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			got[r.Topic] = append(got[r.Topic], fmt.Sprintf("%q %q %v", r.Key, r.Value, r.Headers))
		})
	}
	return got
}

// schemaSink records the schemas of the batches its writers get, and says
// it reads only cols (connectors.ColumnReader).
type schemaSink struct {
	connectors.Sink
	cols []string
	mu   sync.Mutex
	seen []string
}

func (s *schemaSink) ReadsColumns() ([]string, bool) { return s.cols, s.cols != nil }

func (s *schemaSink) OpenWriter(ctx context.Context, k connectors.WriteKey) (connectors.Writer, error) {
	w, err := s.Sink.OpenWriter(ctx, k)
	if err != nil {
		return nil, err
	}
	return schemaWriter{w, s}, nil
}

type schemaWriter struct {
	connectors.Writer
	s *schemaSink
}

func (w schemaWriter) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	w.s.mu.Lock()
	w.s.seen = append(w.s.seen, schemaNames(rec.Schema()))
	w.s.mu.Unlock()
	return w.Writer.(connectors.ArrowWriter).WriteArrow(ctx, rec)
}

func schemaNames(s *arrow.Schema) string {
	var names []string
	for _, f := range s.Fields() {
		names = append(names, f.Name)
	}
	return strings.Join(names, ",")
}

// TestCopyArrowSinkColumns: a job without transforms fills its batches
// with the columns its sink reads when the sink names them, in the
// source's order and ignoring names the source lacks; with every column
// otherwise. The Kafka sink with column options names its columns and
// produces by Arrow what it produces by rows.
func TestCopyArrowSinkColumns(t *testing.T) {
	const n = 200
	all := schemaNames(columnar.KafkaSchema(true))
	for _, tc := range []struct {
		name string
		cols []string
		want string
	}{
		{"named", []string{"value", "offset", "sequenceNumber", "key"}, "key,value,offset"},
		{"every column", nil, all},
		{"none the source has", []string{"sequenceNumber"}, all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := file.New(file.Config{Path: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			s := &schemaSink{Sink: fs, cols: tc.cols}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			res, err := Run(context.Background(), Attempt{Job: "j", Batch: 1, Range: stream.Range{Partition: "t/0"},
				Readers: headerKafka{n: n}, Source: columnar.KafkaSchema(true), Sink: s, Allocator: mem, OnError: OnErrorFail})
			if err != nil || res.RecordsOut != n {
				t.Fatalf("%v, %d records out", err, res.RecordsOut)
			}
			if len(s.seen) == 0 {
				t.Fatal("no batch written")
			}
			for _, got := range s.seen {
				if got != tc.want {
					t.Errorf("batch of columns %s, want %s", got, tc.want)
				}
			}
		})
	}

	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "arrow", "rows"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	var cols []string
	for _, topic := range []string{"arrow", "rows"} {
		ks, err := kafka.NewSink(kafka.SinkConfig{BootstrapServers: fake.ListenAddrs()[0], Topic: topic, Key: "key", Value: "value",
			Schema: columnar.KafkaSchema(true)})
		if err != nil {
			t.Fatal(err)
		}
		s := &schemaSink{Sink: ks}
		s.cols, _ = ks.ReadsColumns()
		var sink connectors.Sink = s
		if topic == "rows" {
			sink = rowsOnlySink{ks}
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		res, err := Run(context.Background(), Attempt{Job: stream.JobID(topic), Batch: 1, Range: stream.Range{Partition: "t/0"},
			Readers: headerKafka{n: n}, Source: columnar.KafkaSchema(true), Sink: sink, Allocator: mem, OnError: OnErrorFail})
		if err != nil || res.RecordsOut != n {
			t.Fatalf("%s: %v, %d records out", topic, err, res.RecordsOut)
		}
		ks.Close()
		mem.AssertSize(t, 0)
		if topic == "arrow" {
			cols = s.seen
		}
	}
	if len(cols) == 0 || cols[0] != "key,value,offset" {
		t.Errorf("the Kafka sink's batches had columns %v, want key,value,offset", cols)
	}
	got := consumeArrowAndRows(t, fake.ListenAddrs(), n)
	if fmt.Sprint(got["arrow"]) != fmt.Sprint(got["rows"]) {
		t.Errorf("Kafka sink: the Arrow path produced\n%.600v\nthe row path\n%.600v", got["arrow"], got["rows"])
	}
}

// allColumnsSink hides its sink's connectors.ColumnReader: a task then
// fills every source column.
type allColumnsSink struct{ connectors.Sink }

// BenchmarkCopyKafka copies 200k in-memory Kafka records without
// transforms into the Kafka sink (kfake, key and value copied) by the
// Arrow path: with batches of the columns the sink reads, and of every
// column (scenario 2's task, in one process).
func BenchmarkCopyKafka(b *testing.B) {
	const n = 200_000
	values := map[string][][]byte{"t/0": seedValues(n, nil)}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer fake.Close()
	ks, err := kafka.NewSink(kafka.SinkConfig{BootstrapServers: fake.ListenAddrs()[0], Topic: "out", Key: "key", Value: "value",
		Schema: columnar.KafkaSchema(false)})
	if err != nil {
		b.Fatal(err)
	}
	defer ks.Close()
	for _, bc := range []struct {
		name string
		sink connectors.Sink
	}{{"sink columns", ks}, {"every column", allColumnsSink{ks}}} {
		b.Run(bc.name, func(b *testing.B) {
			benchTask(b, Attempt{Source: columnar.KafkaSchema(false), Sink: bc.sink}, &memKafka{values: values, chunk: 10_000, arrow: true}, n)
		})
	}
}
