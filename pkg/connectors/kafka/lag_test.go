package kafka_test

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// base is the timestamp of the first record of each partition in these
// tests; what counts is the distance between timestamps.
const base int64 = 1_700_000_000_000

// produceTimestamped writes n records to topic/partition, the i-th (from 0)
// timestamped base + i*step ms.
func (c *cluster) produceTimestamped(topic string, partition int32, n int, step int64) {
	c.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic: topic, Partition: partition, Value: []byte{byte(i)},
			Timestamp: time.UnixMilli(base + int64(i)*step),
		}
	}
	c.produceRecords(recs...)
}

// runBatch reads every range of p as tasks would and returns what the driver
// hands SummarizeTaskMetrics: each partition's reader figures, the last
// split's when a partition has several.
func runBatch(t *testing.T, pool *kafka.ReaderPool, p connectors.Plan) map[stream.PartitionID]map[string]float64 {
	t.Helper()
	out := map[stream.PartitionID]map[string]float64{}
	for _, r := range p.Ranges {
		ctx := testCtx(t)
		rd, err := pool.Open(ctx, r)
		if err != nil {
			t.Fatalf("Open(%s): %v", r.Key(), err)
		}
		for {
			_, err := rd.Read(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Read(%s): %v", r.Key(), err)
			}
		}
		rm, ok := rd.(connectors.ReaderMetrics)
		if !ok {
			t.Fatalf("the reader of %s has no Metrics", r.Key())
		}
		if m := rm.Metrics(); len(m) > 0 {
			out[r.Partition] = m
		}
		_ = rd.Close()
	}
	return out
}

func lagSummary(avg, maxV, minV float64) map[string]float64 {
	// The names are the Kinesis source's, spelled out so that a rename on
	// either side shows here.
	return map[string]float64{"avgMsBehindLatest": avg, "maxMsBehindLatest": maxV, "minMsBehindLatest": minV}
}

func partitionFigures(lastOffset, lastTs, offsetsBehind, msBehind int64) map[string]float64 {
	return map[string]float64{
		"lastRecordOffset": float64(lastOffset), "lastRecordTimestampMs": float64(lastTs),
		"offsetsBehindLatest": float64(offsetsBehind), "msBehindLatest": float64(msBehind),
	}
}

func TestLagInMilliseconds(t *testing.T) {
	c := newCluster(t, 3, "lag")
	c.produceTimestamped("lag", 0, 20, 1000) // newest base+19s
	c.produceTimestamped("lag", 1, 10, 1000) // newest base+9s
	c.produceTimestamped("lag", 2, 1, 1000)  // newest base
	cfg := c.config("lag")
	cfg.MaxOffsetsPerTrigger = 20
	src, pool := newSource(t, cfg), newPool(t, cfg)

	// Batch 0: shares by lag floor(20/31*20)=12 and floor(10/31*20)=6, and
	// lag/2's one offset from what is left: lag/0 and lag/1 stay behind.
	p0 := plan(t, src, connectors.PlanRequest{})
	want := []stream.Range{
		{Partition: "lag/0", From: stream.Position("0"), Until: stream.Position("12")},
		{Partition: "lag/1", From: stream.Position("0"), Until: stream.Position("6")},
		{Partition: "lag/2", From: stream.Position("0"), Until: stream.Position("1")},
	}
	if diff := cmp.Diff(want, p0.Ranges); diff != "" {
		t.Fatalf("batch 0 ranges (-want +got):\n%s", diff)
	}
	figs := runBatch(t, pool, p0)
	got := src.SummarizeTaskMetrics(figs)
	// lag/0 last read offset 11 (base+11s), newest base+19s: 8000 ms.
	// lag/1 last read offset 5 (base+5s), newest base+9s: 4000 ms.
	// lag/2 read to the end: 0.
	if diff := cmp.Diff(lagSummary(4000, 8000, 0), got); diff != "" {
		t.Errorf("batch 0 summary (-want +got):\n%s", diff)
	}
	wantFigs := map[stream.PartitionID]map[string]float64{
		"lag/0": partitionFigures(11, base+11_000, 8, 8000),
		"lag/1": partitionFigures(5, base+5_000, 4, 4000),
		"lag/2": partitionFigures(0, base, 0, 0),
	}
	if diff := cmp.Diff(wantFigs, figs); diff != "" {
		t.Errorf("batch 0 per-partition figures (-want +got):\n%s", diff)
	}

	// Batch 1 reads the rest: a caught-up job reports 0, lag/2 included
	// although it had nothing to read.
	p1 := plan(t, src, connectors.PlanRequest{Batch: 1, Committed: ends(p0)})
	if len(p1.Ranges) != 2 {
		t.Fatalf("batch 1 ranges %v, want lag/0 and lag/1", p1.Ranges)
	}
	figs = runBatch(t, pool, p1)
	if diff := cmp.Diff(lagSummary(0, 0, 0), src.SummarizeTaskMetrics(figs)); diff != "" {
		t.Errorf("batch 1 summary (-want +got):\n%s", diff)
	}
	wantFigs = map[stream.PartitionID]map[string]float64{
		"lag/0": partitionFigures(19, base+19_000, 0, 0),
		"lag/1": partitionFigures(9, base+9_000, 0, 0),
	}
	if diff := cmp.Diff(wantFigs, figs); diff != "" {
		t.Errorf("batch 1 per-partition figures (-want +got):\n%s", diff)
	}
}

// A partition that maxOffsetsPerTrigger leaves without a range keeps the lag
// of the last record read from it, also across a driver restart, where a
// new Source first sees a batch replayed from its recorded plan.
func TestLagOfPartitionsWithoutRange(t *testing.T) {
	c := newCluster(t, 2, "starve")
	c.produceTimestamped("starve", 0, 5, 1000) // newest base+4s
	c.produceTimestamped("starve", 1, 5, 2000) // newest base+8s
	cfg := c.config("starve")
	cfg.MaxOffsetsPerTrigger = 1 // one offset per batch, the partitions taking turns
	before, pool := newSource(t, cfg), newPool(t, cfg)

	p0 := plan(t, before, connectors.PlanRequest{})
	if want := []stream.Range{{Partition: "starve/0", From: stream.Position("0"), Until: stream.Position("1")}}; !cmp.Equal(want, p0.Ranges) {
		t.Fatalf("batch 0 ranges %v, want %v", p0.Ranges, want)
	}
	figs := runBatch(t, pool, p0)
	// starve/1 has never been read: left out.
	if diff := cmp.Diff(lagSummary(4000, 4000, 4000), before.SummarizeTaskMetrics(figs)); diff != "" {
		t.Errorf("batch 0 summary (-want +got):\n%s", diff)
	}

	// The driver restarts and replays batch 0: the new Source has no plan
	// of its own, so it reports nothing, but remembers the record.
	after := newSource(t, cfg)
	figs = runBatch(t, pool, p0)
	if got := after.SummarizeTaskMetrics(figs); got != nil {
		t.Errorf("replayed batch 0 summary %v, want none", got)
	}
	if _, ok := figs["starve/0"]["msBehindLatest"]; ok {
		t.Errorf("replayed batch 0 shows msBehindLatest: %v", figs)
	}

	p1 := plan(t, after, connectors.PlanRequest{Batch: 1, Committed: ends(p0)})
	if want := []stream.Range{{Partition: "starve/1", From: stream.Position("0"), Until: stream.Position("1")}}; !cmp.Equal(want, p1.Ranges) {
		t.Fatalf("batch 1 ranges %v, want %v", p1.Ranges, want)
	}
	figs = runBatch(t, pool, p1)
	// starve/0: newest base+4s, last read base (batch 0): 4000 ms.
	// starve/1: newest base+8s, last read base: 8000 ms.
	if diff := cmp.Diff(lagSummary(6000, 8000, 4000), after.SummarizeTaskMetrics(figs)); diff != "" {
		t.Errorf("batch 1 summary (-want +got):\n%s", diff)
	}
	want := map[stream.PartitionID]map[string]float64{"starve/1": partitionFigures(0, base, 4, 8000)}
	if diff := cmp.Diff(want, figs); diff != "" {
		t.Errorf("batch 1 per-partition figures (-want +got):\n%s", diff)
	}
}

// Brokers before Kafka 3.0 cannot list max timestamps: plans go on without
// ms figures, and the source stops asking after the first refusal.
func TestLagOnOldBrokers(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "old"), kfake.MaxVersions(kversion.V2_8_0()))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(fake.Close)
	var maxTsAsks atomic.Int32
	fake.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, rt := range req.(*kmsg.ListOffsetsRequest).Topics {
			for _, rp := range rt.Partitions {
				if rp.Timestamp == -3 {
					maxTsAsks.Add(1)
					return nil, nil, false
				}
			}
		}
		return nil, nil, false // observe only
	})
	c := &cluster{t: t, fake: fake, addr: fake.ListenAddrs()[0]}
	c.refreshProducer()
	c.produceTimestamped("old", 0, 10, 1000)
	c.produceTimestamped("old", 1, 10, 1000)
	cfg := c.config("old")
	cfg.MaxOffsetsPerTrigger = 10
	src, pool := newSource(t, cfg), newPool(t, cfg)

	p0 := plan(t, src, connectors.PlanRequest{})
	if len(p0.Ranges) != 2 {
		t.Fatalf("batch 0 ranges %v, want one per partition", p0.Ranges)
	}
	asked := maxTsAsks.Load()
	if asked == 0 {
		t.Fatal("the source never asked for max timestamps")
	}
	figs := runBatch(t, pool, p0)
	if got := src.SummarizeTaskMetrics(figs); got != nil {
		t.Errorf("summary %v, want no ms figures", got)
	}
	want := map[stream.PartitionID]map[string]float64{
		"old/0": {"lastRecordOffset": 4, "lastRecordTimestampMs": float64(base + 4_000), "offsetsBehindLatest": 5},
		"old/1": {"lastRecordOffset": 4, "lastRecordTimestampMs": float64(base + 4_000), "offsetsBehindLatest": 5},
	}
	if diff := cmp.Diff(want, figs); diff != "" {
		t.Errorf("per-partition figures (-want +got):\n%s", diff)
	}

	plan(t, src, connectors.PlanRequest{Batch: 1, Committed: ends(p0)})
	if n := maxTsAsks.Load(); n != asked {
		t.Errorf("the source asked for max timestamps %d more times after the brokers refused", n-asked)
	}
}

// A partition read by several splits: only the last split's reader returned
// the partition's last record, so only its figures give the lag.
func TestLagOfSplitPartition(t *testing.T) {
	c := newCluster(t, 1, "split")
	c.produceTimestamped("split", 0, 20, 1000) // newest base+19s
	cfg := c.config("split")
	cfg.MaxOffsetsPerTrigger = 12
	cfg.MaxRecordsPerPartition = 5 // [0,4) [4,8) [8,12)
	src, pool := newSource(t, cfg), newPool(t, cfg)

	p := plan(t, src, connectors.PlanRequest{})
	if len(p.Ranges) != 3 || string(p.Ranges[2].From) != "8" {
		t.Fatalf("ranges %v, want three splits, the last from 8", p.Ranges)
	}
	figs := runBatch(t, pool, p) // the last split's figures, as the driver passes them
	if diff := cmp.Diff(lagSummary(8000, 8000, 8000), src.SummarizeTaskMetrics(figs)); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}

	// Figures of an earlier split say nothing of the records after it.
	first := runBatch(t, pool, connectors.Plan{Ranges: p.Ranges[:1]})
	if got := src.SummarizeTaskMetrics(first); got != nil {
		t.Errorf("summary from the first split's figures %v, want none", got)
	}
}
