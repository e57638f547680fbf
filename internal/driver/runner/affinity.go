package runner

import (
	"math"
	"slices"
	"time"

	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
)

// affinity decides which executor runs each task of one batch stage as
// slots free up. A batch usually has many more tasks than the cluster has
// slots, so its tasks run in waves; placing each wave with
// scheduler.Assign alone would spread the few tasks of a wave over the
// executors with free slots without regard for where their partitions ran
// last, moving warm readers around every batch.
//
// Instead the batch's tasks are divided once, when it starts, with
// scheduler.Assign (sticky and fair) into one queue per executor. Each turn,
// an executor with free slots takes the next tasks of its own queue; one
// whose queue is empty and who holds no task waiting for a slot steals from
// the back of the longest queue (the victim keeps the tasks it is about to
// run), but only as many as finish sooner on the thief, where each pays
// moveCost more for reading its partition cold, than on the victim (at the
// task time the loop measured): of short tasks, hardly any. When every
// queue is empty, what is still pending (retries, the tasks of an executor
// that left) goes to whoever has room, in the order
// scheduler.Batch.ReadyN gives.
//
// A turn costs O(free slots) plus the entries it skips, each skipped once,
// so a batch costs O(tasks) however many turns it takes.
type affinity struct {
	queues map[string][]string // executor → keys, next first
	// taskTime is how long a task holds a slot (Loop.taskTime; 0:
	// unknown, and every queue may be stolen from).
	taskTime time.Duration
}

// moveCost is what a task costs more on an executor its partition did not
// run on last: its reader starts cold (a Kafka partition's first fetch
// restarts the client's fetch session, about 6 ms in
// BenchmarkReaderPoolBatches; a Kinesis shard needs a shard iterator).
// Stealing every task an idle executor found cost more than it saved:
// in scenario 3 of make bench (tasks of a fraction of a millisecond), the
// partitions of a 1,024-partition topic moved between two executors every
// few batches and their first reads waited up to 100 ms.
const moveCost = 10 * time.Millisecond

// placement is what one turn gives one executor.
type placement struct {
	executor string
	keys     []string
}

func newAffinity(keys []string, ranges map[string]stream.Range, execs []scheduler.Executor, lastOwner map[stream.PartitionID]string) *affinity {
	refs := make([]scheduler.TaskRef, len(keys))
	for i, k := range keys {
		refs[i] = scheduler.TaskRef{Key: k, Partition: ranges[k].Partition}
	}
	// Room for every task everywhere: Assign then only shares them out.
	all := make([]scheduler.Executor, len(execs))
	for i, e := range execs {
		all[i] = scheduler.Executor{ID: e.ID, Free: len(keys)}
	}
	a := &affinity{queues: make(map[string][]string, len(execs))}
	for _, as := range scheduler.Assign(refs, all, lastOwner) {
		a.queues[as.Executor] = append(a.queues[as.Executor], as.Key)
	}
	return a
}

// place picks the tasks to dispatch this turn: for each executor, at most
// Free tasks that b says are ready (its free slots, and the tasks the loop
// lets it queue: Loop.queueing). A nil affinity (no
// executors yet) places nothing.
func (a *affinity) place(b *scheduler.Batch, now time.Time, execs []scheduler.Executor) []placement {
	if a == nil {
		return nil
	}
	var out []placement
	taken := map[string]bool{}
	var idle []scheduler.Executor // free slots left after their own queues
	for _, e := range execs {
		if e.Free <= 0 {
			continue
		}
		keys := a.take(e.ID, b, now, e.Free, false, taken)
		if len(keys) > 0 {
			out = append(out, placement{executor: e.ID, keys: keys})
		}
		if left := e.Free - len(keys); left > 0 {
			idle = append(idle, scheduler.Executor{ID: e.ID, Free: left, Queued: e.Queued})
		}
	}
	slots := make(map[string]int, len(execs))
	for _, e := range execs {
		slots[e.ID] = e.Slots
	}
	for _, e := range idle {
		var keys []string
		short := false // a queue is left to its executor: not worth stealing
		robbed := map[string]bool{e.ID: true}
		if e.Queued > 0 && a.longest(robbed) != "" {
			// It has tasks waiting for its slots still: it steals once
			// it runs out, and only then, so that it does not take a
			// few at every turn (each costs a cold read).
			continue
		}
		for len(keys) < e.Free {
			victim := a.longest(robbed)
			if victim == "" {
				break
			}
			robbed[victim] = true
			can := a.stealable(victim, slots[victim], slots[e.ID])
			if can < len(a.queues[victim]) {
				short = true
			}
			if n := min(e.Free-len(keys), can); n > 0 {
				// Fewer when what is left there backs off.
				keys = append(keys, a.take(victim, b, now, n, true, taken)...)
			}
		}
		// Ready's order would hand out the tasks of a queue left to its
		// executor first: retries wait until that queue ran out, which
		// is soon (it holds short tasks).
		if left := e.Free - len(keys); left > 0 && !short {
			// Nothing left to steal: retries and tasks of executors that
			// left, in Ready's order.
			for _, k := range b.ReadyN(now, left+len(taken)) {
				if len(keys) == e.Free {
					break
				}
				if !taken[k] {
					taken[k] = true
					keys = append(keys, k)
				}
			}
		}
		if len(keys) > 0 {
			out = append(out, placement{executor: e.ID, keys: keys})
		}
	}
	return out
}

// take removes up to n ready tasks from executor id's queue, from its front
// or, stealing, its back. Entries that are no longer pending (dispatched,
// done) are dropped; pending ones still backing off stay.
func (a *affinity) take(id string, b *scheduler.Batch, now time.Time, n int, back bool, taken map[string]bool) []string {
	q := a.queues[id]
	var keys, waiting []string
	for len(q) > 0 && len(keys) < n {
		var k string
		if back {
			k, q = q[len(q)-1], q[:len(q)-1]
		} else {
			k, q = q[0], q[1:]
		}
		switch ready, pending := b.IsReady(k, now); {
		case ready && !taken[k]:
			taken[k] = true
			keys = append(keys, k)
		case pending:
			waiting = append(waiting, k)
		}
	}
	// What backs off goes back where it was, for a later turn.
	if back {
		slices.Reverse(waiting)
		q = append(q, waiting...)
	} else {
		q = append(waiting, q...)
	}
	if len(q) == 0 {
		delete(a.queues, id)
	} else {
		a.queues[id] = q
	}
	return keys
}

// putBack returns tasks that could not be sent to the front of their
// executor's queue.
func (a *affinity) putBack(p placement) {
	a.queues[p.executor] = append(slices.Clone(p.keys), a.queues[p.executor]...)
}

// stealable is how many tasks a thief with thiefSlots slots may take from
// the back of victim's queue (victimSlots slots): the n at which both end
// together, the victim running q-n tasks of taskTime and the thief n of
// taskTime+moveCost, rounded. All of them while the task time is unknown
// or the victim is gone.
func (a *affinity) stealable(victim string, victimSlots, thiefSlots int) int {
	q := len(a.queues[victim])
	if a.taskTime <= 0 || victimSlots <= 0 {
		return q
	}
	tau := float64(a.taskTime)
	onVictim := tau / float64(victimSlots)
	onThief := (tau + float64(moveCost)) / float64(max(thiefSlots, 1))
	return int(math.Round(float64(q) * onVictim / (onVictim + onThief)))
}

// longest is the executor not in skip with the most queued tasks ("" when
// none has any); ties go to the smaller id, so placement is deterministic.
func (a *affinity) longest(skip map[string]bool) string {
	best := ""
	for e, q := range a.queues {
		if skip[e] || len(q) == 0 {
			continue
		}
		if best == "" || len(q) > len(a.queues[best]) || (len(q) == len(a.queues[best]) && e < best) {
			best = e
		}
	}
	return best
}
