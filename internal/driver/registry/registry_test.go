package registry

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/scheduler"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestRegistrySharedSlots checks the slot accounting behind Kinesis
// shardsPerTask: tasks of a source with TasksPerSlot k take 1/k of a slot on
// the driver's books; tasks beyond the slots wait for one on the executor
// (Queued), up to queuePerSlot a slot; cancelled attempts give their share
// back.
func TestRegistrySharedSlots(t *testing.T) {
	tests := []struct {
		tasksPerSlot int32
		slots        int
		want         int // tasks that run at once
	}{
		{tasksPerSlot: 0, slots: 2, want: 2},
		{tasksPerSlot: 1, slots: 2, want: 2},
		{tasksPerSlot: 5, slots: 2, want: 10},
		{tasksPerSlot: 3, slots: 1, want: 3},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d per slot, %d slots", tc.tasksPerSlot, tc.slots), func(t *testing.T) {
			r := New(slog.New(slog.DiscardHandler), time.Second, time.Second, func() (bool, string, int64) { return true, "", 1 }, nil)
			ec := &executorConn{id: "e1", slots: tc.slots, send: make(chan *clusterv1.DriverMessage, 100), cancel: func() {}}
			r.executors[ec.id] = ec
			cost := scheduler.TaskCost(int(tc.tasksPerSlot))
			tasks := make([]*clusterv1.Task, tc.want+2)
			ids := make([]string, len(tasks))
			for i := range tasks {
				ids[i] = fmt.Sprintf("a%d", i)
				tasks[i] = &clusterv1.Task{AttemptId: ids[i], TasksPerSlot: tc.tasksPerSlot}
			}
			check := func(when string, want scheduler.Executor) {
				t.Helper()
				want.ID = "e1"
				if got := r.Snapshot(cost)[0]; got != want {
					t.Errorf("%s: %+v, want %+v", when, got, want)
				}
			}
			// The room to wait is queuePerSlot a slot, in tasks of cost
			// (rounded down).
			room := tc.slots * scheduler.SlotUnits * (1 + queuePerSlot) / cost
			check("idle", scheduler.Executor{Free: tc.want, Slots: tc.want, QueueRoom: room - tc.want})
			if n := r.Dispatch(context.Background(), "e1", &sluicev1.JobSpec{}, tasks[:tc.want]); n != tc.want {
				t.Fatalf("dispatched %d tasks, want %d", n, tc.want)
			}
			check("slots full", scheduler.Executor{Slots: tc.want, QueueRoom: room - tc.want})
			if n := r.Dispatch(context.Background(), "e1", &sluicev1.JobSpec{}, tasks[tc.want:]); n != 2 {
				t.Fatalf("dispatched %d tasks beyond the slots, want 2", n)
			}
			check("two waiting", scheduler.Executor{Slots: tc.want, Queued: 2, QueueRoom: room - tc.want - 2})
			r.Cancel(ids[:1])
			check("one cancelled", scheduler.Executor{Slots: tc.want, Queued: 1, QueueRoom: room - tc.want - 1})
			if ec.running != tc.want+1 {
				t.Errorf("running = %d, want %d", ec.running, tc.want+1)
			}
		})
	}
}

// TestRegistryQueueBound: an executor takes at most queuePerSlot tasks a
// slot beyond its slots; Dispatch takes the prefix that fits.
func TestRegistryQueueBound(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Second, time.Second, func() (bool, string, int64) { return true, "", 1 }, nil)
	ec := &executorConn{id: "e1", slots: 1, send: make(chan *clusterv1.DriverMessage, 100), cancel: func() {}}
	r.executors[ec.id] = ec
	tasks := make([]*clusterv1.Task, queuePerSlot+10)
	for i := range tasks {
		tasks[i] = &clusterv1.Task{AttemptId: fmt.Sprintf("a%d", i)}
	}
	if n := r.Dispatch(context.Background(), "e1", &sluicev1.JobSpec{}, tasks); n != 1+queuePerSlot {
		t.Fatalf("dispatched %d, want %d", n, 1+queuePerSlot)
	}
	if n := r.Dispatch(context.Background(), "e1", &sluicev1.JobSpec{}, tasks[1+queuePerSlot:]); n != 0 {
		t.Fatalf("dispatched %d more to a full executor", n)
	}
}
