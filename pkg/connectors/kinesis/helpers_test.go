package kinesis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) {
	// What may outlive the tests: testenv.SharedEngineGoroutine.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(testenv.SharedEngineGoroutine))
}

// testLog shows the package's logs in verbose test output only.
func testLog(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// env is a kinesis-mock and an admin client for one test.
type env struct {
	t     *testing.T
	k     testenv.Kinesis
	admin *kinesis.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs kinesis-mock (node); skipped with -short")
	}
	k := testenv.StartKinesis(t)
	return &env{t: t, k: k, admin: k.Client(t, "")}
}

// config returns a source config for streams on the emulator with the
// default account's keys.
func (e *env) config(streams string) Config {
	return Config{
		StreamName: streams, Region: e.k.Region, Endpoint: e.k.Endpoint,
		AWSAccessKey: e.k.AccessKey, AWSSecretKey: e.k.SecretKey, FailOnDataLoss: true,
	}
}

// opts are the options every source, pool and sink of a test gets: a
// closable HTTP client, the test's logger, quick back-off.
func (e *env) opts(extra ...Option) []Option {
	return append([]Option{WithHTTPClient(testenv.HTTPClient(e.t)), WithLogger(testLog(e.t)),
		withBackoff(5*time.Millisecond, 50*time.Millisecond)}, extra...)
}

func (e *env) source(cfg Config, extra ...Option) *Source {
	e.t.Helper()
	s, err := NewSource(cfg, e.opts(extra...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

func (e *env) pool(cfg Config, extra ...Option) *ReaderPool {
	e.t.Helper()
	p, err := NewReaderPool(cfg, e.opts(extra...)...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { p.Close() })
	return p
}

// shardSeqs returns the sequence numbers of every record in a shard, read
// with the admin client from TRIM_HORIZON.
func (e *env) shardSeqs(streamName, shardID string) []string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	it, err := e.admin.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(streamName),
		ShardId: aws.String(shardID), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		e.t.Fatal(err)
	}
	var seqs []string
	for iter := it.ShardIterator; iter != nil; {
		out, err := e.admin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range out.Records {
			seqs = append(seqs, aws.ToString(r.SequenceNumber))
		}
		if len(out.Records) == 0 || aws.ToInt64(out.MillisBehindLatest) == 0 {
			break
		}
		iter = out.NextShardIterator
	}
	return seqs
}

// put writes records (raw data) with their partition keys and optional
// explicit hash keys, in calls of at most 500.
type putRec struct {
	key, hash string
	data      []byte
}

func (e *env) put(streamName string, recs []putRec) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; i < len(recs); i += 500 {
		var entries []types.PutRecordsRequestEntry
		for _, r := range recs[i:min(i+500, len(recs))] {
			en := types.PutRecordsRequestEntry{PartitionKey: aws.String(r.key), Data: r.data}
			if r.hash != "" {
				en.ExplicitHashKey = aws.String(r.hash)
			}
			entries = append(entries, en)
		}
		out, err := e.admin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(streamName), Records: entries})
		if err != nil {
			e.t.Fatalf("put records: %v", err)
		}
		if aws.ToInt32(out.FailedRecordCount) != 0 {
			e.t.Fatalf("put records: %d failed", aws.ToInt32(out.FailedRecordCount))
		}
	}
}

// numbered returns n records "<prefix>-<i>" keyed by i%keys.
func numbered(prefix string, from, n, keys int) []putRec {
	out := make([]putRec, n)
	for i := range n {
		out[i] = putRec{key: fmt.Sprintf("k%d", (from+i)%keys), data: fmt.Appendf(nil, "%s-%d", prefix, from+i)}
	}
	return out
}

// driver plays the driver's part for in-process tests: plan, run every
// range (recording its end), commit.
type driver struct {
	t         *testing.T
	src       *Source
	pool      *ReaderPool
	committed map[stream.PartitionID]stream.Position
	batch     stream.BatchID
	// last batch, for replays
	lastPlan connectors.Plan
	lastEnds map[stream.PartitionID]stream.Position
	lastRecs map[stream.PartitionID][]stream.Record
	// log holds every record delivered, batch by batch, partitions in
	// order within a batch.
	log          []stream.Record
	availableNow bool
}

func newDriver(t *testing.T, src *Source, pool *ReaderPool) *driver {
	return &driver{t: t, src: src, pool: pool, committed: map[stream.PartitionID]stream.Position{}}
}

// step runs one batch and commits it; it returns the batch's records per
// partition, in order.
func (d *driver) step() map[stream.PartitionID][]stream.Record {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := d.src.Plan(ctx, connectors.PlanRequest{Batch: d.batch, Committed: d.committed, AvailableNow: d.availableNow})
	if err != nil {
		d.t.Fatalf("plan batch %d: %v", d.batch, err)
	}
	ends := map[stream.PartitionID]stream.Position{}
	recs := map[stream.PartitionID][]stream.Record{}
	for _, r := range plan.Ranges {
		got, end := readRange(d.t, d.pool, r)
		recs[r.Partition], ends[r.Partition] = got, end
		d.log = append(d.log, got...)
	}
	next := map[stream.PartitionID]stream.Position{}
	for p, pos := range plan.Start {
		next[p] = pos
	}
	for p, e := range ends {
		next[p] = e
	}
	d.lastPlan, d.lastEnds, d.lastRecs = plan, ends, recs
	d.committed = next
	d.batch++
	return recs
}

// readRange reads r to its end through pool.
func readRange(t *testing.T, pool connectors.ReaderPool, r stream.Range) ([]stream.Record, stream.Position) {
	t.Helper()
	got, end, err := tryRange(pool, r)
	if err != nil {
		t.Fatalf("read %s from %s: %v", r.Partition, r.From, err)
	}
	return got, end
}

func tryRange(pool connectors.ReaderPool, r stream.Range) ([]stream.Record, stream.Position, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rd, err := pool.Open(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	defer rd.Close()
	var out []stream.Record
	for {
		recs, err := rd.Read(ctx)
		out = append(out, recs...)
		if errors.Is(err, io.EOF) {
			return out, rd.End(), nil
		}
		if err != nil {
			return out, nil, err
		}
	}
}

// drain runs batches until one returns no records, and returns all records
// read, per partition, in order.
func (d *driver) drain(maxBatches int) map[stream.PartitionID][]stream.Record {
	d.t.Helper()
	all := map[stream.PartitionID][]stream.Record{}
	for range maxBatches {
		n := 0
		for p, recs := range d.step() {
			all[p] = append(all[p], recs...)
			n += len(recs)
		}
		if n == 0 {
			return all
		}
	}
	d.t.Fatalf("still reading after %d batches", maxBatches)
	return nil
}

func datas(recs []stream.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Fields["data"].([]byte))
	}
	return out
}

// flatten returns the data of every record, sorted.
func flatten(m map[stream.PartitionID][]stream.Record) []string {
	var out []string
	for _, recs := range m {
		out = append(out, datas(recs)...)
	}
	sort.Strings(out)
	return out
}

// dataSorted returns the data of recs, sorted.
func dataSorted(recs []stream.Record) []string {
	out := datas(recs)
	sort.Strings(out)
	return out
}

func sortedStrings(in []putRec) []string {
	out := make([]string, len(in))
	for i, r := range in {
		out[i] = string(r.data)
	}
	sort.Strings(out)
	return out
}

// recorder is an http.RoundTripper that counts Kinesis calls by operation
// and remembers the entry count of every PutRecords request.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	ops  map[string]int
	puts []int
}

func newRecorder(t *testing.T) (*recorder, *http.Client) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	r := &recorder{next: tr, ops: map[string]int{}}
	return r, &http.Client{Transport: r, Timeout: time.Minute}
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	if op == "PutRecords" && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		var in struct{ Records []json.RawMessage }
		_ = json.Unmarshal(body, &in)
		r.mu.Lock()
		r.puts = append(r.puts, len(in.Records))
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.ops[op]++
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) count(op string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ops[op]
}

func (r *recorder) putSizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.puts...)
}
