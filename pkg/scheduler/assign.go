package scheduler

import (
	"sort"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Executor is an executor as the scheduler sees it.
type Executor struct {
	ID string
	// Free is the number of free task slots.
	Free int
	// Slots is how many tasks it runs at once, Queued how many more it
	// holds waiting for a slot, and QueueRoom how many more it would
	// accept to wait. Assign reads Free only; the driver's batch loop
	// queues tasks beyond the free slots while they would wait briefly.
	Slots, Queued, QueueRoom int
}

// TaskRef is a task waiting for a slot.
type TaskRef struct {
	Key       string
	Partition stream.PartitionID
}

// Assignment places one task on one executor.
type Assignment struct {
	Key      string
	Executor string
}

// Assign places as many tasks as there are free slots, keeping tasks where
// their partitions ran last (warm readers, a state partition's local store)
// as far as a fair spread allows:
//
//  1. a task goes to the executor that last ran its partition when that
//     executor has a free slot and fewer than its fair share of these
//     tasks (tasks/executors with free slots, rounded down, at least 1);
//  2. the others go first to executors still below that share (a new
//     executor takes its share: scaling out moves partitions to it),
//  3. then back to their last executor up to the share rounded up,
//  4. then back to their last executor beyond it (executors with few slots
//     left the share of theirs to others),
//  5. then to the executor with the most free slots (ties by ID, so the
//     result is deterministic).
//
// Tasks that find no slot are left out and wait for the next call. Cost is
// O((tasks + executors) log executors).
func Assign(tasks []TaskRef, executors []Executor, lastOwner map[stream.PartitionID]string) []Assignment {
	free := make(map[string]int, len(executors))
	for _, e := range executors {
		if e.Free > 0 {
			free[e.ID] = e.Free
		}
	}
	if len(free) == 0 {
		return nil
	}
	lo := max(1, len(tasks)/len(free))
	hi := (len(tasks) + len(free) - 1) / len(free)
	count := make(map[string]int, len(free))
	out := make([]Assignment, 0, min(len(tasks), totalFree(free)))
	place := func(t TaskRef, id string) {
		free[id]--
		count[id]++
		out = append(out, Assignment{Key: t.Key, Executor: id})
	}
	var rest []TaskRef
	for _, t := range tasks {
		if id, ok := lastOwner[t.Partition]; ok && free[id] > 0 && count[id] < lo {
			place(t, id)
			continue
		}
		rest = append(rest, t)
	}
	if len(rest) == 0 {
		return out
	}
	// Executors below their share, the most free first.
	var under []string
	for id, f := range free {
		if f > 0 && count[id] < lo {
			under = append(under, id)
		}
	}
	sort.Slice(under, func(i, j int) bool {
		a, b := under[i], under[j]
		if free[a] != free[b] {
			return free[a] > free[b]
		}
		return a < b
	})
	var left []TaskRef
	for _, t := range rest {
		for len(under) > 0 && (free[under[0]] == 0 || count[under[0]] >= lo) {
			under = under[1:]
		}
		if len(under) == 0 {
			left = append(left, t)
			continue
		}
		place(t, under[0])
	}
	rest, left = left, nil
	for _, t := range rest {
		if id, ok := lastOwner[t.Partition]; ok && free[id] > 0 && count[id] < hi {
			place(t, id)
			continue
		}
		left = append(left, t)
	}
	// What is left goes beyond the share of someone: executors with few
	// slots could not take theirs. A task goes back to its last executor
	// if it has a slot, so that an assignment fed back is kept (the most
	// free executor may be another one the second time).
	rest, left = left, nil
	for _, t := range rest {
		if id, ok := lastOwner[t.Partition]; ok && free[id] > 0 {
			place(t, id)
			continue
		}
		left = append(left, t)
	}
	if len(left) == 0 {
		return out
	}
	h := newSlotHeap(free)
	for _, t := range left {
		id, ok := h.take()
		if !ok {
			break
		}
		count[id]++
		out = append(out, Assignment{Key: t.Key, Executor: id})
	}
	return out
}

func totalFree(free map[string]int) int {
	n := 0
	for _, f := range free {
		n += f
	}
	return n
}

// slotHeap hands out slots from the executor with the most free slots.
type slotHeap struct {
	ids  []string
	free map[string]int
}

func newSlotHeap(free map[string]int) *slotHeap {
	h := &slotHeap{free: free}
	for id, n := range free {
		if n > 0 {
			h.ids = append(h.ids, id)
		}
	}
	sort.Slice(h.ids, func(i, j int) bool { return h.less(i, j) })
	// Build as a heap: a sorted slice already satisfies the heap property.
	return h
}

func (h *slotHeap) less(i, j int) bool {
	a, b := h.ids[i], h.ids[j]
	if h.free[a] != h.free[b] {
		return h.free[a] > h.free[b]
	}
	return a < b
}

func (h *slotHeap) take() (string, bool) {
	for len(h.ids) > 0 {
		id := h.ids[0]
		if h.free[id] == 0 {
			h.pop()
			continue
		}
		h.free[id]--
		if h.free[id] == 0 {
			h.pop()
		} else {
			h.down(0)
		}
		return id, true
	}
	return "", false
}

func (h *slotHeap) pop() {
	n := len(h.ids) - 1
	h.ids[0] = h.ids[n]
	h.ids = h.ids[:n]
	if n > 0 {
		h.down(0)
	}
}

func (h *slotHeap) down(i int) {
	n := len(h.ids)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		j := l
		if r := l + 1; r < n && h.less(r, l) {
			j = r
		}
		if !h.less(j, i) {
			return
		}
		h.ids[i], h.ids[j] = h.ids[j], h.ids[i]
		i = j
	}
}

// SlotUnits is one executor slot in cost units: a task of a source that lets
// k tasks share a slot (connectors.Plan.TasksPerSlot) costs SlotUnits/k, so
// the driver and executors count capacity the same way.
const SlotUnits = 1000

// TaskCost is the cost in SlotUnits of one task when tasksPerSlot tasks share
// a slot (0 or 1: a whole slot).
func TaskCost(tasksPerSlot int) int {
	if tasksPerSlot <= 1 {
		return SlotUnits
	}
	return max(SlotUnits/tasksPerSlot, 1)
}
