package runner

import (
	"bufio"
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// idlePoll is how often a job with no new data looks again when its trigger
// interval is shorter.
const idlePoll = 250 * time.Millisecond

// Loop runs one job's micro-batches; it is owned by the goroutine that
// calls Run and stops when Run's ctx ends.
type Loop struct {
	cfg     Config
	job     *jobspec.Job
	name    string
	source  connectors.Source
	sink    connectors.Sink
	store   checkpoint.Store
	reg     Dispatcher
	status  Status
	metrics Metrics
	clock   Clock
	log     *slog.Logger

	committed map[stream.PartitionID]stream.Position
	next      stream.BatchID
	lastStart time.Time
	lastOwner map[stream.PartitionID]string
	// attemptN makes attempt ids unique within the loop; cfg.LoopID
	// across the loops a job has had on this leader, the epoch across
	// leaders.
	attemptN int64
	// commits counts the batches this loop committed.
	commits int
	// lastMetrics are the source figures of the last plan.
	lastMetrics map[string]float64
	// summarized are the figures of the last TaskMetricsSummarizer call.
	summarized map[string]float64
	// batchTime is the current batch's recorded planning time: what its
	// SQL sees as the current time, in every task and every replay.
	batchTime time.Time
	// planned is when the source returned the current batch's plan.
	planned time.Time
	// stateInputs are the state tasks of the batch's second stage, by task
	// key, while it runs (runState).
	stateInputs map[string]*clusterv1.StateTask
	// maxEventTime is the largest event time of the committed batches of a
	// job with a watermark (zero: none yet); batchMax the current batch's,
	// including its records.
	maxEventTime, batchMax time.Time
	// taskTime is how long a task holds a slot, measured over the last
	// batches' execute stages (observeTaskTime); 0 before the first.
	taskTime time.Duration
}

// attemptLog is what the batch loop knows of the attempts of one batch:
// where each ran and since when, and how many each task took.
type attemptLog struct {
	executor map[string]string    // attempt id → executor
	started  map[string]time.Time // attempt id → dispatch time
	tries    map[string]int32     // task key → attempts dispatched
	took     map[string]time.Duration
}

func newAttemptLog() *attemptLog {
	return &attemptLog{executor: map[string]string{}, started: map[string]time.Time{}, tries: map[string]int32{}, took: map[string]time.Duration{}}
}

// Run repeats the micro-batch until the trigger says the job is finished
// (nil), ctx ends (ctx.Err()), or the job fails.
func (l *Loop) Run(ctx context.Context) error {
	st := l.store
	c, err := st.LatestCommit(ctx, l.name)
	switch {
	case err == nil:
		l.committed, l.next = c.Ends, c.Batch+1
		if l.job.State != nil && l.job.State.Watermark != nil { // only they record it
			if l.maxEventTime, err = lastMaxEventTime(c); err != nil {
				return err
			}
		}
	case errors.Is(err, checkpoint.ErrNotFound):
		l.committed, l.next = map[stream.PartitionID]stream.Position{}, 0
	default:
		return fmt.Errorf("load last commit: %w", err)
	}
	// An uncommitted planned batch is re-run with its recorded plan: the
	// same ranges, so a replay reads exactly the records the first run did.
	var replay *checkpoint.BatchPlan
	if p, err := st.LatestPlan(ctx, l.name); err == nil && p.Batch >= l.next {
		replay = &p
		l.log.Info("re-running uncommitted batch with its recorded plan", "job", l.name, "batch", p.Batch)
	} else if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
		return fmt.Errorf("load last plan: %w", err)
	}

	l.watchCommitErrors()
	trig := l.job.Trigger
	nextAt := l.clock.Now()
	for {
		var plan checkpoint.BatchPlan
		planStart := l.clock.Now()
		if replay != nil {
			plan, replay = *replay, nil
			l.next = plan.Batch
			l.planned = planStart
		} else {
			if err := SleepUntil(ctx, l.clock, nextAt); err != nil {
				return err
			}
			planStart = l.clock.Now()
			nextAt = planStart.Add(trig.Interval)
			p, err := l.plan(ctx)
			if err != nil {
				return err
			}
			l.planned = l.clock.Now()
			if len(p.Ranges) == 0 && !l.newPartitions(p.Start) {
				if trig.Once || (trig.AvailableNow && p.Exhausted) {
					return nil
				}
				nextAt = planStart.Add(max(trig.Interval, idlePoll))
				continue
			}
			plan = checkpoint.BatchPlan{Batch: l.next, Ranges: p.Ranges, Start: p.Start, Exhausted: p.Exhausted, Planned: planStart,
				TasksPerSlot: p.TasksPerSlot}
			l.metrics.SourceMetrics(l.name, p.Metrics)
			// A batch's phases reach watchers at most every currentEvery,
			// like its progress within a phase: every event carries the
			// last batch's progress (up to a thousand tasks), and a batch
			// of a few ms forcing one per phase sent hundreds a second.
			l.status.SetCurrent(l.name, &sluicev1.BatchRun{BatchId: int64(plan.Batch), StartTime: timestamppb.New(planStart),
				Phase: "record", TasksTotal: int32(len(plan.Ranges))}, false)
			if err := st.PutPlan(ctx, l.cfg.Fence, l.name, plan); err != nil {
				return l.storeErr("record plan", err)
			}
			l.lastMetrics = p.Metrics
		}
		if err := l.runBatch(ctx, plan, planStart); err != nil {
			return err
		}
		if trig.Once || (trig.AvailableNow && plan.Exhausted) {
			return nil
		}
	}
}

func (l *Loop) storeErr(what string, err error) error {
	if errors.Is(err, checkpoint.ErrFenced) {
		return fmt.Errorf("%s: %w: %w", what, ErrLostLeadership, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// newPartitions reports whether the plan knows partitions the last commit
// does not. Their start positions must be committed even without data:
// otherwise "latest" would be re-resolved at every batch and records that
// arrive in between would be skipped.
func (l *Loop) newPartitions(start map[stream.PartitionID]stream.Position) bool {
	for p := range start {
		if _, ok := l.committed[p]; !ok {
			return true
		}
	}
	return false
}

// plan asks the source for the next batch, retrying transient errors with
// back-off and showing them in the job's status.
func (l *Loop) plan(ctx context.Context) (connectors.Plan, error) {
	backoff := time.Second
	started, planning := l.clock.Now(), false
	for {
		p, err := l.source.Plan(ctx, connectors.PlanRequest{
			Batch: l.next, Committed: l.committed, Interval: l.job.Trigger.Interval, AvailableNow: l.job.Trigger.AvailableNow,
		})
		if err == nil {
			l.status.SetError(l.name, "")
			if planning {
				l.status.SetCurrent(l.name, nil, true)
			}
			return p, nil
		}
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
		if connectors.IsPermanent(err) {
			return p, fmt.Errorf("plan batch %d: %w", l.next, err)
		}
		l.log.Warn("planning failed; retrying", "job", l.name, "batch", l.next, "err", err, "retryIn", backoff)
		l.status.SetError(l.name, fmt.Sprintf("plan batch %d: %v (retrying in %s)", l.next, err, backoff))
		if !planning {
			// Show the batch as in flight (planning) while planning fails;
			// a plan that succeeds at once is too short to show.
			planning = true
			l.status.SetCurrent(l.name, &sluicev1.BatchRun{BatchId: int64(l.next), StartTime: timestamppb.New(started), Phase: "plan"}, true)
		}
		if err := SleepUntil(ctx, l.clock, l.clock.Now().Add(backoff)); err != nil {
			return p, err
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// runBatch dispatches the plan's tasks, waits for all of them, writes the
// driver-side output (merged aggregates, collected rows), and commits.
func (l *Loop) runBatch(ctx context.Context, plan checkpoint.BatchPlan, planStart time.Time) error {
	batch := plan.Batch
	recordDone := l.clock.Now()
	l.batchTime = plan.Planned
	if l.batchTime.IsZero() { // a plan recorded before plans had a time
		l.batchTime = planStart
	}

	ranges := make(map[string]stream.Range, len(plan.Ranges))
	keys := make([]string, 0, len(plan.Ranges))
	var needEnds bool
	for _, r := range plan.Ranges {
		ranges[r.Key()] = r
		keys = append(keys, r.Key())
		needEnds = needEnds || r.Until == nil
	}
	if needEnds {
		// Ends recorded by an earlier run of this batch bound the replay.
		ends, err := l.store.TaskEnds(ctx, l.name, batch)
		if err != nil {
			return fmt.Errorf("load task ends of batch %d: %w", batch, err)
		}
		for k, e := range ends {
			if r, ok := ranges[k]; ok && r.Until == nil {
				r.Until = e
				ranges[k] = r
			}
		}
	}

	run := &sluicev1.BatchRun{BatchId: int64(batch), StartTime: timestamppb.New(planStart), Phase: "execute", TasksTotal: int32(len(keys))}
	src, err := l.execute(ctx, batch, keys, ranges, plan.TasksPerSlot, run)
	if err != nil {
		return err
	}
	results, att := src.results, src.att
	// A stateful job's second stage: its state partitions merge the batch's
	// groups and write the output.
	outKeys, outResults := keys, results
	var state *stageRun
	if l.job.State != nil {
		if state, err = l.runState(ctx, batch, keys, results, run); err != nil {
			return err
		}
		outKeys, outResults = stateKeys(l.job.State.Partitions), state.results
		src.dispatching += state.dispatching
		src.retries += state.retries
	}
	execDone := l.clock.Now()
	run.Phase, run.TasksRunning = "commit", 0
	l.status.SetCurrent(l.name, run, false)

	outRows, err := l.driverWrite(ctx, batch, outKeys, outResults)
	if err != nil {
		return err
	}
	if bc, ok := l.sink.(connectors.BatchCommitter); ok {
		if err := bc.CommitBatch(ctx, stream.JobID(l.name), batch); err != nil {
			return fmt.Errorf("commit batch %d in sink: %w", batch, err)
		}
	}

	ends := make(map[stream.PartitionID]stream.Position, len(plan.Start))
	for p, pos := range plan.Start {
		ends[p] = pos
	}
	lastSplit := map[stream.PartitionID]int{}
	for _, k := range keys {
		r := ranges[k]
		if s, seen := lastSplit[r.Partition]; seen && s > r.Split {
			continue
		}
		lastSplit[r.Partition] = r.Split
		ends[r.Partition] = results[k].GetEnd()
	}
	progress := l.progress(plan, planStart, recordDone, execDone, keys, ranges, results, att, src.retries, outRows)
	progress.SpeculativeTasks = int32(src.copies)
	progress.DurationMs["dispatch"] = src.dispatching.Milliseconds()
	if state != nil {
		progress.StateOperators = []*sluicev1.StateOperatorProgress{stateProgress(l.job, state.results)}
		progress.EventTime = l.eventTimeProgress()
	}
	progress.DurationMs["execute"] = max(progress.DurationMs["execute"]-progress.DurationMs["dispatch"], 0)
	pj, err := storeProgress(progress)
	if err != nil {
		return fmt.Errorf("encode the progress of batch %d: %w", batch, err)
	}
	commitStart := l.clock.Now()
	if err := l.store.PutCommit(ctx, l.cfg.Fence, l.name, checkpoint.Commit{Batch: batch, Ends: ends, Committed: commitStart, Progress: pj}); err != nil {
		return l.storeErr(fmt.Sprintf("commit batch %d", batch), err)
	}
	l.commits++
	if l.job.State != nil {
		l.maxEventTime = l.batchMax
	}
	l.observeCommit(ctx, batch, ends)
	progress.DurationMs["commit"] = l.clock.Now().Sub(execDone).Milliseconds()
	progress.DurationMs["total"] = l.clock.Now().Sub(planStart).Milliseconds()
	l.committed = ends
	l.next = batch + 1
	l.status.BatchDone(l.name, progress)
	if retain := stream.BatchID(l.cfg.Retain); batch > retain && batch%10 == 0 {
		if err := l.store.Purge(ctx, l.cfg.Fence, l.name, batch-retain); err != nil {
			l.log.Warn("purging old batches failed", "job", l.name, "err", err)
		}
	}
	return nil
}

// stageRun is what one stage of a batch's tasks left: the winning result
// of each task, where and how long the attempts ran, and the figures.
type stageRun struct {
	results     map[string]*clusterv1.TaskResult
	att         *attemptLog
	dispatching time.Duration
	retries     int
	copies      int
}

// execute runs one task per key (the ranges of a plan, or a stateful job's
// state partitions) until each has succeeded once, retrying failed and
// lost attempts and copying stragglers; an error ends the batch. run is the
// batch's status, updated as tasks finish.
func (l *Loop) execute(ctx context.Context, batch stream.BatchID, keys []string, ranges map[string]stream.Range,
	tasksPerSlot int, run *sluicev1.BatchRun) (*stageRun, error) {
	sub, unsub := l.reg.Subscribe(l.name)
	defer unsub()
	b := scheduler.NewBatch(keys, l.job.Retry)
	results := make(map[string]*clusterv1.TaskResult, len(keys))
	att := newAttemptLog()
	executorOf := att.executor
	l.status.SetCurrent(l.name, run, false)
	timer := l.clock.NewTimer(0)
	defer timer.Stop()
	var noExecutorsSince time.Time
	var dispatching time.Duration
	var queues *affinity // built once executors are known
	started, slots := l.clock.Now(), 0
	cost := scheduler.TaskCost(tasksPerSlot)
	// handle records one task result; an error ends the batch.
	handle := func(res *clusterv1.TaskResult) error {
		if res.GetBatch() != int64(batch) {
			return nil
		}
		if res.GetOk() {
			if key, ok := b.Running(res.GetAttemptId()); ok && !isStateKey(key) {
				if err := l.checkEnd(ranges[key], res.GetEnd()); err != nil {
					// Never commit an end the plan does not allow: the
					// attempt counts as failed and the task runs again.
					l.log.Warn("task result refused", "job", l.name, "batch", batch, "task", key,
						"executor", executorOf[res.GetAttemptId()], "attempt", res.GetAttemptId(), "err", err)
					l.status.SetError(l.name, fmt.Sprintf("batch %d task %s: result refused (retrying): %v", batch, key, err))
					l.metrics.ResultRefused("end")
					_, _ = b.Failed(res.GetAttemptId(), err, false, l.clock.Now())
					return nil
				}
			}
			key, err := b.Succeeded(res.GetAttemptId(), l.clock.Now())
			if err != nil {
				return nil // a stale attempt: its range was retried elsewhere, or its twin won
			}
			// The speculative twin of this attempt lost: cancel it. Whatever
			// it wrote is discarded by the sinks' (job, batch, part) keys.
			l.reg.Cancel(b.Superseded())
			results[key] = res
			att.took[key] = l.clock.Now().Sub(att.started[res.GetAttemptId()])
			run.TasksDone++
			run.InputRows += res.GetRecordsIn()
			if r := ranges[key]; r.Until == nil && res.GetEnd() != nil {
				if err := l.store.PutTaskEnd(ctx, l.cfg.Fence, l.name, batch, key, res.GetEnd()); err != nil {
					l.reg.Cancel(b.Live())
					return l.storeErr("record task end", err)
				}
			}
			l.lastOwner[ranges[key].Partition] = executorOf[res.GetAttemptId()]
			return nil
		}
		// The executor's error, decoded from the result's status: a data
		// loss or a permanent failure fails the job (the restart strategy
		// asks connectors.IsPermanent of the same error), not its text.
		cause := rpc.TaskFailure(res)
		permanent := connectors.IsPermanent(cause)
		key, err := b.Failed(res.GetAttemptId(), cause, permanent, l.clock.Now())
		l.reg.Cancel(b.Superseded()) // a permanent failure ends the twin too
		if err == nil {
			l.log.Warn("task attempt failed", "job", l.name, "batch", batch, "task", key,
				"executor", executorOf[res.GetAttemptId()], "err", cause, "permanent", permanent)
			if !permanent {
				l.status.SetError(l.name, fmt.Sprintf("batch %d task %s failed (retrying): %v", batch, key, cause))
			}
		}
		return nil
	}
	for !b.Complete() && b.Err() == nil {
		now := l.clock.Now()
		l.reg.Cancel(b.Expire(now))
		// A turn places only as many tasks as there are free slots, each
		// executor's from its own queue first: it costs what it
		// dispatches, not what is pending.
		execs := l.reg.Snapshot(cost)
		slots = max(slots, totalSlots(execs))
		l.queueing(execs)
		if queues == nil && len(execs) > 0 {
			queues = newAffinity(keys, ranges, execs, l.lastOwner)
			queues.taskTime = l.taskTime
		}
		if placed := queues.place(b, now, execs); len(placed) > 0 || (len(execs) == 0 && b.HasPending()) {
			if len(execs) == 0 {
				if noExecutorsSince.IsZero() {
					noExecutorsSince = now
				} else if now.Sub(noExecutorsSince) > 5*time.Second {
					l.status.SetError(l.name, fmt.Sprintf("batch %d waits for executors: none connected", batch))
				}
			} else if !noExecutorsSince.IsZero() {
				noExecutorsSince = time.Time{}
				l.status.SetError(l.name, "")
			}
			for _, p := range l.dispatch(ctx, b, placed, ranges, batch, tasksPerSlot, att) {
				queues.putBack(p)
			}
			dispatching += l.clock.Now().Sub(now)
		}
		if stragglers := b.Stragglers(now); len(stragglers) > 0 {
			l.speculate(ctx, b, stragglers, ranges, batch, tasksPerSlot, cost, att)
			dispatching += l.clock.Now().Sub(now)
		}
		run.TasksRunning, run.TaskRetries = int32(b.NumLive()), int32(b.Retries())
		l.status.SetCurrent(l.name, run, false)
		wake := 250 * time.Millisecond
		if w := b.NextWake(); !w.IsZero() {
			wake = min(wake, max(w.Sub(l.clock.Now()), time.Millisecond))
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			l.reg.Cancel(b.Live())
			return nil, ctx.Err()
		case n := <-sub.Lost:
			now := l.clock.Now()
			for _, a := range n.Attempts {
				if key, ok := b.AttemptLost(a, fmt.Errorf("executor %s lost", n.Executor), now); ok {
					l.log.Warn("task attempt lost with its executor; retrying", "job", l.name, "batch", batch, "task", key, "attempt", a, "executor", n.Executor)
				}
			}
		case res := <-sub.Results:
			// Take every result already waiting before the next scheduling
			// turn: the turn then sends each executor the tasks for all of
			// its freed slots in one message.
			for more := true; more; {
				if err := handle(res); err != nil {
					return nil, err
				}
				select {
				case res = <-sub.Results:
				default:
					more = false
				}
			}
		case <-timer.C():
		}
	}
	if err := b.Err(); err != nil {
		l.reg.Cancel(b.Live())
		return nil, fmt.Errorf("batch %d: %w", batch, err)
	}
	l.observeTaskTime(l.clock.Now().Sub(started), slots, len(keys))
	return &stageRun{results: results, att: att, dispatching: dispatching, retries: b.Retries(), copies: b.Copies()}, nil
}

// queueWait bounds how long a task waits in an executor's queue for a
// slot. A batch of many small tasks would otherwise cost a round trip to
// the executor per slot and task (the result frees the slot, the next
// task goes out): at 1,024 one-record tasks on two executors of two
// slots, 256 round trips a batch. Tasks sent ahead wait on the executor's
// slot semaphore instead, and start as soon as a slot frees. The bound
// keeps what queueing does to the rest small: a queued task's timeout and
// straggler clock run from its dispatch, so its wait counts against them;
// tasks sent ahead cannot move to an executor that frees up first; and
// another job's tasks on the same executor wait behind them.
const queueWait = 50 * time.Millisecond

// queueMaxTaskTime is the longest task sent ahead of a free slot. Sending
// ahead saves a dispatch round trip (well under a millisecond) per task,
// which matters for tasks of that order only; a longer task waits on the
// driver, where an idle executor can still take it (stealing) and a frozen
// one holds only what it runs: with tasks of 20 ms sent ahead, an
// executor stopped with SIGSTOP (make bench scenario 5b) held twice the
// tasks, and its batch committed 40 ms later after the heartbeat timeout.
const queueMaxTaskTime = 2 * time.Millisecond

// queueing adds to each executor's free slots the tasks it may take to
// wait for a slot this turn (queueAllowance). Nothing is queued before the
// first batch measured how long a task takes.
func (l *Loop) queueing(execs []scheduler.Executor) {
	wait := queueWait
	if sp := l.job.Retry.Speculation; sp.Enabled {
		// A task that waited half of minTaskRuntime still has to run
		// as long as the others to be taken for a straggler.
		wait = min(wait, sp.MinTaskRuntime/2)
	}
	for i := range execs {
		execs[i].Free += queueAllowance(wait, l.taskTime, execs[i])
	}
}

// queueAllowance is how many tasks e may take beyond its free slots: as
// many as its slots start within wait, taking taskTime each, less those
// already waiting, within the room it has. None while taskTime is unknown
// or longer than queueMaxTaskTime.
func queueAllowance(wait, taskTime time.Duration, e scheduler.Executor) int {
	if taskTime <= 0 || taskTime > queueMaxTaskTime || e.Slots <= 0 {
		return 0
	}
	perSlot := int64(wait / taskTime)
	return int(max(min(perSlot*int64(e.Slots)-int64(e.Queued), int64(e.QueueRoom)), 0))
}

// observeTaskTime folds one stage's execution into taskTime: the stage took
// took on slots slots for tasks tasks, so a task held a slot for about
// took × slots / tasks (scheduling and round trips included; a stage
// waiting on one slow task makes it larger, and queueing then more
// careful). The mean with the previous figure smooths one odd batch.
func (l *Loop) observeTaskTime(took time.Duration, slots, tasks int) {
	if slots <= 0 || tasks <= 0 {
		return
	}
	t := took * time.Duration(slots) / time.Duration(tasks)
	if l.taskTime > 0 {
		t = (t + l.taskTime) / 2
	}
	l.taskTime = t
}

// totalSlots is the slots of execs together.
func totalSlots(execs []scheduler.Executor) int {
	n := 0
	for _, e := range execs {
		n += e.Slots
	}
	return n
}

// dispatch sends the placed tasks, one message per executor, and records
// the attempts that were sent. It returns the tasks an executor did not
// take (it left, or filled up meanwhile): they stay pending.
func (l *Loop) dispatch(ctx context.Context, b *scheduler.Batch, placed []placement, ranges map[string]stream.Range,
	batch stream.BatchID, tasksPerSlot int, att *attemptLog) (unsent []placement) {
	now := l.clock.Now()
	for _, p := range placed {
		tasks := make([]*clusterv1.Task, len(p.keys))
		for i, k := range p.keys {
			tasks[i] = l.newTask(ranges[k], batch, tasksPerSlot)
		}
		n := l.reg.Dispatch(ctx, p.executor, l.job.Spec, tasks)
		for i, t := range tasks[:n] {
			key := p.keys[i]
			b.Started(key, t.GetAttemptId(), p.executor, now)
			att.started[t.GetAttemptId()], att.executor[t.GetAttemptId()] = now, p.executor
			att.tries[key]++
		}
		if n < len(p.keys) {
			unsent = append(unsent, placement{executor: p.executor, keys: p.keys[n:]})
		}
	}
	return unsent
}

// speculate starts a copy of each straggler whose range has a planned end
// on another executor with a free slot, the most free first. A range
// without one (an open Kinesis range on its first run) ends where its
// reader stops, so two attempts would read different records: it is never
// copied (the job spec refuses speculation for such sources anyway).
func (l *Loop) speculate(ctx context.Context, b *scheduler.Batch, stragglers []scheduler.Straggler, ranges map[string]stream.Range,
	batch stream.BatchID, tasksPerSlot int, cost int, att *attemptLog) {
	execs := l.reg.Snapshot(cost)
	for _, st := range stragglers {
		r := ranges[st.Key]
		if r.Until == nil {
			continue
		}
		best := -1
		for i, e := range execs {
			if e.ID != st.Executor && e.Free > 0 && (best < 0 || e.Free > execs[best].Free) {
				best = i
			}
		}
		if best < 0 {
			return // no other executor has room; the next turn looks again
		}
		t := l.newTask(r, batch, tasksPerSlot)
		e := execs[best].ID
		if l.reg.Dispatch(ctx, e, l.job.Spec, []*clusterv1.Task{t}) == 0 {
			continue
		}
		now := l.clock.Now()
		execs[best].Free--
		b.StartedCopy(st.Key, t.GetAttemptId(), e, now)
		att.started[t.GetAttemptId()], att.executor[t.GetAttemptId()] = now, e
		att.tries[st.Key]++
		l.metrics.Speculated(l.name)
		l.log.Info("speculative attempt of a straggling task", "job", l.name, "batch", batch, "task", st.Key,
			"straggler", st.Executor, "copy", e, "attempt", t.GetAttemptId())
	}
}

// newTask is a new attempt of range r: a fresh attempt id (unique across
// this job's loops on this leader and across leaders) and token.
func (l *Loop) newTask(r stream.Range, batch stream.BatchID, tasksPerSlot int) *clusterv1.Task {
	l.attemptN++
	return &clusterv1.Task{
		Job: l.name, Batch: int64(batch), Epoch: l.cfg.Fence.Epoch, Partition: string(r.Partition), Split: int32(r.Split),
		From: r.From, Until: r.Until, SpecHash: l.job.Hash, TasksPerSlot: int32(tasksPerSlot),
		Incarnation: l.cfg.Incarnation,
		AttemptId:   AttemptID{Job: l.name, Batch: batch, Task: r.Key(), Epoch: l.cfg.Fence.Epoch, Loop: l.cfg.LoopID, N: l.attemptN}.String(),
		Token:       newToken(), BatchTime: timestamppb.New(l.batchTime), State: l.stateInputs[r.Key()],
	}
}

// driverWrite writes what the driver itself outputs for a batch: the merged
// groups of an aggregating job, or the rows collected for a console sink.
// The write key is per batch, so a replay replaces it.
func (l *Loop) driverWrite(ctx context.Context, batch stream.BatchID, keys []string, results map[string]*clusterv1.TaskResult) (int64, error) {
	var rows []stream.Row
	part := ""
	switch {
	case l.job.SQL != nil && l.job.SQL.Aggregating() && l.job.State == nil:
		partials := make([][]byte, 0, len(keys))
		for _, k := range keys {
			partials = append(partials, results[k].GetPartialAggregate())
		}
		return l.writeMerged(ctx, batch, partials)
	case l.cfg.Collect > 0:
		for _, k := range keys {
			sc := bufio.NewScanner(bytes.NewReader(results[k].GetRows()))
			sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
			for sc.Scan() && len(rows) < l.cfg.Collect {
				var r stream.Row
				if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
					return 0, fmt.Errorf("decode collected row: %w", err)
				}
				rows = append(rows, r)
			}
		}
		part = "collected"
	default:
		var n int64
		for _, k := range keys {
			n += results[k].GetRecordsOut()
		}
		return n, nil
	}
	w, err := l.sink.OpenWriter(ctx, connectors.WriteKey{Job: stream.JobID(l.name), Incarnation: l.cfg.Incarnation, Batch: batch, Part: part, Columns: l.job.Columns()})
	if err != nil {
		return 0, fmt.Errorf("open sink for batch %d: %w", batch, err)
	}
	if err := w.Write(ctx, rows); err != nil {
		w.Abort()
		return 0, fmt.Errorf("write batch %d: %w", batch, err)
	}
	if err := w.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit sink output of batch %d: %w", batch, err)
	}
	if part == "collected" {
		var n int64
		for _, k := range keys {
			n += results[k].GetRowsTotal()
		}
		return n, nil
	}
	return int64(len(rows)), nil
}

// writeMerged merges an aggregating job's partial aggregates and writes the
// groups under the batch's "aggregate" key, as the final query's Arrow
// batches to a sink that takes them, else as rows. It returns the groups
// written.
func (l *Loop) writeMerged(ctx context.Context, batch stream.BatchID, partials [][]byte) (int64, error) {
	w, err := l.sink.OpenWriter(ctx, connectors.WriteKey{Job: stream.JobID(l.name), Incarnation: l.cfg.Incarnation, Batch: batch, Part: "aggregate", Columns: l.job.Columns()})
	if err != nil {
		return 0, fmt.Errorf("open sink for batch %d: %w", batch, err)
	}
	aw, _ := w.(connectors.ArrowWriter)
	var n int64
	var werr error
	err = l.job.SQL.MergeEach(ctx, partials, l.batchTime, func(b arrow.RecordBatch) error {
		n += b.NumRows()
		if aw != nil {
			werr = aw.WriteArrow(ctx, b)
			return werr
		}
		rows, err := columnar.AppendRows(nil, b)
		if err != nil {
			return connectors.Permanent(fmt.Errorf("convert merged rows: %w", err))
		}
		werr = w.Write(ctx, rows)
		return werr
	})
	switch {
	case werr != nil:
		w.Abort()
		return 0, fmt.Errorf("write batch %d: %w", batch, werr)
	case err != nil:
		w.Abort()
		return 0, fmt.Errorf("merge aggregates of batch %d: %w", batch, err)
	}
	if err := w.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit sink output of batch %d: %w", batch, err)
	}
	return n, nil
}

func (l *Loop) progress(plan checkpoint.BatchPlan, planStart, recordDone, execDone time.Time, keys []string,
	ranges map[string]stream.Range, results map[string]*clusterv1.TaskResult, att *attemptLog, retries int, outRows int64) *sluicev1.BatchProgress {
	bp := &sluicev1.BatchProgress{
		BatchId: int64(plan.Batch), Timestamp: timestamppb.New(planStart), NumTasks: int32(len(keys)), TaskRetries: int32(retries),
		NumOutputRows: outRows,
		DurationMs: map[string]int64{
			"plan":    l.planned.Sub(planStart).Milliseconds(),
			"record":  recordDone.Sub(l.planned).Milliseconds(),
			"execute": execDone.Sub(recordDone).Milliseconds(),
		},
		Metrics: map[string]float64{},
	}
	for k, v := range l.lastMetrics {
		bp.Metrics[k] = v
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	// A partition's figures are those of its last split (the reader that
	// got furthest), as its committed end is.
	perPartition := map[stream.PartitionID]map[string]float64{}
	figuresSplit := map[stream.PartitionID]int{}
	for _, k := range sorted {
		res := results[k]
		if m, r := res.GetSourceMetrics(), ranges[k]; len(m) > 0 {
			if s, seen := figuresSplit[r.Partition]; !seen || r.Split > s {
				perPartition[r.Partition], figuresSplit[r.Partition] = m, r.Split
			}
		}
		bp.NumInputRows += res.GetRecordsIn()
		bp.InputBytes += res.GetBytesIn()
		bp.SkippedRows += res.GetSkipped()
		bp.DeadLetteredRows += res.GetDeadLettered()
		if len(bp.Partitions) < 1000 {
			r := ranges[k]
			bp.Partitions = append(bp.Partitions, &sluicev1.PartitionProgress{
				Partition: k, Start: r.From.String(), End: stream.Position(res.GetEnd()).String(),
				Records: res.GetRecordsIn(), Executor: att.executor[res.GetAttemptId()], Metrics: res.GetSourceMetrics(),
				DurationMs: att.took[k].Milliseconds(), Attempts: att.tries[k],
			})
		}
	}
	if s, ok := l.source.(connectors.TaskMetricsSummarizer); ok {
		summary := s.SummarizeTaskMetrics(perPartition)
		for k, v := range summary {
			bp.Metrics[k] = v
		}
		// A figure the summary no longer has (no records read, a replayed
		// batch) must not stay in Prometheus at its old value.
		for k := range l.summarized {
			if _, ok := summary[k]; !ok {
				l.metrics.DropSourceMetric(l.name, k)
			}
		}
		l.summarized = summary
		l.metrics.SourceMetrics(l.name, summary)
	}
	if secs := execDone.Sub(planStart).Seconds(); secs > 0 {
		bp.ProcessedRowsPerSecond = float64(bp.NumInputRows) / secs
	}
	if !l.lastStart.IsZero() {
		if secs := planStart.Sub(l.lastStart).Seconds(); secs > 0 {
			bp.InputRowsPerSecond = float64(bp.NumInputRows) / secs
		}
	}
	l.lastStart = planStart
	return bp
}

// checkEnd refuses an end that the range does not allow. A range with a
// planned or recorded end (Kafka's until, a Kinesis end recorded by an
// earlier attempt) must end exactly there: a short read would commit records
// as read that never were, and a long one would read records twice. An open
// range's end is checked by the source when it can (connectors.EndChecker).
func (l *Loop) checkEnd(r stream.Range, end stream.Position) error {
	if len(end) == 0 {
		return errors.New("the result has no end position")
	}
	if r.Until != nil {
		if !bytes.Equal(end, r.Until) {
			return fmt.Errorf("end %s differs from the range's end %s", end, r.Until)
		}
		return nil
	}
	if c, ok := l.source.(connectors.EndChecker); ok {
		return c.CheckEnd(r, end)
	}
	return nil
}

// newToken returns a secret for one attempt: results count only with it.
func newToken() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}
