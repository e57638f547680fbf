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
// the driver's books, and cancelled attempts give their share back.
func TestRegistrySharedSlots(t *testing.T) {
	tests := []struct {
		tasksPerSlot int32
		slots        int
		want         int
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
			tasks := make([]*clusterv1.Task, 20)
			ids := make([]string, len(tasks))
			for i := range tasks {
				ids[i] = fmt.Sprintf("a%d", i)
				tasks[i] = &clusterv1.Task{AttemptId: ids[i], TasksPerSlot: tc.tasksPerSlot}
			}
			if n := r.Dispatch(context.Background(), "e1", &sluicev1.JobSpec{}, tasks); n != tc.want {
				t.Fatalf("dispatched %d tasks, want %d", n, tc.want)
			}
			if free := r.Snapshot(scheduler.TaskCost(int(tc.tasksPerSlot)))[0].Free; free != 0 {
				t.Errorf("free after filling = %d, want 0", free)
			}
			r.Cancel(ids[:1])
			if n := r.Dispatch(context.Background(), "e1", &sluicev1.JobSpec{}, tasks[tc.want:]); n != 1 {
				t.Errorf("after one cancel dispatched %d, want 1", n)
			}
			if ec.running != tc.want {
				t.Errorf("running = %d, want %d", ec.running, tc.want)
			}
		})
	}
}
