package runner

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestLoop runs one batch through the loop for each case with the fakes of
// harness_test.go. A case's script plays the executors (answering,
// failing, leaving, freezing) and moves the clock; then its check reads how
// the loop ended, what it committed and what it reported.
func TestLoop(t *testing.T) {
	cases := []struct {
		name   string
		setup  setup
		script func(h *harness)
		// wantErr is part of the error Run returns; "" wants a commit.
		wantErr string
		check   func(t *testing.T, h *harness, err error)
	}{{
		name:  "every task succeeds at once: one commit with each range's end",
		setup: setup{partitions: 3, executors: map[string]int{"e1": 2, "e2": 2}},
		script: func(h *harness) {
			for _, s := range h.nextN(3) {
				h.ok(s, nil)
			}
		},
		check: func(t *testing.T, h *harness, _ error) {
			p := h.rec.done[0]
			if p.GetNumTasks() != 3 || p.GetTaskRetries() != 0 || p.GetNumInputRows() != 30 || p.GetNumOutputRows() != 30 {
				t.Errorf("progress = %d tasks, %d retries, %d in, %d out; want 3, 0, 30, 30",
					p.GetNumTasks(), p.GetTaskRetries(), p.GetNumInputRows(), p.GetNumOutputRows())
			}
		},
	}, {
		name:  "a failed attempt runs again after its back-off, not before",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 4}},
		script: func(h *harness) {
			ts := h.nextN(2)
			h.fail(ts[0], errors.New("broker timeout"))
			h.ok(ts[1], nil)
			// The back-off is 500 ms ± 20%: 300 ms is too early.
			h.advance(300 * time.Millisecond)
			h.advance(50 * time.Millisecond)
			h.noneSent()
			h.advance(time.Second)
			again := h.next()
			if again.task.GetPartition() != ts[0].task.GetPartition() || again.task.GetAttemptId() == ts[0].task.GetAttemptId() {
				h.t.Fatalf("retry = %s; want a new attempt of %s", again.task.GetAttemptId(), ts[0].task.GetAttemptId())
			}
			h.ok(again, nil)
		},
		check: func(t *testing.T, h *harness, _ error) {
			p := h.rec.done[0]
			if p.GetTaskRetries() != 1 || attempts(p, "t/0") != 2 || attempts(p, "t/1") != 1 {
				t.Errorf("retries %d, attempts t/0 %d, t/1 %d; want 1, 2, 1", p.GetTaskRetries(), attempts(p, "t/0"), attempts(p, "t/1"))
			}
			if !h.rec.hasError("broker timeout") {
				t.Errorf("status errors %q do not show the failure", h.rec.errs)
			}
		},
	}, {
		name:  "a permanent failure fails the batch at once and cancels the rest",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 4}},
		script: func(h *harness) {
			ts := h.nextN(2)
			h.fail(ts[0], connectors.Permanent(errors.New("bad credentials")))
		},
		wantErr: "bad credentials",
		check: func(t *testing.T, h *harness, err error) {
			if !connectors.IsPermanent(err) {
				t.Errorf("Run = %v; want a permanent error", err)
			}
			if len(h.reg.cancelled) != 1 {
				t.Errorf("cancelled %q; want the other task's attempt", h.reg.cancelled)
			}
		},
	}, {
		name:  "maxTaskFailures failed attempts fail the batch",
		setup: setup{partitions: 1, executors: map[string]int{"e1": 1}, extra: "limits: {maxTaskFailures: 2}\n"},
		script: func(h *harness) {
			h.fail(h.next(), errors.New("first"))
			h.advance(time.Second)
			h.fail(h.next(), errors.New("second"))
		},
		wantErr: "second",
	}, {
		name:  "a lost executor's attempt runs again at once on another",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 1, "e2": 1}},
		script: func(h *harness) {
			ts := h.nextN(2)
			on := map[string]sent{ts[0].executor: ts[0], ts[1].executor: ts[1]}
			h.ok(on["e2"], nil)
			h.lose("e1")
			again := h.next() // no clock move: a lost attempt has no back-off
			if again.executor != "e2" || again.task.GetPartition() != on["e1"].task.GetPartition() {
				h.t.Fatalf("after e1 left, %s went to %s; want %s's task on e2", again.task.GetAttemptId(), again.executor, on["e1"].task.GetPartition())
			}
			h.ok(again, nil)
		},
	}, {
		name:  "a frozen attempt times out, is cancelled, runs again, and its late result is ignored",
		setup: setup{partitions: 1, executors: map[string]int{"e1": 1, "e2": 1}, extra: "limits: {taskTimeout: 30s}\n"},
		script: func(h *harness) {
			frozen := h.next()
			h.advance(29 * time.Second)
			h.noneSent()
			h.advance(2 * time.Second) // past the timeout: cancelled, then backs off
			h.advance(time.Second)
			again := h.next()
			if !h.reg.wasCancelled(frozen.task.GetAttemptId()) {
				h.t.Errorf("the frozen attempt %s was not cancelled", frozen.task.GetAttemptId())
			}
			// It thaws and answers, late: stale, so ignored.
			h.ok(frozen, stream.Position("elsewhere"))
			h.advance(time.Millisecond)
			h.ok(again, nil)
		},
		check: func(t *testing.T, h *harness, _ error) {
			if n := h.rec.refused["end"]; n != 0 {
				t.Errorf("the stale result was checked (%d refused); it must be dropped as stale", n)
			}
		},
	}, {
		name: "a straggler is copied to another executor; the copy wins and the straggler is cancelled",
		setup: setup{partitions: 4, executors: map[string]int{"e1": 2, "e2": 2},
			extra: "speculation: {enabled: true, quantile: 0.75, multiplier: 1.5, minTaskRuntime: 100ms}\n"},
		script: func(h *harness) {
			ts := h.nextN(4)
			straggler := ts[0]
			for _, s := range ts[1:] {
				h.advance(10 * time.Millisecond)
				h.ok(s, nil)
			}
			// The others took 10-30 ms: a straggler after 100 ms (minTaskRuntime).
			h.advance(50 * time.Millisecond)
			h.noneSent()
			h.advance(100 * time.Millisecond)
			cp := h.next()
			if cp.executor == straggler.executor || cp.task.GetPartition() != straggler.task.GetPartition() {
				h.t.Fatalf("copy %s on %s; want %s's task on another executor", cp.task.GetAttemptId(), cp.executor, straggler.executor)
			}
			h.ok(cp, nil)
			h.wantCancelled = straggler.task.GetAttemptId()
		},
		check: func(t *testing.T, h *harness, _ error) {
			if p := h.rec.done[0]; p.GetSpeculativeTasks() != 1 || h.rec.copies != 1 {
				t.Errorf("speculative tasks %d, counted %d; want 1", p.GetSpeculativeTasks(), h.rec.copies)
			}
		},
	}, {
		name: "the straggler finishes before its copy: the copy is cancelled",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 1, "e2": 1},
			extra: "speculation: {enabled: true, quantile: 0.5, minTaskRuntime: 100ms}\n"},
		script: func(h *harness) {
			ts := h.nextN(2)
			h.ok(ts[1], nil)
			h.advance(200 * time.Millisecond)
			cp := h.next()
			h.ok(ts[0], nil)
			h.wantCancelled = cp.task.GetAttemptId()
		},
	}, {
		name:  "without speculation a slow task is waited for",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 1, "e2": 1}},
		script: func(h *harness) {
			ts := h.nextN(2)
			h.ok(ts[1], nil)
			h.advance(5 * time.Minute)
			h.noneSent()
			h.ok(ts[0], nil)
		},
	}, {
		name:  "a result whose end is not the plan's is refused and the task runs again",
		setup: setup{partitions: 1, executors: map[string]int{"e1": 1}},
		script: func(h *harness) {
			h.ok(h.next(), stream.Position("short"))
			h.advance(time.Second)
			h.ok(h.next(), nil)
		},
		check: func(t *testing.T, h *harness, _ error) {
			if h.rec.refused["end"] != 1 {
				t.Errorf("refused %v; want one for its end", h.rec.refused)
			}
		},
	}, {
		name:  "results of another batch and unknown attempts are ignored",
		setup: setup{partitions: 1, executors: map[string]int{"e1": 1}},
		script: func(h *harness) {
			s := h.next()
			other := proto.Clone(s.task).(*clusterv1.Task)
			other.Batch = 7
			h.ok(sent{executor: s.executor, task: other}, nil)
			unknown := proto.Clone(s.task).(*clusterv1.Task)
			unknown.AttemptId = "j/0/t/0/3.1.999"
			h.ok(sent{executor: s.executor, task: unknown}, nil)
			h.advance(time.Millisecond)
			h.noneSent()
			h.ok(s, nil)
		},
	}, {
		name:  "a fenced commit ends the loop as a lost leadership",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 2}, fenced: true},
		script: func(h *harness) {
			for _, s := range h.nextN(2) {
				h.ok(s, nil)
			}
		},
		wantErr: "lost leadership",
		check: func(t *testing.T, h *harness, err error) {
			if !errors.Is(err, ErrLostLeadership) || !errors.Is(err, checkpoint.ErrFenced) {
				t.Errorf("Run = %v; want ErrLostLeadership and ErrFenced", err)
			}
		},
	}, {
		name:  "a failing plan is retried with back-off and shown",
		setup: setup{partitions: 1, executors: map[string]int{"e1": 1}, planFails: []error{errors.New("brokers unreachable")}},
		script: func(h *harness) {
			h.advance(500 * time.Millisecond)
			h.noneSent()
			h.advance(time.Second)
			h.ok(h.next(), nil)
		},
		check: func(t *testing.T, h *harness, _ error) {
			if !h.rec.hasError("brokers unreachable") {
				t.Errorf("status errors %q do not show the planning failure", h.rec.errs)
			}
		},
	}, {
		name:  "a batch waits for executors, says so, and runs when one connects",
		setup: setup{partitions: 1, executors: map[string]int{}},
		script: func(h *harness) {
			for range 30 {
				h.advance(250 * time.Millisecond)
			}
			h.noneSent()
			h.reg.join("e1", 1)
			h.advance(250 * time.Millisecond)
			h.ok(h.next(), nil)
		},
		check: func(t *testing.T, h *harness, _ error) {
			if !h.rec.hasError("none connected") {
				t.Errorf("status errors %q do not say the batch waits for executors", h.rec.errs)
			}
		},
	}, {
		name: "an uncommitted recorded plan runs again as recorded",
		setup: setup{partitions: 2, executors: map[string]int{"e1": 2}, recorded: &checkpoint.BatchPlan{Batch: 0,
			Ranges: []stream.Range{
				{Partition: "t/0", From: stream.Position("recorded"), Until: stream.Position("end")},
				{Partition: "t/1", From: stream.Position("recorded"), Until: stream.Position("end")},
			},
			Start: map[stream.PartitionID]stream.Position{"t/0": stream.Position("recorded"), "t/1": stream.Position("recorded")}}},
		script: func(h *harness) {
			for _, s := range h.nextN(2) {
				if string(s.task.GetFrom()) != "recorded" {
					h.t.Errorf("task %s starts at %q; want the recorded plan's start", s.task.GetAttemptId(), s.task.GetFrom())
				}
				h.ok(s, nil)
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := startLoop(t, c.setup)
			c.script(h)
			err := h.end()
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Run = %v; want nil", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Run = %v; want an error with %q", err, c.wantErr)
			}
			commit, cerr := h.committed()
			if c.wantErr == "" {
				if cerr != nil {
					t.Fatalf("no commit: %v", cerr)
				}
				for p, end := range commit.Ends {
					if string(end) != "end" {
						t.Errorf("committed end of %s = %q; want the plan's", p, end)
					}
				}
				if len(commit.Ends) != c.setup.partitions || len(h.rec.done) != 1 {
					t.Errorf("committed %d partitions, %d batches reported; want %d, 1", len(commit.Ends), len(h.rec.done), c.setup.partitions)
				}
			} else if !errors.Is(cerr, checkpoint.ErrNotFound) {
				t.Errorf("a failed batch committed: %+v, %v", commit, cerr)
			}
			if h.wantCancelled != "" && !h.reg.wasCancelled(h.wantCancelled) {
				t.Errorf("attempt %s was not cancelled", h.wantCancelled)
			}
			if c.check != nil {
				c.check(t, h, err)
			}
		})
	}
}

// attempts is how many attempts the progress records for a task.
func attempts(p *sluicev1.BatchProgress, task string) int32 {
	i := slices.IndexFunc(p.GetPartitions(), func(pp *sluicev1.PartitionProgress) bool { return pp.GetPartition() == task })
	if i < 0 {
		return 0
	}
	return p.GetPartitions()[i].GetAttempts()
}
