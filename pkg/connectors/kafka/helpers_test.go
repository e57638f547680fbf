package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) {
	// What may outlive the tests: testenv.SharedEngineGoroutine.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(testenv.SharedEngineGoroutine))
}

// cluster is an in-process Kafka (kfake) plus a producing client and an
// admin client on it.
type cluster struct {
	t    testing.TB
	fake *kfake.Cluster
	addr string
	cl   *kgo.Client
	adm  *kadm.Client
}

func newCluster(t testing.TB, partitions int32, topics ...string) *cluster {
	t.Helper()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(fake.Close)
	addr := fake.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	t.Cleanup(cl.Close)
	return &cluster{t: t, fake: fake, addr: addr, cl: cl, adm: kadm.NewClient(cl)}
}

// produce writes n records to topic/partition, values "topic/p/i" with i
// counting from the partition's current record count.
func (c *cluster) produce(topic string, partition int32, n int) {
	c.t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic:     topic,
			Partition: partition,
			Key:       []byte("k" + strconv.Itoa(i)),
			Value:     []byte(fmt.Sprintf("%s/%d/%d", topic, partition, i)),
		}
	}
	c.produceRecords(recs...)
}

func (c *cluster) produceRecords(recs ...*kgo.Record) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		c.t.Fatalf("produce: %v", err)
	}
}

// refreshProducer replaces the producing client, whose metadata does not
// know about partitions added since it started.
func (c *cluster) refreshProducer() {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		c.t.Fatalf("producer: %v", err)
	}
	c.t.Cleanup(cl.Close)
	c.cl, c.adm = cl, kadm.NewClient(cl)
}

// logBuffer collects a source's log lines for assertions.
func logBuffer() (*slog.Logger, *syncBuffer) {
	b := &syncBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (c *cluster) deleteRecords(topic string, partition int32, before int64) {
	c.t.Helper()
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: topic, Partition: partition, At: before, LeaderEpoch: -1})
	resps, err := c.adm.DeleteRecords(context.Background(), os)
	if err != nil {
		c.t.Fatalf("delete records: %v", err)
	}
	for _, ps := range resps {
		for _, r := range ps {
			if r.Err != nil {
				c.t.Fatalf("delete records %s/%d: %v", r.Topic, r.Partition, r.Err)
			}
		}
	}
}

func (c *cluster) config(topics ...string) kafka.Config {
	return kafka.Config{
		BootstrapServers: c.addr,
		Subscribe:        topics,
		StartingOffsets:  "earliest",
		FailOnDataLoss:   true,
	}
}

func newSource(t testing.TB, cfg kafka.Config, opts ...kafka.Option) *kafka.Source {
	t.Helper()
	s, err := kafka.NewSource(cfg, opts...)
	if err != nil {
		t.Fatalf("NewSource: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newPool(t testing.TB, cfg kafka.Config, opts ...kafka.Option) *kafka.ReaderPool {
	t.Helper()
	p, err := kafka.NewReaderPool(cfg, opts...)
	if err != nil {
		t.Fatalf("NewReaderPool: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func plan(t *testing.T, s *kafka.Source, req connectors.PlanRequest) connectors.Plan {
	t.Helper()
	p, err := s.Plan(testCtx(t), req)
	if err != nil {
		t.Fatalf("Plan(batch %d): %v", req.Batch, err)
	}
	return p
}

// ends is what the driver would commit after running p: each partition's
// start, advanced to the until of its ranges.
func ends(p connectors.Plan) map[stream.PartitionID]stream.Position {
	out := make(map[stream.PartitionID]stream.Position, len(p.Start))
	for k, v := range p.Start {
		out[k] = v
	}
	for _, r := range p.Ranges {
		if off(r.Until) > off(out[r.Partition]) {
			out[r.Partition] = r.Until
		}
	}
	return out
}

func off(p stream.Position) int64 {
	n, err := strconv.ParseInt(string(p), 10, 64)
	if err != nil {
		panic(fmt.Sprintf("position %q: %v", p, err))
	}
	return n
}

// readRange reads r to io.EOF and checks that End is until afterwards.
func readRange(t testing.TB, pool *kafka.ReaderPool, r stream.Range) []stream.Record {
	t.Helper()
	ctx := testCtx(t)
	rd, err := pool.Open(ctx, r)
	if err != nil {
		t.Fatalf("Open(%s): %v", r.Key(), err)
	}
	defer func() { _ = rd.Close() }()
	// Remaining bounds what is left: the records still to come, and the
	// transaction markers among them.
	remaining := func() int64 { return rd.(connectors.RangeSizer).Remaining() }
	before := remaining()
	var out []stream.Record
	for {
		recs, err := rd.Read(ctx)
		out = append(out, recs...)
		if left := remaining(); left > before-int64(len(out)) || left < 0 {
			t.Fatalf("Remaining(%s) = %d after %d of at most %d records", r.Key(), left, len(out), before)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Read(%s): %v", r.Key(), err)
		}
	}
	if got := string(rd.End()); got != string(r.Until) {
		t.Fatalf("End(%s) = %s after EOF, want until %s", r.Key(), got, r.Until)
	}
	if left := remaining(); left != 0 || int64(len(out)) > before {
		t.Fatalf("Remaining(%s) = %d at the end, %d records read of at most %d", r.Key(), left, len(out), before)
	}
	return out
}

// readPlan reads every range of p and checks each record lies in its range,
// in order and once. It returns the offsets read per partition.
func readPlan(t *testing.T, pool *kafka.ReaderPool, p connectors.Plan) map[stream.PartitionID][]int64 {
	t.Helper()
	got := map[stream.PartitionID][]int64{}
	for _, r := range p.Ranges {
		from, until := off(r.From), off(r.Until)
		prev := int64(-1)
		for _, rec := range readRange(t, pool, r) {
			o := rec.Fields["offset"].(int64)
			id := stream.PartitionID(fmt.Sprintf("%s/%d", rec.Fields["topic"], rec.Fields["partition"]))
			if id != r.Partition || o < from || o >= until || o <= prev {
				t.Fatalf("range %s [%d,%d) returned %s offset %d (previous %d)", r.Key(), from, until, id, o, prev)
			}
			prev = o
			got[id] = append(got[id], o)
		}
	}
	return got
}

// want lists offsets [from, until).
func seq(from, until int64) []int64 {
	var out []int64
	for i := from; i < until; i++ {
		out = append(out, i)
	}
	return out
}

func slicesSort(s []string) { sort.Strings(s) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
