// Package executor composes the executor process: it keeps one Connect
// stream to the leading driver, announces its task slots, heartbeats, runs
// the tasks it is given (pkg/task) and streams their results back.
//
// Per job it caches the compiled pipeline, the source's reader pool (warm
// Kafka readers between batches) and the sink, keyed by the spec's hash.
//
// When the stream breaks, running attempts are cancelled: the driver has
// already declared them lost and re-dispatched them. A follower's refusal
// names the leader, which the executor dials next.
//
// Shutdown (ctx ends): 1. refuse new tasks (they fail retryably, so the
// driver moves them); 2. let running attempts finish for up to DrainTimeout;
// 3. close the stream; 4. close cached readers and sinks.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
	"github.com/sluicehq/sluice/pkg/task"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Config configures an executor; cmd/executor fills it from flags and
// SLUICE_* variables.
type Config struct {
	// Driver is the address of any driver, or a comma-separated list of
	// them (--driver, default localhost:7077); followers redirect to the
	// leader, and the list is tried in turn when one is unreachable.
	Driver string
	// Slots is how many tasks run at once (--slots, default: number of CPUs).
	Slots int
	// ID names this executor (--id, default: host name and process id).
	ID string
	// Advertise is shown in `sluice executors` (--advertise).
	Advertise string
	// HTTP serves /healthz, /readyz and /metrics (--http, e.g. :8081; the
	// Helm chart sets it). Empty, the default, disables it. See http.go.
	HTTP string
	// DrainTimeout bounds how long running tasks may finish on shutdown
	// (--drain-timeout, default 30s).
	DrainTimeout time.Duration
	// IdleTimeout closes a job's cached readers and sinks after no task of
	// that job ran for this long (default 10m).
	IdleTimeout time.Duration
	// TLS dials the driver with TLS when non-nil: TLS.CAFile (--tls-ca)
	// verifies the driver, TLS.CertFile and TLS.KeyFile (--tls-cert,
	// --tls-key) are this executor's certificate, which a driver with
	// --tls-client-ca requires. Without --id, the ID is the certificate's
	// name (common name, else first DNS name), the one the driver admits.
	TLS    *rpc.ClientTLSConfig
	Logger *slog.Logger
	Stdout io.Writer
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Driver == "" {
		c.Driver = "localhost:7077"
	}
	if c.Slots == 0 {
		c.Slots = runtime.NumCPU()
	}
	if c.ID == "" && c.TLS != nil && c.TLS.CertFile != "" {
		c.ID, _ = rpc.CertFileName(c.TLS.CertFile, c.TLS.KeyFile) // an unreadable pair fails in New
	}
	if c.ID == "" {
		h, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
}

// Validate names the flag of a bad value.
func (c *Config) Validate() error {
	if c.Driver == "" {
		return errors.New("--driver is required")
	}
	if c.Slots < 1 {
		return fmt.Errorf("--slots (%d) must be at least 1", c.Slots)
	}
	if c.DrainTimeout < 0 {
		return fmt.Errorf("--drain-timeout (%s) must not be negative", c.DrainTimeout)
	}
	if err := checkHTTP(c.HTTP); err != nil {
		return err
	}
	return nil
}

// Executor is one executor process.
type Executor struct {
	cfg Config
	log *slog.Logger
	// dial opens a connection to a driver, with TLS when configured.
	dial func(addr string) (*grpc.ClientConn, error)

	mu       sync.Mutex
	jobs     map[string]*jobCache // by spec hash
	running  map[string]context.CancelFunc
	draining bool
	slots    *semaphore.Weighted

	metrics *metrics // Prometheus series and readiness (metrics.go, http.go)
}

type jobCache struct {
	job      *jobspec.Job
	readers  connectors.ReaderPool
	sink     connectors.Sink
	dead     connectors.Sink
	collect  int
	lastUsed time.Time
	active   int
}

// New validates cfg.
func New(cfg Config) (*Executor, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dial := func(addr string) (*grpc.ClientConn, error) { return rpc.Dial(addr) }
	if cfg.TLS != nil {
		tc, err := cfg.TLS.Build()
		if err != nil {
			return nil, fmt.Errorf("TLS (--tls-ca, --tls-cert, --tls-key): %w", err)
		}
		dial = func(addr string) (*grpc.ClientConn, error) { return rpc.Dial(addr, rpc.WithTLS(tc)) }
	}
	return &Executor{cfg: cfg, log: cfg.Logger.With("executor", cfg.ID), jobs: map[string]*jobCache{},
		running: map[string]context.CancelFunc{}, slots: semaphore.NewWeighted(int64(cfg.Slots) * scheduler.SlotUnits),
		metrics: newMetrics(), dial: dial}, nil
}

// Run connects to the driver and serves tasks until ctx ends, reconnecting
// with back-off (and to a new leader) when the stream breaks.
func (e *Executor) Run(ctx context.Context) error {
	defer e.closeCaches()
	stopHTTP, err := e.serveHTTP() // --http; stopped after the drain
	if err != nil {
		return err
	}
	defer stopHTTP()
	drivers := strings.Split(e.cfg.Driver, ",")
	next := 0
	addr := drivers[0]
	backoff := 200 * time.Millisecond
	for {
		connected, leader, err := e.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case leader != "":
			e.log.Info("following the leader", "leader", leader)
			addr, backoff = leader, 100*time.Millisecond
		default:
			if connected {
				backoff = 200 * time.Millisecond
			}
			// The leader may have moved or died: ask the configured drivers
			// in turn; a follower among them names the new leader.
			next = (next + 1) % len(drivers)
			addr = drivers[next]
		}
		if err != nil {
			e.log.Warn("driver stream ended", "err", err, "next", addr, "retryIn", backoff)
		}
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + jitter):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// session holds one stream. It returns whether the driver accepted us, and a
// leader address when the driver was a follower.
func (e *Executor) session(ctx context.Context, addr string) (connected bool, leader string, err error) {
	conn, err := e.dial(addr)
	if err != nil {
		return false, "", err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The stream's own context is not ctx: on shutdown we still want to
	// send the results of draining tasks.
	streamCtx, streamCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer streamCancel()
	stream, err := sluicev1.NewExecutorServiceClient(conn).Connect(streamCtx, grpc.WaitForReady(false))
	if err != nil {
		return false, "", err
	}
	if err := stream.Send(&sluicev1.ExecutorMessage{Kind: &sluicev1.ExecutorMessage_Hello{Hello: &sluicev1.Hello{
		ExecutorId: e.cfg.ID, Slots: int32(e.cfg.Slots), Address: e.cfg.Advertise, Version: "dev",
	}}}); err != nil {
		return false, "", err
	}
	// Until welcomed there is nothing to drain: shutting down ends the wait
	// (a hung driver must not keep the executor from exiting).
	stopWait := context.AfterFunc(ctx, streamCancel)
	first, err := stream.Recv()
	stopWait()
	if err != nil {
		if l, ok := rpc.LeaderFrom(err); ok && l != "" && l != addr {
			return false, l, err
		}
		return false, "", err
	}
	w := first.GetWelcome()
	if w == nil {
		return false, "", errors.New("driver did not welcome us")
	}
	e.log.Info("connected to driver", "driver", addr, "slots", e.cfg.Slots, "epoch", w.GetEpoch())
	e.welcomed(addr) // readiness and metrics (http.go)
	defer e.disconnected()
	interval := time.Duration(w.GetHeartbeatIntervalMs()) * time.Millisecond
	if interval <= 0 {
		interval = 2 * time.Second
	}
	fence := time.Duration(w.GetHeartbeatFenceMs()) * time.Millisecond
	if fence <= 0 {
		fence = 4 * interval
	}
	ls := newLease(fence, time.Now)
	fenced := make(chan error, 1)

	out := make(chan *sluicev1.ExecutorMessage, e.cfg.Slots+16)
	var sessionTasks sync.WaitGroup
	defer func() {
		// Attempts of this session are cancelled with it: the driver has
		// re-dispatched them elsewhere.
		cancel()
		sessionTasks.Wait()
	}()

	// The lease's watchdog turns four times per interval, so a pause of the
	// process shows as a gap long before the fence.
	watchTick := time.NewTicker(max(interval/4, 10*time.Millisecond))
	defer watchTick.Stop()
	sessionTasks.Add(1)
	go func() {
		defer sessionTasks.Done()
		ls.watch(sctx, watchTick.C, func(err error) { fenced <- err })
	}()

	sendDone := make(chan error, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			var m *sluicev1.ExecutorMessage
			select {
			case <-streamCtx.Done():
				sendDone <- nil
				return
			case m = <-out:
			case <-t.C:
				m = &sluicev1.ExecutorMessage{Kind: &sluicev1.ExecutorMessage_Heartbeat{Heartbeat: &sluicev1.Heartbeat{RunningAttempts: e.runningIDs()}}}
			}
			if err := stream.Send(m); err != nil {
				sendDone <- err
				return
			}
		}
	}()
	defer func() { streamCancel(); <-sendDone }()

	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			ls.heardFromDriver()
			switch k := m.GetKind().(type) {
			case *sluicev1.DriverMessage_Tasks:
				specs := map[string]*sluicev1.JobSpec{}
				for _, s := range k.Tasks.GetJobs() {
					specs[s.GetName()] = s
				}
				for _, t := range k.Tasks.GetTasks() {
					sessionTasks.Add(1)
					go func() {
						defer sessionTasks.Done()
						res := e.runTask(sctx, specs[t.GetJob()], t, ls.valid)
						select {
						case out <- &sluicev1.ExecutorMessage{Kind: &sluicev1.ExecutorMessage_Result{Result: res}}:
						case <-streamCtx.Done():
						}
					}()
				}
			case *sluicev1.DriverMessage_Cancel:
				e.cancelAttempts(k.Cancel.GetAttemptIds())
			}
		}
	}()

	select {
	case err = <-recvErr:
	case err = <-fenced:
		// Cut off from the driver, or paused: the driver is about to run
		// these attempts elsewhere. Cancelling them (the deferred cancel)
		// aborts their writers; a commit already under way checks the lease.
		e.log.Warn("fencing this executor: cancelling its running attempts", "attempts", len(e.runningIDs()), "err", err)
	case <-ctx.Done():
		// Drain: let this session's running tasks finish and report.
		e.mu.Lock()
		e.draining = true
		e.mu.Unlock()
		done := make(chan struct{})
		go func() { sessionTasks.Wait(); close(done) }()
		select {
		case <-done:
			e.log.Info("drained running tasks")
		case <-time.After(e.cfg.DrainTimeout):
			e.log.Warn("drain timed out; abandoning running tasks", "timeout", e.cfg.DrainTimeout)
		case err = <-recvErr:
		}
		// Give the sender a moment to flush results queued by the drain.
		flush := time.After(time.Second)
		for len(out) > 0 {
			select {
			case <-flush:
				return true, "", err
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return true, "", err
}

// runTask runs one attempt. current is the session's lease: the attempt
// commits its output only while it holds.
func (e *Executor) runTask(ctx context.Context, spec *sluicev1.JobSpec, t *sluicev1.Task, current func() error) *sluicev1.TaskResult {
	res := newResult(t)
	// failure is the attempt's error, nil when it succeeded. The metrics
	// outcome and the result's status both come from it, never from its
	// text; so does whether the attempt was cancelled (by the driver, the
	// session ending or a fence).
	var failure error
	done := e.metrics.attempt(t.GetJob(), res) // sees the final res (metrics.go)
	defer func() { done(failure, errors.Is(failure, context.Canceled) || ctx.Err() != nil) }()
	fail := func(err error) *sluicev1.TaskResult {
		failure = err
		rpc.SetTaskFailure(res, err)
		return res
	}
	e.mu.Lock()
	draining := e.draining
	e.mu.Unlock()
	if draining {
		return fail(fmt.Errorf("%w: executor %s is shutting down", rpc.ErrUnavailable, e.cfg.ID))
	}
	// Tasks of I/O-bound sources may share a slot (Kinesis shardsPerTask).
	cost := int64(scheduler.TaskCost(int(t.GetTasksPerSlot())))
	if err := e.slots.Acquire(ctx, cost); err != nil {
		return fail(err)
	}
	defer e.slots.Release(cost)
	jc, err := e.cache(spec, t.GetSpecHash())
	if err != nil {
		return fail(err)
	}
	defer e.release(jc)

	actx, cancel := context.WithCancel(ctx)
	e.mu.Lock()
	e.running[t.GetAttemptId()] = cancel
	e.mu.Unlock()
	defer func() {
		cancel()
		e.mu.Lock()
		delete(e.running, t.GetAttemptId())
		e.mu.Unlock()
	}()

	r, err := task.Run(actx, task.Attempt{
		Job: stream.JobID(t.GetJob()), Incarnation: t.GetIncarnation(), Batch: stream.BatchID(t.GetBatch()),
		Range:   stream.Range{Partition: stream.PartitionID(t.GetPartition()), Split: int(t.GetSplit()), From: t.GetFrom(), Until: t.GetUntil()},
		Readers: jc.readers, Pipeline: jc.job.Pipeline, Sink: jc.sink, DeadLetter: jc.dead, OnError: jc.job.OnError,
		CollectRows: jc.collect, Current: current,
	})
	res.RecordsIn, res.RecordsOut, res.BytesIn = r.RecordsIn, r.RecordsOut, r.BytesIn
	res.Skipped, res.DeadLettered, res.DurationMs = r.Skipped, r.DeadLettered, r.Duration.Milliseconds()
	if err != nil {
		e.log.Warn("task failed", "attempt", t.GetAttemptId(), "err", err)
		return fail(err)
	}
	res.Ok, res.End, res.PartialAggregate, res.Rows, res.RowsTotal = true, r.End, r.Partial, r.Rows, r.RowsTotal
	res.SourceMetrics = r.SourceMetrics
	return res
}

// newResult is the result of t's attempt, before it ran.
func newResult(t *sluicev1.Task) *sluicev1.TaskResult {
	return &sluicev1.TaskResult{AttemptId: t.GetAttemptId(), Job: t.GetJob(), Batch: t.GetBatch(), Partition: t.GetPartition(),
		Split: t.GetSplit(), Token: t.GetToken()}
}

// cache returns the job's compiled state, building it on first use.
func (e *Executor) cache(spec *sluicev1.JobSpec, hash string) (*jobCache, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evictIdleLocked()
	if jc := e.jobs[hash]; jc != nil {
		jc.active++
		jc.lastUsed = time.Now()
		return jc, nil
	}
	if spec == nil {
		return nil, errors.New("task arrived without its job spec")
	}
	job, err := jobspec.CompileForUse(spec) // resolves secret references here
	if err != nil {
		return nil, connectors.Permanent(err)
	}
	readers, err := job.NewReaderPool()
	if err != nil {
		return nil, fmt.Errorf("create source reader: %w", err)
	}
	sink, err := job.NewSink(e.cfg.Stdout)
	if err != nil {
		readers.Close()
		return nil, fmt.Errorf("create sink: %w", err)
	}
	dead, err := job.NewDeadLetterSink(e.cfg.Stdout)
	if err != nil {
		readers.Close()
		sink.Close()
		return nil, fmt.Errorf("create dead-letter sink: %w", err)
	}
	jc := &jobCache{job: job, readers: readers, sink: sink, dead: dead, active: 1, lastUsed: time.Now()}
	if c, ok := sink.(connectors.DriverCollector); ok && !job.Pipeline.Aggregating() {
		jc.collect = c.MaxRows()
	}
	e.jobs[hash] = jc
	return jc, nil
}

func (e *Executor) release(jc *jobCache) {
	e.mu.Lock()
	jc.active--
	jc.lastUsed = time.Now()
	e.mu.Unlock()
}

func (e *Executor) evictIdleLocked() {
	for h, jc := range e.jobs {
		if jc.active == 0 && time.Since(jc.lastUsed) > e.cfg.IdleTimeout {
			jc.close()
			delete(e.jobs, h)
		}
	}
}

func (jc *jobCache) close() {
	jc.readers.Close()
	jc.sink.Close()
	if jc.dead != nil {
		jc.dead.Close()
	}
}

func (e *Executor) closeCaches() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for h, jc := range e.jobs {
		jc.close()
		delete(e.jobs, h)
	}
}

func (e *Executor) runningIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.running))
	for id := range e.running {
		out = append(out, id)
	}
	return out
}

func (e *Executor) cancelAttempts(ids []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if c, ok := e.running[id]; ok {
			c()
		}
	}
}
