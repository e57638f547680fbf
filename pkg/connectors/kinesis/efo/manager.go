package efo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/connectors"
)

// Phase is where a Manager is in the consumer's lifecycle:
//
//	Starting ──► Waiting ◄──► Active ──► Lost ──► Waiting ...
//	    │           │                      (job-managed: registers again;
//	    └───────────┴──► Failed             self-managed: reports, re-checks)
//	any ──► Stopped
type Phase string

const (
	PhaseStarting Phase = "starting" // resolving the stream, describing the consumer
	PhaseWaiting  Phase = "waiting"  // registering, or waiting out CREATING/DELETING, or retrying a failed call
	PhaseActive   Phase = "active"   // the consumer is ACTIVE; ConsumerARN is usable
	PhaseLost     Phase = "lost"     // a refresh found the consumer gone or not ACTIVE
	PhaseFailed   Phase = "failed"   // Start gave up (e.g. a self-managed consumer that does not exist)
	PhaseStopped  Phase = "stopped"  // Stop was called
)

// Status is what a Manager is doing, for the job status: the driver shows
// Message to the user while a consumer is being waited for, instead of
// failing and restarting the job.
type Status struct {
	Phase    Phase
	Stream   string // the stream ARN, once known
	Consumer string // the consumer name
	ARN      string // the consumer ARN, once known
	// ConsumerStatus is the consumer's state as last described: CREATING,
	// ACTIVE, DELETING, or "" when it is not registered.
	ConsumerStatus types.ConsumerStatus
	// Message is a sentence for the user, e.g. "consumer sluice_orders on
	// stream orders is DELETING (a deregistration still in progress); it
	// will be registered again once it is gone; checking again in 4s".
	Message string
	// Err is the last error, transient or not; nil when all is well.
	Err error
}

// StopKind says why a job's consumer manager is stopped.
type StopKind int

const (
	// StopFailed: the job failed, the driver lost leadership or is shutting
	// down. The job will run again (here or on another driver) and reuses
	// the consumer, so it is never deregistered: deregistering on failure
	// is what makes restarting jobs land on a DELETING consumer.
	StopFailed StopKind = iota
	// StopClean: the user stopped or deleted the job, or it finished
	// (trigger once / availableNow). The consumer is deregistered when
	// RequireConsumerDeregistration is set and it is job-managed.
	StopClean
)

// ManagerOption tunes a Manager.
type ManagerOption func(*Manager)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) ManagerOption { return func(m *Manager) { m.log = l } }

// WithStatusFunc calls f on every status change, from the goroutine that
// made the change (Start's caller, or the refresh goroutine). f must not
// block or call back into the Manager.
func WithStatusFunc(f func(Status)) ManagerOption { return func(m *Manager) { m.onStatus = f } }

// WithWaitBackoff sets the back-off between checks while a consumer is
// CREATING or DELETING or a call failed: it starts near min and doubles up
// to max. Default 1s to 30s (DescribeStreamConsumer allows 20 calls per
// second per stream).
func WithWaitBackoff(min, max time.Duration) ManagerOption {
	return func(m *Manager) { m.bo = backoff{min: min, max: max} }
}

// Manager owns one job's enhanced fan-out consumer on one stream, on the
// driver. Lifecycle:
//
//	NewManager → Start (blocks until ACTIVE) → [refresh goroutine] → Stop
//
// Start may be called again after it failed, but not concurrently with
// itself. ConsumerARN, StreamARN and Status are safe from any goroutine.
type Manager struct {
	api    ConsumerAPI
	stream string // as configured: a name or an ARN
	name   string
	cfg    Config
	log    *slog.Logger
	bo     backoff

	onStatus func(Status)

	mu        sync.Mutex
	status    Status
	streamARN string
	arn       string
	started   bool
	stopped   bool
	cancel    context.CancelFunc // stops the refresh goroutine
	done      chan struct{}      // closed when the refresh goroutine returned
	run       *startRun          // Await's start in progress, or finished and not yet collected
}

// startRun is one Start run by Await in the background.
type startRun struct {
	cancel context.CancelFunc // ends the run (Stop)
	done   chan struct{}      // closed when Start returned; then arn and err are set
	arn    string
	err    error
}

// NewManager returns a Manager for the consumer of job on stream (a stream
// name or ARN), named by cfg.ConsumerNameFor(job). It validates cfg and does
// not touch the network.
func NewManager(api ConsumerAPI, stream, job string, cfg Config, opts ...ManagerOption) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if api == nil {
		return nil, errors.New("efo: NewManager needs a Kinesis client")
	}
	if stream == "" {
		return nil, fieldErr("streamName", "required")
	}
	if cfg.ConsumerName == "" && job == "" {
		return nil, fieldErr("consumerName", "required when the job has no name to derive it from")
	}
	m := &Manager{
		api: api, stream: stream, cfg: cfg.WithDefaults(), name: cfg.ConsumerNameFor(job),
		log: slog.Default(), bo: backoff{min: time.Second, max: 30 * time.Second},
	}
	for _, o := range opts {
		o(m)
	}
	m.log = m.log.With("stream", stream, "consumer", m.name)
	m.status = Status{Phase: PhaseStarting, Consumer: m.name}
	return m, nil
}

// ConsumerName is the consumer's name.
func (m *Manager) ConsumerName() string { return m.name }

// ConsumerARN is the consumer's ARN once Start returned; it changes when a
// refresh found the consumer registered again (an ARN holds the consumer's
// creation time). Empty before Start succeeded.
func (m *Manager) ConsumerARN() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.arn
}

// StreamARN is the stream's ARN once Start resolved it.
func (m *Manager) StreamARN() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streamARN
}

// Status is the current status.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

func (m *Manager) setStatus(s Status) {
	m.mu.Lock()
	s.Consumer = m.name
	if s.Stream == "" {
		s.Stream = m.streamARN
	}
	if s.ARN == "" && s.Phase == PhaseActive {
		s.ARN = m.arn
	}
	m.status = s
	f := m.onStatus
	m.mu.Unlock()
	if f != nil {
		f(s)
	}
}

// Start makes sure the consumer is ACTIVE and returns its ARN, then starts
// the periodic refresh (every ConsumerRefreshInterval). Job-managed: a
// missing consumer is registered, an existing one reused. Self-managed: a
// missing consumer is an error wrapping ErrConsumerNotFound, marked
// permanent (connectors.IsPermanent). Either way a consumer in CREATING or
// DELETING is waited for with back-off, reporting the wait in Status, until
// ctx ends; failed calls are retried the same way unless retrying cannot
// help (access denied, invalid arguments), which returns a permanent error.
// A stream that does not exist is returned as an error wrapping the
// service's ResourceNotFoundException, not retried here.
func (m *Manager) Start(ctx context.Context) (string, error) {
	m.mu.Lock()
	switch {
	case m.stopped:
		m.mu.Unlock()
		return "", ErrClosed
	case m.started:
		arn := m.arn
		m.mu.Unlock()
		return arn, nil
	}
	m.mu.Unlock()

	// Each call may take a while (a slow or busy service): the status says
	// which one is awaited, so that a caller that stops waiting can tell the
	// user something better than nothing.
	m.setStatus(Status{Phase: PhaseStarting,
		Message: fmt.Sprintf("looking up stream %s (DescribeStreamSummary sent, no answer yet)", m.stream)})
	streamARN, err := StreamARN(ctx, m.api, m.stream)
	if err != nil {
		if isPermanentAPIError(err) {
			err = connectors.Permanent(err)
		}
		m.setStatus(Status{Phase: PhaseFailed, Message: err.Error(), Err: err})
		return "", err
	}
	m.mu.Lock()
	m.streamARN = streamARN
	m.mu.Unlock()

	m.setStatus(Status{Phase: PhaseStarting,
		Message: fmt.Sprintf("looking up consumer %s on %s (DescribeStreamConsumer sent, no answer yet)", m.name, streamARN)})
	c, err := ensureActive(ctx, m.api, streamARN, m.name, m.cfg.ConsumerLifecycle, m.bo, m.log, PhaseWaiting, m.setStatus)
	if err != nil {
		m.setStatus(Status{Phase: PhaseFailed, Message: err.Error(), Err: err})
		return "", err
	}

	m.mu.Lock()
	if m.stopped { // Stop raced Start: do not leave a goroutine behind
		m.mu.Unlock()
		return "", ErrClosed
	}
	m.arn = c.ARN
	m.started = true
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel, m.done = cancel, make(chan struct{})
	m.mu.Unlock()
	m.setStatus(Status{Phase: PhaseActive, ConsumerStatus: types.ConsumerStatusActive, ARN: c.ARN,
		Message: fmt.Sprintf("consumer %s on %s is ACTIVE", m.name, streamARN)})
	m.log.Info("enhanced fan-out consumer active", "arn", c.ARN)
	go m.refresh(life)
	return c.ARN, nil
}

// Await is Start for a caller that can only wait a while, such as a
// driver's Plan, which must not hang while a registration takes seconds to
// minutes. The first call starts Start in the background on a context that
// only Stop ends (keeping ctx's values), and every call waits for that one
// Start until ctx ends. A caller giving up returns ctx's error and leaves
// the Start going: a slow call to the service (RegisterStreamConsumer,
// DescribeStreamConsumer) is never cut off half-way and made again by the
// next caller, and Status says what the Start is doing meanwhile. Once
// ACTIVE, Await returns the ARN at once. A Start that failed returns its
// error to the callers waiting (or to the next one); the call after that
// starts again. Safe for concurrent use; do not mix with Start.
func (m *Manager) Await(ctx context.Context) (string, error) {
	m.mu.Lock()
	switch {
	case m.stopped:
		m.mu.Unlock()
		return "", ErrClosed
	case m.started:
		arn := m.arn
		m.mu.Unlock()
		return arn, nil
	}
	r := m.run
	if r == nil {
		bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r = &startRun{cancel: cancel, done: make(chan struct{})}
		m.run = r
		go func() {
			defer cancel()
			arn, err := m.Start(bg)
			m.mu.Lock()
			r.arn, r.err = arn, err
			m.mu.Unlock()
			close(r.done)
		}()
	}
	m.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.run == r {
		m.run = nil // collected: a failed run is returned once, then started again
	}
	return r.arn, r.err
}

// refresh checks every ConsumerRefreshInterval that the consumer is still
// ACTIVE, until Stop. Job-managed, a consumer that vanished (deregistered
// by hand, or by another job's clean stop with the same name) is
// registered again and waited for; self-managed, the loss is reported in
// Status and checked again at the next tick.
func (m *Manager) refresh(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(m.cfg.ConsumerRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.check(ctx)
	}
}

func (m *Manager) check(ctx context.Context) {
	streamARN, prev := m.StreamARN(), m.ConsumerARN()
	c, err := DescribeConsumer(ctx, m.api, streamARN, m.name)
	switch {
	case ctx.Err() != nil:
		return
	case err == nil && c.Status == types.ConsumerStatusActive:
		if c.ARN != prev {
			m.log.Warn("enhanced fan-out consumer was registered again; using its new ARN", "old", prev, "new", c.ARN)
			m.mu.Lock()
			m.arn = c.ARN
			m.mu.Unlock()
			m.setStatus(Status{Phase: PhaseActive, ConsumerStatus: c.Status, ARN: c.ARN,
				Message: fmt.Sprintf("consumer %s on %s is ACTIVE (registered again, new ARN)", m.name, streamARN)})
		} else if s := m.Status(); s.Phase != PhaseActive || s.Err != nil {
			m.setStatus(Status{Phase: PhaseActive, ConsumerStatus: c.Status, ARN: c.ARN,
				Message: fmt.Sprintf("consumer %s on %s is ACTIVE", m.name, streamARN)})
		}
		return
	case err != nil && !errors.Is(err, ErrConsumerNotFound):
		// A failed check says nothing about the consumer: keep using it,
		// show the error, try again at the next tick.
		m.log.Warn("checking the enhanced fan-out consumer failed", "err", err)
		s := m.Status()
		s.Err, s.Message = err, fmt.Sprintf("checking consumer %s failed (will retry): %v", m.name, err)
		m.setStatus(s)
		return
	}
	what := "is not registered any more"
	st := types.ConsumerStatus("")
	if err == nil {
		what, st = fmt.Sprintf("is %s", c.Status), c.Status
	}
	if m.cfg.ConsumerLifecycle == SelfManaged {
		lost := fmt.Errorf("self-managed consumer %s on %s %s: register it again (sluice kinesis consumers register): %w",
			m.name, streamARN, what, ErrConsumerNotFound)
		m.log.Error("self-managed enhanced fan-out consumer lost", "state", what)
		m.setStatus(Status{Phase: PhaseLost, ConsumerStatus: st, Message: lost.Error(), Err: lost})
		return
	}
	m.log.Warn("enhanced fan-out consumer lost; registering it again", "state", what)
	m.setStatus(Status{Phase: PhaseLost, ConsumerStatus: st,
		Message: fmt.Sprintf("consumer %s on %s %s; registering it again", m.name, streamARN, what)})
	c, err = ensureActive(ctx, m.api, streamARN, m.name, JobManaged, m.bo, m.log, PhaseLost, m.setStatus)
	if err != nil {
		if ctx.Err() == nil {
			m.setStatus(Status{Phase: PhaseLost, Message: err.Error(), Err: err})
		}
		return
	}
	m.mu.Lock()
	m.arn = c.ARN
	m.mu.Unlock()
	m.setStatus(Status{Phase: PhaseActive, ConsumerStatus: c.Status, ARN: c.ARN,
		Message: fmt.Sprintf("consumer %s on %s is ACTIVE again", m.name, streamARN)})
}

// Stop ends the refresh goroutine and, when kind is StopClean, the consumer
// is job-managed and RequireConsumerDeregistration is set, deregisters the
// consumer (without waiting for it to leave DELETING). It waits for the
// refresh goroutine to return or for ctx to end, then returns the
// deregistration's error, if any. Later calls return nil and do nothing.
// Stop does not interrupt a Start in progress (cancel Start's ctx for that);
// such a Start returns ErrClosed instead of starting the refresh. A Start
// run by Await is Stop's own to end: it is cancelled and waited for.
func (m *Manager) Stop(ctx context.Context, kind StopKind) error {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	cancel, done, run := m.cancel, m.done, m.run
	m.mu.Unlock()
	if run != nil {
		run.cancel()
		select {
		case <-run.done:
		case <-ctx.Done():
			return fmt.Errorf("stop consumer manager %s: %w", m.name, ctx.Err())
		}
	}
	if cancel != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("stop consumer manager %s: %w", m.name, ctx.Err())
		}
	}
	m.mu.Lock()
	streamARN := m.streamARN // Await's Start may have resolved it since
	m.mu.Unlock()
	var err error
	if kind == StopClean && m.cfg.RequireConsumerDeregistration && m.cfg.ConsumerLifecycle == JobManaged {
		if streamARN == "" {
			// Start never resolved the stream, so nothing was registered.
			streamARN, err = StreamARN(ctx, m.api, m.stream)
			if isNotFound(err) {
				err = nil
			}
		}
		if streamARN != "" && err == nil {
			err = DeregisterConsumer(ctx, m.api, streamARN, m.name, false)
			if err == nil {
				m.log.Info("enhanced fan-out consumer deregistered (clean stop, requireConsumerDeregistration)")
			}
		}
	}
	msg := fmt.Sprintf("consumer %s kept (registered consumers are billed per shard-hour)", m.name)
	switch {
	case err != nil:
		msg = fmt.Sprintf("deregistering consumer %s failed: %v", m.name, err)
	case kind == StopClean && m.cfg.RequireConsumerDeregistration && m.cfg.ConsumerLifecycle == JobManaged:
		msg = fmt.Sprintf("consumer %s deregistered", m.name)
	}
	m.setStatus(Status{Phase: PhaseStopped, Message: msg, Err: err})
	return err
}

// RegisterConsumer registers the consumer called name on the stream, or
// reuses it if it is already registered, and waits until it is ACTIVE,
// waiting out a previous registration's DELETING first. onStatus (may be
// nil) is told about every wait. It is the CLI's register command and the
// job-managed half of Manager.Start.
func RegisterConsumer(ctx context.Context, api ConsumerAPI, streamARN, name string, onStatus func(Status)) (Consumer, error) {
	if err := ValidateConsumerName(name); err != nil {
		return Consumer{}, err
	}
	if onStatus == nil {
		onStatus = func(Status) {}
	}
	return ensureActive(ctx, api, streamARN, name, JobManaged, backoff{min: 500 * time.Millisecond, max: 10 * time.Second},
		slog.New(slog.DiscardHandler), PhaseWaiting, func(s Status) {
			s.Consumer, s.Stream = name, streamARN
			onStatus(s)
		})
}

// ensureActive describes the consumer until it is ACTIVE, registering it
// (job-managed) when it is missing. The states it goes through:
//
//	not registered ──register──► CREATING ──► ACTIVE (done)
//	DELETING ──(wait until gone)──► not registered
//
// Self-managed, "not registered" ends it with ErrConsumerNotFound.
// Transient failures are retried with back-off, as is a registration that
// the service refuses with LimitExceededException (too many calls, or the
// stream's 20 consumers are taken: the status says which to check). A
// registration is reported (in phase busy) before it is sent, so that its
// wait shows while the service has not answered.
func ensureActive(ctx context.Context, api ConsumerAPI, streamARN, name string, lc Lifecycle, bo backoff,
	log *slog.Logger, busy Phase, report func(Status)) (Consumer, error) {
	for attempt := 1; ; attempt++ {
		var msg string
		var st types.ConsumerStatus
		var callErr error
		c, err := DescribeConsumer(ctx, api, streamARN, name)
		switch {
		case ctx.Err() != nil:
			return Consumer{}, fmt.Errorf("wait for consumer %s on %s: %w", name, streamARN, ctx.Err())
		case err == nil && c.Status == types.ConsumerStatusActive:
			return c, nil
		case err == nil && c.Status == types.ConsumerStatusCreating:
			st, msg = c.Status, fmt.Sprintf("consumer %s on %s is CREATING", name, streamARN)
		case err == nil && c.Status == types.ConsumerStatusDeleting:
			st = c.Status
			if lc == SelfManaged {
				msg = fmt.Sprintf("self-managed consumer %s on %s is DELETING; it must be registered again", name, streamARN)
			} else {
				msg = fmt.Sprintf("consumer %s on %s is DELETING (an earlier deregistration still in progress); "+
					"it will be registered again once it is gone", name, streamARN)
			}
		case err == nil:
			st, msg = c.Status, fmt.Sprintf("consumer %s on %s is %s", name, streamARN, c.Status)
		case errors.Is(err, ErrConsumerNotFound) && lc == SelfManaged:
			return Consumer{}, connectors.Permanent(fmt.Errorf(
				"self-managed consumer %s is not registered on %s: register it (sluice kinesis consumers register "+
					"--stream %s --consumer %s) or use consumerLifecycle job-managed: %w",
				name, streamARN, streamARN, name, ErrConsumerNotFound))
		case errors.Is(err, ErrConsumerNotFound):
			report(Status{Phase: busy, Stream: streamARN,
				Message: fmt.Sprintf("consumer %s is not registered on %s; registering it (RegisterStreamConsumer sent, no answer yet)", name, streamARN)})
			registered, rerr := registerConsumer(ctx, api, streamARN, name)
			switch {
			case ctx.Err() != nil:
				return Consumer{}, fmt.Errorf("register consumer %s on %s: %w", name, streamARN, ctx.Err())
			case rerr == nil && registered:
				log.Info("registered enhanced fan-out consumer")
				msg = fmt.Sprintf("registered consumer %s on %s; it is CREATING, waiting until it is ACTIVE", name, streamARN)
				// Describe at once: kinesis-mock and a quick service are
				// ACTIVE within the first back-off.
				attempt = 0
				report(Status{Phase: PhaseWaiting, Stream: streamARN, ConsumerStatus: types.ConsumerStatusCreating, Message: msg})
				continue
			case rerr == nil:
				msg = fmt.Sprintf("consumer %s on %s is being registered or deleted elsewhere", name, streamARN)
			case isPermanentAPIError(rerr):
				return Consumer{}, connectors.Permanent(rerr)
			case isLimitExceeded(rerr):
				callErr = rerr
				msg = fmt.Sprintf("registering consumer %s on %s was refused with LimitExceededException: too many "+
					"registrations at once, or the stream already has its 20 consumers (sluice kinesis consumers list --stream %s)",
					name, streamARN, streamARN)
			default:
				callErr = rerr
				msg = rerr.Error()
			}
		case isPermanentAPIError(err):
			return Consumer{}, connectors.Permanent(err)
		default:
			callErr, msg = err, err.Error()
		}
		d := bo.delay(attempt)
		report(Status{Phase: PhaseWaiting, Stream: streamARN, ConsumerStatus: st, Err: callErr,
			Message: fmt.Sprintf("%s; checking again in %s", msg, d.Round(100*time.Millisecond))})
		log.Info("waiting for enhanced fan-out consumer", "state", st, "retry_in", d, "err", callErr)
		if err := sleep(ctx, nil, d); err != nil {
			return Consumer{}, fmt.Errorf("wait for consumer %s on %s (%s): %w", name, streamARN, msg, err)
		}
	}
}
