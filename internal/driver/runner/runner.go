// Package runner runs one job's micro-batches on the leading driver: plan,
// record the plan, dispatch one task per range to the executors, gather the
// results (retrying failed and lost attempts, copying stragglers), write
// what the driver itself outputs, and commit.
//
// The loop sees the rest of the driver through small interfaces, as a
// scheduler sits behind its planner: a Dispatcher (the executor registry),
// the checkpoint.Store, a Status board, Metrics and a Clock. Tests drive it
// with fakes of each and a fake clock (runner_test.go), without executors,
// gRPC or sleeps.
package runner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// ErrLostLeadership ends a loop whose checkpoint write was fenced: another
// driver leads and resumes the job from its last commit.
var ErrLostLeadership = errors.New("lost leadership")

// Dispatcher is the executors as a loop sees them: the registry of
// connected executors on the driver.
type Dispatcher interface {
	// Snapshot lists the connected executors with their slots, free
	// slots, tasks waiting for a slot and room for more to wait, counted
	// in tasks of the given cost (scheduler.TaskCost).
	Snapshot(cost int) []scheduler.Executor
	// Dispatch sends tasks to one executor in one message and returns how
	// many of them, from the first, it took (fewer when it left or filled
	// up meanwhile). Tasks beyond its free slots wait there for one.
	Dispatch(ctx context.Context, executor string, spec *sluicev1.JobSpec, tasks []*clusterv1.Task) int
	// Cancel asks the executors running these attempts to stop them; an
	// attempt that ended already is ignored.
	Cancel(attempts []string)
	// Subscribe delivers the job's results and lost attempts until the
	// returned function is called. A job has one subscriber at a time.
	Subscribe(job string) (*Subscription, func())
}

// Subscription carries what executors report of one job's attempts.
type Subscription struct {
	Results chan *clusterv1.TaskResult
	Lost    chan LostNotice
}

// NewSubscription makes a subscription with buffered channels, so that a
// registry delivering while the loop is busy does not wait for it.
func NewSubscription() *Subscription {
	return &Subscription{Results: make(chan *clusterv1.TaskResult, 1024), Lost: make(chan LostNotice, 256)}
}

// LostNotice names the attempts of one job that ran on an executor whose
// stream ended or stopped heartbeating.
type LostNotice struct {
	Executor string
	Attempts []string
}

// Status is the job's status as the API shows it.
type Status interface {
	// SetCurrent shows the batch in flight (nil: none). Without force, an
	// update may be held back to bound the events watchers get.
	SetCurrent(job string, run *sluicev1.BatchRun, force bool)
	// SetError shows a transient problem; "" clears it.
	SetError(job, msg string)
	// BatchDone publishes a committed batch's progress.
	BatchDone(job string, p *sluicev1.BatchProgress)
}

// Metrics are the figures a loop exports.
type Metrics interface {
	// SourceMetrics sets the source's figures of the job (lag, ...).
	SourceMetrics(job string, m map[string]float64)
	// DropSourceMetric removes one the source no longer reports.
	DropSourceMetric(job, name string)
	// ResultRefused counts a result refused for reason ("end").
	ResultRefused(reason string)
	// Speculated counts a speculative copy of a straggler.
	Speculated(job string)
	// GroupCommitError counts a source's failure to report a commit to its
	// service (Kafka commitOffsetsToGroup).
	GroupCommitError(job string)
}

// Clock tells the time and makes timers; the loop never reads the wall
// clock otherwise, so a fake one drives it in tests.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is a time.Timer behind an interface.
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration) bool
	Stop() bool
}

// RealClock is the wall clock.
var RealClock Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time                 { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }
func (t realTimer) Stop() bool                 { return t.t.Stop() }

// SleepUntil waits on clock until t or until ctx ends (then ctx.Err()).
func SleepUntil(ctx context.Context, clock Clock, t time.Time) error {
	d := t.Sub(clock.Now())
	if d <= 0 {
		return ctx.Err()
	}
	timer := clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C():
		return nil
	}
}

// Config is what a Loop runs with. Every field but Collect, Retain, LoopID
// and Log is required.
type Config struct {
	Job *jobspec.Job
	// Incarnation tells this job apart from an earlier one of the same
	// name (its catalog creation time), for the sinks' write keys.
	Incarnation string
	Source      connectors.Source
	Sink        connectors.Sink
	// Store holds the job's plans, task ends and commits, written under
	// Fence.
	Store checkpoint.Store
	Fence checkpoint.Fence
	// Retain is how many committed batches the store keeps (default
	// jobspec.DefaultMinBatchesToRetain).
	Retain int
	// Collect is how many rows per batch are collected to the driver (a
	// console sink); 0 collects none.
	Collect int
	// LoopID numbers the loops a job has had on this leader, so attempt
	// ids of a restarted loop never repeat those of the loop before it.
	LoopID     int64
	Dispatcher Dispatcher
	Status     Status
	Metrics    Metrics
	Clock      Clock
	Log        *slog.Logger
}

// New returns the loop of cfg's job; Run runs it.
func New(cfg Config) *Loop {
	if cfg.Retain <= 0 {
		cfg.Retain = jobspec.DefaultMinBatchesToRetain
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock
	}
	return &Loop{cfg: cfg, job: cfg.Job, name: cfg.Job.Spec.GetName(), source: cfg.Source, sink: cfg.Sink, store: cfg.Store,
		reg: cfg.Dispatcher, status: cfg.Status, metrics: cfg.Metrics, clock: cfg.Clock, log: cfg.Log,
		lastOwner: map[stream.PartitionID]string{}}
}

// Commits is how many batches the loop committed; read it after Run
// returned.
func (l *Loop) Commits() int { return l.commits }
