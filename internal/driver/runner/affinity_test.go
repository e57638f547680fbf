package runner

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
)

// affinityBatch is a batch of n one-partition tasks p0..p(n-1), the first
// half last run on executor a and the rest on b.
func affinityBatch(n int) ([]string, map[string]stream.Range, map[stream.PartitionID]string) {
	var keys []string
	ranges := map[string]stream.Range{}
	owner := map[stream.PartitionID]string{}
	for i := range n {
		r := stream.Range{Partition: stream.PartitionID(fmt.Sprintf("p%d", i))}
		keys = append(keys, r.Key())
		ranges[r.Key()] = r
		owner[r.Partition] = "a"
		if i >= n/2 {
			owner[r.Partition] = "b"
		}
	}
	return keys, ranges, owner
}

func placedOn(placed []placement) map[string][]string {
	out := map[string][]string{}
	for _, p := range placed {
		out[p.executor] = append(out[p.executor], p.keys...)
	}
	return out
}

// start records placed tasks as started, as dispatch does.
func start(b *scheduler.Batch, placed []placement, now time.Time) {
	for _, p := range placed {
		for _, k := range p.keys {
			b.Started(k, "att-"+k, p.executor, now)
		}
	}
}

// TestAffinityKeepsPartitionsWhereTheyRan pins the bug where each wave of a
// batch with more tasks than slots was spread over whichever executors had
// free slots, moving most partitions (and their warm readers) every batch.
func TestAffinityKeepsPartitionsWhereTheyRan(t *testing.T) {
	keys, ranges, owner := affinityBatch(16)
	b := scheduler.NewBatch(keys, scheduler.DefaultRetryPolicy)
	now := time.Now()
	a := newAffinity(keys, ranges, []scheduler.Executor{{ID: "a", Free: 2}, {ID: "b", Free: 2}}, owner)
	// Waves in which only one executor has free slots, as results come.
	for turn := range 8 {
		free := []scheduler.Executor{{ID: "a", Free: 2}, {ID: "b", Free: 0}}
		if turn%2 == 1 {
			free = []scheduler.Executor{{ID: "a", Free: 0}, {ID: "b", Free: 2}}
		}
		placed := a.place(b, now, free)
		for e, ks := range placedOn(placed) {
			if len(ks) > 2 {
				t.Fatalf("turn %d: %d tasks on %s with 2 free slots", turn, len(ks), e)
			}
			for _, k := range ks {
				if got := owner[ranges[k].Partition]; got != e {
					t.Errorf("turn %d: %s placed on %s, last ran on %s", turn, k, e, got)
				}
			}
		}
		start(b, placed, now)
	}
	if b.HasPending() {
		t.Errorf("tasks still pending after 8 turns of 2")
	}
}

func TestAffinityStealsFromTheBackOfTheLongestQueue(t *testing.T) {
	keys, ranges, owner := affinityBatch(8) // p0..p3 on a, p4..p7 on b
	b := scheduler.NewBatch(keys, scheduler.DefaultRetryPolicy)
	now := time.Now()
	a := newAffinity(keys, ranges, []scheduler.Executor{{ID: "a", Free: 1}, {ID: "b", Free: 1}}, owner)
	// a runs through its own queue while b is busy.
	for range 4 {
		placed := a.place(b, now, []scheduler.Executor{{ID: "a", Free: 1}})
		start(b, placed, now)
	}
	placed := a.place(b, now, []scheduler.Executor{{ID: "a", Free: 2}, {ID: "b", Free: 1}})
	got := placedOn(placed)
	if !slices.Equal(got["b"], []string{"p4"}) {
		t.Errorf("b took %v, want its next task p4", got["b"])
	}
	if !slices.Equal(got["a"], []string{"p7", "p6"}) {
		t.Errorf("a stole %v, want b's last tasks p7, p6", got["a"])
	}
}

func TestAffinityFallsBackToRetries(t *testing.T) {
	keys, ranges, owner := affinityBatch(2)
	policy := scheduler.DefaultRetryPolicy
	policy.BaseBackoff, policy.Jitter = time.Second, 0
	b := scheduler.NewBatch(keys, policy)
	now := time.Now()
	a := newAffinity(keys, ranges, []scheduler.Executor{{ID: "a", Free: 1}, {ID: "b", Free: 1}}, owner)
	start(b, a.place(b, now, []scheduler.Executor{{ID: "a", Free: 1}, {ID: "b", Free: 1}}), now)
	if _, err := b.Failed("att-p0", fmt.Errorf("boom"), false, now); err != nil {
		t.Fatal(err)
	}
	if placed := a.place(b, now, []scheduler.Executor{{ID: "b", Free: 1}}); len(placed) != 0 {
		t.Errorf("a retry backing off was placed: %v", placedOn(placed))
	}
	later := now.Add(2 * time.Second)
	got := placedOn(a.place(b, later, []scheduler.Executor{{ID: "b", Free: 1}}))
	if !slices.Equal(got["b"], []string{"p0"}) {
		t.Errorf("after the backoff b took %v, want the retry p0", got["b"])
	}
}

func TestAffinityPutBack(t *testing.T) {
	keys, ranges, owner := affinityBatch(4)
	b := scheduler.NewBatch(keys, scheduler.DefaultRetryPolicy)
	now := time.Now()
	a := newAffinity(keys, ranges, []scheduler.Executor{{ID: "a", Free: 2}, {ID: "b", Free: 2}}, owner)
	placed := a.place(b, now, []scheduler.Executor{{ID: "a", Free: 2}})
	for _, p := range placed {
		a.putBack(p) // the executor did not take them
	}
	got := placedOn(a.place(b, now, []scheduler.Executor{{ID: "a", Free: 2}}))
	if !slices.Equal(got["a"], []string{"p0", "p1"}) {
		t.Errorf("after putBack a took %v, want p0, p1 again", got["a"])
	}
}

// TestAffinityStealsOnlyWorthwhileWork: an idle executor steals from
// another's queue only the tasks that end sooner on it, each paying
// moveCost for its cold partition, than on the victim: short tasks are
// left where their partitions are warm.
func TestAffinityStealsOnlyWorthwhileWork(t *testing.T) {
	for _, tc := range []struct {
		taskTime time.Duration
		queued   int      // tasks waiting for a's slots
		want     []string // what a steals once b took p4 (p5, p6, p7 left)
	}{
		{0, 0, []string{"p7", "p6"}},                     // unknown: steal
		{time.Millisecond, 0, nil},                       // 3 ms on b; 11 ms each on a
		{5 * time.Millisecond, 0, []string{"p7"}},        // b 10 ms, a 15 ms
		{50 * time.Millisecond, 0, []string{"p7", "p6"}}, // b 50 ms, a 60 ms on its two slots
		{50 * time.Millisecond, 3, nil},                  // a has tasks waiting still
	} {
		keys, ranges, owner := affinityBatch(8) // p0..p3 on a, p4..p7 on b
		b := scheduler.NewBatch(keys, scheduler.DefaultRetryPolicy)
		now := time.Now()
		a := newAffinity(keys, ranges, []scheduler.Executor{{ID: "a", Free: 1}, {ID: "b", Free: 1}}, owner)
		a.taskTime = tc.taskTime
		for range 4 {
			start(b, a.place(b, now, []scheduler.Executor{{ID: "a", Free: 1, Slots: 1}}), now)
		}
		got := placedOn(a.place(b, now, []scheduler.Executor{{ID: "a", Free: 2, Slots: 2, Queued: tc.queued}, {ID: "b", Free: 1, Slots: 1}}))
		if !slices.Equal(got["b"], []string{"p4"}) || !slices.Equal(got["a"], tc.want) {
			t.Errorf("task time %s: b took %v, a stole %v; want [p4], %v", tc.taskTime, got["b"], got["a"], tc.want)
		}
	}
}
