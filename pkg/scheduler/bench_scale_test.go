package scheduler

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Scale benchmarks for scenario 6 (docs/performance.md; `make bench` reads
// them): the scheduler's cost per batch as partitions grow, with one
// executor per 20 partitions (10,000 partitions on 500 executors at the
// largest size), so that a reader can check the growth is linear. ns/partition should stay
// flat across sizes when it is.

var scaleSizes = []int{1250, 2500, 5000, 10000}

// scaleFixture is one size: task references, half of the partitions with a
// last owner (sticky), and executors with 32 free slots each (enough for
// every task at once, as the existing Assign benchmark has them).
type scaleFixture struct {
	keys     []string
	refs     map[string]TaskRef
	attempts map[string]string
	last     map[stream.PartitionID]string
	execs    int
}

func newScaleFixture(partitions int) scaleFixture {
	f := scaleFixture{
		refs: make(map[string]TaskRef, partitions), attempts: make(map[string]string, partitions),
		last: map[stream.PartitionID]string{}, execs: partitions / 20,
	}
	for i := range partitions {
		p := stream.PartitionID("t/" + strconv.Itoa(i))
		k := string(p)
		f.keys = append(f.keys, k)
		f.refs[k] = TaskRef{Key: k, Partition: p}
		f.attempts[k] = k + "/0.1"
		if i%2 == 0 {
			f.last[p] = "e" + strconv.Itoa(i%f.execs)
		}
	}
	return f
}

func (f scaleFixture) executors() []Executor {
	execs := make([]Executor, f.execs)
	for i := range execs {
		execs[i] = Executor{ID: "e" + strconv.Itoa(i), Free: 32}
	}
	return execs
}

// BenchmarkAssignScale is Assign of every task of a batch at once.
func BenchmarkAssignScale(b *testing.B) {
	for _, n := range scaleSizes {
		f := newScaleFixture(n)
		tasks := make([]TaskRef, 0, n)
		for _, k := range f.keys {
			tasks = append(tasks, f.refs[k])
		}
		b.Run(fmt.Sprintf("partitions=%d/executors=%d", n, f.execs), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Assign(tasks, f.executors(), f.last)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/partition")
		})
	}
}

// BenchmarkBatchScale is one whole batch as internal/driver's batch loop
// drives the scheduler, without I/O: NewBatch over the plan's keys, then one
// loop turn per task result, each turn calling Expire, Ready (and, when
// tasks are ready, Assign and Started for each placement), NextWake, and
// Succeeded for the result that woke it. Attempt ids are built once
// outside the timed loop; the clock is fixed.
func BenchmarkBatchScale(b *testing.B) {
	for _, n := range scaleSizes {
		f := newScaleFixture(n)
		b.Run(fmt.Sprintf("partitions=%d/executors=%d", n, f.execs), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				simulateBatch(b, f)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/partition")
		})
	}
}

func simulateBatch(b *testing.B, f scaleFixture) {
	now := time.Unix(1_700_000_000, 0)
	execs := f.executors()
	index := make(map[string]int, len(execs))
	for i, e := range execs {
		index[e.ID] = i
	}
	batch := NewBatch(f.keys, DefaultRetryPolicy)
	queue := make([]string, 0, len(f.keys)) // attempts in the order their results arrive
	placed := make(map[string]string, len(f.keys))
	next := 0
	for !batch.Complete() {
		batch.Expire(now)
		if ready := batch.Ready(now); len(ready) > 0 {
			refs := make([]TaskRef, len(ready))
			for i, k := range ready {
				refs[i] = f.refs[k]
			}
			for _, a := range Assign(refs, execs, f.last) {
				id := f.attempts[a.Key]
				batch.Started(a.Key, id, a.Executor, now)
				execs[index[a.Executor]].Free--
				placed[id] = a.Executor
				queue = append(queue, id)
			}
		}
		batch.NextWake()
		if next == len(queue) {
			b.Fatalf("batch of %d tasks stalled with %d results", len(f.keys), next)
		}
		id := queue[next]
		next++
		if _, err := batch.Succeeded(id, time.Time{}); err != nil {
			b.Fatal(err)
		}
		execs[index[placed[id]]].Free++
	}
}
