package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
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
	p, err := sqltransform.Compile(context.Background(), eng, sqltransform.Config{Source: columnar.KafkaSchema(false), Steps: steps, SkipBad: skip})
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

// TestSQLSeedQueryAcrossTasks runs seed 003's query as a job would: each
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
		name    string
		onError string
		errAt   map[string]int
		want    []stream.Row
		wantErr string
		skipped int64
	}{
		{name: "fail", onError: OnErrorFail, wantErr: "bad record in t/0 at offset 1: transforms[0].decode: malformed JSON"},
		{name: "skip", onError: OnErrorSkip, want: []stream.Row{
			{"a10": int64(10), "s": "X", "offset": int64(0)}, {"a10": int64(30), "s": nil, "offset": int64(4)}}},
		{name: "unreadable record skipped", onError: OnErrorSkip, errAt: map[string]int{"t/0": 0}, skipped: 1, want: []stream.Row{
			{"a10": int64(30), "s": nil, "offset": int64(4)}}},
		{name: "unreadable record fails", onError: OnErrorFail, errAt: map[string]int{"t/0": 0}, wantErr: "bad record in t/0 at offset 0: read: corrupt aggregate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := sqlPipeline(t, eng, tc.onError == OnErrorSkip, steps...)
			sink := &memSink{}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			res, err := Run(context.Background(), Attempt{Job: "j", Batch: 2, Range: stream.Range{Partition: "t/0"},
				Readers: &kafkaPool{values: map[string][]string{"t/0": values}, chunk: 2, errAt: tc.errAt},
				SQL: p, Sink: sink, Allocator: mem, OnError: tc.onError})
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
			if res.RecordsIn != 5 || res.RecordsOut != int64(len(tc.want)) || res.Skipped != tc.skipped || string(res.End) != "5" {
				t.Fatalf("result %+v", res)
			}
		})
	}
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
