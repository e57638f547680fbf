package scheduler

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"
)

// ErrStaleAttempt is returned for a result whose attempt is no longer live.
var ErrStaleAttempt = errors.New("stale attempt")

// RetryPolicy bounds how often a task is tried and how long it waits between
// attempts. Backoff doubles from BaseBackoff up to MaxBackoff.
type RetryPolicy struct {
	// MaxFailures is how many failed attempts fail the batch (Spark's
	// spark.task.maxFailures); at least 1.
	MaxFailures int
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// Timeout marks a running attempt lost after this long; 0 disables it.
	Timeout time.Duration
	// Jitter spreads each back-off by up to ± this fraction of it, so tasks
	// failing together on one outage do not retry in lockstep.
	Jitter float64
	// Speculation starts a second attempt of a straggling task.
	Speculation Speculation
}

// Speculation is Spark's speculative execution (spark.speculation.*): once
// Quantile of a batch's tasks have succeeded, a task that has run longer
// than Multiplier times their median duration (and at least
// MinTaskRuntime) gets a copy on another executor. The first attempt to
// succeed wins; the other is cancelled, and whatever it wrote is discarded
// by the sinks' (job, batch, part) keys as a retry's would be.
type Speculation struct {
	Enabled        bool
	Quantile       float64
	Multiplier     float64
	MinTaskRuntime time.Duration
}

// DefaultSpeculation holds Spark's defaults (off, 0.75, 1.5, 100ms).
var DefaultSpeculation = Speculation{Quantile: 0.75, Multiplier: 1.5, MinTaskRuntime: 100 * time.Millisecond}

// DefaultRetryPolicy is what a job gets unless its limits say otherwise.
var DefaultRetryPolicy = RetryPolicy{MaxFailures: 4, BaseBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second, Timeout: 10 * time.Minute, Jitter: 0.2,
	Speculation: DefaultSpeculation}

// backoff is the wait before the next attempt after failures failures:
// doubling from BaseBackoff, capped at MaxBackoff, then spread by Jitter.
func (p RetryPolicy) backoff(failures int) time.Duration {
	d := p.BaseBackoff
	for i := 1; i < failures && d < p.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.MaxBackoff)
	if p.Jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * p.Jitter * float64(d))
	}
	return d
}

type taskState int

const (
	statePending taskState = iota
	stateRunning
	stateDone
	stateFailed
)

type task struct {
	key       string
	state     taskState
	failures  int
	notBefore time.Time
	// live are the task's running attempts: one, or two once a speculative
	// copy runs (the original first).
	live []*attempt
	// speculated is set once a copy was started: like Spark, a task is
	// speculated at most once per run.
	speculated bool
	lastErr    error
	// turn is the last ReadyN call that looked at the task.
	turn uint64
}

// attempt is one running attempt of a task.
type attempt struct {
	id       string
	executor string
	started  time.Time
	task     *task
	copy     bool // a speculative copy
}

// Batch tracks the attempts of one batch's tasks. It is not safe for
// concurrent use: the driver's batch loop owns it.
//
// Every call costs O(log n) per task it touches, plus ReadyN's and
// NextWake's scans of the retries still backing off and Stragglers' scan
// of the running attempts (only with speculation on), so a batch of n tasks
// costs O(n log n) however its results arrive and however few slots run
// them: the loop calls Expire, Stragglers and NextWake once per turn, and
// IsReady or ReadyN for no more tasks than it has free slots.
type Batch struct {
	policy   RetryPolicy
	tasks    map[string]*task
	attempts map[string]*attempt // live attempt id → attempt
	// pending holds tasks waiting to run, in plan order for the first run
	// and then in failure order; entries of tasks no longer pending are
	// dropped lazily.
	pending []*task
	// running orders live attempts by start time (for Expire and NextWake);
	// entries of finished attempts are dropped lazily.
	running startHeap
	done    int
	failed  error
	// took are the durations of the attempts that succeeded, for
	// speculation's median.
	took []time.Duration
	// superseded are the ids of attempts that lost to their task's other
	// attempt, until Superseded hands them out to be cancelled.
	superseded []string
	// turn counts ReadyN calls; retries and copies count failed attempts
	// and speculative copies (Retries, Copies).
	turn            uint64
	retries, copies int
}

// started is a heap entry: an attempt and when it started.
type started struct {
	at      time.Time
	attempt string
}

type startHeap []started

func (h startHeap) Len() int           { return len(h) }
func (h startHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h startHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *startHeap) Push(x any)        { *h = append(*h, x.(started)) }
func (h *startHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// oldest returns the live attempt that started first, dropping entries of
// attempts that ended.
func (b *Batch) oldest() (*attempt, bool) {
	for b.running.Len() > 0 {
		top := b.running[0]
		if a, ok := b.attempts[top.attempt]; ok {
			return a, true
		}
		heap.Pop(&b.running)
	}
	return nil, false
}

// NewBatch tracks the tasks named by keys, all pending.
func NewBatch(keys []string, policy RetryPolicy) *Batch {
	if policy.MaxFailures < 1 {
		policy.MaxFailures = 1
	}
	b := &Batch{policy: policy, tasks: make(map[string]*task, len(keys)), attempts: make(map[string]*attempt)}
	for _, k := range keys {
		if _, dup := b.tasks[k]; dup {
			continue
		}
		t := &task{key: k}
		b.tasks[k] = t
		b.pending = append(b.pending, t)
	}
	return b
}

// Ready returns the pending tasks whose backoff has elapsed: first-run tasks
// in plan order, retries after them in the order they failed.
func (b *Batch) Ready(now time.Time) []string { return b.ReadyN(now, len(b.tasks)) }

// ReadyN is Ready for at most n tasks, the first ones Ready would return.
// The loop asks for no more than it has free slots for: its cost is then
// that of the tasks it returns (plus the retries still backing off), not
// of every pending task, so a batch of many tasks on few slots is not
// quadratic in its tasks.
func (b *Batch) ReadyN(now time.Time, n int) []string {
	if b.failed != nil || n <= 0 {
		return nil
	}
	b.dropStarted()
	// A task may have two entries (it failed again before its old entry
	// was dropped): the turn stamp keeps it out of the answer twice.
	b.turn++
	var out []string
	stale := 0
	for _, t := range b.pending {
		if len(out) == n {
			return out
		}
		if t.state != statePending || t.turn == b.turn {
			stale++
			continue
		}
		t.turn = b.turn
		if !now.Before(t.notBefore) {
			out = append(out, t.key)
		}
	}
	if stale > 0 {
		// The scan passed every entry (Ready, or fewer ready tasks than
		// n): drop the stale ones from the middle too, at the same cost,
		// or every later full scan would pass them again.
		b.turn++ // a fresh stamp: each pending task is kept once
		kept := b.pending[:0]
		for _, t := range b.pending {
			if t.state == statePending && t.turn != b.turn {
				t.turn = b.turn
				kept = append(kept, t)
			}
		}
		clear(b.pending[len(kept):])
		b.pending = kept
	}
	return out
}

// IsReady reports whether task key is pending with its backoff elapsed
// (ready), and whether it is pending at all.
func (b *Batch) IsReady(key string, now time.Time) (ready, pending bool) {
	t := b.tasks[key]
	if b.failed != nil || t == nil || t.state != statePending {
		return false, false
	}
	return !now.Before(t.notBefore), true
}

// HasPending reports whether a task waits to be dispatched.
func (b *Batch) HasPending() bool {
	b.dropStarted()
	return b.failed == nil && len(b.pending) > 0
}

// dropStarted drops the entries of tasks no longer pending from the front
// of pending, where dispatching in plan order takes them; the others are
// skipped by the scans and dropped when they reach the front. Each entry is
// dropped once, so the scans that call it first (ReadyN, HasPending,
// NextWake) cost O(n) over a batch rather than O(n) each.
func (b *Batch) dropStarted() {
	for len(b.pending) > 0 && b.pending[0].state != statePending {
		b.pending[0] = nil
		b.pending = b.pending[1:]
	}
}

// NextWake is the earliest time a pending task becomes ready, a running one
// times out, or one becomes a straggler; zero when nothing is waiting on
// time.
func (b *Batch) NextWake() time.Time {
	var w time.Time
	earlier := func(at time.Time) {
		if w.IsZero() || at.Before(w) {
			w = at
		}
	}
	b.dropStarted()
	for _, t := range b.pending {
		if t.state == statePending {
			earlier(t.notBefore)
			if t.notBefore.IsZero() {
				break // a first-run task: nothing is earlier
			}
		}
	}
	if b.policy.Timeout > 0 {
		if a, ok := b.oldest(); ok {
			earlier(a.started.Add(b.policy.Timeout))
		}
	}
	if threshold, ok := b.stragglerThreshold(); ok {
		for _, a := range b.attempts {
			if !a.copy && !a.task.speculated {
				earlier(a.started.Add(threshold))
			}
		}
	}
	return w
}

// Started records that attempt now runs task key on executor. It panics if
// the task is not pending: the caller dispatches only what Ready returned.
func (b *Batch) Started(key, id, executor string, now time.Time) {
	t := b.tasks[key]
	if t == nil || t.state != statePending {
		panic(fmt.Sprintf("scheduler: start of task %q that is not pending", key))
	}
	t.state = stateRunning
	b.start(t, id, executor, now, false)
}

func (b *Batch) start(t *task, id, executor string, now time.Time, copy bool) {
	a := &attempt{id: id, executor: executor, started: now, task: t, copy: copy}
	t.live = append(t.live, a)
	b.attempts[id] = a
	heap.Push(&b.running, started{at: now, attempt: id})
}

// Succeeded records a successful result at now. It returns the task key, or
// ErrStaleAttempt when the attempt is not live (already retried, timed out,
// superseded by its speculative twin, or its executor was declared lost);
// the caller must then ignore the result. The task's other attempt, if
// any, is superseded: Superseded hands out its id to be cancelled.
func (b *Batch) Succeeded(id string, now time.Time) (string, error) {
	a, ok := b.attempts[id]
	if !ok {
		return "", ErrStaleAttempt
	}
	t := a.task
	for _, other := range t.live {
		delete(b.attempts, other.id)
		if other != a {
			b.superseded = append(b.superseded, other.id)
		}
	}
	t.live = nil
	t.state = stateDone
	b.done++
	b.took = append(b.took, now.Sub(a.started))
	return t.key, nil
}

// Superseded returns, once, the ids of attempts whose task another attempt
// finished first; the caller cancels them. Their results are stale.
func (b *Batch) Superseded() []string {
	out := b.superseded
	b.superseded = nil
	return out
}

// Failed records a failed attempt. A permanent error fails the batch at once;
// otherwise the task is retried after a backoff until MaxFailures. While the
// task's other attempt (a speculative twin) still runs, the failure counts
// but nothing is retried: the twin may still finish the task.
func (b *Batch) Failed(id string, err error, permanent bool, now time.Time) (string, error) {
	a, ok := b.attempts[id]
	if !ok {
		return "", ErrStaleAttempt
	}
	b.fail(a, err, permanent, now)
	return a.task.key, nil
}

func (b *Batch) fail(a *attempt, err error, permanent bool, now time.Time) {
	t := a.task
	delete(b.attempts, a.id)
	t.live = slices.DeleteFunc(t.live, func(x *attempt) bool { return x == a })
	t.failures++
	b.retries++
	t.lastErr = err
	if permanent || t.failures >= b.policy.MaxFailures {
		for _, other := range t.live {
			delete(b.attempts, other.id)
			b.superseded = append(b.superseded, other.id)
		}
		t.live = nil
		t.state = stateFailed
		if b.failed == nil {
			b.failed = fmt.Errorf("task %s failed %d time(s), last: %w", t.key, t.failures, err)
		}
		return
	}
	if len(t.live) > 0 {
		return // the twin runs on
	}
	t.state = statePending
	t.notBefore = now.Add(b.policy.backoff(t.failures))
	b.pending = append(b.pending, t)
}

// requeue fails a retryably like fail, counting the failure (so a task that
// keeps killing its executor still ends), but without back-off: the range
// did nothing wrong, its executor went away.
func (b *Batch) requeue(a *attempt, err error, now time.Time) {
	t := a.task
	b.fail(a, err, false, now)
	if t.state == statePending {
		t.notBefore = now
	}
}

// Running returns the task key of a live attempt.
func (b *Batch) Running(id string) (string, bool) {
	a, ok := b.attempts[id]
	if !ok {
		return "", false
	}
	return a.task.key, true
}

// AttemptLost fails one live attempt whose executor went away (retryably,
// and ready to run again at once) and returns its task key; false when the
// attempt is not live.
func (b *Batch) AttemptLost(id string, err error, now time.Time) (string, bool) {
	a, ok := b.attempts[id]
	if !ok {
		return "", false
	}
	key := a.task.key
	b.requeue(a, err, now)
	return key, true
}

// ExecutorLost fails every live attempt on executor (retryably, and ready
// to run again at once) and returns their attempt ids so the caller can
// forget them.
func (b *Batch) ExecutorLost(executor string, now time.Time) []string {
	var lost []string
	for id, a := range b.attempts {
		if a.executor == executor {
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	for _, id := range lost {
		if a, ok := b.attempts[id]; ok {
			b.requeue(a, fmt.Errorf("executor %s lost", executor), now)
		}
	}
	return lost
}

// Expire fails attempts running longer than the policy's timeout and returns
// their ids, so the caller can cancel them.
func (b *Batch) Expire(now time.Time) []string {
	if b.policy.Timeout <= 0 {
		return nil
	}
	var expired []string
	for {
		a, ok := b.oldest()
		if !ok || now.Sub(a.started) < b.policy.Timeout {
			break
		}
		heap.Pop(&b.running)
		expired = append(expired, a.id)
	}
	sort.Strings(expired)
	for _, id := range expired {
		if a, ok := b.attempts[id]; ok {
			b.fail(a, fmt.Errorf("attempt timed out after %s", b.policy.Timeout), false, now)
		}
	}
	return expired
}

// Straggler is a running task to speculate: its key and the executor its
// attempt runs on, where the copy must not go.
type Straggler struct {
	Key      string
	Executor string
}

// stragglerThreshold is how long an attempt may run before it is a
// straggler: Multiplier times the median duration of the succeeded
// attempts, at least MinTaskRuntime; ok is false while speculation is off
// or fewer than Quantile of the tasks have succeeded (Spark:
// spark.speculation.quantile, multiplier, minTaskRuntime).
func (b *Batch) stragglerThreshold() (time.Duration, bool) {
	sp := b.policy.Speculation
	if !sp.Enabled || b.failed != nil || len(b.took) == 0 || b.done == len(b.tasks) {
		return 0, false
	}
	need := max(int(math.Floor(sp.Quantile*float64(len(b.tasks)))), 1)
	if b.done < need {
		return 0, false
	}
	sorted := slices.Clone(b.took)
	slices.Sort(sorted)
	median := sorted[len(sorted)/2]
	return max(time.Duration(sp.Multiplier*float64(median)), sp.MinTaskRuntime), true
}

// Stragglers returns the running tasks that have run past the straggler
// threshold and have no copy yet, longest-running first. The caller starts
// a copy of each it can place with StartedCopy.
func (b *Batch) Stragglers(now time.Time) []Straggler {
	threshold, ok := b.stragglerThreshold()
	if !ok {
		return nil
	}
	var slow []*attempt
	for _, a := range b.attempts {
		if !a.copy && !a.task.speculated && now.Sub(a.started) > threshold {
			slow = append(slow, a)
		}
	}
	slices.SortFunc(slow, func(x, y *attempt) int {
		if c := x.started.Compare(y.started); c != 0 {
			return c
		}
		return strings.Compare(x.task.key, y.task.key)
	})
	var out []Straggler
	for _, a := range slow {
		out = append(out, Straggler{Key: a.task.key, Executor: a.executor})
	}
	return out
}

// StartedCopy records that id runs a speculative copy of the running task
// key on executor. It panics unless Stragglers named the task (running,
// not yet speculated).
func (b *Batch) StartedCopy(key, id, executor string, now time.Time) {
	t := b.tasks[key]
	if t == nil || t.state != stateRunning || t.speculated || len(t.live) != 1 {
		panic(fmt.Sprintf("scheduler: speculative copy of task %q that is not a running straggler", key))
	}
	t.speculated = true
	b.copies++
	b.start(t, id, executor, now, true)
}

// Copies counts the speculative copies started so far.
func (b *Batch) Copies() int { return b.copies }

// Live returns the ids of running attempts.
func (b *Batch) Live() []string {
	out := make([]string, 0, len(b.attempts))
	for id := range b.attempts {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// NumLive counts running attempts (len(Live()) without the list).
func (b *Batch) NumLive() int { return len(b.attempts) }

// Complete reports whether every task is done.
func (b *Batch) Complete() bool { return b.failed == nil && b.done == len(b.tasks) }

// Err is the reason the batch failed, or nil.
func (b *Batch) Err() error { return b.failed }

// Retries counts failed attempts so far across tasks.
func (b *Batch) Retries() int { return b.retries }
