package kinesis

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo/efotest"
	"github.com/sluicehq/sluice/pkg/stream"
)

// scriptedPool is a ReaderPool whose efo fetchers subscribe at the
// event-stream test server with a fixed consumer ARN.
func scriptedPool(t *testing.T, srv *efotest.Server, cfg Config) *ReaderPool {
	t.Helper()
	o := defaultOptions()
	o.logger = testLog(t)
	f := newEFOFactory(nil, srv.Client(), "c", o)
	f.subOpts = append(f.subOpts, efo.WithRetryBackoff(10*time.Millisecond, 50*time.Millisecond))
	f.arnOf = func(context.Context, string) (string, error) {
		return "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1", nil
	}
	p, err := NewReaderPool(cfg, WithFetcherFactory(f), WithLogger(testLog(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestEFOShardEndAndRenewal reads a closed shard through the event-stream
// server, which ends each subscription after two events (as the service
// does after five minutes): every record arrives once and in order over
// many small batches; the warm subscription is reused across batches
// (fewer subscriptions than batches); every renewal starts after the last
// record received, never before; the ChildShards event ends the shard
// (End in the position); and a replay of each batch on a cold pool, with the
// recorded end, returns exactly the same records and end.
func TestEFOShardEndAndRenewal(t *testing.T) {
	recs := efotest.Records(9, time.Now().Add(-time.Hour))
	sh := &efotest.Shard{Records: recs, PerEvent: 2, EventsPerCall: 2,
		Children: []types.ChildShard{{ShardId: aws.String("shardId-000000000001"), ParentShards: []string{"shardId-000000000000"}}}}
	srv := efotest.NewServer(t, efotest.ShardHandler(sh))
	cfg := Config{StreamName: "s", Region: "us-east-1", FetchBufferSize: "2b", InitialPosition: "trim_horizon"}
	pool := scriptedPool(t, srv, cfg)

	type batch struct {
		r    stream.Range
		end  stream.Position
		data []string
	}
	var batches []batch
	var got []string
	from := position{Start: startTrimHorizon}.encode()
	for i := 0; ; i++ {
		if i > 30 {
			t.Fatal("still reading after 30 batches")
		}
		r := stream.Range{Partition: "s/shardId-000000000000", From: from}
		out, end := readRange(t, pool, r)
		batches = append(batches, batch{r: r, end: end, data: datas(out)})
		got = append(got, datas(out)...)
		p, err := decodePosition(end)
		if err != nil {
			t.Fatal(err)
		}
		if p.End {
			break
		}
		from = end
	}
	want := datas(nil)
	for _, r := range recs {
		want = append(want, string(r.Data))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}

	calls := srv.Calls()
	if len(calls) >= len(batches) {
		t.Fatalf("%d subscriptions for %d batches: the warm subscription was not kept", len(calls), len(batches))
	}
	last := ""
	for i, c := range calls {
		if i == 0 {
			if c.StartingPosition.Type != types.ShardIteratorTypeTrimHorizon {
				t.Fatalf("first subscription from %s", efo.PositionString(c.StartingPosition))
			}
			continue
		}
		seq := aws.ToString(c.StartingPosition.SequenceNumber)
		if c.StartingPosition.Type != types.ShardIteratorTypeAfterSequenceNumber || efo.CompareSequence(seq, last) <= 0 {
			t.Fatalf("renewal %d from %s, after a renewal from %s", i, efo.PositionString(c.StartingPosition), last)
		}
		last = seq
	}

	cold := scriptedPool(t, srv, cfg)
	for _, b := range batches {
		r := b.r
		r.Until = b.end
		out, end := readRange(t, cold, r)
		if diff := cmp.Diff(b.data, datas(out)); diff != "" || string(end) != string(b.end) {
			t.Fatalf("replay from %s to %s ended at %s (-first +replay):\n%s", r.From, r.Until, end, diff)
		}
	}
}

// TestEFOConsumerARNLookedUpOnce: shards that open together used to look
// the consumer's ARN up one each (two calls per shard, against
// DescribeStreamConsumer's 20 per second and stream); they now wait for one
// lookup, and a waiter whose context ends stops waiting.
func TestEFOConsumerARNLookedUpOnce(t *testing.T) {
	f := newEFOFactory(nil, nil, "c", defaultOptions())
	var calls atomic.Int32
	release := make(chan struct{})
	f.arnOf = func(ctx context.Context, _ string) (string, error) {
		calls.Add(1)
		select {
		case <-release:
			return "arn:c", nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if arn, err := f.consumerARN(context.Background(), "s"); err != nil || arn != "arn:c" {
				t.Errorf("consumerARN = %q, %v", arn, err)
			}
		})
	}
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.consumerARN(ctx, "s"); !errors.Is(err, context.Canceled) {
		t.Errorf("a waiter with an ended context: %v", err)
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d lookups for 8 shards of one stream, want 1", n)
	}
}

// TestEFOFetcherRefusesTimeoutClient: an HTTP client with an overall
// timeout would cut every subscription.
func TestEFOFetcherRefusesTimeoutClient(t *testing.T) {
	cfg := Config{StreamName: "s", Region: "us-east-1", ConsumerMode: "efo", JobName: "j"}
	_, err := NewReaderPool(cfg, WithHTTPClient(&http.Client{Timeout: time.Minute}))
	if err == nil || !strings.Contains(err.Error(), "without Timeout") {
		t.Fatalf("NewReaderPool = %v", err)
	}
}

// efoEnv is kinesis-mock with consumer registration taking regTime, and the
// options that let the job's clients use the mock's TLS port through the
// test-only initial-response shim.
func efoEnv(t *testing.T, regTime string) (*env, []Option) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs kinesis-mock (node); skipped with -short")
	}
	k := testenv.StartKinesis(t, testenv.KinesisEnv("REGISTER_STREAM_CONSUMER_DURATION", regTime),
		testenv.KinesisEnv("DEREGISTER_STREAM_CONSUMER_DURATION", "500ms"))
	e := &env{t: t, k: k, admin: k.Client(t, "")}
	opts := []Option{
		WithHTTPClient(efotest.HTTPClient(t)), WithLogger(testLog(t)),
		withBackoff(5*time.Millisecond, 50*time.Millisecond),
		withConsumerWait(time.Second, 100*time.Millisecond, 300*time.Millisecond),
	}
	return e, opts
}

func (e *env) efoConfig(streamName string, dereg bool) Config {
	cfg := e.config(streamName)
	cfg.Endpoint = e.k.TLSEndpoint
	cfg.ConsumerMode, cfg.JobName = "efo", "orders-job"
	cfg.EFO = efo.Config{RequireConsumerDeregistration: dereg}
	cfg.InitialPosition = "trim_horizon"
	cfg.FetchBufferSize = "4b" // two records per task: several batches
	cfg.MaxFetchDuration = "30s"
	return cfg
}

func (e *env) consumer(streamName, name string) (efo.Consumer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.admin.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(streamName)})
	if err != nil {
		e.t.Fatal(err)
	}
	return efo.DescribeConsumer(ctx, e.admin, aws.ToString(out.StreamDescriptionSummary.StreamARN), name)
}

// planUntilActive plans until the consumer is ACTIVE and returns the
// transient errors seen on the way.
func planUntilActive(t *testing.T, d *driver) []error {
	t.Helper()
	var waits []error
	for start := time.Now(); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := d.src.Plan(ctx, planReq(d))
		cancel()
		if err == nil {
			return waits
		}
		waits = append(waits, err)
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("consumer not ACTIVE after 2m: %v", err)
		}
	}
}

// TestEFOJobExactlyOnce runs an efo job against kinesis-mock (through the
// test-only shim): Plan waits out the consumer's registration as a
// readable, retried error naming the consumer and stream; two shards are read through several batches; the driver
// "restarts" (source and pool closed, new ones from the committed
// positions), which reuses the consumer; every record is read exactly once
// across the restart; a failed end keeps the consumer, a clean end with
// requireConsumerDeregistration deregisters it.
func TestEFOJobExactlyOnce(t *testing.T) {
	e, opts := efoEnv(t, "3s")
	testenv.CreateStream(t, e.admin, "orders", 2)
	first := numbered("a", 0, 12, 4)
	e.put("orders", first)
	cfg := e.efoConfig("orders", true)
	const consumer = "sluice_orders-job"

	src := e.source(cfg, opts...)
	pool := e.pool(cfg, opts...)
	d := newDriver(t, src, pool)
	waits := planUntilActive(t, d)
	// The mock keeps the consumer CREATING for 3s after the registration,
	// which starts after the first Plan did; that Plan waits 1s. What each
	// wait says (looking up the stream, registration sent, CREATING, a
	// failed call) depends on how fast the mock answers, so only its form
	// is checked: a retryable wait naming the consumer and the stream, and
	// never a call cut short by Plan's own bounded wait.
	if len(waits) == 0 {
		t.Fatal("Plan did not report the wait for the consumer's registration")
	}
	for _, w := range waits {
		msg := w.Error()
		t.Logf("plan: %s", msg)
		if connectors.IsPermanent(w) ||
			!strings.HasPrefix(msg, "waiting for enhanced fan-out consumer "+consumer+` on stream "orders" to become ACTIVE: `) ||
			strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "canceled") {
			t.Fatalf("wait reported as %q", msg)
		}
	}
	c1, err := e.consumer("orders", consumer)
	if err != nil || c1.Status != types.ConsumerStatusActive {
		t.Fatalf("consumer %+v, %v", c1, err)
	}

	var got []string
	for range 2 {
		got = append(got, flatten(d.step())...)
	}
	if len(got) == 0 || len(got) >= len(first) {
		t.Fatalf("%d records after 2 batches; the test wants a restart mid-way", len(got))
	}

	// Restart: the driver closes its source (no deregistration), the
	// executor its pool; a new pair continues from the committed positions.
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	pool.Close()
	if _, err := e.consumer("orders", consumer); err != nil {
		t.Fatalf("Close deregistered the consumer: %v", err)
	}
	second := numbered("b", 0, 6, 3)
	e.put("orders", second)
	src2, pool2 := e.source(cfg, opts...), e.pool(cfg, opts...)
	d2 := newDriver(t, src2, pool2)
	d2.committed, d2.batch = d.committed, d.batch
	if waits := planUntilActive(t, d2); len(waits) != 0 {
		t.Fatalf("the registered consumer was not reused: %v", waits)
	}
	for _, recs := range d2.drain(40) {
		got = append(got, datas(recs)...)
	}
	want := append(sortedStrings(first), sortedStrings(second)...)
	if diff := cmp.Diff(dataSorted(toRecords(want)), dataSorted(toRecords(got))); diff != "" {
		t.Fatalf("records across the restart (-want +got):\n%s", diff)
	}
	if c2, err := e.consumer("orders", consumer); err != nil || c2.ARN != c1.ARN {
		t.Fatalf("consumer after restart %+v, %v; was %s", c2, err, c1.ARN)
	}

	// A failed end keeps the consumer; a clean one deregisters it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := src2.Finish(ctx, false); err != nil {
		t.Fatal(err)
	}
	if c, err := e.consumer("orders", consumer); err != nil || c.Status != types.ConsumerStatusActive {
		t.Fatalf("after a failed end: consumer %+v, %v", c, err)
	}
	src3 := e.source(cfg, opts...)
	d3 := newDriver(t, src3, nil)
	d3.committed = d2.committed
	planUntilActive(t, d3)
	if err := src3.Finish(ctx, true); err != nil {
		t.Fatal(err)
	}
	c, err := e.consumer("orders", consumer)
	if !(errors.Is(err, efo.ErrConsumerNotFound) || (err == nil && c.Status == types.ConsumerStatusDeleting)) {
		t.Fatalf("after a clean end: consumer %+v, %v", c, err)
	}
}

func planReq(d *driver) connectors.PlanRequest {
	return connectors.PlanRequest{Batch: d.batch, Committed: d.committed}
}

func toRecords(data []string) []stream.Record {
	out := make([]stream.Record, len(data))
	for i, s := range data {
		out[i] = stream.Record{Fields: stream.Row{"data": []byte(s)}}
	}
	return out
}
