package scheduler

import (
	"errors"
	"fmt"
	"slices"
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
			map[stream.PartitionID]string{"a": "e2", "b": "e1"},
			[]Assignment{{"a", "e2"}, {"b", "e1"}}},
		{"sticky up to a fair share", tasks("a", "b"), []Executor{{ID: "e1", Free: 2}, {ID: "e2", Free: 2}},
			map[stream.PartitionID]string{"a": "e2", "b": "e2"},
			[]Assignment{{"a", "e2"}, {"b", "e1"}}},
		{"a new executor takes its share, owners keep the rest", tasks("a", "b", "c", "d"),
			[]Executor{{ID: "e1", Free: 2}, {ID: "e2", Free: 2}, {ID: "e3", Free: 2}},
			map[stream.PartitionID]string{"a": "e1", "b": "e1", "c": "e2", "d": "e2"},
			[]Assignment{{"a", "e1"}, {"c", "e2"}, {"b", "e3"}, {"d", "e2"}}},
		{"a balanced spread stays", tasks("a", "b", "c", "d"),
			[]Executor{{ID: "e1", Free: 2}, {ID: "e2", Free: 2}, {ID: "e3", Free: 2}},
			map[stream.PartitionID]string{"a": "e1", "b": "e3", "c": "e2", "d": "e2"},
			[]Assignment{{"a", "e1"}, {"b", "e3"}, {"c", "e2"}, {"d", "e2"}}},
		{"fewer tasks than executors stay", tasks("a"), []Executor{{ID: "e1", Free: 2}, {ID: "e2", Free: 2}},
			map[stream.PartitionID]string{"a": "e2"},
			[]Assignment{{"a", "e2"}}},
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
	if _, err := b.Succeeded("a1", time.Now()); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("result of a lost attempt accepted: %v", err)
	}
	b.Started("a", "a2", "e2", now)
	if exp := b.Expire(now.Add(time.Minute)); len(exp) != 1 {
		t.Fatalf("expired = %v", exp)
	}
	b.Started("a", "a3", "e2", now.Add(time.Minute))
	if _, err := b.Succeeded("a2", time.Now()); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("result of a timed-out attempt accepted: %v", err)
	}
	if _, err := b.Succeeded("a3", time.Now()); err != nil || !b.Complete() {
		t.Fatalf("live attempt refused: %v complete=%v", err, b.Complete())
	}
}

// TestBatchProperties drives a batch with random events and checks its
// safety rules: no task done twice, at most two live attempts of one task
// (the second a speculative copy), only live attempts succeed, a success
// supersedes only its own task's twin, complete only when every task is
// done.
func TestBatchProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 10).Draw(t, "tasks")
		var keys []string
		for i := range n {
			keys = append(keys, fmt.Sprintf("t%d", i))
		}
		spec := Speculation{Enabled: rapid.Bool().Draw(t, "speculate"), Quantile: rapid.Float64Range(0, 1).Draw(t, "quantile"),
			Multiplier: 1.5, MinTaskRuntime: time.Second}
		b := NewBatch(keys, RetryPolicy{MaxFailures: 3, BaseBackoff: time.Second, MaxBackoff: 4 * time.Second, Timeout: 10 * time.Second,
			Speculation: spec})
		now := time.Unix(0, 0)
		live := map[string]string{} // attempt → key
		var stale []string
		doneKeys := map[string]bool{}
		next := 0
		for step := 0; step < 200 && !b.Complete() && b.Err() == nil; step++ {
			switch rapid.IntRange(0, 6).Draw(t, "event") {
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
					k, err := b.Succeeded(id, now)
					if err != nil {
						t.Fatalf("live attempt %s refused: %v", id, err)
					}
					if doneKeys[k] {
						t.Fatalf("task %s done twice", k)
					}
					doneKeys[k] = true
					delete(live, id)
					for _, lost := range b.Superseded() {
						if live[lost] != k {
							t.Fatalf("attempt %s of %s superseded by %s's success", lost, live[lost], k)
						}
						delete(live, lost)
						stale = append(stale, lost)
					}
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
			case 6: // stragglers get a copy on another executor
				for _, st := range b.Stragglers(now) {
					if !spec.Enabled {
						t.Fatalf("straggler %s with speculation off", st.Key)
					}
					next++
					id := fmt.Sprintf("copy%d", next)
					e := "e0"
					if st.Executor == e {
						e = "e1"
					}
					b.StartedCopy(st.Key, id, e, now)
					live[id] = st.Key
				}
			case 5: // time passes
				now = now.Add(time.Duration(rapid.IntRange(1, 12).Draw(t, "secs")) * time.Second)
				for _, id := range b.Expire(now) {
					delete(live, id)
					stale = append(stale, id)
				}
			}
			perKey := map[string]int{}
			for _, k := range live {
				if perKey[k]++; perKey[k] > 2 {
					t.Fatalf("task %s has %d live attempts", k, perKey[k])
				}
			}
			for _, id := range stale {
				if _, err := b.Succeeded(id, now); !errors.Is(err, ErrStaleAttempt) {
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

// TestSpeculation follows Spark's rules on a fake clock: no copy before
// quantile of the tasks succeeded; a straggler is a task running past
// multiplier × the median duration (at least minTaskRuntime); one copy per
// task, on another executor; the first attempt to succeed wins and the
// other is superseded; a failure of one twin leaves the other running.
func TestSpeculation(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	policy := RetryPolicy{MaxFailures: 4, BaseBackoff: time.Second, MaxBackoff: time.Second,
		Speculation: Speculation{Enabled: true, Quantile: 0.75, Multiplier: 1.5, MinTaskRuntime: 100 * time.Millisecond}}
	// start runs a, b, c, d on e1 at t0; a, b, c finish after 100, 200 and
	// 300 ms (median 200 ms: stragglers after 300 ms).
	start := func(t *testing.T, p RetryPolicy, finished int) *Batch {
		t.Helper()
		b := NewBatch([]string{"a", "b", "c", "d"}, p)
		for _, k := range b.Ready(t0) {
			b.Started(k, k+"1", "e1", t0)
		}
		for i, k := range []string{"a", "b", "c"}[:finished] {
			if _, err := b.Succeeded(k+"1", ms(100*(i+1))); err != nil {
				t.Fatal(err)
			}
		}
		return b
	}
	tests := []struct {
		name     string
		policy   func(RetryPolicy) RetryPolicy
		finished int
		at       int // ms
		want     []Straggler
	}{
		{"off", func(p RetryPolicy) RetryPolicy { p.Speculation.Enabled = false; return p }, 3, 10_000, nil},
		{"before the quantile", nil, 2, 10_000, nil},
		{"not yet slow", nil, 3, 300, nil},
		{"a straggler", nil, 3, 301, []Straggler{{Key: "d", Executor: "e1"}}},
		{"minTaskRuntime floors the threshold", func(p RetryPolicy) RetryPolicy { p.Speculation.MinTaskRuntime = time.Second; return p }, 3, 999, nil},
		{"quantile 0 waits for one success", func(p RetryPolicy) RetryPolicy { p.Speculation.Quantile = 0; return p }, 0, 10_000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy
			if tt.policy != nil {
				p = tt.policy(p)
			}
			b := start(t, p, tt.finished)
			if diff := cmp.Diff(tt.want, b.Stragglers(ms(tt.at))); diff != "" {
				t.Errorf("stragglers at %d ms (-want +got):\n%s", tt.at, diff)
			}
		})
	}

	t.Run("the copy wins", func(t *testing.T) {
		b := start(t, policy, 3)
		if w := b.NextWake(); !w.Equal(ms(300)) {
			t.Errorf("next wake %v, want the straggler threshold at 300 ms", w.Sub(t0))
		}
		b.StartedCopy("d", "d2", "e2", ms(301))
		if got := b.Stragglers(ms(5000)); len(got) != 0 {
			t.Fatalf("speculated twice: %v", got)
		}
		if k, err := b.Succeeded("d2", ms(350)); err != nil || k != "d" {
			t.Fatalf("copy: %q %v", k, err)
		}
		if got := b.Superseded(); !slices.Equal(got, []string{"d1"}) {
			t.Fatalf("superseded %v, want [d1]", got)
		}
		if got := b.Superseded(); len(got) != 0 {
			t.Fatalf("superseded handed out twice: %v", got)
		}
		if _, err := b.Succeeded("d1", ms(400)); !errors.Is(err, ErrStaleAttempt) {
			t.Fatalf("the original after the copy won: %v", err)
		}
		if !b.Complete() {
			t.Fatal("not complete")
		}
	})
	t.Run("the original wins", func(t *testing.T) {
		b := start(t, policy, 3)
		b.StartedCopy("d", "d2", "e2", ms(301))
		if _, err := b.Succeeded("d1", ms(320)); err != nil {
			t.Fatal(err)
		}
		if got := b.Superseded(); !slices.Equal(got, []string{"d2"}) {
			t.Fatalf("superseded %v, want [d2]", got)
		}
		if _, err := b.Failed("d2", errors.New("cancelled"), false, ms(330)); !errors.Is(err, ErrStaleAttempt) {
			t.Fatalf("the cancelled copy's failure: %v", err)
		}
		if !b.Complete() || b.Retries() != 0 {
			t.Fatalf("complete %v, retries %d", b.Complete(), b.Retries())
		}
	})
	t.Run("a twin's failure leaves the other running", func(t *testing.T) {
		b := start(t, policy, 3)
		b.StartedCopy("d", "d2", "e2", ms(301))
		if _, err := b.Failed("d1", errors.New("broker hiccup"), false, ms(310)); err != nil {
			t.Fatal(err)
		}
		if r := b.Ready(ms(5000)); len(r) != 0 {
			t.Fatalf("retried %v while the copy runs", r)
		}
		if b.NumLive() != 1 || b.Retries() != 1 {
			t.Fatalf("live %d, retries %d; want the copy alone and one failure", b.NumLive(), b.Retries())
		}
		if _, err := b.Succeeded("d2", ms(400)); err != nil || !b.Complete() {
			t.Fatalf("copy: %v, complete %v", err, b.Complete())
		}
	})
	t.Run("both twins fail: retried", func(t *testing.T) {
		b := start(t, policy, 3)
		b.StartedCopy("d", "d2", "e2", ms(301))
		b.Failed("d1", errors.New("x"), false, ms(310))
		b.Failed("d2", errors.New("y"), false, ms(320))
		if r := b.Ready(ms(320 + 1000)); !slices.Equal(r, []string{"d"}) {
			t.Fatalf("ready %v, want d after its back-off", r)
		}
	})
	t.Run("a permanent failure supersedes the twin", func(t *testing.T) {
		b := start(t, policy, 3)
		b.StartedCopy("d", "d2", "e2", ms(301))
		b.Failed("d2", errors.New("bad config"), true, ms(310))
		if b.Err() == nil || !slices.Equal(b.Superseded(), []string{"d1"}) {
			t.Fatalf("err %v; the original must be superseded", b.Err())
		}
	})
	t.Run("the copy's executor is lost", func(t *testing.T) {
		b := start(t, policy, 3)
		b.StartedCopy("d", "d2", "e2", ms(301))
		if lost := b.ExecutorLost("e2", ms(310)); !slices.Equal(lost, []string{"d2"}) {
			t.Fatalf("lost %v", lost)
		}
		if k, ok := b.Running("d1"); !ok || k != "d" {
			t.Fatal("the original stopped running")
		}
	})
}

// TestAssignSettles checks that an assignment fed back as the last owners,
// with the same free slots, is kept: tasks move when executors come or go,
// never back and forth between batches.
func TestAssignSettles(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nExec := rapid.IntRange(1, 8).Draw(t, "executors")
		var execs []Executor
		for i := range nExec {
			execs = append(execs, Executor{ID: "e" + strconv.Itoa(i), Free: rapid.IntRange(0, 4).Draw(t, "free")})
		}
		nTasks := rapid.IntRange(0, 30).Draw(t, "tasks")
		var tasks []TaskRef
		last := map[stream.PartitionID]string{}
		for i := range nTasks {
			p := stream.PartitionID("p" + strconv.Itoa(i))
			tasks = append(tasks, TaskRef{Key: string(p), Partition: p})
			if rapid.Bool().Draw(t, "sticky") {
				last[p] = "e" + strconv.Itoa(rapid.IntRange(0, nExec-1).Draw(t, "owner"))
			}
		}
		first := map[string]string{}
		for _, a := range Assign(tasks, execs, last) {
			first[a.Key] = a.Executor
			last[stream.PartitionID(a.Key)] = a.Executor
		}
		// With fewer slots than tasks, which tasks wait may differ; a
		// task placed both times must be placed alike.
		second := map[string]string{}
		for _, a := range Assign(tasks, execs, last) {
			if _, ok := first[a.Key]; ok {
				second[a.Key] = a.Executor
			}
		}
		for k := range first {
			if _, ok := second[k]; !ok {
				delete(first, k)
			}
		}
		if diff := cmp.Diff(first, second); diff != "" {
			t.Fatalf("the assignment moved when fed back (-first +second):\n%s", diff)
		}
	})
}

// TestReadyNIsBoundedAndOrdered checks that ReadyN returns the first n
// tasks Ready would, without repeating a task that failed twice.
func TestReadyNIsBoundedAndOrdered(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBatch([]string{"a", "b", "c", "d"}, RetryPolicy{MaxFailures: 5})
	if got := b.ReadyN(now, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ReadyN(2) = %v, want a, b", got)
	}
	b.Started("a", "a1", "e", now)
	if _, err := b.Failed("a1", errors.New("x"), false, now); err != nil {
		t.Fatal(err)
	}
	b.Started("a", "a2", "e", now)
	if _, err := b.Failed("a2", errors.New("x"), false, now); err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour)
	if got, want := b.ReadyN(later, 10), b.Ready(later); len(got) != 4 || !slices.Equal(got, want) {
		t.Errorf("ReadyN = %v, Ready = %v, want the four tasks once each, the same", got, want)
	}
	if got, want := b.ReadyN(later, 3), b.Ready(later)[:3]; !slices.Equal(got, want) {
		t.Errorf("ReadyN(3) = %v, want Ready's first three %v", got, want)
	}
	if b.Retries() != 2 {
		t.Errorf("Retries() = %d, want 2", b.Retries())
	}
}

// TestNextWakeDropsStartedTasks pins the bug where a batch dispatched by
// per-executor queues (never through ReadyN) kept the entries of its
// started tasks at the front of pending, so that every turn's NextWake
// scanned all of them again: quadratic in the batch's tasks.
func TestNextWakeDropsStartedTasks(t *testing.T) {
	now := time.Unix(1000, 0)
	keys := []string{"a", "b", "c", "d", "e", "f"}
	b := NewBatch(keys, RetryPolicy{MaxFailures: 3})
	for _, k := range []string{"a", "b", "d"} { // c is still pending: d stays behind it
		b.Started(k, k+"1", "e", now)
	}
	if !b.NextWake().IsZero() {
		t.Errorf("NextWake = %v, want zero (pending tasks are ready, nothing times out)", b.NextWake())
	}
	if got := len(b.pending); got != 4 {
		t.Errorf("%d entries in pending after NextWake, want 4 (c, d, e, f: a and b dropped)", got)
	}
	if got := b.Ready(now); !slices.Equal(got, []string{"c", "e", "f"}) {
		t.Errorf("Ready = %v, want c, e, f", got)
	}
}
