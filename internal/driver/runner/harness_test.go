package runner

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/local"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The harness runs a Loop against fakes of its seams, as Nomad's scheduler
// harness records plans: a fake clock that moves only when the test moves
// it, a dispatcher that records every task sent and lets the test answer
// it, a source with a fixed plan, and a real local checkpoint store. The
// test waits on channels for what the loop does next; nothing sleeps.

// waitLimit bounds a wait for the loop's next step; reaching it is a test
// failure (the loop is stuck), never part of the behaviour under test.
const waitLimit = 20 * time.Second

// fakeClock is a Clock whose time moves only on Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
	// armed receives (without blocking) whenever a timer is armed.
	armed chan struct{}
	// idle reports whether the loop has nothing left to take (no result
	// or notice waiting); quietArms counts the timers armed while it was
	// idle. The loop arms its timer right before it waits, after it
	// handled everything it took, so a quiet arm after a delivery means
	// the delivery was handled.
	idle      func() bool
	quietArms int
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC), timers: map[*fakeTimer]bool{}, armed: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the time by d and fires the timers due by then; it
// reports whether any fired, and the quiet arms counted before they did
// (read under the same lock, so that no arm of the loop's before the move
// can be taken for its answer to it).
func (c *fakeClock) Advance(d time.Duration) (fired bool, before int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before = c.quietArms
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			delete(c.timers, t)
			fired = true
			select {
			case t.ch <- c.now:
			default:
			}
		}
	}
	return fired, before
}

// quietAfter runs give under the clock's lock and returns the quiet arms
// counted before it. The loop's arm and its idle check happen under the
// same lock, so an arm either comes before give (counted in the result)
// or after it, when it is quiet only once the loop took what give handed
// it. Reading the count outside the lock instead lets an arm made just
// before give pass for the loop's answer to it.
func (c *fakeClock) quietAfter(give func()) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	give()
	return c.quietArms
}

func (c *fakeClock) quiet() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.quietArms
}

// waitQuiet returns once a timer was armed quietly after the after'th
// such arm, or when exited is closed (the loop returned).
func (c *fakeClock) waitQuiet(t *testing.T, after int, exited <-chan struct{}) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for c.quiet() <= after {
		select {
		case <-c.armed:
		case <-exited:
			return
		case <-deadline.C:
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("the loop never came back to wait on its clock (quiet arms %d, want > %d)\n%s", c.quiet(), after, buf)
		}
	}
}

// waitArmed returns once a timer is armed for a time after now: the loop
// then waits on it (it arms its timer right before it selects).
func (c *fakeClock) waitArmed(t *testing.T) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for tm := range c.timers {
			if tm.at.After(c.now) {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		select {
		case <-c.armed:
		case <-deadline.C:
			t.Fatal("the loop never waited on its clock")
		}
	}
}

type fakeTimer struct {
	c  *fakeClock
	ch chan time.Time
	at time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

// Reset and Stop drain the channel, as Go's timers do since Go 1.23: no
// stale tick is received after either.
func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	was := c.timers[t]
	t.drain()
	t.at = c.now.Add(d)
	if d <= 0 {
		t.ch <- c.now
		delete(c.timers, t)
		return was
	}
	c.timers[t] = true
	if c.idle == nil || c.idle() {
		c.quietArms++
	}
	select {
	case c.armed <- struct{}{}:
	default:
	}
	return was
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.c.timers[t]
	delete(t.c.timers, t)
	t.drain()
	return was
}

func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

// sent is one task the loop dispatched, and where.
type sent struct {
	executor string
	task     *clusterv1.Task
}

// fakeDispatcher is a registry of executors that never run anything: the
// test answers each task it sends.
type fakeDispatcher struct {
	mu        sync.Mutex
	slots     map[string]int
	running   map[string]string // attempt id → executor
	cancelled []string
	sub       *Subscription
	sent      chan sent
}

func newFakeDispatcher(slots map[string]int) *fakeDispatcher {
	return &fakeDispatcher{slots: slots, running: map[string]string{}, sent: make(chan sent, 4096)}
}

func (f *fakeDispatcher) Snapshot(cost int) []scheduler.Executor {
	f.mu.Lock()
	defer f.mu.Unlock()
	used := map[string]int{}
	for _, e := range f.running {
		used[e]++
	}
	var out []scheduler.Executor
	for id, n := range f.slots {
		out = append(out, scheduler.Executor{ID: id, Free: max(n-used[id], 0), Slots: n, Queued: max(used[id]-n, 0), QueueRoom: 1000})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeDispatcher) Dispatch(_ context.Context, executor string, _ *sluicev1.JobSpec, tasks []*clusterv1.Task) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.slots[executor]; !ok {
		return 0 // it left
	}
	for _, t := range tasks {
		f.running[t.GetAttemptId()] = executor
		f.sent <- sent{executor: executor, task: t}
	}
	return len(tasks)
}

func (f *fakeDispatcher) Cancel(attempts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range attempts {
		if _, ok := f.running[a]; ok {
			delete(f.running, a)
			f.cancelled = append(f.cancelled, a)
		}
	}
}

func (f *fakeDispatcher) Subscribe(string) (*Subscription, func()) {
	s := NewSubscription()
	f.mu.Lock()
	f.sub = s
	f.mu.Unlock()
	return s, func() {}
}

// leave takes executor away and returns the attempts it ran, as the
// registry's lost notice names them.
func (f *fakeDispatcher) leave(executor string) LostNotice {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.slots, executor)
	n := LostNotice{Executor: executor}
	for a, e := range f.running {
		if e == executor {
			n.Attempts = append(n.Attempts, a)
			delete(f.running, a)
		}
	}
	sort.Strings(n.Attempts)
	return n
}

func (f *fakeDispatcher) wasCancelled(attempt string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.cancelled {
		if a == attempt {
			return true
		}
	}
	return false
}

// idle reports whether the loop took every result and notice sent.
func (f *fakeDispatcher) idle() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sub == nil || (len(f.sub.Results) == 0 && len(f.sub.Lost) == 0)
}

// join connects a new executor with slots.
func (f *fakeDispatcher) join(executor string, slots int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slots[executor] = slots
}

// finished frees the attempt's slot, as an executor's result does.
func (f *fakeDispatcher) finished(attempt string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.running, attempt)
}

// fakeSource plans one batch of n partitions, each range ending at
// position "end"; later plans are empty.
type fakeSource struct {
	n     int
	fails []error // returned by the first plans, in order
	calls int
}

func (s *fakeSource) Plan(_ context.Context, req connectors.PlanRequest) (connectors.Plan, error) {
	s.calls++
	if len(s.fails) > 0 {
		err := s.fails[0]
		s.fails = s.fails[1:]
		return connectors.Plan{}, err
	}
	if len(req.Committed) > 0 {
		return connectors.Plan{Exhausted: true}, nil
	}
	p := connectors.Plan{Start: map[stream.PartitionID]stream.Position{}, Exhausted: true}
	for i := range s.n {
		id := stream.PartitionID(fmt.Sprintf("t/%d", i))
		p.Ranges = append(p.Ranges, stream.Range{Partition: id, From: stream.Position("start"), Until: stream.Position("end")})
		p.Start[id] = stream.Position("start")
	}
	return p, nil
}

func (s *fakeSource) Identity() string { return "fake" }
func (s *fakeSource) Close() error     { return nil }

// fencedStore is a store whose commits are fenced: another leader claimed
// it.
type fencedStore struct{ checkpoint.Store }

func (fencedStore) PutCommit(context.Context, checkpoint.Fence, string, checkpoint.Commit) error {
	return fmt.Errorf("commit: %w", checkpoint.ErrFenced)
}

// recorder is the Status and Metrics of a loop under test.
type recorder struct {
	mu       sync.Mutex
	errs     []string
	done     []*sluicev1.BatchProgress
	refused  map[string]int
	copies   int
	groupErr int
}

func (r *recorder) SetCurrent(string, *sluicev1.BatchRun, bool) {}
func (r *recorder) SetError(_, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if msg != "" {
		r.errs = append(r.errs, msg)
	}
}
func (r *recorder) BatchDone(_ string, p *sluicev1.BatchProgress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = append(r.done, p)
}
func (r *recorder) hasError(part string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		if strings.Contains(e, part) {
			return true
		}
	}
	return false
}
func (r *recorder) SourceMetrics(string, map[string]float64) {}
func (r *recorder) DropSourceMetric(string, string)          {}
func (r *recorder) ResultRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused[reason]++
}
func (r *recorder) Speculated(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.copies++
}
func (r *recorder) GroupCommitError(string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.groupErr++
}

// harness is one loop under test and its fakes.
type harness struct {
	t     *testing.T
	clock *fakeClock
	reg   *fakeDispatcher
	rec   *recorder
	store checkpoint.Store
	done  chan error
	// exited is closed when Run returned.
	exited chan struct{}
	// wantCancelled is an attempt the loop must have cancelled by the
	// time Run returns (it loses a speculative race).
	wantCancelled string
}

// jobYAML is the job every case runs, with its trigger (once unless the
// setup says) and extra (limits, speculation) appended. Its source and
// sink are never opened: the harness gives the loop a fake source and a
// discard sink.
const jobYAML = `
name: j
source: {kafka: {bootstrapServers: "127.0.0.1:9", subscribe: [t]}}
sink: {discard: {}}
`

type setup struct {
	extra      string
	trigger    string            // "{once: true}" when empty
	source     connectors.Source // a fakeSource of partitions when nil
	partitions int
	executors  map[string]int
	fenced     bool
	planFails  []error
	// recorded is a plan of batch 0 recorded by an earlier leader, not
	// committed: the loop must run it again, not plan anew.
	recorded *checkpoint.BatchPlan
}

func startLoop(t *testing.T, s setup) *harness {
	t.Helper()
	trigger := s.trigger
	if trigger == "" {
		trigger = "{once: true}"
	}
	spec, err := jobspec.ParseYAML([]byte(jobYAML + "trigger: " + trigger + "\n" + s.extra))
	if err != nil {
		t.Fatal(err)
	}
	job, err := jobspec.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := job.NewSink(io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	var store checkpoint.Store
	if store, err = local.Open(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if s.recorded != nil {
		if err := store.PutPlan(context.Background(), checkpoint.Fence{Epoch: 2}, "j", *s.recorded); err != nil {
			t.Fatal(err)
		}
	}
	if s.fenced {
		store = fencedStore{store}
	}
	h := &harness{t: t, clock: newFakeClock(), reg: newFakeDispatcher(s.executors), rec: &recorder{refused: map[string]int{}},
		store: store, done: make(chan error, 1), exited: make(chan struct{})}
	h.clock.idle = h.reg.idle
	src := s.source
	if src == nil {
		src = &fakeSource{n: s.partitions, fails: s.planFails}
	}
	l := New(Config{Job: job, Incarnation: "i1", Source: src, Sink: sink, Store: store,
		Fence: checkpoint.Fence{Epoch: 3}, LoopID: 1, Dispatcher: h.reg, Status: h.rec, Metrics: h.rec, Clock: h.clock})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		h.done <- l.Run(ctx)
		close(h.exited)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(waitLimit):
			t.Error("the loop did not stop with its context")
		}
	})
	return h
}

// next is the next task the loop sends.
func (h *harness) next() sent {
	h.t.Helper()
	select {
	case s := <-h.reg.sent:
		return s
	case err := <-h.done:
		h.t.Fatalf("the loop ended (%v) while a task was awaited", err)
	case <-time.After(waitLimit):
		h.t.Fatal("no task was dispatched")
	}
	return sent{}
}

// nextN takes the next n tasks.
func (h *harness) nextN(n int) []sent {
	h.t.Helper()
	out := make([]sent, n)
	for i := range out {
		out[i] = h.next()
	}
	return out
}

// noneSent checks that no task is waiting to be taken.
func (h *harness) noneSent() {
	h.t.Helper()
	select {
	case s := <-h.reg.sent:
		h.t.Fatalf("unexpected dispatch of %s to %s", s.task.GetAttemptId(), s.executor)
	default:
	}
}

// deliver hands res to the loop and returns once the loop handled it.
func (h *harness) deliver(res *clusterv1.TaskResult) {
	h.t.Helper()
	h.reg.finished(res.GetAttemptId())
	h.send(func(sub *Subscription) { sub.Results <- res })
}

// send gives the loop's subscription something and returns once the loop
// handled it (or ended).
func (h *harness) send(give func(*Subscription)) {
	h.t.Helper()
	h.reg.mu.Lock()
	sub := h.reg.sub
	h.reg.mu.Unlock()
	before := h.clock.quietAfter(func() { give(sub) })
	h.clock.waitQuiet(h.t, before, h.exited)
}

// ok answers s's attempt with success at end (the range's end when nil).
func (h *harness) ok(s sent, end stream.Position) {
	h.t.Helper()
	if end == nil {
		end = s.task.GetUntil()
	}
	h.deliver(&clusterv1.TaskResult{AttemptId: s.task.GetAttemptId(), Job: s.task.GetJob(), Batch: s.task.GetBatch(),
		Partition: s.task.GetPartition(), Ok: true, End: end, RecordsIn: 10, RecordsOut: 10})
}

// fail answers s's attempt with err.
func (h *harness) fail(s sent, err error) {
	h.t.Helper()
	res := &clusterv1.TaskResult{AttemptId: s.task.GetAttemptId(), Job: s.task.GetJob(), Batch: s.task.GetBatch(), Partition: s.task.GetPartition()}
	rpc.SetTaskFailure(res, err)
	h.deliver(res)
}

// lose tells the loop executor is gone with its attempts.
func (h *harness) lose(executor string) {
	h.t.Helper()
	n := h.reg.leave(executor)
	h.send(func(sub *Subscription) { sub.Lost <- n })
}

// advance moves the clock by d once the loop waits on it, and returns once
// the loop woke and waits again (when a timer fired).
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.clock.waitArmed(h.t)
	if fired, before := h.clock.Advance(d); fired {
		h.clock.waitQuiet(h.t, before, h.exited)
	}
}

// end is what Run returned.
func (h *harness) end() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return err
	case <-time.After(waitLimit):
		h.t.Fatal("the loop did not end")
	}
	return nil
}

// committed is the job's last commit.
func (h *harness) committed() (checkpoint.Commit, error) {
	return h.store.LatestCommit(context.Background(), "j")
}
