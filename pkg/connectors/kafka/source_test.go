package kafka_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestPlanReadsEveryOffsetExactlyOnce(t *testing.T) {
	c := newCluster(t, 3, "transaction")
	counts := []int{10, 20, 30}
	for p, n := range counts {
		c.produce("transaction", int32(p), n)
	}
	cfg := c.config("transaction")
	src, pool := newSource(t, cfg), newPool(t, cfg)

	p0 := plan(t, src, connectors.PlanRequest{Batch: 0})
	wantStart := map[stream.PartitionID]stream.Position{
		"transaction/0": stream.Position("0"), "transaction/1": stream.Position("0"), "transaction/2": stream.Position("0"),
	}
	if diff := cmp.Diff(wantStart, p0.Start); diff != "" {
		t.Fatalf("batch 0 Start (-want +got):\n%s", diff)
	}
	wantRanges := []stream.Range{
		{Partition: "transaction/0", From: stream.Position("0"), Until: stream.Position("10")},
		{Partition: "transaction/1", From: stream.Position("0"), Until: stream.Position("20")},
		{Partition: "transaction/2", From: stream.Position("0"), Until: stream.Position("30")},
	}
	if diff := cmp.Diff(wantRanges, p0.Ranges); diff != "" {
		t.Fatalf("batch 0 ranges (-want +got):\n%s", diff)
	}
	got := readPlan(t, pool, p0)
	for p, n := range counts {
		id := stream.PartitionID("transaction/" + string(rune('0'+p)))
		if diff := cmp.Diff(seq(0, int64(n)), got[id]); diff != "" {
			t.Fatalf("%s offsets (-want +got):\n%s", id, diff)
		}
	}

	// The next batch starts where this one ended: nothing new, no ranges.
	p1 := plan(t, src, connectors.PlanRequest{Batch: 1, Committed: ends(p0)})
	if len(p1.Ranges) != 0 {
		t.Fatalf("batch 1 with no new data planned %v", p1.Ranges)
	}
	if diff := cmp.Diff(ends(p0), p1.Start); diff != "" {
		t.Fatalf("batch 1 Start (-want +got):\n%s", diff)
	}
	c.produce("transaction", 1, 5)
	p2 := plan(t, src, connectors.PlanRequest{Batch: 2, Committed: ends(p1)})
	want2 := []stream.Range{{Partition: "transaction/1", From: stream.Position("20"), Until: stream.Position("25")}}
	if diff := cmp.Diff(want2, p2.Ranges); diff != "" {
		t.Fatalf("batch 2 ranges (-want +got):\n%s", diff)
	}
	if got := readPlan(t, pool, p2)["transaction/1"]; !cmp.Equal(got, seq(20, 25)) {
		t.Fatalf("batch 2 read %v, want 20..24", got)
	}
	for _, m := range []string{kafka.MetricMinOffsetsBehindLatest, kafka.MetricMaxOffsetsBehindLatest, kafka.MetricAvgOffsetsBehindLatest} {
		if v, ok := p2.Metrics[m]; !ok || v != 0 {
			t.Errorf("metric %s = %v (present %v), want 0", m, v, ok)
		}
	}
}

func TestRecordColumns(t *testing.T) {
	c := newCluster(t, 1, "cols")
	ts := time.UnixMilli(1_700_000_000_123)
	c.produceRecords(
		&kgo.Record{Topic: "cols", Key: []byte("k"), Value: []byte("v"), Timestamp: ts,
			Headers: []kgo.RecordHeader{{Key: "h1", Value: []byte("x")}, {Key: "h2"}}},
		&kgo.Record{Topic: "cols", Value: nil, Timestamp: ts}, // keyless tombstone
	)
	for _, headers := range []bool{false, true} {
		cfg := c.config("cols")
		cfg.IncludeHeaders = headers
		src, pool := newSource(t, cfg), newPool(t, cfg)
		p := plan(t, src, connectors.PlanRequest{})
		recs := readRange(t, pool, p.Ranges[0])
		if len(recs) != 2 {
			t.Fatalf("read %d records, want 2", len(recs))
		}
		want0 := stream.Row{
			"key": []byte("k"), "value": []byte("v"), "topic": "cols", "partition": int64(0), "offset": int64(0),
			"timestamp": stream.Timestamp(ts.UnixMilli()), "timestampType": int64(0),
		}
		want1 := stream.Row{
			"key": nil, "value": nil, "topic": "cols", "partition": int64(0), "offset": int64(1),
			"timestamp": stream.Timestamp(ts.UnixMilli()), "timestampType": int64(0),
		}
		if headers {
			want0["headers"] = []any{
				map[string]any{"key": "h1", "value": []byte("x")},
				map[string]any{"key": "h2", "value": nil},
			}
			want1["headers"] = nil
		}
		if diff := cmp.Diff(want0, recs[0].Fields); diff != "" {
			t.Errorf("headers=%v record 0 (-want +got):\n%s", headers, diff)
		}
		if diff := cmp.Diff(want1, recs[1].Fields); diff != "" {
			t.Errorf("headers=%v record 1 (-want +got):\n%s", headers, diff)
		}
		if recs[0].Size != 2 || recs[1].Size != 0 {
			t.Errorf("sizes %d, %d; want 2, 0", recs[0].Size, recs[1].Size)
		}
	}
}

func TestStartingOffsets(t *testing.T) {
	c := newCluster(t, 3, "s")
	for p := range int32(3) {
		c.produce("s", p, 10)
	}
	tests := []struct {
		name     string
		starting string
		want     map[stream.PartitionID]string
		wantErr  string
	}{
		{"default is latest", "", map[stream.PartitionID]string{"s/0": "10", "s/1": "10", "s/2": "10"}, ""},
		{"latest", "latest", map[stream.PartitionID]string{"s/0": "10", "s/1": "10", "s/2": "10"}, ""},
		{"earliest", "earliest", map[stream.PartitionID]string{"s/0": "0", "s/1": "0", "s/2": "0"}, ""},
		{"json", `{"s":{"0":4,"1":-2,"2":-1}}`, map[stream.PartitionID]string{"s/0": "4", "s/1": "0", "s/2": "10"}, ""},
		{"json missing a partition", `{"s":{"0":4,"1":-2}}`, nil, `partition s/2 is not listed`},
		{"json beyond latest", `{"s":{"0":11,"1":-2,"2":-2}}`, nil, `offset 11 for s/0 is beyond its latest offset 10`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := c.config("s")
			cfg.StartingOffsets = tt.starting
			src := newSource(t, cfg)
			p, err := src.Plan(testCtx(t), connectors.PlanRequest{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !connectors.IsPermanent(err) {
					t.Fatalf("Plan error = %v, want a permanent error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[stream.PartitionID]string{}
			for k, v := range p.Start {
				got[k] = string(v)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Fatalf("Start (-want +got):\n%s", diff)
			}
		})
	}

	// startingOffsets applies to a new job only: a committed position wins.
	cfg := c.config("s")
	cfg.StartingOffsets = "latest"
	src := newSource(t, cfg)
	p := plan(t, src, connectors.PlanRequest{Batch: 7, Committed: map[stream.PartitionID]stream.Position{
		"s/0": stream.Position("3"), "s/1": stream.Position("10"), "s/2": stream.Position("10"),
	}})
	if len(p.Ranges) != 1 || string(p.Ranges[0].From) != "3" {
		t.Fatalf("with a checkpoint, ranges = %v, want s/0 from 3", p.Ranges)
	}
}

func TestStartingTimestamp(t *testing.T) {
	c := newCluster(t, 2, "ts")
	base := time.UnixMilli(1_700_000_000_000)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: "ts", Partition: 0, Value: []byte("x"), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	for i := range 3 { // partition 1 only has old records
		recs = append(recs, &kgo.Record{Topic: "ts", Partition: 1, Value: []byte("y"), Timestamp: base.Add(time.Duration(i) * time.Second)})
	}
	c.produceRecords(recs...)

	cfg := c.config("ts")
	cfg.StartingOffsets = "earliest" // startingTimestamp beats it
	cfg.StartingTimestamp = base.Add(6500 * time.Millisecond).UnixMilli()
	p := plan(t, newSource(t, cfg), connectors.PlanRequest{})
	want := map[stream.PartitionID]stream.Position{"ts/0": stream.Position("7"), "ts/1": stream.Position("3")}
	if diff := cmp.Diff(want, p.Start); diff != "" {
		t.Fatalf("Start (-want +got):\n%s", diff)
	}
}

func TestNewPartitionStartsAtEarliest(t *testing.T) {
	c := newCluster(t, 1, "grow")
	c.produce("grow", 0, 5)
	cfg := c.config("grow")
	cfg.StartingOffsets = "latest"
	src, pool := newSource(t, cfg), newPool(t, cfg)
	p0 := plan(t, src, connectors.PlanRequest{Batch: 0})
	if len(p0.Ranges) != 0 || string(p0.Start["grow/0"]) != "5" {
		t.Fatalf("batch 0 = %+v, want no ranges and grow/0 at 5", p0)
	}

	resp, err := c.adm.CreatePartitions(testCtx(t), 1, "grow")
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("create partitions: %v", err)
	}
	c.refreshProducer()
	c.produce("grow", 1, 4)
	c.produce("grow", 0, 2)

	p1 := plan(t, src, connectors.PlanRequest{Batch: 1, Committed: ends(p0)})
	want := []stream.Range{
		{Partition: "grow/0", From: stream.Position("5"), Until: stream.Position("7")},
		{Partition: "grow/1", From: stream.Position("0"), Until: stream.Position("4")},
	}
	if diff := cmp.Diff(want, p1.Ranges); diff != "" {
		t.Fatalf("batch 1 ranges (-want +got):\n%s", diff)
	}
	if got := readPlan(t, pool, p1)["grow/1"]; !cmp.Equal(got, seq(0, 4)) {
		t.Fatalf("new partition read %v, want 0..3", got)
	}
}

func TestSubscribePattern(t *testing.T) {
	c := newCluster(t, 1, "orders-eu", "orders-us", "xorders-eu", "payments")
	for _, topic := range []string{"orders-eu", "orders-us", "xorders-eu", "payments"} {
		c.produce(topic, 0, 2)
	}
	cfg := c.config()
	cfg.SubscribePattern = `orders-.*` // whole-name match: not xorders-eu
	src := newSource(t, cfg)
	p0 := plan(t, src, connectors.PlanRequest{})
	if got := keys(p0.Start); !cmp.Equal(got, []string{"orders-eu/0", "orders-us/0"}) {
		t.Fatalf("pattern matched %v", got)
	}
	if err := c.fake.CreateTopic("orders-ap", 1, nil); err != nil {
		t.Fatal(err)
	}
	c.produce("orders-ap", 0, 3)
	p1 := plan(t, src, connectors.PlanRequest{Batch: 1, Committed: ends(p0)})
	want := []stream.Range{{Partition: "orders-ap/0", From: stream.Position("0"), Until: stream.Position("3")}}
	if diff := cmp.Diff(want, p1.Ranges); diff != "" {
		t.Fatalf("new matching topic (-want +got):\n%s", diff)
	}
}

func TestAssign(t *testing.T) {
	c := newCluster(t, 4, "a")
	for p := range int32(4) {
		c.produce("a", p, 3)
	}
	cfg := c.config()
	cfg.Assign = `{"a":[3,1]}`
	p := plan(t, newSource(t, cfg), connectors.PlanRequest{})
	if got := keys(p.Start); !cmp.Equal(got, []string{"a/1", "a/3"}) {
		t.Fatalf("assign planned %v", got)
	}

	cfg.Assign = `{"a":[7]}`
	_, err := newSource(t, cfg).Plan(testCtx(t), connectors.PlanRequest{})
	if err == nil || !strings.Contains(err.Error(), "partition a/7 does not exist (is assign right?)") || connectors.IsPermanent(err) {
		t.Fatalf("Plan with a missing assigned partition: %v", err)
	}
}

func keys(m map[stream.PartitionID]stream.Position) []string {
	var out []string
	for k := range m {
		out = append(out, string(k))
	}
	slicesSort(out)
	return out
}

func TestMaxOffsetsPerTrigger(t *testing.T) {
	c := newCluster(t, 3, "lim")
	c.produce("lim", 0, 100)
	c.produce("lim", 1, 10)
	c.produce("lim", 2, 1)
	cfg := c.config("lim")
	cfg.MaxOffsetsPerTrigger = 20
	src, pool := newSource(t, cfg), newPool(t, cfg)

	p0 := plan(t, src, connectors.PlanRequest{})
	// Shares by lag: floor(100/111*20)=18, floor(10/111*20)=1, and the
	// partition whose share rounds to 0 gets 1 of what is left.
	want := []stream.Range{
		{Partition: "lim/0", From: stream.Position("0"), Until: stream.Position("18")},
		{Partition: "lim/1", From: stream.Position("0"), Until: stream.Position("1")},
		{Partition: "lim/2", From: stream.Position("0"), Until: stream.Position("1")},
	}
	if diff := cmp.Diff(want, p0.Ranges); diff != "" {
		t.Fatalf("batch 0 ranges (-want +got):\n%s", diff)
	}
	if p0.Metrics[kafka.MetricMaxOffsetsBehindLatest] != 82 || p0.Metrics[kafka.MetricMinOffsetsBehindLatest] != 0 {
		t.Errorf("metrics %v, want max 82 min 0", p0.Metrics)
	}

	// Run to completion: never above the limit, every offset once.
	all := map[stream.PartitionID][]int64{}
	committed := map[stream.PartitionID]stream.Position(nil)
	p := p0
	for batch := 0; ; batch++ {
		if batch > 0 {
			p = plan(t, src, connectors.PlanRequest{Batch: stream.BatchID(batch), Committed: committed})
		}
		if len(p.Ranges) == 0 {
			break
		}
		total := int64(0)
		for _, r := range p.Ranges {
			total += off(r.Until) - off(r.From)
		}
		if total > 20 {
			t.Fatalf("batch %d plans %d offsets, above maxOffsetsPerTrigger 20", batch, total)
		}
		for id, offs := range readPlan(t, pool, p) {
			all[id] = append(all[id], offs...)
		}
		committed = ends(p)
		if batch > 20 {
			t.Fatal("did not catch up in 20 batches")
		}
	}
	for id, n := range map[stream.PartitionID]int64{"lim/0": 100, "lim/1": 10, "lim/2": 1} {
		if !cmp.Equal(all[id], seq(0, n)) {
			t.Errorf("%s read %v, want 0..%d once each", id, all[id], n-1)
		}
	}
}

func TestMaxRatePerPartition(t *testing.T) {
	c := newCluster(t, 2, "rate")
	c.produce("rate", 0, 50)
	c.produce("rate", 1, 3)
	cfg := c.config("rate")
	cfg.MaxRatePerPartition = 5
	src := newSource(t, cfg)
	for _, tt := range []struct {
		interval time.Duration
		want0    string
	}{
		{0, "5"}, // 0 counts as one second
		{time.Second, "5"},
		{2 * time.Second, "10"},
		{1500 * time.Millisecond, "7"},
	} {
		p := plan(t, src, connectors.PlanRequest{Interval: tt.interval})
		if len(p.Ranges) != 2 || string(p.Ranges[0].Until) != tt.want0 || string(p.Ranges[1].Until) != "3" {
			t.Errorf("interval %s: ranges %v, want rate/0 until %s and rate/1 until 3", tt.interval, p.Ranges, tt.want0)
		}
	}
}

func TestMaxRecordsPerPartitionSplits(t *testing.T) {
	c := newCluster(t, 2, "hot")
	c.produce("hot", 0, 25)
	c.produce("hot", 1, 4)
	cfg := c.config("hot")
	cfg.MaxRecordsPerPartition = 10
	src, pool := newSource(t, cfg), newPool(t, cfg)
	p := plan(t, src, connectors.PlanRequest{})
	want := []stream.Range{
		{Partition: "hot/0", Split: 0, From: stream.Position("0"), Until: stream.Position("9")},
		{Partition: "hot/0", Split: 1, From: stream.Position("9"), Until: stream.Position("17")},
		{Partition: "hot/0", Split: 2, From: stream.Position("17"), Until: stream.Position("25")},
		{Partition: "hot/1", Split: 0, From: stream.Position("0"), Until: stream.Position("4")},
	}
	if diff := cmp.Diff(want, p.Ranges); diff != "" {
		t.Fatalf("ranges (-want +got):\n%s", diff)
	}
	got := readPlan(t, pool, p)
	if !cmp.Equal(got["hot/0"], seq(0, 25)) || !cmp.Equal(got["hot/1"], seq(0, 4)) {
		t.Fatalf("read %v", got)
	}
}

func TestAvailableNow(t *testing.T) {
	c := newCluster(t, 2, "now")
	c.produce("now", 0, 20)
	c.produce("now", 1, 10)
	cfg := c.config("now")
	cfg.MaxOffsetsPerTrigger = 12
	src, pool := newSource(t, cfg), newPool(t, cfg)

	var committed map[stream.PartitionID]stream.Position
	read := map[stream.PartitionID][]int64{}
	exhausted := false
	for batch := 0; !exhausted; batch++ {
		p := plan(t, src, connectors.PlanRequest{Batch: stream.BatchID(batch), Committed: committed, AvailableNow: true})
		if batch == 0 {
			// Produced after the run started: not part of it.
			c.produce("now", 0, 7)
			c.produce("now", 1, 7)
		}
		for id, offs := range readPlan(t, pool, p) {
			read[id] = append(read[id], offs...)
		}
		committed, exhausted = ends(p), p.Exhausted
		if !exhausted && len(p.Ranges) == 0 {
			t.Fatalf("batch %d: no ranges yet not exhausted", batch)
		}
		if batch > 10 {
			t.Fatal("availableNow never exhausted")
		}
	}
	if !cmp.Equal(read["now/0"], seq(0, 20)) || !cmp.Equal(read["now/1"], seq(0, 10)) {
		t.Fatalf("availableNow read %v, want exactly what existed at the first plan", read)
	}
	// A later plan stays exhausted and plans nothing.
	p := plan(t, src, connectors.PlanRequest{Batch: 99, Committed: committed, AvailableNow: true})
	if !p.Exhausted || len(p.Ranges) != 0 {
		t.Fatalf("after the run: %+v", p)
	}

	// Nothing at all to read is exhausted at once.
	empty := newCluster(t, 1, "empty")
	p = plan(t, newSource(t, empty.config("empty")), connectors.PlanRequest{AvailableNow: true})
	if !p.Exhausted || len(p.Ranges) != 0 {
		t.Fatalf("empty topic availableNow: %+v", p)
	}
}

func TestFailOnDataLoss(t *testing.T) {
	c := newCluster(t, 1, "ret")
	c.produce("ret", 0, 20)
	c.deleteRecords("ret", 0, 10) // retention removed 0..9
	committed := map[stream.PartitionID]stream.Position{"ret/0": stream.Position("5")}

	cfg := c.config("ret")
	_, err := newSource(t, cfg).Plan(testCtx(t), connectors.PlanRequest{Batch: 3, Committed: committed})
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || !connectors.IsPermanent(err) {
		t.Fatalf("failOnDataLoss true: err = %v, want a DataLossError", err)
	}
	if dl.Partition != "ret/0" || dl.Requested != "5" || dl.Earliest != "10" {
		t.Fatalf("DataLossError = %+v", dl)
	}

	cfg.FailOnDataLoss = false
	log, logged := logBuffer()
	p := plan(t, newSource(t, cfg, kafka.WithLogger(log)), connectors.PlanRequest{Batch: 3, Committed: committed})
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "partition=ret/0") {
		t.Errorf("no warning logged for the skipped records: %q", logged.String())
	}
	want := []stream.Range{{Partition: "ret/0", From: stream.Position("10"), Until: stream.Position("20")}}
	if diff := cmp.Diff(want, p.Ranges); diff != "" {
		t.Fatalf("failOnDataLoss false ranges (-want +got):\n%s", diff)
	}
	if p.Metrics[kafka.MetricDataLoss] != 1 {
		t.Fatalf("dataLoss metric = %v, want 1", p.Metrics[kafka.MetricDataLoss])
	}
}

func TestDeletedTopicIsDataLoss(t *testing.T) {
	c := newCluster(t, 1, "doomed", "other")
	c.produce("doomed", 0, 3)
	committed := map[stream.PartitionID]stream.Position{"doomed/0": stream.Position("3"), "other/0": stream.Position("0")}
	if err := c.fake.DeleteTopic("doomed"); err != nil {
		t.Fatal(err)
	}
	cfg := c.config("doomed", "other")
	_, err := newSource(t, cfg).Plan(testCtx(t), connectors.PlanRequest{Batch: 1, Committed: committed})
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || dl.Partition != "doomed/0" {
		t.Fatalf("deleted topic: err = %v, want a DataLossError for doomed/0", err)
	}

	cfg.FailOnDataLoss = false
	log, logged := logBuffer()
	src := newSource(t, cfg, kafka.WithLogger(log))
	p := plan(t, src, connectors.PlanRequest{Batch: 1, Committed: committed})
	if string(p.Start["doomed/0"]) != "3" || p.Metrics[kafka.MetricDataLoss] != 1 || len(p.Ranges) != 0 {
		t.Fatalf("failOnDataLoss false: %+v", p)
	}
	// The deleted topic is reported once, not at every batch.
	p = plan(t, src, connectors.PlanRequest{Batch: 2, Committed: ends(p)})
	if p.Metrics[kafka.MetricDataLoss] != 0 || strings.Count(logged.String(), "doomed/0") != 1 {
		t.Fatalf("second batch after the delete: metrics %v, log %q", p.Metrics, logged.String())
	}
}

func TestMissingTopicIsRetryable(t *testing.T) {
	c := newCluster(t, 1, "real")
	_, err := newSource(t, c.config("real", "nope")).Plan(testCtx(t), connectors.PlanRequest{})
	if err == nil || connectors.IsPermanent(err) {
		t.Fatalf("missing topic: err = %v, want a retryable error", err)
	}
	for _, want := range []string{`topic "nope"`, "UNKNOWN_TOPIC_OR_PARTITION", "is subscribe right?"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestUnreachableBrokers(t *testing.T) {
	cfg := kafka.Config{BootstrapServers: "127.0.0.1:1", Subscribe: []string{"x"}, FailOnDataLoss: true}
	src := newSource(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := src.Plan(ctx, connectors.PlanRequest{})
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second): // generous: only "never blocks forever" is asserted
		t.Fatal("Plan did not honour its context")
	}
	if err == nil || connectors.IsPermanent(err) {
		t.Fatalf("unreachable: err = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "are bootstrapServers (127.0.0.1:1) right and reachable?") {
		t.Fatalf("error %q does not say what to check", err)
	}
}

// A broker that accepts connections but never answers: franz-go's own
// connection timeout is longer than the plan's deadline, which must win.
func TestSilentBrokerHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})

	src, err := kafka.NewSource(kafka.Config{BootstrapServers: ln.Addr().String(), Subscribe: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = src.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = src.Plan(ctx, connectors.PlanRequest{})
	if !errors.Is(err, context.DeadlineExceeded) || connectors.IsPermanent(err) {
		t.Fatalf("silent broker: err = %v, want the context's deadline (retryable)", err)
	}
	if !strings.Contains(err.Error(), "right and reachable?") {
		t.Fatalf("error %q does not say what to check", err)
	}
}

func TestIdentity(t *testing.T) {
	a := newSource(t, kafka.Config{BootstrapServers: "b:9092,a:9092", Subscribe: []string{"y", "x"}})
	b := newSource(t, kafka.Config{BootstrapServers: "a:9092, b:9092", Subscribe: []string{"x", "y"}})
	if a.Identity() != b.Identity() {
		t.Fatalf("identities differ for the same source: %q vs %q", a.Identity(), b.Identity())
	}
	if want := "kafka:bootstrapServers=a:9092,b:9092;subscribe=x,y"; a.Identity() != want {
		t.Fatalf("Identity = %q, want %q", a.Identity(), want)
	}
	c := newSource(t, kafka.Config{BootstrapServers: "a:9092,b:9092", SubscribePattern: "x|y"})
	d := newSource(t, kafka.Config{BootstrapServers: "a:9092,b:9092", Assign: `{"x":[1,0]}`})
	if c.Identity() == a.Identity() || d.Identity() == a.Identity() || c.Identity() == d.Identity() {
		t.Fatalf("different subscriptions share an identity: %q %q %q", a.Identity(), c.Identity(), d.Identity())
	}
	if want := "kafka:bootstrapServers=a:9092,b:9092;assign=x/0,x/1"; d.Identity() != want {
		t.Fatalf("Identity = %q, want %q", d.Identity(), want)
	}
}

// TestConfigIdentityMatchesSource: the driver compares Config.Identity with
// what a Source of the same config reports, so the two must agree.
func TestConfigIdentityMatchesSource(t *testing.T) {
	cfg := kafka.Config{BootstrapServers: "b2:9092,b1:9092", Subscribe: []string{"t"}, FailOnDataLoss: true}
	id, err := cfg.Identity()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kafka.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if id != s.Identity() || !strings.Contains(id, "b1:9092,b2:9092") {
		t.Fatalf("Config.Identity %q, Source.Identity %q", id, s.Identity())
	}
	if _, err := (kafka.Config{}).Identity(); err == nil {
		t.Fatal("an invalid config has an identity")
	}
}
