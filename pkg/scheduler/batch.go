package scheduler

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
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
}

// DefaultRetryPolicy is what a job gets unless its limits say otherwise.
var DefaultRetryPolicy = RetryPolicy{MaxFailures: 4, BaseBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second, Timeout: 10 * time.Minute, Jitter: 0.2}

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
	attempt   string // live attempt id while running
	executor  string
	started   time.Time
	lastErr   error
}

// Batch tracks the attempts of one batch's tasks. It is not safe for
// concurrent use: the driver's batch loop owns it.
//
// Every call costs O(log n) per task it touches, plus Ready's scan of the
// pending tasks, so a batch of n tasks costs O(n log n) however its results
// arrive: the loop calls Expire, Ready and NextWake once per turn.
type Batch struct {
	policy   RetryPolicy
	tasks    map[string]*task
	attempts map[string]*task // live attempt id → task
	// pending holds tasks waiting to run, in plan order for the first run
	// and then in failure order; entries of tasks no longer pending are
	// dropped lazily.
	pending []*task
	// running orders live attempts by start time (for Expire and NextWake);
	// entries of finished attempts are dropped lazily.
	running startHeap
	done    int
	failed  error
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
func (b *Batch) oldest() (*task, bool) {
	for b.running.Len() > 0 {
		top := b.running[0]
		if t, ok := b.attempts[top.attempt]; ok {
			return t, true
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
	b := &Batch{policy: policy, tasks: make(map[string]*task, len(keys)), attempts: make(map[string]*task)}
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
func (b *Batch) Ready(now time.Time) []string {
	if b.failed != nil {
		return nil
	}
	var out []string
	kept := b.pending[:0]
	seen := make(map[*task]bool, len(b.pending))
	for _, t := range b.pending {
		if t.state != statePending || seen[t] {
			continue
		}
		seen[t] = true
		kept = append(kept, t)
		if !now.Before(t.notBefore) {
			out = append(out, t.key)
		}
	}
	clear(b.pending[len(kept):])
	b.pending = kept
	return out
}

// NextWake is the earliest time a pending task becomes ready, or a running
// one times out; zero when nothing is waiting on time.
func (b *Batch) NextWake() time.Time {
	var w time.Time
	for _, t := range b.pending {
		if t.state == statePending && (w.IsZero() || t.notBefore.Before(w)) {
			w = t.notBefore
		}
	}
	if b.policy.Timeout > 0 {
		if t, ok := b.oldest(); ok {
			if at := t.started.Add(b.policy.Timeout); w.IsZero() || at.Before(w) {
				w = at
			}
		}
	}
	return w
}

// Started records that attempt now runs task key on executor. It panics if
// the task is not pending: the caller dispatches only what Ready returned.
func (b *Batch) Started(key, attempt, executor string, now time.Time) {
	t := b.tasks[key]
	if t == nil || t.state != statePending {
		panic(fmt.Sprintf("scheduler: start of task %q that is not pending", key))
	}
	t.state, t.attempt, t.executor, t.started = stateRunning, attempt, executor, now
	b.attempts[attempt] = t
	heap.Push(&b.running, started{at: now, attempt: attempt})
}

// Succeeded records a successful result. It returns the task key, or
// ErrStaleAttempt when the attempt is not live (already retried, timed out,
// or its executor was declared lost); the caller must then ignore the result.
func (b *Batch) Succeeded(attempt string) (string, error) {
	t, ok := b.attempts[attempt]
	if !ok {
		return "", ErrStaleAttempt
	}
	delete(b.attempts, attempt)
	t.state, t.attempt = stateDone, ""
	b.done++
	return t.key, nil
}

// Failed records a failed attempt. A permanent error fails the batch at once;
// otherwise the task is retried after a backoff until MaxFailures.
func (b *Batch) Failed(attempt string, err error, permanent bool, now time.Time) (string, error) {
	t, ok := b.attempts[attempt]
	if !ok {
		return "", ErrStaleAttempt
	}
	b.fail(t, err, permanent, now)
	return t.key, nil
}

func (b *Batch) fail(t *task, err error, permanent bool, now time.Time) {
	delete(b.attempts, t.attempt)
	t.attempt, t.executor = "", ""
	t.failures++
	t.lastErr = err
	if permanent || t.failures >= b.policy.MaxFailures {
		t.state = stateFailed
		if b.failed == nil {
			b.failed = fmt.Errorf("task %s failed %d time(s), last: %w", t.key, t.failures, err)
		}
		return
	}
	t.state = statePending
	t.notBefore = now.Add(b.policy.backoff(t.failures))
	b.pending = append(b.pending, t)
}

// requeue fails t retryably like fail, counting the failure (so a task that
// keeps killing its executor still ends), but without back-off: the range
// did nothing wrong, its executor went away.
func (b *Batch) requeue(t *task, err error, now time.Time) {
	b.fail(t, err, false, now)
	if t.state == statePending {
		t.notBefore = now
	}
}

// Running returns the task key of a live attempt.
func (b *Batch) Running(attempt string) (string, bool) {
	t, ok := b.attempts[attempt]
	if !ok {
		return "", false
	}
	return t.key, true
}

// AttemptLost fails one live attempt whose executor went away (retryably,
// and ready to run again at once) and returns its task key; false when the
// attempt is not live.
func (b *Batch) AttemptLost(attempt string, err error, now time.Time) (string, bool) {
	t, ok := b.attempts[attempt]
	if !ok {
		return "", false
	}
	b.requeue(t, err, now)
	return t.key, true
}

// ExecutorLost fails every live attempt on executor (retryably, and ready
// to run again at once) and returns their attempt ids so the caller can
// forget them.
func (b *Batch) ExecutorLost(executor string, now time.Time) []string {
	var lost []string
	for id, t := range b.attempts {
		if t.executor == executor {
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	for _, id := range lost {
		b.requeue(b.attempts[id], fmt.Errorf("executor %s lost", executor), now)
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
		t, ok := b.oldest()
		if !ok || now.Sub(t.started) < b.policy.Timeout {
			break
		}
		heap.Pop(&b.running)
		expired = append(expired, t.attempt)
	}
	sort.Strings(expired)
	for _, id := range expired {
		b.fail(b.attempts[id], fmt.Errorf("attempt timed out after %s", b.policy.Timeout), false, now)
	}
	return expired
}

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
func (b *Batch) Retries() int {
	n := 0
	for _, t := range b.tasks {
		n += t.failures
	}
	return n
}
