package kinesis

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// TestReadMultiShard reads a 4-shard stream batch by batch: every record
// exactly once, in order per partition key, with the record columns and
// the lag figures filled in; a quiet shard ends its task at once.
func TestReadMultiShard(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "events", 4)
	first := numbered("e", 0, 1500, 40)
	e.put("events", first)

	cfg := e.config("events")
	cfg.InitialPosition = "trim_horizon"
	src, pool := e.source(cfg), e.pool(cfg)
	d := newDriver(t, src, pool)

	got := d.drain(20)
	if diff := cmp.Diff(sortedStrings(first), flatten(got)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	if d.lastPlan.TasksPerSlot != DefaultShardsPerTask || len(d.lastPlan.Ranges) != 4 {
		t.Fatalf("plan: %d ranges, tasksPerSlot %d", len(d.lastPlan.Ranges), d.lastPlan.TasksPerSlot)
	}
	if _, ok := d.committed[partitionID("events", identitySuffix)]; !ok {
		t.Fatal("the commit holds no stream identity")
	}
	checkKeyOrder(t, d.log)

	// Columns.
	var one stream.Record
	for _, recs := range got {
		one = recs[0]
		break
	}
	f := one.Fields
	if f["stream"] != "events" || !strings.HasPrefix(f["shardId"].(string), "shardId-") || f["subSequenceNumber"] != int64(0) ||
		!isSeq(f["sequenceNumber"].(string)) || !strings.HasPrefix(f["partitionKey"].(string), "k") || one.Size != len(f["data"].([]byte)) {
		t.Fatalf("record columns: %v", f)
	}
	if ts, ok := f["approximateArrivalTimestamp"].(time.Time); !ok || time.Since(ts) > time.Hour || ts.Location() != time.UTC {
		t.Fatalf("approximateArrivalTimestamp %v", f["approximateArrivalTimestamp"])
	}

	// More records after the job caught up go to the next batch.
	more := numbered("e", 1500, 200, 40)
	e.put("events", more)
	got = d.drain(10)
	if diff := cmp.Diff(sortedStrings(more), flatten(got)); diff != "" {
		t.Fatalf("second round (-want +got):\n%s", diff)
	}

	// The readers report millisBehindLatest, summarised per batch.
	per := map[stream.PartitionID]map[string]float64{}
	for _, r := range d.lastPlan.Ranges {
		rd, err := pool.Open(context.Background(), stream.Range{Partition: r.Partition, From: d.committed[r.Partition]})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Read(context.Background()); err == nil {
			t.Fatal("a caught-up shard returned records")
		}
		per[r.Partition] = rd.(connectors.ReaderMetrics).Metrics()
		rd.Close()
	}
	sum := src.SummarizeTaskMetrics(per)
	if _, ok := sum[MetricAvgMsBehindLatest]; !ok || sum[MetricMaxMsBehindLatest] != 0 {
		t.Fatalf("lag summary %v (per shard %v)", sum, per)
	}
}

// checkKeyOrder checks that, per partition key, the records' numbers rise
// in the order the batches delivered them.
func checkKeyOrder(t *testing.T, log []stream.Record) {
	t.Helper()
	last := map[string]int{}
	for _, r := range log {
		key := r.Fields["partitionKey"].(string)
		data := string(r.Fields["data"].([]byte))
		n, err := strconv.Atoi(data[strings.LastIndexByte(data, '-')+1:])
		if err != nil {
			t.Fatalf("record %q", data)
		}
		if prev, ok := last[key]; ok && n <= prev {
			t.Fatalf("key %s: record %d after %d", key, n, prev)
		}
		last[key] = n
	}
}

// TestReplayReadsTheRecordedEnd: tasks stop at fetchBufferSize in the middle
// of a shard; replaying a batch with the recorded ends as until, on a warm
// pool that has read further and on a cold one, returns exactly the same
// records, even after more records arrived.
func TestReplayReadsTheRecordedEnd(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "events", 2)
	all := numbered("r", 0, 1200, 10)
	e.put("events", all)

	cfg := e.config("events")
	cfg.InitialPosition = "trim_horizon"
	cfg.FetchBufferSize = "1kb" // about 180 records of "r-NNN"
	cfg.MaxRecordsPerFetch = 100
	rec, hc := newRecorder(t)
	src, pool := e.source(cfg), e.pool(cfg, WithHTTPClient(hc))
	d := newDriver(t, src, pool)

	d.step()
	batch0 := d.lastPlan
	ends0, recs0 := d.lastEnds, d.lastRecs
	for p, recs := range recs0 {
		if len(recs) == 0 || len(recs) > 300 {
			t.Fatalf("%s: %d records in a task with a 1kb budget", p, len(recs))
		}
	}
	iterators := rec.count("GetShardIterator")
	d.step() // the warm readers continue where batch 0 stopped
	if n := rec.count("GetShardIterator"); n != iterators {
		t.Fatalf("batch 1 asked for %d new iterators; the warm readers should have continued", n-iterators)
	}
	e.put("events", numbered("late", 0, 50, 10))

	cold := e.pool(cfg)
	for i, p := range []connectors.ReaderPool{pool, cold} {
		for _, r := range batch0.Ranges {
			r.Until = ends0[r.Partition]
			got, end := readRange(t, p, r)
			if diff := cmp.Diff(datas(recs0[r.Partition]), datas(got)); diff != "" {
				last := recs0[r.Partition][len(recs0[r.Partition])-1].Fields
				t.Fatalf("replay %d of %s to %s (last %v) ended at %s (-first +replay):\n%s", i, r.Partition, r.Until, last, end, diff)
			}
			if string(end) != string(ends0[r.Partition]) {
				t.Fatalf("replay of %s ended at %s, recorded %s", r.Partition, end, ends0[r.Partition])
			}
		}
	}
	// The job still reads everything exactly once.
	d.drain(40)
	if diff := cmp.Diff(sortedStrings(append(all, numbered("late", 0, 50, 10)...)), dataSorted(d.log)); diff != "" {
		t.Fatalf("records over the whole run (-want +got):\n%s", diff)
	}
}

// TestInitialPositions: latest reads only what arrives after the first
// plan; trim_horizon and its alias earliest read everything; at_timestamp
// reads what arrived at or after the time.
func TestInitialPositions(t *testing.T) {
	e := newEnv(t)
	for _, s := range []string{"latest", "trim", "early", "at"} {
		testenv.CreateStream(t, e.admin, s, 2)
	}
	before := numbered("old", 0, 100, 7)
	for _, s := range []string{"latest", "trim", "early", "at"} {
		e.put(s, before)
	}
	time.Sleep(50 * time.Millisecond) // a millisecond boundary between old and new arrival times
	mark := time.Now()
	time.Sleep(50 * time.Millisecond)
	after := numbered("new", 0, 100, 7)
	for _, s := range []string{"trim", "early", "at"} {
		e.put(s, after)
	}

	tests := []struct {
		stream, pos, at string
		want            []putRec
	}{
		{"trim", "trim_horizon", "", append(append([]putRec{}, before...), after...)},
		{"early", "earliest", "", append(append([]putRec{}, before...), after...)},
		{"at", "at_timestamp", mark.UTC().Format(time.RFC3339Nano), after},
	}
	for _, tt := range tests {
		t.Run(tt.pos, func(t *testing.T) {
			cfg := e.config(tt.stream)
			cfg.InitialPosition, cfg.AtTimestamp = tt.pos, tt.at
			d := newDriver(t, e.source(cfg), e.pool(cfg))
			if diff := cmp.Diff(sortedStrings(tt.want), flatten(d.drain(20))); diff != "" {
				t.Fatalf("records (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("latest", func(t *testing.T) {
		cfg := e.config("latest")
		d := newDriver(t, e.source(cfg), e.pool(cfg))
		if got := flatten(d.drain(5)); len(got) != 0 {
			t.Fatalf("latest read %d old records", len(got))
		}
		// Records arriving after the first plan, even while no batch runs,
		// are read: "latest" was fixed as a time at the first plan.
		e.put("latest", after)
		if diff := cmp.Diff(sortedStrings(after), flatten(d.drain(20))); diff != "" {
			t.Fatalf("records (-want +got):\n%s", diff)
		}
	})
}

// TestResharding splits and then merges shards while a job reads: no record
// is lost or repeated, per-key order holds across the reshards, and a child
// is planned only once its parents' ends are committed.
func TestResharding(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "rs", 2)
	cfg := e.config("rs")
	cfg.InitialPosition = "trim_horizon"
	cfg.ShardFetchInterval = "0"
	d := newDriver(t, e.source(cfg), e.pool(cfg))
	collect := func(map[stream.PartitionID][]stream.Record) {}
	var want []putRec
	put := func(recs []putRec) { e.put("rs", recs); want = append(want, recs...) }

	put(numbered("a", 0, 300, 20))
	collect(d.step())

	// Split shard 0 while it still holds unread records.
	put(numbered("a", 300, 300, 20))
	ctx := context.Background()
	if _, err := e.admin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String("rs"),
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String("85070591730234615865843651857942052864")}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitStreamActive(t, e.admin, "rs")
	put(numbered("a", 600, 300, 20))

	// Until the parent's end is committed its children get no task.
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("the split parent never reached its end")
		}
		parentDone := false
		if p, err := decodePosition(d.committed["rs/shardId-000000000000"]); err == nil && p.End {
			parentDone = true
		}
		collect(d.step())
		for _, r := range d.lastPlan.Ranges {
			if (r.Partition == "rs/shardId-000000000002" || r.Partition == "rs/shardId-000000000003") && !parentDone {
				t.Fatalf("child %s planned before its parent's end was committed", r.Partition)
			}
		}
		if parentDone {
			break
		}
	}

	// Merge shard 3 (the upper half of shard 0's hash range) with its
	// neighbour shard 1 (the upper half of the key space) into shard 4.
	if _, err := e.admin.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String("rs"),
		ShardToMerge: aws.String("shardId-000000000003"), AdjacentShardToMerge: aws.String("shardId-000000000001")}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitStreamActive(t, e.admin, "rs")
	put(numbered("a", 900, 300, 20))
	collect(d.drain(60))

	if diff := cmp.Diff(sortedStrings(want), dataSorted(d.log)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	checkKeyOrder(t, d.log)
	read := map[string]int{}
	for _, r := range d.log {
		read[r.Fields["shardId"].(string)]++
	}
	for _, s := range []string{"shardId-000000000002", "shardId-000000000003", "shardId-000000000004"} {
		if read[s] == 0 {
			t.Fatalf("child shard %s was never read (records per shard: %v)", s, read)
		}
	}
}

// TestRecreatedStreamIsDetected: a stream deleted and recreated under the
// same name fails planning with a permanent error saying so, and so does a
// read of a range planned before the recreation (warm or cold reader, and
// with failOnDataLoss false, which must not read the new stream from
// TRIM_HORIZON as if records had been trimmed).
//
// The reader recognises the old stream's positions as sequence numbers the
// new stream never issued: AWS answers InvalidArgumentException ("did not
// come from this stream"). kinesis-mock (like kinesalite) builds a sequence
// number from the shard's creation second, the record's index in the shard
// and the second it was put, so a stream recreated, and written as far,
// within the second its predecessor was created and written issues the
// very same numbers again, which AWS never does; a successful read then
// proves nothing. The new stream therefore gets fewer records than the
// old position's index: that position is one it cannot have issued,
// whatever the timing, as on AWS.
func TestRecreatedStreamIsDetected(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "again", 1)
	e.put("again", numbered("x", 0, 20, 3))
	cfg := e.config("again")
	cfg.InitialPosition = "trim_horizon"
	cfg.ShardFetchInterval = "0"
	d := newDriver(t, e.source(cfg), e.pool(cfg))
	if n := len(flatten(d.drain(10))); n != 20 {
		t.Fatalf("read %d records", n)
	}

	// A batch planned before the recreation and read after it.
	e.put("again", numbered("x", 20, 5, 3))
	before, err := d.src.Plan(context.Background(), connectors.PlanRequest{Batch: d.batch, Committed: d.committed})
	if err != nil {
		t.Fatal(err)
	}
	from, err := decodePosition(before.Ranges[0].From)
	if err != nil || from.Seq == "" {
		t.Fatalf("planned from %s: %v", before.Ranges[0].From, err)
	}

	testenv.DeleteStream(t, e.admin, "again")
	testenv.CreateStream(t, e.admin, "again", 1)
	e.put("again", numbered("y", 0, 10, 3))
	if seqs := e.shardSeqs("again", "shardId-000000000000"); len(seqs) != 10 || slices.Contains(seqs, from.Seq) {
		t.Fatalf("the new stream holds %d records and issued the old position %s again: %v", len(seqs), from.Seq, seqs)
	}

	_, err = d.src.Plan(context.Background(), connectors.PlanRequest{Batch: d.batch, Committed: d.committed})
	if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), "deleted and recreated") {
		t.Fatalf("plan after recreation: %v", err)
	}
	lenient := cfg
	lenient.FailOnDataLoss = false
	pools := map[string]connectors.ReaderPool{"warm": d.pool, "cold": e.pool(cfg), "cold, failOnDataLoss false": e.pool(lenient)}
	for name, p := range pools {
		got, _, err := tryRange(p, before.Ranges[0])
		if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), "deleted and recreated") {
			t.Fatalf("%s read of a range planned before the recreation: %d records, %v", name, len(got), err)
		}
	}

	// A missing stream is a plain error the driver retries.
	cfg.StreamName = "nope"
	_, err = e.source(cfg).Plan(context.Background(), connectors.PlanRequest{})
	if err == nil || connectors.IsPermanent(err) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("plan of a missing stream: %v", err)
	}
}

// TestLostSequenceNumber: a checkpointed sequence number the shard does not
// hold is data loss; with failOnDataLoss false the reader warns and
// continues at TRIM_HORIZON.
func TestLostSequenceNumber(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "lost", 1)
	e.put("lost", numbered("x", 0, 10, 3))
	cfg := e.config("lost")
	r := stream.Range{Partition: "lost/shardId-000000000000",
		From: position{Seq: "49999999999999999999999999999999999999999999999999999999"}.encode()}

	_, _, err := tryRange(e.pool(cfg), r)
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || !strings.Contains(dl.Reason, "trimmed") {
		t.Fatalf("err = %v, want a DataLossError about trimmed records", err)
	}

	cfg.FailOnDataLoss = false
	got, _, err := tryRange(e.pool(cfg), r)
	if err != nil || len(got) != 10 {
		t.Fatalf("with failOnDataLoss false: %d records, %v", len(got), err)
	}
}

// TestRateLimiterEngages reads with a tiny maxFetchRate: the limiter makes
// calls wait in proportion to the bytes fetched (the emulator never
// throttles, so this is what keeps a real shard under its limit). Sleeps
// are recorded, not slept, so the test does not depend on time.
func TestRateLimiterEngages(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "slow", 1)
	e.put("slow", numbered("payload-padding-padding", 0, 200, 3)) // ~30 bytes each
	cfg := e.config("slow")
	cfg.InitialPosition = "trim_horizon"
	cfg.MaxFetchRate = 0.001 // 1048 bytes/s
	cfg.MaxRecordsPerFetch = 50
	var slept []time.Duration
	sleep := func(ctx context.Context, d time.Duration) error { slept = append(slept, d); return ctx.Err() }
	clock := &fakeClock{t: time.Now()}
	pool := e.pool(cfg, withClock(clock.now, func(ctx context.Context, d time.Duration) error {
		clock.advance(d)
		return sleep(ctx, d)
	}))
	cfg.MaxFetchDuration = "1h"
	d := newDriver(t, e.source(cfg), pool)
	if n := len(flatten(d.drain(10))); n != 200 {
		t.Fatalf("read %d records", n)
	}
	st := pool.limiterStats(Shard{Stream: "slow", ShardID: "shardId-000000000000"})
	// Four calls of 50 records of ~30 bytes: each following call waits
	// about 1.4s at 1048 bytes/s, far above minFetchPeriod.
	if st.Waits < 3 || st.Waited < 3*time.Second {
		t.Fatalf("limiter: %+v (sleeps %v)", st, slept)
	}
}

// fakeClock is a clock tests move by hand (through the recorded sleeps).
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestAvailableNow: with trigger availableNow the run reads what had
// arrived when it started, over as many batches as the limits need, and
// then reports the source exhausted; records that arrive later are left
// for the next run.
func TestAvailableNow(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "now", 2)
	first := numbered("n", 0, 400, 9)
	e.put("now", first)
	time.Sleep(20 * time.Millisecond) // the run starts strictly after these arrived

	cfg := e.config("now")
	cfg.InitialPosition = "trim_horizon"
	cfg.FetchBufferSize = "1kb" // several batches
	d := newDriver(t, e.source(cfg), e.pool(cfg))
	d.availableNow = true
	d.step()
	time.Sleep(20 * time.Millisecond)
	e.put("now", numbered("late", 0, 100, 9))
	for i := 0; !d.lastPlan.Exhausted; i++ {
		if i > 60 {
			t.Fatal("availableNow never exhausted")
		}
		d.step()
	}
	if len(d.lastPlan.Ranges) != 0 {
		t.Fatalf("an exhausted plan has %d ranges", len(d.lastPlan.Ranges))
	}
	if diff := cmp.Diff(sortedStrings(first), dataSorted(d.log)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
}
