package kafka_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/connectors/kafka"
)

// Two executors read a job's batches the way the scheduler hands them out,
// each with two task slots, through pools whose prefetch budget is far
// below the data: ranges end with records of the next batch buffered, so
// idle partitions hold the budget while new ones start. No Read may wait
// for the stall check (10s): a reader waiting on a partition the budget
// paused must get room from idle buffers however the budget filled up,
// not only when it starts waiting.
func TestNoReadWaitsForTheStallCheck(t *testing.T) {
	const (
		parts   = 16
		records = 3000
		batches = 6
		step    = records / batches
		budget  = 128 << 10 // a few hundred records of the ~220 the budget counts each
		maxWait = 2 * time.Second
	)
	c := newCluster(t, parts, "stall")
	for p := range int32(parts) {
		for range 10 { // several batches, so that fetches can stop between them
			c.produce("stall", p, records/10)
		}
	}
	// Busy goroutines: the bug shows under CPU contention.
	stop := make(chan struct{})
	var busy sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		busy.Add(1)
		go func() {
			defer busy.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := 0; i < 1e5; i++ {
					_ = i * i
				}
			}
		}()
	}
	defer func() { close(stop); busy.Wait() }()

	pools := []*kafka.ReaderPool{
		newPool(t, c.config("stall"), kafka.WithMaxPrefetchBytes(budget)),
		newPool(t, c.config("stall"), kafka.WithMaxPrefetchBytes(budget)),
	}
	type task struct{ p, k int }
	for k := range batches {
		var wg sync.WaitGroup
		for e, pool := range pools {
			tasks := make(chan task)
			for range 2 { // task slots
				wg.Add(1)
				go func() {
					defer wg.Done()
					for tk := range tasks {
						r := rng(part("stall", tk.p), itoa(int64(tk.k*step)), itoa(int64((tk.k+1)*step)))
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						rd, err := pool.Open(ctx, r)
						if err != nil {
							cancel()
							t.Errorf("Open(%s): %v", r.Key(), err)
							continue
						}
						n := 0
						for {
							started := time.Now()
							recs, err := rd.Read(ctx)
							if waited := time.Since(started); waited > maxWait {
								t.Errorf("executor %d: Read(%s) waited %s after %d records; %s", e, r.Key(), waited.Round(time.Millisecond), n,
									kafka.PoolDebug(pool, string(r.Partition)))
							}
							n += len(recs)
							if errors.Is(err, io.EOF) {
								break
							}
							if err != nil {
								t.Errorf("Read(%s): %v", r.Key(), err)
								break
							}
							time.Sleep(time.Millisecond) // the task works on what it read
						}
						_ = rd.Close()
						cancel()
						if n != step {
							t.Errorf("%s read %d records, want %d", r.Key(), n, step)
						}
					}
				}()
			}
			// Executor e reads half the partitions; every other batch
			// a few change hands, as when a partition's last owner is busy.
			go func() {
				defer close(tasks)
				for p := range parts {
					owner := p % 2
					if k%2 == 1 && p%4 == 0 {
						owner = 1 - owner
					}
					if owner == e {
						tasks <- task{p, k}
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}
