// Package casstoretest holds the tests every casstore-based store
// (DynamoDB, S3) runs against its real service: the checkpointtest contract,
// deposing a leader as a second driver process does (RunContract), and the
// fencing tests beyond it (RunFencing): takeovers by a second store
// instance, and a deposed leader's write caught between its fence check and
// its write, interleaved deterministically through casstore's hooks.
package casstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/checkpointtest"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Store is what the tests drive: a checkpoint.Store with Claim.
type Store interface {
	checkpoint.Store
	Claim(ctx context.Context, f checkpoint.Fence) error
}

// Namespace returns a function that opens store instances on one fresh,
// empty namespace (table and prefix, or bucket and prefix), each with the
// given hook (nil for none). Instances are closed by the opener's cleanup.
type Namespace func(t *testing.T) (open func(hook func(point, job string)) Store)

// Two leaders' fences, as internal/cluster makes them: the election key and
// its create revision.
var (
	Old = checkpoint.Fence{Key: "/sluice/leader/694d9a1b2c3d0001", Epoch: 41}
	New = checkpoint.Fence{Key: "/sluice/leader/694d9a1b2c3d0007", Epoch: 57}
)

// RunContract runs the checkpointtest contract, each test on a fresh
// namespace. A leader is deposed as after an election: a second store
// instance (a second driver process) claims the namespace with a newer
// fence and writes with it.
func RunContract(t *testing.T, ns Namespace) {
	checkpointtest.Run(t, func(t *testing.T) (checkpoint.Store, checkpoint.Fence, func()) {
		open := ns(t)
		depose := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			other := open(nil)
			if err := other.Claim(ctx, New); err != nil {
				t.Fatalf("claim by the new leader: %v", err)
			}
			if err := other.PutJob(ctx, New, checkpoint.JobRecord{Name: "probe"}); err != nil {
				t.Fatalf("write with the new leader's fence: %v", err)
			}
			if err := other.DeleteJob(ctx, New, "probe"); err != nil {
				t.Fatalf("delete with the new leader's fence: %v", err)
			}
		}
		return open(nil), Old, depose
	})
}

// RunFencing runs the fencing tests.
func RunFencing(t *testing.T, ns Namespace) {
	t.Run("OldLeaderRejectedAfterTakeover", func(t *testing.T) { testTakeover(t, ns) })
	t.Run("WriteCaughtBetweenCheckAndWrite", func(t *testing.T) { testCaught(t, ns) })
	t.Run("TaskEndCaughtBetweenCheckAndWrite", func(t *testing.T) { testCaughtEnd(t, ns) })
	t.Run("InFlightWriteLandsBeforeNewLeaderLooks", func(t *testing.T) { testWindow(t, ns) })
	t.Run("ListJobsSealsCatalog", func(t *testing.T) { testListSeals(t, ns) })
	t.Run("FirstWriteSealsJob", func(t *testing.T) { testFirstWriteSeals(t, ns) })
	t.Run("WritesRacingTakeover", func(t *testing.T) { testRace(t, ns) })
	t.Run("ReplannedBatchHidesOldEnds", func(t *testing.T) { testReplanned(t, ns) })
	t.Run("SameEpochOtherKey", func(t *testing.T) { testSameEpoch(t, ns) })
	t.Run("ZeroFenceRefused", func(t *testing.T) { testZeroFence(t, ns) })
	t.Run("ClaimByOlderLeaderFails", func(t *testing.T) { testOlderClaim(t, ns) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantFenced(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("%s: got %v, want an error matching checkpoint.ErrFenced", what, err)
	}
}

var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

func same(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts...); d != "" {
		t.Fatalf("%s changed (-want +got):\n%s", what, d)
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func jobRec(name, state string) checkpoint.JobRecord {
	return checkpoint.JobRecord{Name: name, Spec: []byte(`{}`), State: state, Created: t0, Updated: t0}
}

func plan(b stream.BatchID, tag string) checkpoint.BatchPlan {
	return checkpoint.BatchPlan{
		Batch:   b,
		Ranges:  []stream.Range{{Partition: "s/0", From: stream.Position(fmt.Sprintf("%s-%d", tag, b))}},
		Start:   map[stream.PartitionID]stream.Position{"s/0": stream.Position(fmt.Sprintf("%s-%d", tag, b))},
		Planned: t0.Add(time.Duration(b) * time.Second),
	}
}

func commit(b stream.BatchID, tag string) checkpoint.Commit {
	return checkpoint.Commit{
		Batch:     b,
		Ends:      map[stream.PartitionID]stream.Position{"s/0": stream.Position(fmt.Sprintf("%s-end-%d", tag, b))},
		Committed: t0.Add(time.Duration(b) * time.Second),
	}
}

// testTakeover: a second driver process claims the store; every write of
// the first then fails and changes nothing, and the second sees what the
// first wrote before.
func testTakeover(t *testing.T, ns Namespace) {
	open := ns(t)
	a, b := open(nil), open(nil)
	ctx := ctxFor(t)
	must(t, "A: put job", a.PutJob(ctx, Old, jobRec("orders", "RUNNING")))
	must(t, "A: put plan 0", a.PutPlan(ctx, Old, "orders", plan(0, "a")))
	must(t, "A: put task end", a.PutTaskEnd(ctx, Old, "orders", 0, "s/0", stream.Position("a-end-0")))
	must(t, "A: put commit 0", a.PutCommit(ctx, Old, "orders", commit(0, "a")))
	must(t, "A: put plan 1", a.PutPlan(ctx, Old, "orders", plan(1, "a")))

	must(t, "B: claim", b.Claim(ctx, New))

	for _, tc := range []struct {
		name string
		err  error
	}{
		{"PutJob", a.PutJob(ctx, Old, jobRec("orders", "FAILED"))},
		{"PutJob of a new job", a.PutJob(ctx, Old, jobRec("other", "RUNNING"))},
		{"PutPlan", a.PutPlan(ctx, Old, "orders", plan(2, "a"))},
		{"PutTaskEnd", a.PutTaskEnd(ctx, Old, "orders", 1, "s/0", stream.Position("a-end-1"))},
		{"PutCommit", a.PutCommit(ctx, Old, "orders", commit(1, "a"))},
		{"Purge", a.Purge(ctx, Old, "orders", 1)},
		{"DeleteJob", a.DeleteJob(ctx, Old, "orders")},
		{"Claim", a.Claim(ctx, Old)},
	} {
		wantFenced(t, "A after takeover: "+tc.name, tc.err)
	}

	got, err := b.GetJob(ctx, "orders")
	must(t, "B: get job", err)
	same(t, "job", jobRec("orders", "RUNNING"), got)
	p, err := b.LatestPlan(ctx, "orders")
	must(t, "B: latest plan", err)
	same(t, "latest plan", plan(1, "a"), p)
	c, err := b.LatestCommit(ctx, "orders")
	must(t, "B: latest commit", err)
	same(t, "latest commit", commit(0, "a"), c)
	ends, err := b.TaskEnds(ctx, "orders", 0)
	must(t, "B: task ends", err)
	same(t, "task ends", map[string]stream.Position{"s/0": stream.Position("a-end-0")}, ends)
	if _, err := b.GetJob(ctx, "other"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("job put by the deposed leader: got %v, want ErrNotFound", err)
	}

	// The new leader replays batch 1 and goes on.
	must(t, "B: put task end", b.PutTaskEnd(ctx, New, "orders", 1, "s/0", stream.Position("b-end-1")))
	must(t, "B: put commit 1", b.PutCommit(ctx, New, "orders", commit(1, "b")))
	must(t, "B: put plan 2", b.PutPlan(ctx, New, "orders", plan(2, "b")))
	c, err = a.LatestCommit(ctx, "orders")
	must(t, "A: read after takeover", err)
	same(t, "commit seen by the old leader", commit(1, "b"), c)
}

// gate blocks writes of one job at one hook point until released, and
// reports when one is waiting there.
type gate struct {
	point, job string
	armed      atomic.Bool
	reached    chan struct{}
	release    chan struct{}
}

func newGate(point, job string) *gate {
	g := &gate{point: point, job: job, reached: make(chan struct{}), release: make(chan struct{})}
	g.armed.Store(true)
	return g
}

func (g *gate) hook(point, job string) {
	if point == g.point && job == g.job && g.armed.CompareAndSwap(true, false) {
		close(g.reached)
		<-g.release
	}
}

// caught runs write in a goroutine, waits until it is held at the gate,
// runs meanwhile, releases it, and returns write's error.
func caught(t *testing.T, g *gate, write func() error, meanwhile func()) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- write() }()
	select {
	case <-g.reached:
	case err := <-errc:
		t.Fatalf("write finished without reaching %s: %v", g.point, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("write did not reach %s", g.point)
	}
	func() {
		defer close(g.release) // also when meanwhile fails the test
		meanwhile()
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("held write did not finish after release")
		return nil
	}
}

// testCaught pins the race the head's compare and swap closes: the old
// leader's write passed the fence check, then the new leader claimed the
// store and read the job; the old write must not land afterwards.
func testCaught(t *testing.T, ns Namespace) {
	for _, tc := range []struct {
		name  string
		write func(s Store, ctx context.Context) error
	}{
		{"PutCommit", func(s Store, ctx context.Context) error { return s.PutCommit(ctx, Old, "orders", commit(1, "a")) }},
		{"PutPlan", func(s Store, ctx context.Context) error { return s.PutPlan(ctx, Old, "orders", plan(2, "a")) }},
		{"PutJob", func(s Store, ctx context.Context) error { return s.PutJob(ctx, Old, jobRec("orders", "FAILED")) }},
		{"Purge", func(s Store, ctx context.Context) error { return s.Purge(ctx, Old, "orders", 2) }},
		{"DeleteJob", func(s Store, ctx context.Context) error { return s.DeleteJob(ctx, Old, "orders") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open := ns(t)
			g := newGate(casstore.HookBeforeHeadWrite, "orders")
			a, b := open(g.hook), open(nil)
			ctx := ctxFor(t)
			g.armed.Store(false)
			must(t, "A: put job", a.PutJob(ctx, Old, jobRec("orders", "RUNNING")))
			must(t, "A: put plan 0", a.PutPlan(ctx, Old, "orders", plan(0, "a")))
			must(t, "A: put commit 0", a.PutCommit(ctx, Old, "orders", commit(0, "a")))
			must(t, "A: put plan 1", a.PutPlan(ctx, Old, "orders", plan(1, "a")))
			g.armed.Store(true)

			var seen [3]any
			err := caught(t, g, func() error { return tc.write(a, ctx) }, func() {
				must(t, "B: claim", b.Claim(ctx, New))
				var err error
				seen[0], err = b.LatestCommit(ctx, "orders")
				must(t, "B: latest commit", err)
				seen[1], err = b.LatestPlan(ctx, "orders")
				must(t, "B: latest plan", err)
				seen[2], err = b.GetJob(ctx, "orders")
				must(t, "B: get job", err)
			})
			wantFenced(t, "A's write held across the takeover", err)
			c, err := b.LatestCommit(ctx, "orders")
			must(t, "B: latest commit again", err)
			same(t, "latest commit", seen[0], c)
			p, err := b.LatestPlan(ctx, "orders")
			must(t, "B: latest plan again", err)
			same(t, "latest plan", seen[1], p)
			j, err := b.GetJob(ctx, "orders")
			must(t, "B: get job again", err)
			same(t, "job", seen[2], j)
		})
	}
}

// testCaughtEnd: a task end held across the takeover may land (it is a
// true end of the same plan) unless the new leader recorded that range
// meanwhile; it never replaces the new leader's end.
func testCaughtEnd(t *testing.T, ns Namespace) {
	open := ns(t)
	g := newGate(casstore.HookBeforeHeadWrite, "orders")
	a, b := open(g.hook), open(nil)
	ctx := ctxFor(t)
	g.armed.Store(false)
	must(t, "A: put plan 3", a.PutPlan(ctx, Old, "orders", plan(3, "a")))
	g.armed.Store(true)

	err := caught(t, g, func() error {
		return a.PutTaskEnd(ctx, Old, "orders", 3, "s/0", stream.Position("a-end"))
	}, func() {
		must(t, "B: claim", b.Claim(ctx, New))
		must(t, "B: put task end", b.PutTaskEnd(ctx, New, "orders", 3, "s/0", stream.Position("b-end")))
	})
	wantFenced(t, "A's task end held across B's end of the same range", err)
	ends, err := b.TaskEnds(ctx, "orders", 3)
	must(t, "B: task ends", err)
	same(t, "task ends", map[string]stream.Position{"s/0": stream.Position("b-end")}, ends)
}

// testWindow documents the window that remains: a write that passed the
// fence check before the takeover lands if the new leader has not looked
// at the job yet. It is then simply part of what the new leader reads.
// The old leader's next write fails.
func testWindow(t *testing.T, ns Namespace) {
	open := ns(t)
	g := newGate(casstore.HookFenceChecked, "orders")
	a, b := open(g.hook), open(nil)
	ctx := ctxFor(t)
	g.armed.Store(false)
	must(t, "A: put plan 0", a.PutPlan(ctx, Old, "orders", plan(0, "a")))
	g.armed.Store(true)

	err := caught(t, g, func() error { return a.PutCommit(ctx, Old, "orders", commit(0, "a")) }, func() {
		must(t, "B: claim", b.Claim(ctx, New))
	})
	must(t, "A's in-flight commit, before B read the job", err)
	c, err := b.LatestCommit(ctx, "orders")
	must(t, "B: latest commit", err)
	same(t, "commit B reads", commit(0, "a"), c)
	wantFenced(t, "A's next write", a.PutPlan(ctx, Old, "orders", plan(1, "a")))
}

// testListSeals: ListJobs, the new leader's first read at start, seals
// every listed job, so an old leader's held catalog change cannot land
// after it (a job the new leader resumes must not turn FAILED behind it).
func testListSeals(t *testing.T, ns Namespace) {
	open := ns(t)
	g := newGate(casstore.HookBeforeHeadWrite, "orders")
	a, b := open(g.hook), open(nil)
	ctx := ctxFor(t)
	g.armed.Store(false)
	must(t, "A: put job", a.PutJob(ctx, Old, jobRec("orders", "RUNNING")))
	g.armed.Store(true)

	var listed []checkpoint.JobRecord
	err := caught(t, g, func() error { return a.PutJob(ctx, Old, jobRec("orders", "FAILED")) }, func() {
		must(t, "B: claim", b.Claim(ctx, New))
		var err error
		listed, err = b.ListJobs(ctx)
		must(t, "B: list jobs", err)
	})
	wantFenced(t, "A's catalog change held across B's listing", err)
	same(t, "listed jobs", []checkpoint.JobRecord{jobRec("orders", "RUNNING")}, listed)
	got, err := b.GetJob(ctx, "orders")
	must(t, "B: get job", err)
	same(t, "job", jobRec("orders", "RUNNING"), got)
}

// testFirstWriteSeals: a new leader's first write of a job, even a task
// end, stamps the job's head, so an old head change held across it fails.
func testFirstWriteSeals(t *testing.T, ns Namespace) {
	open := ns(t)
	g := newGate(casstore.HookBeforeHeadWrite, "orders")
	a, b := open(g.hook), open(nil)
	ctx := ctxFor(t)
	g.armed.Store(false)
	must(t, "A: put plan 0", a.PutPlan(ctx, Old, "orders", plan(0, "a")))
	g.armed.Store(true)

	err := caught(t, g, func() error { return a.PutCommit(ctx, Old, "orders", commit(0, "a")) }, func() {
		must(t, "B: task end", b.PutTaskEnd(ctx, New, "orders", 0, "s/1", stream.Position("b-end")))
	})
	wantFenced(t, "A's commit held across B's first write of the job", err)
	if _, err := b.LatestCommit(ctx, "orders"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("latest commit: got %v, want ErrNotFound (A's commit must not land)", err)
	}
}

// testRace runs the old leader's batch loop at full speed while the new
// leader takes over at an arbitrary moment. After the new leader's claim
// and first read, nothing the old leader does may change what it sees, no
// old write that started after the claim may succeed, and the old leader
// must be stopped by ErrFenced.
func testRace(t *testing.T, ns Namespace) {
	open := ns(t)
	a, b := open(nil), open(nil)
	ctx := ctxFor(t)
	const job = "race"
	var claimed atomic.Bool
	var progress atomic.Int64
	var lateSuccesses atomic.Int64
	done := make(chan error, 1)
	go func() {
		do := func(write func() error) error {
			late := claimed.Load()
			err := write()
			if err == nil && late {
				lateSuccesses.Add(1)
			}
			return err
		}
		for n := stream.BatchID(0); ; n++ {
			for _, w := range []func() error{
				func() error { return a.PutPlan(ctx, Old, job, plan(n, "a")) },
				func() error {
					return a.PutTaskEnd(ctx, Old, job, n, "s/0", stream.Position(fmt.Sprintf("a-end-%d", n)))
				},
				func() error { return a.PutCommit(ctx, Old, job, commit(n, "a")) },
			} {
				if err := do(w); err != nil {
					done <- err
					return
				}
			}
			progress.Store(int64(n) + 1)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for progress.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("old leader made no progress")
		}
		time.Sleep(5 * time.Millisecond)
	}

	must(t, "B: claim", b.Claim(ctx, New))
	claimed.Store(true)
	c1, err := b.LatestCommit(ctx, job)
	must(t, "B: latest commit", err)
	p1, err := b.LatestPlan(ctx, job)
	must(t, "B: latest plan", err)
	e1, err := b.TaskEnds(ctx, job, p1.Batch)
	must(t, "B: task ends", err)

	select {
	case err := <-done:
		wantFenced(t, "old leader's loop", err)
	case <-time.After(30 * time.Second):
		t.Fatal("old leader still writing 30s after the takeover")
	}
	if n := lateSuccesses.Load(); n != 0 {
		t.Fatalf("%d writes of the old leader that started after the claim succeeded", n)
	}
	c2, err := b.LatestCommit(ctx, job)
	must(t, "B: latest commit again", err)
	same(t, "latest commit", c1, c2)
	p2, err := b.LatestPlan(ctx, job)
	must(t, "B: latest plan again", err)
	same(t, "latest plan", p1, p2)
	if p1.Batch != c1.Batch && p1.Batch != c1.Batch+1 {
		t.Fatalf("latest plan %d, latest commit %d: want the plan at most one ahead", p1.Batch, c1.Batch)
	}
	// A task end may still have landed (rule 4 of casstore), but only
	// under the recorded plan of the batch: never another range's.
	e2, err := b.TaskEnds(ctx, job, p1.Batch)
	must(t, "B: task ends again", err)
	for k, v := range e2 {
		if old, ok := e1[k]; ok && string(old) != string(v) {
			t.Fatalf("task end %s changed from %q to %q after B read it", k, old, v)
		}
		if want := fmt.Sprintf("a-end-%d", p1.Batch); string(v) != want {
			t.Fatalf("task end %s = %q, want %q", k, v, want)
		}
	}
	// The new leader carries on from what it read.
	next := c1.Batch + 1
	must(t, "B: put plan", b.PutPlan(ctx, New, job, plan(next, "b")))
	must(t, "B: put commit", b.PutCommit(ctx, New, job, commit(next, "b")))
	c3, err := b.LatestCommit(ctx, job)
	must(t, "B: latest commit after its own", err)
	same(t, "B's commit", commit(next, "b"), c3)
}

// testReplanned: when the new leader re-plans a batch (it had not seen the
// old plan), ends the old leader recorded for its own plan of that batch
// are ignored; when it replays the recorded plan, they count.
func testReplanned(t *testing.T, ns Namespace) {
	open := ns(t)
	a, b := open(nil), open(nil)
	ctx := ctxFor(t)
	must(t, "A: plan 5", a.PutPlan(ctx, Old, "j", plan(5, "a")))
	must(t, "A: end", a.PutTaskEnd(ctx, Old, "j", 5, "s/0", stream.Position("a-end")))
	must(t, "B: claim", b.Claim(ctx, New))
	ends, err := b.TaskEnds(ctx, "j", 5)
	must(t, "B: task ends of the recorded plan", err)
	same(t, "ends of the recorded plan", map[string]stream.Position{"s/0": stream.Position("a-end")}, ends)

	must(t, "B: re-plan 5", b.PutPlan(ctx, New, "j", plan(5, "b")))
	ends, err = b.TaskEnds(ctx, "j", 5)
	must(t, "B: task ends after re-plan", err)
	same(t, "ends after re-plan", map[string]stream.Position{}, ends)
	must(t, "B: end", b.PutTaskEnd(ctx, New, "j", 5, "s/1", stream.Position("b-end")))
	ends, err = b.TaskEnds(ctx, "j", 5)
	must(t, "B: task ends", err)
	same(t, "ends", map[string]stream.Position{"s/1": stream.Position("b-end")}, ends)
}

// testSameEpoch: two driver groups wrongly sharing a namespace can produce
// equal epochs with different election keys; neither may pass for the
// other.
func testSameEpoch(t *testing.T, ns Namespace) {
	open := ns(t)
	s := open(nil)
	ctx := ctxFor(t)
	must(t, "put job", s.PutJob(ctx, Old, jobRec("j", "RUNNING")))
	twin := checkpoint.Fence{Key: "/other-group/leader/1", Epoch: Old.Epoch}
	wantFenced(t, "write with the same epoch and another key", s.PutJob(ctx, twin, jobRec("j", "STOPPED")))
}

func testZeroFence(t *testing.T, ns Namespace) {
	open := ns(t)
	s := open(nil)
	ctx := ctxFor(t)
	err := s.PutJob(ctx, checkpoint.Fence{}, jobRec("j", "RUNNING"))
	if err == nil || errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("write with the zero fence: got %v, want a \"not a leadership fence\" error", err)
	}
	if _, err := s.GetJob(ctx, "j"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("job written with the zero fence: got %v, want ErrNotFound", err)
	}
}

// testOlderClaim: a driver that won an older term and wakes up late cannot
// claim the store back.
func testOlderClaim(t *testing.T, ns Namespace) {
	open := ns(t)
	s := open(nil)
	ctx := ctxFor(t)
	must(t, "claim by the new leader", s.Claim(ctx, New))
	wantFenced(t, "claim by the old leader", s.Claim(ctx, Old))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Claim(ctx, New) })
	}
	wg.Wait()
	for i, err := range errs {
		must(t, fmt.Sprintf("concurrent claim %d by the same leader", i), err)
	}
}
