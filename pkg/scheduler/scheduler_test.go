package scheduler

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sluicehq/sluice/pkg/stream"
	"pgregory.net/rapid"
)

func TestAssign(t *testing.T) {
	tasks := func(ps ...string) []TaskRef {
		var out []TaskRef
		for _, p := range ps {
			out = append(out, TaskRef{Key: p, Partition: stream.PartitionID(p)})
		}
		return out
	}
	tests := []struct {
		name  string
		tasks []TaskRef
		execs []Executor
		last  map[stream.PartitionID]string
		want  []Assignment
	}{
		{"no executors", tasks("a"), nil, nil, nil},
		{"no free slots", tasks("a"), []Executor{{ID: "e1"}}, nil, nil},
		{"least loaded first", tasks("a", "b", "c"), []Executor{{ID: "e1", Free: 1}, {ID: "e2", Free: 2}}, nil,
			[]Assignment{{"a", "e2"}, {"b", "e1"}, {"c", "e2"}}},
		{"sticky wins", tasks("a", "b"), []Executor{{ID: "e1", Free: 2}, {ID: "e2", Free: 2}},
			map[stream.PartitionID]string{"a": "e2", "b": "e2"},
			[]Assignment{{"a", "e2"}, {"b", "e2"}}},
		{"sticky owner full falls back", tasks("a", "b"), []Executor{{ID: "e1", Free: 1}, {ID: "e2", Free: 1}},
			map[stream.PartitionID]string{"a": "e1", "b": "e1"},
			[]Assignment{{"a", "e1"}, {"b", "e2"}}},
		{"sticky owner gone", tasks("a"), []Executor{{ID: "e1", Free: 1}},
			map[stream.PartitionID]string{"a": "gone"},
			[]Assignment{{"a", "e1"}}},
		{"more tasks than slots", tasks("a", "b", "c"), []Executor{{ID: "e1", Free: 2}}, nil,
			[]Assignment{{"a", "e1"}, {"b", "e1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Assign(tt.tasks, tt.execs, tt.last)
			if diff := cmp.Diff(tt.want, got); diff != "" && !(len(tt.want) == 0 && len(got) == 0) {
				t.Errorf("Assign() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAssignNeverOverbooks checks that no executor gets more tasks than it has
// free slots and no task is placed twice, for arbitrary inputs.
func TestAssignNeverOverbooks(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nExec := rapid.IntRange(0, 8).Draw(t, "executors")
		var execs []Executor
		free := map[string]int{}
		for i := range nExec {
			id := "e" + strconv.Itoa(i)
			f := rapid.IntRange(0, 4).Draw(t, "free")
			execs = append(execs, Executor{ID: id, Free: f})
			free[id] = f
		}
		nTasks := rapid.IntRange(0, 30).Draw(t, "tasks")
		var tasks []TaskRef
		last := map[stream.PartitionID]string{}
		for i := range nTasks {
			p := stream.PartitionID("p" + strconv.Itoa(i))
			tasks = append(tasks, TaskRef{Key: string(p), Partition: p})
			if nExec > 0 && rapid.Bool().Draw(t, "sticky") {
				last[p] = "e" + strconv.Itoa(rapid.IntRange(0, nExec-1).Draw(t, "owner"))
			}
		}
		got := Assign(tasks, execs, last)
		seen := map[string]bool{}
		used := map[string]int{}
		for _, a := range got {
			if seen[a.Key] {
				t.Fatalf("task %s assigned twice", a.Key)
			}
			seen[a.Key] = true
			used[a.Executor]++
		}
		total := 0
		for id, n := range used {
			if n > free[id] {
				t.Fatalf("executor %s got %d tasks for %d slots", id, n, free[id])
			}
		}
		for _, f := range free {
			total += f
		}
		if want := min(total, nTasks); len(got) != want {
			t.Fatalf("assigned %d tasks, want %d (slots %d, tasks %d)", len(got), want, total, nTasks)
		}
	})
}

func TestBatchRetriesThenFails(t *testing.T) {
	now := time.Unix(0, 0)
	p := RetryPolicy{MaxFailures: 2, BaseBackoff: time.Second, MaxBackoff: time.Minute}
	b := NewBatch([]string{"a"}, p)
	b.Started("a", "a1", "e1", now)
	if _, err := b.Failed("a1", errors.New("boom"), false, now); err != nil {
		t.Fatal(err)
	}
	if got := b.Ready(now); len(got) != 0 {
		t.Fatalf("ready before backoff: %v", got)
	}
	if got := b.Ready(now.Add(time.Second)); len(got) != 1 {
		t.Fatalf("not ready after backoff: %v", got)
	}
	b.Started("a", "a2", "e1", now.Add(time.Second))
	b.Failed("a2", errors.New("boom again"), false, now)
	if b.Err() == nil || b.Complete() {
		t.Fatalf("batch should have failed after 2 failures")
	}
}

func TestBatchPermanentFailsAtOnce(t *testing.T) {
	b := NewBatch([]string{"a", "b"}, DefaultRetryPolicy)
	b.Started("a", "a1", "e1", time.Time{})
	b.Failed("a1", errors.New("bad config"), true, time.Time{})
	if b.Err() == nil {
		t.Fatal("want failure")
	}
	if r := b.Ready(time.Time{}); len(r) != 0 {
		t.Fatalf("failed batch still offers tasks: %v", r)
	}
}

func TestBatchStaleResults(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBatch([]string{"a"}, RetryPolicy{MaxFailures: 3, Timeout: time.Minute})
	b.Started("a", "a1", "e1", now)
	if lost := b.ExecutorLost("e1", now); len(lost) != 1 {
		t.Fatalf("lost = %v", lost)
	}
	if _, err := b.Succeeded("a1"); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("result of a lost attempt accepted: %v", err)
	}
	b.Started("a", "a2", "e2", now)
	if exp := b.Expire(now.Add(time.Minute)); len(exp) != 1 {
		t.Fatalf("expired = %v", exp)
	}
	b.Started("a", "a3", "e2", now.Add(time.Minute))
	if _, err := b.Succeeded("a2"); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("result of a timed-out attempt accepted: %v", err)
	}
	if _, err := b.Succeeded("a3"); err != nil || !b.Complete() {
		t.Fatalf("live attempt refused: %v complete=%v", err, b.Complete())
	}
}

// TestBatchProperties drives a batch with random events and checks its
// safety rules: no task done twice, no two live attempts of one task, only
// live attempts succeed, complete only when every task is done.
func TestBatchProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 10).Draw(t, "tasks")
		var keys []string
		for i := range n {
			keys = append(keys, fmt.Sprintf("t%d", i))
		}
		b := NewBatch(keys, RetryPolicy{MaxFailures: 3, BaseBackoff: time.Second, MaxBackoff: 4 * time.Second, Timeout: 10 * time.Second})
		now := time.Unix(0, 0)
		live := map[string]string{} // attempt → key
		var stale []string
		doneKeys := map[string]bool{}
		next := 0
		for step := 0; step < 200 && !b.Complete() && b.Err() == nil; step++ {
			switch rapid.IntRange(0, 5).Draw(t, "event") {
			case 0: // dispatch everything ready
				for _, k := range b.Ready(now) {
					for _, lk := range live {
						if lk == k {
							t.Fatalf("task %s offered while attempt live", k)
						}
					}
					next++
					id := fmt.Sprintf("at%d", next)
					b.Started(k, id, fmt.Sprintf("e%d", next%3), now)
					live[id] = k
				}
			case 1, 2: // a live attempt succeeds
				if id, ok := anyKey(t, live); ok {
					k, err := b.Succeeded(id)
					if err != nil {
						t.Fatalf("live attempt %s refused: %v", id, err)
					}
					if doneKeys[k] {
						t.Fatalf("task %s done twice", k)
					}
					doneKeys[k] = true
					delete(live, id)
				}
			case 3: // a live attempt fails
				if id, ok := anyKey(t, live); ok {
					b.Failed(id, errors.New("x"), false, now)
					delete(live, id)
					stale = append(stale, id)
				}
			case 4: // an executor dies
				e := fmt.Sprintf("e%d", rapid.IntRange(0, 2).Draw(t, "exec"))
				for _, id := range b.ExecutorLost(e, now) {
					delete(live, id)
					stale = append(stale, id)
				}
			case 5: // time passes
				now = now.Add(time.Duration(rapid.IntRange(1, 12).Draw(t, "secs")) * time.Second)
				for _, id := range b.Expire(now) {
					delete(live, id)
					stale = append(stale, id)
				}
			}
			for _, id := range stale {
				if _, err := b.Succeeded(id); !errors.Is(err, ErrStaleAttempt) {
					t.Fatalf("stale attempt %s accepted", id)
				}
			}
		}
		if b.Complete() && len(doneKeys) != n {
			t.Fatalf("complete with %d of %d tasks done", len(doneKeys), n)
		}
	})
}

func anyKey(t *rapid.T, m map[string]string) (string, bool) {
	if len(m) == 0 {
		return "", false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[rapid.IntRange(0, len(keys)-1).Draw(t, "attempt")], true
}

func BenchmarkAssign10kPartitions500Executors(b *testing.B) {
	var tasks []TaskRef
	last := map[stream.PartitionID]string{}
	for i := range 10000 {
		p := stream.PartitionID(fmt.Sprintf("t/%d", i))
		tasks = append(tasks, TaskRef{Key: string(p), Partition: p})
		if i%2 == 0 {
			last[p] = fmt.Sprintf("e%d", i%500)
		}
	}
	execs := make([]Executor, 500)
	b.ReportAllocs()
	for b.Loop() {
		for i := range execs {
			execs[i] = Executor{ID: fmt.Sprintf("e%d", i), Free: 32}
		}
		Assign(tasks, execs, last)
	}
}

// TestExecutorLostRunsAgainAtOnce: a range whose executor died is ready
// again without back-off, but the loss still counts, so a range that keeps
// killing executors ends the batch.
func TestExecutorLostRunsAgainAtOnce(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBatch([]string{"a"}, RetryPolicy{MaxFailures: 2, Timeout: time.Minute, BaseBackoff: time.Second, MaxBackoff: time.Second})
	b.Started("a", "a1", "e1", now)
	b.ExecutorLost("e1", now)
	if r := b.Ready(now); len(r) != 1 {
		t.Fatalf("ready right after the loss = %v, want [a]", r)
	}
	b.Started("a", "a2", "e2", now)
	b.ExecutorLost("e2", now)
	if b.Err() == nil {
		t.Fatal("two lost executors with maxTaskFailures 2 should fail the batch")
	}
}
