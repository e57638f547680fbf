package runner

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
)

// batchesSource plans batches batches of n partitions: batch k reads every
// partition from position k to k+1. Then it is exhausted.
type batchesSource struct{ n, batches int }

func (s *batchesSource) Plan(_ context.Context, req connectors.PlanRequest) (connectors.Plan, error) {
	k := 0
	if c, ok := req.Committed["t/0"]; ok {
		k, _ = strconv.Atoi(string(c))
	}
	if k >= s.batches {
		return connectors.Plan{Exhausted: true}, nil
	}
	p := connectors.Plan{Start: map[stream.PartitionID]stream.Position{}, Exhausted: k+1 == s.batches}
	for i := range s.n {
		id := stream.PartitionID(fmt.Sprintf("t/%d", i))
		p.Ranges = append(p.Ranges, stream.Range{Partition: id, From: stream.Position(strconv.Itoa(k)), Until: stream.Position(strconv.Itoa(k + 1))})
		p.Start[id] = stream.Position(strconv.Itoa(k))
	}
	return p, nil
}

func (s *batchesSource) Identity() string { return "batches" }
func (s *batchesSource) Close() error     { return nil }

// TestLoopQueuesShortTasks: the first batch sends tasks only into free
// slots and measures how long a task holds one; once that is known, a
// batch sends at once, beyond the free slots, the tasks that start within
// queueWait (half of minTaskRuntime with speculation), and they wait on the
// executor for a slot.
func TestLoopQueuesShortTasks(t *testing.T) {
	const tasks = 8
	for _, tc := range []struct {
		name  string
		extra string
		// first is how many tasks the second batch sends before any
		// result: 1 ms a task on 2 slots.
		first int
	}{
		{"up to 50 ms of tasks wait", "", tasks},
		{"with speculation, up to half of minTaskRuntime", "speculation: {enabled: true, minTaskRuntime: 2ms}\n", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startLoop(t, setup{executors: map[string]int{"e1": 2}, trigger: "{availableNow: true}", extra: tc.extra,
				source: &batchesSource{n: tasks, batches: 2}})
			// Batch 0: two at a time, each taking 1 ms.
			for range tasks / 2 {
				ts := h.nextN(2)
				h.noneSent()
				h.advance(time.Millisecond)
				for _, s := range ts {
					h.ok(s, nil)
				}
			}
			// Batch 1.
			first := h.nextN(tc.first)
			h.noneSent()
			for _, s := range first {
				if s.task.GetBatch() != 1 {
					t.Fatalf("%s is of batch %d; want 1", s.task.GetAttemptId(), s.task.GetBatch())
				}
			}
			rest := tasks - tc.first
			for _, s := range first {
				h.ok(s, nil)
			}
			for _, s := range h.nextN(rest) {
				h.ok(s, nil)
			}
			if err := h.end(); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if c, err := h.committed(); err != nil || c.Batch != 1 {
				t.Fatalf("last commit %+v, %v; want batch 1", c, err)
			}
		})
	}
}

func TestQueueAllowance(t *testing.T) {
	e := func(slots, queued, room int) scheduler.Executor {
		return scheduler.Executor{Slots: slots, Queued: queued, QueueRoom: room}
	}
	for _, tc := range []struct {
		name           string
		wait, taskTime time.Duration
		e              scheduler.Executor
		want           int
	}{
		{"task time unknown", 50 * time.Millisecond, 0, e(2, 0, 100), 0},
		{"25 a slot", 50 * time.Millisecond, 2 * time.Millisecond, e(2, 0, 1000), 50},
		{"less what waits already", 50 * time.Millisecond, 2 * time.Millisecond, e(2, 30, 1000), 20},
		{"more wait than allowed", 50 * time.Millisecond, 2 * time.Millisecond, e(2, 80, 1000), 0},
		{"tasks longer than queueMaxTaskTime", 50 * time.Millisecond, 3 * time.Millisecond, e(2, 0, 1000), 0},
		{"within the room", 50 * time.Millisecond, time.Microsecond, e(2, 0, 2048), 2048},
		{"tasks longer than the wait", 50 * time.Millisecond, time.Second, e(4, 0, 1000), 0},
		{"no slots", 50 * time.Millisecond, time.Millisecond, e(0, 0, 1000), 0},
	} {
		if got := queueAllowance(tc.wait, tc.taskTime, tc.e); got != tc.want {
			t.Errorf("%s: queueAllowance = %d, want %d", tc.name, got, tc.want)
		}
	}
}
