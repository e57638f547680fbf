package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Tests of the reader pool's fetching: one client for every partition,
// prefetch within a budget, moves, splits on lanes of their own, eviction
// and closing. reader_test.go covers what a range reads.

func part(topic string, p int) stream.PartitionID {
	return stream.PartitionID(fmt.Sprintf("%s/%d", topic, p))
}

// waitFor polls cond for up to 10s: what the fetchers do happens on their
// goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManyPartitionsThroughOneClient(t *testing.T) {
	const n = 200
	c := newCluster(t, n, "many")
	for p := range int32(n) {
		c.produce("many", p, 5)
	}
	pool := newPool(t, c.config("many"), kafka.WithCacheCapacity(n))
	for _, r := range []struct{ from, until string }{{"0", "2"}, {"2", "5"}} {
		for p := range n {
			if got := offsets(readRange(t, pool, rng(part("many", p), r.from, r.until))); !cmp.Equal(got, seq(off(stream.Position(r.from)), off(stream.Position(r.until)))) {
				t.Fatalf("many/%d [%s,%s) read %v", p, r.from, r.until, got)
			}
		}
	}
	created, reused, _ := kafka.PoolStats(pool)
	if clients, running := kafka.PoolClients(pool); clients != 1 || running != 1 {
		t.Fatalf("%d partitions read through %d clients (%d running), want 1", n, clients, running)
	}
	// Each partition was added once; its second range took what the first
	// one's fetches brought.
	if created != n || reused != n || kafka.PoolSize(pool) != n {
		t.Fatalf("created %d, reused %d, pool size %d; want %d each", created, reused, kafka.PoolSize(pool), n)
	}
}

// Partitions beyond WithCacheCapacity lose their buffers, but their client
// keeps them: coming back to one costs an offset reset, and they still read
// exactly.
func TestCapacityKeepsOneClient(t *testing.T) {
	c := newCluster(t, 8, "cap")
	for p := range int32(8) {
		c.produce("cap", p, 12)
	}
	pool := newPool(t, c.config("cap"), kafka.WithCacheCapacity(3))
	for k := int64(0); k < 12; k += 4 {
		for p := range 8 {
			got := offsets(readRange(t, pool, rng(part("cap", p), itoa(k), itoa(k+4))))
			if !cmp.Equal(got, seq(k, k+4)) {
				t.Fatalf("cap/%d [%d,%d) read %v", p, k, k+4, got)
			}
		}
	}
	if size := kafka.PoolSize(pool); size != 3 {
		t.Fatalf("pool holds %d partition readers, want the capacity 3", size)
	}
	if clients, _ := kafka.PoolClients(pool); clients != 1 {
		t.Fatalf("created %d clients, want 1", clients)
	}
}

func TestPrefetchStaysWithinBudget(t *testing.T) {
	const (
		parts   = 4
		records = 240
		budget  = 8 << 10 // about 35 records of 30 bytes: well below the data
	)
	c := newCluster(t, parts, "budget")
	for p := range int32(parts) {
		for range records / 10 { // small batches, so that fetches can stop between them
			c.produce("budget", p, 10)
		}
	}
	// One fetch response is then a few small batches: a few thousand bytes
	// as the budget counts them (with about 200 bytes per record).
	pool := newPool(t, c.config("budget"), kafka.WithMaxPrefetchBytes(budget),
		kafka.WithFetchSizes(512, 256))
	ctx := testCtx(t)
	// Read every partition in turn, a range at a time, the others
	// prefetching meanwhile.
	for k := int64(0); k < records; k += 40 {
		for p := range parts {
			if got := offsets(readRange(t, pool, rng(part("budget", p), itoa(k), itoa(k+40)))); !cmp.Equal(got, seq(k, k+40)) {
				t.Fatalf("budget/%d [%d,%d) read %v", p, k, k+40, got)
			}
			buffered, peak, poll := kafka.PoolPrefetch(pool)
			if buffered > budget+poll || peak > budget+poll {
				t.Fatalf("the pool holds %d bytes (peak %d) over a budget of %d and one poll of %d", buffered, peak, budget, poll)
			}
		}
	}
	// Idle partitions prefetch up to the budget and stop.
	r, err := pool.Open(ctx, rng("budget/0", "240", "240"))
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	_, peak, poll := kafka.PoolPrefetch(pool)
	if peak == 0 || poll == 0 {
		t.Fatal("nothing was prefetched")
	}
	if peak > budget+poll || poll > 4*budget {
		t.Fatalf("peak %d bytes, largest poll %d, for a budget of %d", peak, poll, budget)
	}
	t.Logf("budget %d, peak %d, largest poll %d", budget, peak, poll)
}

// A range that does not continue where its partition stopped (a retry on
// this executor, a replay, a range that ran elsewhere last batch) moves the
// partition: what was buffered is dropped and the read is exact.
func TestRangeElsewhereMovesThePartition(t *testing.T) {
	c := newCluster(t, 2, "seek")
	c.produce("seek", 0, 50)
	c.produce("seek", 1, 50)
	pool := newPool(t, c.config("seek"))
	for _, tt := range []struct {
		p           int
		from, until int64
	}{
		{0, 0, 10},
		{1, 0, 10},
		{0, 20, 30}, // forward, past records already buffered
		{0, 5, 8},   // backward
		{0, 8, 12},  // continues
		{1, 45, 50},
		{1, 10, 20},
		{0, 40, 50},
	} {
		got := offsets(readRange(t, pool, rng(part("seek", tt.p), itoa(tt.from), itoa(tt.until))))
		if !cmp.Equal(got, seq(tt.from, tt.until)) {
			t.Fatalf("seek/%d [%d,%d) read %v", tt.p, tt.from, tt.until, got)
		}
	}
	created, reused, _ := kafka.PoolStats(pool)
	if created != 7 || reused != 1 || kafka.PoolSize(pool) != 2 {
		t.Fatalf("created %d, reused %d, pool size %d; want 7 positions, 1 reuse, 2 partitions", created, reused, kafka.PoolSize(pool))
	}
	if clients, _ := kafka.PoolClients(pool); clients != 1 {
		t.Fatalf("moves created %d clients, want 1", clients)
	}
}

// The splits of a hot partition run side by side, each on a client (lane)
// of its own; the next batch's ranges continue on the lane that stopped
// where they start.
func TestConcurrentSplitsOfOnePartition(t *testing.T) {
	c := newCluster(t, 1, "hot")
	c.produce("hot", 0, 100)
	pool := newPool(t, c.config("hot"), kafka.WithMaxRecordsPerRead(3))
	ctx := testCtx(t)
	var readers []connectors.Reader
	for k := int64(0); k < 80; k += 20 {
		r, err := pool.Open(ctx, rng("hot/0", itoa(k), itoa(k+20)))
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	// Read them all at once, interleaved.
	got := make([][]int64, len(readers))
	var wg sync.WaitGroup
	errs := make(chan error, len(readers))
	for i, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				recs, err := r.Read(ctx)
				got[i] = append(got[i], offsets(recs)...)
				if errors.Is(err, io.EOF) {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range readers {
		if want := seq(int64(i)*20, int64(i)*20+20); !cmp.Equal(got[i], want) {
			t.Fatalf("split %d read %v, want %v", i, got[i], want)
		}
		_ = readers[i].Close()
	}
	if clients, running := kafka.PoolClients(pool); clients != 4 || running != 4 {
		t.Fatalf("4 splits at once ran on %d clients (%d running), want 4", clients, running)
	}
	// The next batch: [80,100) continues the last split's lane.
	if got := offsets(readRange(t, pool, rng("hot/0", "80", "100"))); !cmp.Equal(got, seq(80, 100)) {
		t.Fatalf("next range read %v", got)
	}
	if _, reused, _ := kafka.PoolStats(pool); reused != 1 {
		t.Fatalf("reused %d, want the lane that stopped at 80", reused)
	}
}

// TestCaughtUpPartitionsAreNotFetched: a partition fetched up to its end
// is paused, not fetched again and again (each fetch would wait at the
// broker, and delay a partition resumed for a reader meanwhile); a range
// past that end fetches it again.
func TestCaughtUpPartitionsAreNotFetched(t *testing.T) {
	c := newCluster(t, 2, "tail")
	for p := range int32(2) {
		c.produce("tail", p, 3)
	}
	pool := newPool(t, c.config("tail"))
	for p := range 2 {
		if got := offsets(readRange(t, pool, rng(part("tail", p), "0", "3"))); !cmp.Equal(got, seq(0, 3)) {
			t.Fatalf("tail/%d read %v", p, got)
		}
	}
	waitFor(t, "both partitions paused at their end", func() bool {
		return kafka.PoolPaused(pool, "tail/0") && kafka.PoolPaused(pool, "tail/1")
	})
	c.produce("tail", 0, 2)
	if got := offsets(readRange(t, pool, rng(part("tail", 0), "3", "5"))); !cmp.Equal(got, seq(3, 5)) {
		t.Fatalf("tail/0 after its end read %v", got)
	}
	if !kafka.PoolPaused(pool, "tail/1") {
		t.Errorf("tail/1, at its end and not read, is fetched again: %s", kafka.PoolDebug(pool, "tail/1"))
	}
}

func TestIdlePartitionsStopBeingConsumed(t *testing.T) {
	c := newCluster(t, 3, "idle")
	for p := range int32(3) {
		c.produce("idle", p, 4)
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
	readRange(t, pool, rng("idle/2", "0", "2")) // over capacity: idle/0 is parked
	if n := kafka.PoolConsumed(pool); n != 3 {
		t.Fatalf("the client consumes %d partitions, want 3 (one parked)", n)
	}
	advance(45 * time.Second) // idle/0 unused for 75s, the others for 45s
	kafka.EvictIdle(pool)
	waitFor(t, "idle/0 to be dropped from the client", func() bool { return kafka.PoolConsumed(pool) == 2 })
	if kafka.PoolSize(pool) != 2 {
		t.Fatalf("pool size %d, want 2", kafka.PoolSize(pool))
	}
	advance(30 * time.Second)
	kafka.EvictIdle(pool)
	waitFor(t, "the client to close", func() bool { _, running := kafka.PoolClients(pool); return running == 0 })
	if kafka.PoolSize(pool) != 0 || kafka.PoolConsumed(pool) != 0 {
		t.Fatalf("after the idle timeout: pool size %d, %d partitions consumed", kafka.PoolSize(pool), kafka.PoolConsumed(pool))
	}
	// A partition read again starts a new client where it is asked to.
	if got := offsets(readRange(t, pool, rng("idle/1", "2", "4"))); !cmp.Equal(got, seq(2, 4)) {
		t.Fatalf("read again %v", got)
	}
	if clients, running := kafka.PoolClients(pool); clients != 2 || running != 1 {
		t.Fatalf("clients created %d, running %d; want 2 and 1", clients, running)
	}
}

// Close must end a Read blocked on records that never come, and join every
// goroutine (TestMain checks for leaks).
func TestCloseEndsABlockedRead(t *testing.T) {
	c := newCluster(t, 2, "block")
	c.produce("block", 0, 1)
	c.produce("block", 1, 3)
	pool, err := kafka.NewReaderPool(c.config("block"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	// Another partition prefetching on the same client.
	if got := offsets(readRange(t, pool, rng("block/1", "0", "1"))); !cmp.Equal(got, []int64{0}) {
		t.Fatalf("read %v", got)
	}
	r, err := pool.Open(ctx, rng("block/0", "0", "5"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Read(ctx); err != nil || len(got) != 1 {
		t.Fatalf("first Read = %v, %v", got, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(ctx) // offsets 1..4 never come
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Read returned %v before Close", err)
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "reader pool closed") {
			t.Fatalf("blocked Read = %v, want the pool closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the blocked Read")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Close took %v", d)
	}
	_ = r.Close()
}

func TestCancelEndsABlockedRead(t *testing.T) {
	c := newCluster(t, 1, "cancel")
	c.produce("cancel", 0, 1)
	pool := newPool(t, c.config("cancel"))
	ctx, cancel := context.WithCancel(testCtx(t))
	r, err := pool.Open(ctx, rng("cancel/0", "0", "3"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	if got, err := r.Read(ctx); err != nil || len(got) != 1 {
		t.Fatalf("first Read = %v, %v", got, err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := r.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Read took %v to notice the cancel", d)
	}
}

// Records deleted under one partition fail its range only: the other
// partitions on the client keep reading, warm.
func TestDataLossOnOnePartitionOfTheClient(t *testing.T) {
	c := newCluster(t, 2, "loss")
	c.produce("loss", 0, 20)
	c.produce("loss", 1, 20)
	pool := newPool(t, c.config("loss"))
	readRange(t, pool, rng("loss/0", "0", "5"))
	readRange(t, pool, rng("loss/1", "0", "5"))
	// Retention strikes partition 0 while a replay asks for old records.
	c.deleteRecords("loss", 0, 15)
	ctx := testCtx(t)
	r, err := pool.Open(ctx, rng("loss/0", "2", "10"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Read(ctx)
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || dl.Requested != "2" || dl.Earliest != "15" {
		t.Fatalf("Read = %v, want a DataLossError from 2, earliest 15", err)
	}
	_ = r.Close()
	if got := offsets(readRange(t, pool, rng("loss/1", "5", "20"))); !cmp.Equal(got, seq(5, 20)) {
		t.Fatalf("the other partition read %v", got)
	}
	if got := offsets(readRange(t, pool, rng("loss/0", "15", "20"))); !cmp.Equal(got, seq(15, 20)) {
		t.Fatalf("partition 0 after the loss read %v", got)
	}
	if clients, _ := kafka.PoolClients(pool); clients != 1 {
		t.Fatalf("created %d clients, want 1", clients)
	}
}

// The shared client speaks SASL like the per-partition clients did.
func TestReaderPoolSASL(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "sec"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "sluice", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	addr := fake.ListenAddrs()[0]
	cfg := kafka.Config{BootstrapServers: addr, Subscribe: []string{"sec"}, Properties: map[string]string{
		"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "sluice", "sasl.password": "s3cret",
	}}
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.SASL(scram.Auth{User: "sluice", Pass: "s3cret"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := testCtx(t)
	for p := range int32(2) {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: "sec", Partition: p, Value: []byte("v")}, &kgo.Record{Topic: "sec", Partition: p, Value: []byte("w")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pool := newPool(t, cfg)
	for p := range 2 {
		if got := offsets(readRange(t, pool, rng(part("sec", p), "0", "2"))); !cmp.Equal(got, seq(0, 2)) {
			t.Fatalf("sec/%d read %v", p, got)
		}
	}
	cfg.Properties["sasl.password"] = "wrong"
	bad := newPool(t, cfg)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	r, err := bad.Open(short, rng("sec/0", "0", "2"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	_, err = r.Read(short)
	if err == nil || strings.Contains(err.Error(), "wrong") || !strings.Contains(err.Error(), "SASL") {
		t.Fatalf("Read with a wrong password = %v: want an error that names SASL and does not show the password", err)
	}
}

func TestMaxPrefetchBytesValidated(t *testing.T) {
	c := newCluster(t, 1, "opt")
	for _, n := range []int64{0, -1} {
		_, err := kafka.NewReaderPool(c.config("opt"), kafka.WithMaxPrefetchBytes(n))
		if err == nil || !strings.Contains(err.Error(), "WithMaxPrefetchBytes") {
			t.Errorf("WithMaxPrefetchBytes(%d): %v", n, err)
		}
	}
}

// Two executors share a topic's partitions the way the scheduler gives them
// out when a partition's last owner is busy: ranges move between pools, and
// each pool has fewer partition readers than partitions. Every range must
// read exactly, and none may stall: a stranded fetch loop once held a
// batch for five minutes.
func TestTwoExecutorsTakingTurns(t *testing.T) {
	const (
		parts   = 48
		batches = 40
	)
	c := newCluster(t, parts, "turns")
	for p := range int32(parts) {
		c.produce("turns", p, batches)
	}
	pools := []*kafka.ReaderPool{
		newPool(t, c.config("turns"), kafka.WithCacheCapacity(20)),
		newPool(t, c.config("turns"), kafka.WithCacheCapacity(20)),
	}
	type task struct{ p, k int }
	for k := range batches {
		tasks := make(chan task)
		var wg sync.WaitGroup
		for slot := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for tk := range tasks {
					pool := pools[(tk.p*7+tk.k*13+slot)%2]
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					r := rng(part("turns", tk.p), itoa(int64(tk.k)), itoa(int64(tk.k+1)))
					rd, err := pool.Open(ctx, r)
					if err != nil {
						cancel()
						t.Errorf("Open(%s): %v", r.Key(), err)
						continue
					}
					got, err := readAllErr(ctx, rd)
					_ = rd.Close()
					cancel()
					if err != nil || !cmp.Equal(got, []int64{int64(tk.k)}) {
						t.Errorf("%s read %v, %v; pools: %s | %s", r.Key(), got, err,
							kafka.PoolDebug(pools[0], string(r.Partition)), kafka.PoolDebug(pools[1], string(r.Partition)))
					}
				}
			}()
		}
		for p := range parts {
			tasks <- task{p, k}
		}
		close(tasks)
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	for i, pool := range pools {
		if clients, _ := kafka.PoolClients(pool); clients != 1 {
			t.Errorf("pool %d created %d clients, want 1", i, clients)
		}
	}
}

func readAllErr(ctx context.Context, r connectors.Reader) ([]int64, error) {
	var out []int64
	for {
		recs, err := r.Read(ctx)
		out = append(out, offsets(recs)...)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// TestDefaultBudgetFollowsPartitions: the default prefetch budget grows
// with the partitions the pool holds, so that a backlog on each of many
// partitions does not fill it (each read would then drop idle buffers and
// refetch); a budget given with WithMaxPrefetchBytes stays as given.
func TestDefaultBudgetFollowsPartitions(t *testing.T) {
	for _, tc := range []struct {
		live int
		per  int64
		want int64
	}{
		{0, 128 << 10, 32 << 20},
		{256, 128 << 10, 32 << 20},
		{512, 128 << 10, 64 << 20},
		{1024, 128 << 10, 128 << 20},
		{4096, 128 << 10, 512 << 20},
	} {
		if got := kafka.ScaledBudget(tc.live, tc.per); got != tc.want {
			t.Errorf("ScaledBudget(%d, %d) = %d, want %d", tc.live, tc.per, got, tc.want)
		}
	}

	const n = 8
	c := newCluster(t, n, "budget")
	for p := range int32(n) {
		c.produce("budget", p, 3)
	}
	for _, tc := range []struct {
		name string
		opts []kafka.Option
		want int64 // after reading every partition
	}{
		// 16 MiB per partition makes 8 partitions need 128 MiB.
		{"default", []kafka.Option{kafka.WithPrefetchPerPartition(16 << 20)}, 128 << 20},
		{"fixed", []kafka.Option{kafka.WithPrefetchPerPartition(16 << 20), kafka.WithMaxPrefetchBytes(1 << 20)}, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newPool(t, c.config("budget"), tc.opts...)
			for p := range n {
				if got := offsets(readRange(t, pool, rng(part("budget", p), "0", "3"))); !cmp.Equal(got, seq(0, 3)) {
					t.Fatalf("budget/%d read %v", p, got)
				}
			}
			if got := kafka.PoolBudget(pool); got != tc.want {
				t.Errorf("budget %d after %d partitions, want %d", got, n, tc.want)
			}
		})
	}
}

// TestSizeFetches: a fetch asks per partition for half the partition's
// share of the idle half of the budget, and in all for a quarter of the
// budget, both converted to bytes on the wire at the ratio measured
// (nothing fetched yet: one to one); per partition between 16 KiB as
// counted and 1 MiB on the wire, in all between 64 KiB as counted and
// 50 MiB on the wire, and never less than 1 KiB on the wire.
func TestSizeFetches(t *testing.T) {
	for _, tc := range []struct {
		budget           int64
		live             int
		wire, counted    int64
		total, partition int32
	}{
		{64 << 20, 0, 0, 0, 16 << 20, 1 << 20},
		{64 << 20, 16, 0, 0, 16 << 20, 1 << 20},
		{64 << 20, 32, 0, 0, 16 << 20, 512 << 10},
		{64 << 20, 512, 0, 0, 16 << 20, 32 << 10},
		{64 << 20, 4096, 0, 0, 16 << 20, 16 << 10},
		{1 << 30, 1, 0, 0, 50 << 20, 1 << 20},
		{8 << 10, 4, 0, 0, 64 << 10, 16 << 10},
		// A quarter on the wire of what the budget counts.
		{64 << 20, 16, 100, 400, 4 << 20, 256 << 10},
		{64 << 20, 256, 100, 400, 4 << 20, 16 << 10},
		{64 << 20, 4096, 100, 400, 4 << 20, 4 << 10},
		{1 << 30, 1, 100, 400, 50 << 20, 1 << 20},
		// Records that compress a hundredfold.
		{64 << 20, 4096, 4, 400, 16 << 20 / 100, 1 << 10},
	} {
		total, partition := kafka.SizeFetches(tc.budget, tc.live, tc.wire, tc.counted)
		if total != tc.total || partition != tc.partition {
			t.Errorf("SizeFetches(%d, %d, %d, %d) = %d, %d; want %d, %d", tc.budget, tc.live, tc.wire, tc.counted, total, partition, tc.total, tc.partition)
		}
	}
}

// TestPrefetchKeepsToShare reads one record of each of many partitions
// with a backlog, round after round, as a job with many partitions and a
// small maxOffsetsPerTrigger does. A partition's fetch asks for its share
// of the budget only (converted to the wire: these records compress a
// hundredfold), so the idle partitions' prefetch fits and no read waits
// for room: before, each fetch brought a partition's whole backlog, the
// budget filled after a dozen partitions and every later read dropped
// another partition's buffer and waited for a fetch.
func TestPrefetchKeepsToShare(t *testing.T) {
	const (
		parts   = 32
		backlog = 1000 // about 400 KB a partition as the budget counts it
		budget  = 4 << 20
		rounds  = 5
	)
	c := newCluster(t, parts, "share")
	value := bytes.Repeat([]byte("v"), 200)
	for p := range int32(parts) {
		for range backlog / 10 {
			recs := make([]*kgo.Record, 10)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: "share", Partition: p, Value: value}
			}
			c.produceRecords(recs...)
		}
	}
	pool := newPool(t, c.config("share"), kafka.WithMaxPrefetchBytes(budget))
	for k := range int64(rounds) {
		for p := range parts {
			if got := offsets(readRange(t, pool, rng(part("share", p), itoa(k), itoa(k+1)))); !cmp.Equal(got, seq(k, k+1)) {
				t.Fatalf("share/%d [%d,%d) read %v", p, k, k+1, got)
			}
		}
	}
	_, peak, poll := kafka.PoolPrefetch(pool)
	if peak > budget+poll {
		t.Errorf("the pool held %d bytes at its peak, over a budget of %d and one poll of %d", peak, budget, poll)
	}
	if shed, trimmed := kafka.PoolShed(pool); shed != 0 || trimmed != 0 {
		t.Errorf("reads made room %d times by dropping and %d by trimming idle buffers; want none", shed, trimmed)
	}
}

// TestTrimKeepsOrder: with fetches larger than the share (fixed here),
// idle partitions overshoot and readers starved by the budget trim them
// back to their share rather than drop them; the trimmed partitions are
// fetched again from after what they kept, so every range still reads
// exactly its records.
func TestTrimKeepsOrder(t *testing.T) {
	const (
		parts   = 8
		backlog = 400
		budget  = 64 << 10
		rounds  = 6
		step    = 20
	)
	c := newCluster(t, parts, "trim")
	for p := range int32(parts) {
		for range backlog / 10 {
			c.produce("trim", p, 10)
		}
	}
	pool := newPool(t, c.config("trim"), kafka.WithMaxPrefetchBytes(budget), kafka.WithFetchSizes(1<<20, 1<<20))
	for k := int64(0); k < rounds*step; k += step {
		for p := range parts {
			if got := offsets(readRange(t, pool, rng(part("trim", p), itoa(k), itoa(k+step)))); !cmp.Equal(got, seq(k, k+step)) {
				t.Fatalf("trim/%d [%d,%d) read %v\n%s", p, k, k+step, got, kafka.PoolDebug(pool, string(part("trim", p))))
			}
		}
	}
	if _, trimmed := kafka.PoolShed(pool); trimmed == 0 {
		t.Error("no idle buffer was trimmed: the test no longer overshoots the budget")
	}
}
