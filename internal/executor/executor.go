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
// A failed attempt's error travels to the driver as a google.rpc.Status
// (internal/rpc: SetTaskFailure), so the driver branches on its type: a data
// loss, a permanent failure, a retryable one.
//
// Each stream is a session (session.go) that owns its goroutines and joins
// them before it returns. Shutdown (ctx ends): 1. refuse new tasks (they
// fail retryably, so the driver moves them); 2. let running attempts finish
// for up to DrainTimeout, heartbeating meanwhile; 3. cancel what still runs;
// 4. send the queued results; 5. close the stream; then Run closes cached
// readers and sinks and the HTTP server.
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

	"github.com/apache/arrow-go/v18/arrow"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/statestore"
	"github.com/sluicehq/sluice/pkg/stream"
	"github.com/sluicehq/sluice/pkg/task"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
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
	// Pprof adds Go's /debug/pprof/ profiles to the HTTP server (--pprof,
	// default off). They are served without authentication, like
	// /metrics, so it needs --http and belongs on a private address.
	Pprof bool
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
	// StateDir holds the local stores of the state partitions this
	// executor owns; "" is a new temporary directory, removed on exit.
	StateDir string
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
	if c.Pprof && c.HTTP == "" {
		return errors.New("--pprof needs --http: the profiles are served there")
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
	// closed: closeCaches ran; a build that ends after it closes what it
	// built.
	closed bool
	slots  *semaphore.Weighted

	// building admits one job build at a time (cache), outside mu.
	building chan struct{}
	// compile compiles a job's spec for use: jobspec.CompileForUse, or a
	// test's stand-in.
	compile func(*sluicev1.JobSpec) (*jobspec.Job, error)

	metrics *metrics // Prometheus series and readiness (metrics.go, http.go)

	state *stateStores // stateful jobs' state partitions held here (state.go)
}

type jobCache struct {
	job *jobspec.Job
	// source is the job's source schema, made once for all its tasks.
	source *arrow.Schema
	// stateLoc is a stateful job's checkpoint.state, opened on first use.
	stateLoc statestore.Location
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
		metrics: newMetrics(), dial: dial, state: newStateStores(cfg.StateDir, cfg.IdleTimeout),
		building: make(chan struct{}, 1), compile: jobspec.CompileForUse}, nil
}

// Run connects to the driver and serves tasks until ctx ends, reconnecting
// with back-off (and to a new leader) when the stream breaks.
func (e *Executor) Run(ctx context.Context) error {
	defer e.closeCaches()
	defer e.state.close(e.log)
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

// runTask runs one attempt. current is the session's lease: the attempt
// commits its output only while it holds.
func (e *Executor) runTask(ctx context.Context, spec *sluicev1.JobSpec, t *clusterv1.Task, current func() error) *clusterv1.TaskResult {
	res := newResult(t)
	// failure is the attempt's error, nil when it succeeded. The metrics
	// outcome and the result's status both come from it, never from its
	// text; so does whether the attempt was cancelled (by the driver, the
	// session ending or a fence).
	var failure error
	done := e.metrics.attempt(t.GetJob(), res) // sees the final res (metrics.go)
	defer func() { done(failure, errors.Is(failure, context.Canceled) || ctx.Err() != nil) }()
	fail := func(err error) *clusterv1.TaskResult {
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
	// Cancellable from now on, also while it waits for a slot: the driver
	// sends tasks ahead of free slots (they wait here), and cancels one
	// that lost to its speculative twin or whose batch failed.
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
	// Tasks of I/O-bound sources may share a slot (Kinesis shardsPerTask).
	cost := int64(scheduler.TaskCost(int(t.GetTasksPerSlot())))
	if err := e.slots.Acquire(actx, cost); err != nil {
		return fail(err)
	}
	defer e.slots.Release(cost)
	jc, err := e.cache(actx, spec, t.GetSpecHash())
	if err != nil {
		return fail(err)
	}
	defer e.release(jc)

	if t.GetState() != nil {
		if err := e.runStateTask(actx, jc, t, current, res); err != nil {
			e.log.Warn("state task failed", "attempt", t.GetAttemptId(), "err", err)
			return fail(err)
		}
		return res
	}
	r, err := task.Run(actx, task.Attempt{
		Job: stream.JobID(t.GetJob()), Incarnation: t.GetIncarnation(), Batch: stream.BatchID(t.GetBatch()),
		Range:   stream.Range{Partition: stream.PartitionID(t.GetPartition()), Split: int(t.GetSplit()), From: t.GetFrom(), Until: t.GetUntil()},
		Readers: jc.readers, SQL: jc.job.SQL, Source: jc.source, BatchTime: t.GetBatchTime().AsTime(), Sink: jc.sink, DeadLetter: jc.dead, OnError: jc.job.OnError,
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
func newResult(t *clusterv1.Task) *clusterv1.TaskResult {
	return &clusterv1.TaskResult{AttemptId: t.GetAttemptId(), Job: t.GetJob(), Batch: t.GetBatch(), Partition: t.GetPartition(),
		Split: t.GetSplit(), Token: t.GetToken()}
}

// refuseTask answers a task that arrives once its session no longer admits
// tasks: it fails with why at once, retryably, so that the driver runs it
// elsewhere; it counts as an attempt like any other.
func (e *Executor) refuseTask(t *clusterv1.Task, why error) *clusterv1.TaskResult {
	res := newResult(t)
	done := e.metrics.attempt(t.GetJob(), res)
	rpc.SetTaskFailure(res, why)
	done(why, false)
	return res
}

// setDraining marks the executor as shutting down: not ready (/readyz), and
// runTask refuses new attempts.
func (e *Executor) setDraining() {
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()
}

// cache returns the job's compiled state, building it on first use. A build
// (compiling the job, which at a process's first SQL job opens the SQL
// engine, and making its reader pool and sinks) takes a few hundred
// milliseconds and may wait on the network, so it runs outside mu: tasks
// starting, ending and being cancelled, and the tasks of jobs already built,
// never wait for it. Builds run one at a time; a task of a job being built
// waits for that build (or for ctx) and then finds the job built.
func (e *Executor) cache(ctx context.Context, spec *sluicev1.JobSpec, hash string) (*jobCache, error) {
	if jc := e.cached(hash); jc != nil {
		return jc, nil
	}
	if spec == nil {
		return nil, errors.New("task arrived without its job spec")
	}
	select {
	case e.building <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.building }()
	if jc := e.cached(hash); jc != nil {
		return jc, nil // built while this task waited
	}
	jc, err := e.build(spec)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		jc.close()
		return nil, fmt.Errorf("%w: executor %s is shutting down", rpc.ErrUnavailable, e.cfg.ID)
	}
	jc.active, jc.lastUsed = 1, time.Now()
	e.jobs[hash] = jc
	return jc, nil
}

// cached returns the job's built state, counted as in use, or nil.
func (e *Executor) cached(hash string) *jobCache {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evictIdleLocked()
	jc := e.jobs[hash]
	if jc != nil {
		jc.active++
		jc.lastUsed = time.Now()
	}
	return jc
}

// build compiles spec and makes the job's reader pool and sinks.
func (e *Executor) build(spec *sluicev1.JobSpec) (*jobCache, error) {
	job, err := e.compile(spec) // resolves secret references here
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
	jc := &jobCache{job: job, source: job.SourceSchema(), readers: readers, sink: sink, dead: dead}
	if c, ok := sink.(connectors.DriverCollector); ok && (!job.Aggregating() || job.State != nil) {
		jc.collect = c.MaxRows()
	}
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
	e.closed = true
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
