package driver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/internal/driver/runner"
	"github.com/sluicehq/sluice/internal/driver/statusboard"
	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// manager runs the jobs while this driver leads. It is created on election
// and closed on loss of leadership or shutdown; Close cancels every batch
// loop and waits for them.
//
// Job states:
//
//	PENDING → RUNNING → STOPPING → STOPPED
//	            ↑   ↓ ↘ FINISHED | FAILED
//	          RETRYING (retryable failure: back off, then re-run the
//	                    recorded plan; restartStrategy)
//
// Lock order: manager.mu, then jobStatus.mu.
type manager struct {
	d     *Driver
	fence checkpoint.Fence
	ctx   context.Context
	stop  context.CancelFunc

	mu   sync.Mutex
	runs map[string]*jobRun
	wg   sync.WaitGroup
	// loopSeq numbers batch loops, so attempt ids of a restarted loop never
	// repeat those of the loop before it.
	loopSeq atomic.Int64
}

type jobRun struct {
	cancel   context.CancelFunc
	stopping bool // guarded by manager.mu
	done     chan struct{}
	// stateMu orders the loop's state writes (RUNNING, RETRYING) against a
	// stop's STOPPING: without it a loop starting as the user stops could
	// write RUNNING after STOPPING, and a leader taking over then would run
	// the job the user stopped.
	stateMu sync.Mutex
}

// setRunState writes a state of the running loop unless a stop has begun.
func (m *manager) setRunState(run *jobRun, job string, state sluicev1.JobState, lastErr string) {
	run.stateMu.Lock()
	defer run.stateMu.Unlock()
	m.mu.Lock()
	stopping := run.stopping
	m.mu.Unlock()
	if !stopping {
		m.setState(job, state, lastErr)
	}
}

func newManager(ctx context.Context, d *Driver, fence checkpoint.Fence) *manager {
	ctx, cancel := context.WithCancel(ctx)
	return &manager{d: d, fence: fence, ctx: ctx, stop: cancel, runs: map[string]*jobRun{}}
}

// start resumes every job that was pending, running or stopping.
func (m *manager) start() error {
	jobs, err := m.d.store.ListJobs(m.ctx)
	if err != nil {
		return fmt.Errorf("load job catalog: %w", err)
	}
	for _, j := range jobs {
		if j.Unreadable != nil {
			// Shown as failed, never launched; the other jobs still start.
			m.d.status.Update(unreadableJob(j), nil)
			continue
		}
		switch j.State {
		case statusboard.StateName(sluicev1.JobState_JOB_STATE_STOPPING):
			j.State = statusboard.StateName(sluicev1.JobState_JOB_STATE_STOPPED)
			if err := m.d.store.PutJob(m.ctx, m.fence, j); err != nil {
				return fmt.Errorf("mark job %s stopped: %w", j.Name, err)
			}
			m.d.status.Update(j, nil)
		case statusboard.StateName(sluicev1.JobState_JOB_STATE_PENDING), statusboard.StateName(sluicev1.JobState_JOB_STATE_RUNNING),
			statusboard.StateName(sluicev1.JobState_JOB_STATE_RETRYING):
			m.launch(j)
		default:
			m.d.status.Update(j, nil)
		}
	}
	return nil
}

// unreadableJob is how a catalog entry that cannot be decoded shows: FAILED,
// with what to do about it.
func unreadableJob(j checkpoint.JobRecord) checkpoint.JobRecord {
	j.State = statusboard.StateName(sluicev1.JobState_JOB_STATE_FAILED)
	j.LastError = fmt.Sprintf("catalog entry unreadable: %v; delete it with sluice delete %s", j.Unreadable, j.Name)
	return j
}

// close cancels every job loop and waits for them to return.
func (m *manager) close() {
	m.stop()
	m.wg.Wait()
}

// launch starts the job's loop; false when one already runs: a job has at
// most one loop on a leader.
func (m *manager) launch(rec checkpoint.JobRecord) bool {
	ctx, cancel := context.WithCancel(m.ctx)
	run := &jobRun{cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	if _, ok := m.runs[rec.Name]; ok {
		m.mu.Unlock()
		cancel()
		return false
	}
	m.runs[rec.Name] = run
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(run.done)
		defer cancel()
		m.runJob(ctx, run, rec)
		m.mu.Lock()
		if m.runs[rec.Name] == run {
			delete(m.runs, rec.Name)
		}
		m.mu.Unlock()
	}()
	return true
}

// running reports whether a loop for job is live.
func (m *manager) running(job string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.runs[job]
	return ok
}

// stopJob asks a job's loop to stop and waits until it has.
func (m *manager) stopJob(ctx context.Context, job string) error {
	m.mu.Lock()
	run := m.runs[job]
	if run != nil {
		run.stopping = true
	}
	m.mu.Unlock()
	if run == nil {
		return nil
	}
	run.stateMu.Lock()
	m.setState(job, sluicev1.JobState_JOB_STATE_STOPPING, "")
	run.stateMu.Unlock()
	run.cancel()
	select {
	case <-run.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *manager) runJob(ctx context.Context, run *jobRun, rec checkpoint.JobRecord) {
	log := m.d.log.With("job", rec.Name)
	spec := &sluicev1.JobSpec{}
	if err := proto.Unmarshal(rec.Spec, spec); err != nil {
		m.finish(rec.Name, sluicev1.JobState_JOB_STATE_FAILED, fmt.Sprintf("stored spec is unreadable: %v", err))
		return
	}
	job, err := m.d.compileForUse(spec) // decrypts and resolves secrets (secrets.go)
	if err != nil {
		m.finish(rec.Name, sluicev1.JobState_JOB_STATE_FAILED, err.Error())
		return
	}
	// restarts counts restarts since the job last committed a batch: an
	// outage that keeps coming back without progress backs off further,
	// one that went away starts the back-off afresh.
	restarts := 0
	for {
		m.setRunState(run, rec.Name, sluicev1.JobState_JOB_STATE_RUNNING, "")
		log.Info("job running", "trigger", job.Trigger.String(), "restarts", restarts)
		var committed int
		end, err := m.loop(ctx, run, job, incarnation(rec), &committed)
		m.d.status.SetCurrent(rec.Name, nil, true) // a batch that did not commit is no longer in flight
		if committed > 0 {
			restarts = 0
		}
		if end == endFailed && !connectors.IsPermanent(err) && job.Restart.Allows(restarts+1) {
			restarts++
			delay := job.Restart.DelayRand(restarts)
			next := time.Now().Add(delay)
			log.Warn("job cannot finish its batch; restarting it after a back-off", "err", err, "restart", restarts, "retryIn", delay)
			m.retrying(run, rec.Name, restarts, next, err)
			if werr := runner.SleepUntil(ctx, runner.RealClock, next); werr != nil {
				end, err = m.ending(run, werr), werr
			} else {
				continue
			}
		}
		switch end {
		case endStopped:
			log.Info("job stopped")
			m.finish(rec.Name, sluicev1.JobState_JOB_STATE_STOPPED, "")
		case endHandedOver:
			// Leadership moved or the driver shuts down: the job stays
			// RUNNING (or RETRYING) in the catalog and the next leader
			// resumes it from its last commit.
			log.Info("job handed over", "reason", err)
		case endFinished:
			log.Info("job finished")
			m.finish(rec.Name, sluicev1.JobState_JOB_STATE_FINISHED, "")
		case endFailed:
			if !connectors.IsPermanent(err) && restarts > 0 {
				err = fmt.Errorf("%w (gave up after %d restarts, restartStrategy.attempts)", err, restarts)
			}
			log.Error("job failed", "err", err)
			m.finish(rec.Name, sluicev1.JobState_JOB_STATE_FAILED, err.Error())
		}
		return
	}
}

// retrying records that the job waits to restart: RETRYING in the catalog
// (so a new leader resumes it) and the attempt, cause and next try in the
// status.
func (m *manager) retrying(run *jobRun, job string, attempt int, next time.Time, cause error) {
	m.d.metrics.restarts.WithLabelValues(job).Inc()
	m.d.status.SetRestart(job, &sluicev1.RestartInfo{Attempt: int32(attempt), NextAttemptTime: timestamppb.New(next), Cause: cause.Error()})
	if !m.fenced() {
		m.setRunState(run, job, sluicev1.JobState_JOB_STATE_RETRYING, cause.Error())
	}
}

// jobEnding is how a job's loop ended.
type jobEnding int

const (
	endHandedOver jobEnding = iota // lost leadership or driver shutdown: another driver resumes it
	endStopped                     // stopped or deleted by a user
	endFinished                    // once / availableNow done
	endFailed
)

func (m *manager) ending(run *jobRun, err error) jobEnding {
	m.mu.Lock()
	stopping := run.stopping
	m.mu.Unlock()
	switch {
	case stopping:
		return endStopped
	case errors.Is(err, runner.ErrLostLeadership), m.ctx.Err() != nil:
		return endHandedOver
	case err == nil:
		return endFinished
	}
	return endFailed
}

// incarnation names this life of a job: a job deleted and submitted again
// under the same name gets a new one.
func incarnation(rec checkpoint.JobRecord) string {
	return strconv.FormatInt(rec.Created.UnixNano(), 36)
}

// loop runs the job's batch loop and reports how it ended; the source's
// Finisher (if any) hears of an ending other than a hand-over.
//
// committed counts the batches the loop committed.
func (m *manager) loop(ctx context.Context, run *jobRun, job *jobspec.Job, incarnation string, committed *int) (jobEnding, error) {
	fail := func(err error) (jobEnding, error) { return m.ending(run, err), err }
	src, err := job.NewSource()
	if err != nil {
		return fail(fmt.Errorf("create source: %w", err))
	}
	defer src.Close()
	sink, err := job.NewSink(m.d.cfg.Stdout)
	if err != nil {
		return fail(fmt.Errorf("create sink: %w", err))
	}
	defer sink.Close()
	store, retain, err := m.jobStore(ctx, job)
	if err != nil {
		return fail(err)
	}
	collect := 0
	if c, ok := sink.(connectors.DriverCollector); ok && (!job.Aggregating() || job.State != nil) {
		collect = c.MaxRows()
	}
	l := runner.New(runner.Config{Job: job, Incarnation: incarnation, Source: src, Sink: sink, Store: store, Fence: m.fence,
		Retain: retain, Collect: collect, LoopID: m.loopSeq.Add(1), Dispatcher: m.d.reg, Status: loopStatus{m}, Metrics: loopMetrics{m.d.metrics},
		Clock: runner.RealClock, Log: m.d.log})
	defer func() { *committed = l.Commits() }()
	err = l.Run(ctx)
	end := m.ending(run, err)
	if f, ok := src.(connectors.Finisher); ok {
		if end != endHandedOver {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if ferr := f.Finish(fctx, end != endFailed); ferr != nil {
				m.d.log.Warn("source clean-up at the end of the job failed", "job", job.Spec.GetName(), "err", ferr)
			}
			cancel()
		}
	}
	return end, err
}

// jobStore returns the store for the job's logs, claimed for this leader,
// and how many batches it keeps: the job's own checkpoint store when its
// spec names one, else the driver's.
func (m *manager) jobStore(ctx context.Context, job *jobspec.Job) (checkpoint.Store, int, error) {
	st, err := m.d.jobLogStore(ctx, job)
	switch {
	case err != nil:
		return nil, 0, fmt.Errorf("open the job's checkpoint store: %w", err)
	case st == m.d.store:
		return st, jobspec.DefaultMinBatchesToRetain, nil
	case m.fence.Epoch == 0:
		return nil, 0, connectors.Permanent(errors.New("a job checkpoint store (DynamoDB, S3) needs drivers elected through etcd " +
			"(--etcd), whose epoch fences its writes; a standalone driver keeps checkpoints in --checkpoint"))
	}
	if err := checkpoint.Claim(ctx, st, m.fence); err != nil {
		if errors.Is(err, checkpoint.ErrFenced) {
			return nil, 0, fmt.Errorf("claim the job's checkpoint store: %w: %w", runner.ErrLostLeadership, err)
		}
		return nil, 0, fmt.Errorf("claim the job's checkpoint store: %w", err)
	}
	return st, job.MinBatchesToRetain(), nil
}

// setState writes the job's state to the catalog (fenced) and publishes it.
func (m *manager) setState(job string, state sluicev1.JobState, lastErr string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), 10*time.Second)
	defer cancel()
	rec, err := m.d.store.GetJob(ctx, job)
	if err != nil {
		m.d.log.Warn("read job for state change", "job", job, "err", err)
		return
	}
	rec.State, rec.LastError, rec.Updated = statusboard.StateName(state), lastErr, time.Now().UTC()
	if err := m.d.store.PutJob(ctx, m.fence, rec); err != nil {
		m.d.log.Warn("record job state", "job", job, "state", state, "err", err)
		return
	}
	m.d.status.Update(rec, nil)
}

func (m *manager) finish(job string, state sluicev1.JobState, lastErr string) {
	if m.fenced() {
		return
	}
	m.setState(job, state, lastErr)
}

func (m *manager) fenced() bool {
	lead, _, epoch := m.d.leading()
	return !lead || epoch != m.fence.Epoch
}

// loopStatus is the status board as a job's runner.Loop reports to it.
type loopStatus struct{ m *manager }

func (s loopStatus) SetCurrent(job string, run *sluicev1.BatchRun, force bool) {
	s.m.d.status.SetCurrent(job, run, force)
}

// SetError shows a transient problem in the job's status without changing
// its state (kept in memory: it changes too often to write each time).
func (s loopStatus) SetError(job, msg string) { s.m.d.status.SetError(job, msg) }

func (s loopStatus) BatchDone(job string, p *sluicev1.BatchProgress) {
	s.m.d.metrics.batch(job, p)
	s.m.d.status.Batch(job, p)
}

// loopMetrics are the driver's Prometheus figures as a runner.Loop
// updates them.
type loopMetrics struct{ m *metrics }

func (l loopMetrics) SourceMetrics(job string, m map[string]float64) { l.m.source(job, m) }
func (l loopMetrics) DropSourceMetric(job, name string)              { l.m.dropSource(job, name) }
func (l loopMetrics) ResultRefused(reason string)                    { l.m.refused.WithLabelValues(reason).Inc() }
func (l loopMetrics) Speculated(job string)                          { l.m.speculative.WithLabelValues(job).Inc() }
func (l loopMetrics) GroupCommitError(job string)                    { l.m.groupCommitErrors.WithLabelValues(job).Inc() }
