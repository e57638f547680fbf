package kafka_test

import (
	"context"
	"errors"
	"io"
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

func rng(p stream.PartitionID, from, until string) stream.Range {
	return stream.Range{Partition: p, From: stream.Position(from), Until: stream.Position(until)}
}

func offsets(recs []stream.Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Fields["offset"].(int64))
	}
	return out
}

func TestReaderStaysWarmBetweenBatches(t *testing.T) {
	c := newCluster(t, 1, "warm")
	c.produce("warm", 0, 15) // the first range's fetch brings records past its end
	cfg := c.config("warm")
	pool := newPool(t, cfg)

	if got := offsets(readRange(t, pool, rng("warm/0", "0", "10"))); !cmp.Equal(got, seq(0, 10)) {
		t.Fatalf("first range read %v", got)
	}
	if got := offsets(readRange(t, pool, rng("warm/0", "10", "15"))); !cmp.Equal(got, seq(10, 15)) {
		t.Fatalf("second range read %v: prefetched records were lost or repeated", got)
	}
	c.produce("warm", 0, 5)
	if got := offsets(readRange(t, pool, rng("warm/0", "15", "20"))); !cmp.Equal(got, seq(15, 20)) {
		t.Fatalf("third range read %v", got)
	}
	if created, reused, _ := kafka.PoolStats(pool); created != 1 || reused != 2 {
		t.Fatalf("created %d readers and reused %d times; want 1 and 2", created, reused)
	}

	// A range that does not continue where the reader stopped (a retry of
	// an earlier batch) gets a fresh reader and still reads exactly.
	if got := offsets(readRange(t, pool, rng("warm/0", "3", "6"))); !cmp.Equal(got, seq(3, 6)) {
		t.Fatalf("rewound range read %v", got)
	}
	if created, _, _ := kafka.PoolStats(pool); created != 2 || kafka.PoolSize(pool) != 1 {
		t.Fatalf("after a rewind: created %d, pool size %d; want 2 and 1", created, kafka.PoolSize(pool))
	}
}

func TestSplitsOfOnePartitionReadSideBySide(t *testing.T) {
	c := newCluster(t, 1, "split")
	c.produce("split", 0, 20)
	pool := newPool(t, c.config("split"))
	ctx := testCtx(t)
	a, err := pool.Open(ctx, rng("split/0", "0", "10"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pool.Open(ctx, rng("split/0", "10", "20"))
	if err != nil {
		t.Fatal(err)
	}
	readAll := func(r connectors.Reader) []int64 {
		var out []int64
		for {
			recs, err := r.Read(ctx)
			out = append(out, offsets(recs)...)
			if errors.Is(err, io.EOF) {
				return out
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	gotB, gotA := readAll(b), readAll(a)
	if !cmp.Equal(gotA, seq(0, 10)) || !cmp.Equal(gotB, seq(10, 20)) {
		t.Fatalf("splits read %v and %v", gotA, gotB)
	}
	_, _ = a.Close(), b.Close()
	if kafka.PoolSize(pool) != 2 {
		t.Fatalf("pool holds %d readers, want both splits' readers", kafka.PoolSize(pool))
	}
}

func TestReadInChunks(t *testing.T) {
	c := newCluster(t, 1, "chunk")
	c.produce("chunk", 0, 10)
	pool := newPool(t, c.config("chunk"), kafka.WithMaxRecordsPerRead(3))
	ctx := testCtx(t)
	r, err := pool.Open(ctx, rng("chunk/0", "0", "10"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	var got []int64
	for {
		recs, err := r.Read(ctx)
		if len(recs) > 3 {
			t.Fatalf("Read returned %d records, above the chunk size 3", len(recs))
		}
		got = append(got, offsets(recs)...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if want := stream.Position(itoa(got[len(got)-1] + 1)); string(r.End()) != string(want) {
			t.Fatalf("End = %s after offset %d", r.End(), got[len(got)-1])
		}
	}
	if !cmp.Equal(got, seq(0, 10)) {
		t.Fatalf("read %v", got)
	}
}

// Transaction markers take an offset but are not records: a range that ends
// on one must still finish, with End at until.
func TestTransactionalTopicGaps(t *testing.T) {
	c := newCluster(t, 1, "tx")
	txn, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.TransactionalID("sluice-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	ctx := testCtx(t)
	transact := func(n int, commit kgo.TransactionEndTry) {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "tx", Value: []byte("v")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	transact(3, kgo.TryCommit) // offsets 0-2, commit marker 3
	transact(2, kgo.TryAbort)  // offsets 4-5, abort marker 6

	for _, tt := range []struct {
		isolation string
		want      []int64
	}{
		{"", []int64{0, 1, 2, 4, 5}}, // read_uncommitted, Spark's default
		{"read_committed", []int64{0, 1, 2}},
	} {
		cfg := c.config("tx")
		if tt.isolation != "" {
			cfg.Properties = map[string]string{"isolation.level": tt.isolation}
		}
		src, pool := newSource(t, cfg), newPool(t, cfg)
		p := plan(t, src, connectors.PlanRequest{})
		want := []stream.Range{rng("tx/0", "0", "7")}
		if diff := cmp.Diff(want, p.Ranges); diff != "" {
			t.Fatalf("%q: ranges (-want +got):\n%s", tt.isolation, diff)
		}
		// readRange checks End == until after EOF.
		if got := offsets(readRange(t, pool, p.Ranges[0])); !cmp.Equal(got, tt.want) {
			t.Fatalf("%q: read %v, want %v", tt.isolation, got, tt.want)
		}
		// A range ending right after data, before the marker, is fine too.
		if got := offsets(readRange(t, newPool(t, cfg), rng("tx/0", "1", "3"))); !cmp.Equal(got, []int64{1, 2}) {
			t.Fatalf("%q: [1,3) read %v", tt.isolation, got)
		}
	}
}

// Compaction removes whole batches: ranges may begin, end or lie entirely
// in a gap.
func TestCompactedTopicGaps(t *testing.T) {
	c := newCluster(t, 1)
	if err := c.fake.CreateTopic("cmp", 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "d", "d", "d", "b", "e", "e", "e", "d", "e", "z"}
	for _, k := range keys { // one batch per record
		c.produceRecords(&kgo.Record{Topic: "cmp", Key: []byte(k), Value: []byte("v")})
	}
	c.fake.Compact() // keeps 0 (a), 4 (b), 8 (d), 9 (e), 10 (z)

	pool := newPool(t, c.config("cmp"))
	for _, tt := range []struct {
		from, until string
		want        []int64
	}{
		{"0", "1", []int64{0}},
		{"1", "3", nil},
		{"3", "6", []int64{4}},
		{"6", "9", []int64{8}},
		{"9", "11", []int64{9, 10}},
	} {
		got := offsets(readRange(t, pool, rng("cmp/0", tt.from, tt.until)))
		if !cmp.Equal(got, tt.want) {
			t.Fatalf("[%s,%s) read %v, want %v", tt.from, tt.until, got, tt.want)
		}
	}
	if _, reused, _ := kafka.PoolStats(pool); reused != 4 {
		t.Fatalf("contiguous ranges over gaps reused the reader %d times, want 4", reused)
	}
}

func TestReaderDataLoss(t *testing.T) {
	c := newCluster(t, 1, "gone")
	c.produce("gone", 0, 20)
	cfg := c.config("gone")
	p := plan(t, newSource(t, cfg), connectors.PlanRequest{})
	c.deleteRecords("gone", 0, 10) // retention strikes between plan and read

	pool := newPool(t, cfg)
	ctx := testCtx(t)
	r, err := pool.Open(ctx, p.Ranges[0])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	_, err = r.Read(ctx)
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || !connectors.IsPermanent(err) {
		t.Fatalf("Read = %v, want a DataLossError", err)
	}
	if dl.Partition != "gone/0" || dl.Requested != "0" || dl.Earliest != "10" {
		t.Fatalf("DataLossError = %+v", dl)
	}
	_ = r.Close()
	if kafka.PoolSize(pool) != 0 {
		t.Fatal("a reader that failed went back to the pool")
	}
}

func TestReaderNoticesDeletedTopic(t *testing.T) {
	c := newCluster(t, 1, "vanish")
	c.produce("vanish", 0, 3)
	pool := newPool(t, c.config("vanish"), kafka.WithStallCheck(50*time.Millisecond))
	if err := c.fake.DeleteTopic("vanish"); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	r, err := pool.Open(ctx, rng("vanish/0", "0", "3"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	_, err = r.Read(ctx)
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) {
		t.Fatalf("Read of a deleted topic = %v, want a DataLossError", err)
	}
}

func TestReadHonoursContext(t *testing.T) {
	c := newCluster(t, 1, "slow")
	c.produce("slow", 0, 1)
	pool := newPool(t, c.config("slow"))
	// Offsets 1..4 do not exist yet: the read waits for them until ctx ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r, err := pool.Open(ctx, rng("slow/0", "0", "5"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	var got []int64
	for {
		recs, err := r.Read(ctx)
		got = append(got, offsets(recs)...)
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Read = %v, want the context's deadline", err)
			}
			break
		}
	}
	if !cmp.Equal(got, []int64{0}) || string(r.End()) != "1" {
		t.Fatalf("read %v, End %s; want [0] and 1", got, r.End())
	}
	// The interrupted reader stays warm: a retry from where it stopped
	// reuses it once the records exist.
	_ = r.Close()
	c.produce("slow", 0, 4)
	if got := offsets(readRange(t, pool, rng("slow/0", "1", "5"))); !cmp.Equal(got, seq(1, 5)) {
		t.Fatalf("retry read %v", got)
	}
	if created, reused, _ := kafka.PoolStats(pool); created != 1 || reused != 1 {
		t.Fatalf("created %d, reused %d; want 1 and 1", created, reused)
	}
}

func TestOpenRejectsBadRanges(t *testing.T) {
	c := newCluster(t, 1, "bad")
	pool := newPool(t, c.config("bad"))
	ctx := testCtx(t)
	for _, tt := range []struct {
		r    stream.Range
		want string
	}{
		{rng("bad", "0", "1"), "not topic/partition"},
		{rng("bad/x", "0", "1"), "not topic/partition"},
		{rng("bad/0", "x", "1"), "not a Kafka offset"},
		{rng("bad/0", "5", "1"), "until 1 is before from 5"},
		{stream.Range{Partition: "bad/0", From: stream.Position("0")}, "needs an until"},
	} {
		_, err := pool.Open(ctx, tt.r)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !connectors.IsPermanent(err) {
			t.Errorf("Open(%+v) = %v, want a permanent error containing %q", tt.r, err, tt.want)
		}
	}
	r, err := pool.Open(ctx, rng("bad/0", "4", "4"))
	if err != nil {
		t.Fatal(err)
	}
	if recs, err := r.Read(ctx); len(recs) != 0 || err != io.EOF || string(r.End()) != "4" {
		t.Fatalf("empty range: %v, %v, End %s", recs, err, r.End())
	}
	_ = r.Close()
}

func TestIdleReadersAreClosed(t *testing.T) {
	c := newCluster(t, 3, "idle")
	for p := range int32(3) {
		c.produce("idle", p, 2)
	}
	var (
		mu  sync.Mutex
		now = time.Unix(1_000_000, 0)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }

	pool := newPool(t, c.config("idle"), kafka.WithClock(clock), kafka.WithIdleTimeout(time.Minute),
		kafka.WithCacheCapacity(2))
	readRange(t, pool, rng("idle/0", "0", "2"))
	advance(30 * time.Second)
	readRange(t, pool, rng("idle/1", "0", "2"))
	readRange(t, pool, rng("idle/2", "0", "2")) // over capacity: idle/0, the least recently used, goes
	if size := kafka.PoolSize(pool); size != 2 {
		t.Fatalf("pool holds %d readers, want the capacity 2", size)
	}
	if _, _, evicted := kafka.PoolStats(pool); evicted != 1 {
		t.Fatalf("evicted %d, want 1", evicted)
	}
	advance(45 * time.Second) // idle/1 and idle/2 idle for 45s: kept
	kafka.EvictIdle(pool)
	if kafka.PoolSize(pool) != 2 {
		t.Fatalf("readers idle below the timeout were closed")
	}
	advance(30 * time.Second)
	kafka.EvictIdle(pool)
	if kafka.PoolSize(pool) != 0 {
		t.Fatalf("pool holds %d readers after the idle timeout, want 0", kafka.PoolSize(pool))
	}
}

func TestPoolCloseStopsOpenReaders(t *testing.T) {
	c := newCluster(t, 1, "close")
	c.produce("close", 0, 1)
	pool, err := kafka.NewReaderPool(c.config("close"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	r, err := pool.Open(ctx, rng("close/0", "0", "5")) // waits for offsets that never come
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(ctx); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Read after the pool closed = %v, want an error", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Open(ctx, rng("close/0", "1", "2")); err == nil {
		t.Fatal("Open after Close succeeded")
	}
}

// Executors used to fail with a DataLossError on records deleted between
// planning and reading even with failOnDataLoss false; as in Spark, false
// must read what remains of the range, end at the planned until and warn.
func TestReaderDataLossSkipsWhenNotFailing(t *testing.T) {
	for _, tt := range []struct {
		name           string
		failOnDataLoss bool
		deleteBefore   int64
		from, until    string
		want           []int64 // read from the range
		next           []int64 // read from [until, 30) afterwards
	}{
		{name: "start deleted", deleteBefore: 10, from: "0", until: "20", want: seq(10, 20), next: seq(20, 30)},
		{name: "middle of a range", deleteBefore: 10, from: "5", until: "15", want: seq(10, 15), next: seq(15, 30)},
		{name: "whole range deleted", deleteBefore: 25, from: "0", until: "20", want: nil, next: seq(25, 30)},
		{name: "failOnDataLoss true fails", failOnDataLoss: true, deleteBefore: 10, from: "0", until: "20"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 1, "ret")
			c.produce("ret", 0, 30)
			c.deleteRecords("ret", 0, tt.deleteBefore) // retention strikes between plan and read
			cfg := c.config("ret")
			cfg.FailOnDataLoss = tt.failOnDataLoss
			log, logged := logBuffer()
			pool := newPool(t, cfg, kafka.WithLogger(log))
			r := rng("ret/0", tt.from, tt.until)

			if tt.failOnDataLoss {
				ctx := testCtx(t)
				rd, err := pool.Open(ctx, r)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = rd.Close() }()
				_, err = rd.Read(ctx)
				if !errors.Is(err, connectors.ErrDataLoss) || !connectors.IsPermanent(err) {
					t.Fatalf("Read = %v, want a permanent data loss error", err)
				}
				if pool.LostRanges() != 0 {
					t.Fatalf("LostRanges = %d, want 0", pool.LostRanges())
				}
				return
			}

			got := offsets(readRange(t, pool, r)) // checks End == until
			if !cmp.Equal(got, tt.want) {
				t.Fatalf("read %v, want %v", got, tt.want)
			}
			if n := pool.LostRanges(); n != 1 {
				t.Fatalf("LostRanges = %d, want 1", n)
			}
			if s := logged.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "partition=ret/0") {
				t.Fatalf("no warning logged for the skipped records: %q", s)
			}
			// The partition's next range reads on normally.
			if got := offsets(readRange(t, pool, rng("ret/0", tt.until, "30"))); !cmp.Equal(got, tt.next) {
				t.Fatalf("next range read %v, want %v", got, tt.next)
			}
		})
	}
}
