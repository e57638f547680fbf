package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/rpc"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// resultFlushTimeout bounds steps 3 to 5 of a session's close (see
// session): how long results queued at the end may take to reach the
// driver before the stream is cancelled under them. A healthy stream sends
// them in milliseconds; only a driver that stopped reading (frozen, its
// flow-control window full) needs the bound. The driver learns of attempts
// whose results are lost from the stream's end.
const resultFlushTimeout = time.Second

// session dials addr, says hello and, once a driver welcomes it, serves the
// stream until it ends (see session). It returns whether the driver
// accepted us, and a leader address when the driver was a follower. It
// returns only after every goroutine it started has returned and the
// connection is closed.
func (e *Executor) session(ctx context.Context, addr string) (connected bool, leader string, err error) {
	conn, err := e.dial(addr)
	if err != nil {
		return false, "", err
	}
	defer conn.Close()
	// The stream's own context is not ctx: on shutdown the session still
	// sends the results of draining tasks. close cancels it.
	streamCtx, streamCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer streamCancel()
	stream, first, err := e.hello(ctx, streamCtx, streamCancel, conn, clusterv1.ExecutorService_Connect_FullMethodName)
	if status.Code(err) == codes.Unimplemented {
		// A driver of the previous release serves the protocol under the
		// name it had in sluice.v1: the messages are the same on the wire.
		stream, first, err = e.hello(ctx, streamCtx, streamCancel, conn, legacyConnect)
	}
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
	s := newSession(e, stream, streamCancel, newLease(fence, time.Now), interval)
	s.batchResults = w.GetAcceptsResultBatches()
	return true, "", s.run(ctx)
}

// legacyConnect is ExecutorService's Connect under the name it had before
// the protocol left the public sluice.v1 package, which drivers of the
// previous release serve. Remove it one release after.
const legacyConnect = "/sluice.v1.ExecutorService/Connect"

// hello opens the Connect stream under method, says hello and waits for the
// driver's first message. Until welcomed there is nothing to drain:
// shutting down (ctx) ends the wait, so a hung driver cannot keep the
// executor from exiting.
func (e *Executor) hello(ctx, streamCtx context.Context, streamCancel context.CancelFunc, conn *grpc.ClientConn, method string) (clusterv1.ExecutorService_ConnectClient, *clusterv1.DriverMessage, error) {
	cs, err := conn.NewStream(streamCtx, &clusterv1.ExecutorService_ServiceDesc.Streams[0], method, grpc.WaitForReady(false))
	if err != nil {
		return nil, nil, err
	}
	stream := &grpc.GenericClientStream[clusterv1.ExecutorMessage, clusterv1.DriverMessage]{ClientStream: cs}
	if err := stream.Send(&clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Hello{Hello: &clusterv1.Hello{
		ExecutorId: e.cfg.ID, Slots: int32(e.cfg.Slots), Address: e.cfg.Advertise, Version: "dev",
	}}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	// io.EOF from Send: the driver already ended the stream (a driver that
	// does not know the method answers at once with Unimplemented); the
	// status comes from Recv, below.
	stopWait := context.AfterFunc(ctx, streamCancel)
	first, err := stream.Recv()
	stopWait()
	return stream, first, err
}

// session is one Connect stream from the driver's welcome to its end, and
// the owner of every goroutine that serves it. run starts them and returns
// only once each one has returned:
//
//   - the watchdog (lease.watch), which ends the lease when the driver has
//     been quiet for the fence or the process was paused;
//   - the sender, the only caller of stream.Send: a heartbeat every
//     interval, and results as they come;
//   - the receiver, the only caller of stream.Recv: it renews the lease on
//     every message, admits tasks and cancels attempts;
//   - one goroutine per admitted task.
//
// Whatever ends the session (the driver ends or breaks the stream, the
// lease ends, a send fails, or ctx ends), close takes the same steps:
//
//  1. Admission closes: a task that arrives from now on is refused at once
//     (retryably, so the driver moves it), not started.
//  2. Only when ctx ended (shutdown), the drain: running attempts may
//     finish and report for up to DrainTimeout, while the sender keeps
//     heartbeating and the receiver keeps renewing the lease and hearing
//     cancellations. A broken stream or an ended lease cuts it short.
//  3. The attempts still running are cancelled (the driver has moved them,
//     or will once the stream ends) and every task goroutine is joined;
//     each has queued its result.
//  4. The result queue closes: the sender sends what is in it, then
//     returns.
//  5. The sending side closes; the driver, having read every result,
//     ends the stream, which ends the receiver's Recv. The receiver and the
//     watchdog are joined.
//
// Steps 3 to 5 together get resultFlushTimeout; past it the stream is
// cancelled, which ends at once a send or receive the driver does not
// answer (a frozen driver, a cut network).
//
// Nothing polls: each step waits on the channel that says it is done.
type session struct {
	e            *Executor
	stream       clusterv1.ExecutorService_ConnectClient
	cancelStream context.CancelFunc
	lease        *lease
	interval     time.Duration // heartbeat period, from the welcome
	batchResults bool          // the driver takes bursts of results in one message (welcome)

	// attempts is the parent of every attempt of the session; step 3
	// cancels it. It is not run's ctx: a drain lets attempts finish.
	attempts       context.Context
	cancelAttempts context.CancelFunc

	// out queues the results of admitted tasks for the sender; only task
	// goroutines write it, and step 4 closes it once they all returned.
	out chan *clusterv1.TaskResult
	// refusals queues the answers to tasks refused after step 1; only the
	// receiver writes it, and it is never closed (a refusal that comes
	// after the sender returned is dropped: the stream is ending).
	refusals chan *clusterv1.TaskResult

	mu sync.Mutex
	// refuse is nil while tasks are admitted; step 1 sets it to the
	// reason new tasks are refused. tasks.Add happens under mu while it is
	// nil, so no task starts once step 1 waits for them.
	refuse error
	tasks  sync.WaitGroup

	expired   chan error    // the watchdog's verdict, at most one
	watchDone chan struct{} // closed when the watchdog returned
	sendDone  chan struct{} // closed when the sender returned; sendErr is set before
	recvDone  chan struct{} // closed when the receiver returned; recvErr is set before
	sendErr   error
	recvErr   error
}

func newSession(e *Executor, stream clusterv1.ExecutorService_ConnectClient, cancelStream context.CancelFunc, ls *lease, interval time.Duration) *session {
	attempts, cancel := context.WithCancel(context.Background())
	return &session{e: e, stream: stream, cancelStream: cancelStream, lease: ls, interval: interval,
		attempts: attempts, cancelAttempts: cancel,
		out: make(chan *clusterv1.TaskResult, e.cfg.Slots+16), refusals: make(chan *clusterv1.TaskResult, 16),
		expired: make(chan error, 1), watchDone: make(chan struct{}), sendDone: make(chan struct{}), recvDone: make(chan struct{})}
}

// run serves the stream until it ends or ctx ends (then it drains), and
// returns what ended it: the stream's or a send's error, errFenced, or nil
// after a drain. It returns after close's last step.
func (s *session) run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	// The watchdog turns four times per interval, so a pause of the process
	// shows as a gap long before the fence.
	tick := time.NewTicker(max(s.interval/4, 10*time.Millisecond))
	defer tick.Stop()
	go func() {
		defer close(s.watchDone)
		s.lease.watch(watchCtx, tick.C, func(err error) { s.expired <- err })
	}()
	go s.send()
	go s.receive()

	var err error
	drain := false
	select {
	case <-s.recvDone:
		err = s.recvErr
	case <-s.sendDone:
		err = s.sendErr
	case err = <-s.expired:
		// Cut off from the driver, or paused: the driver is about to run
		// these attempts elsewhere. Cancelling them (step 3) aborts their
		// writers; a commit already under way checks the lease.
		s.e.log.Warn("fencing this executor: cancelling its running attempts", "attempts", len(s.e.runningIDs()), "err", err)
	case <-ctx.Done():
		drain = true
	}
	if cerr := s.close(drain, stopWatch); err == nil {
		err = cerr
	}
	return err
}

// close takes the steps listed on session. It returns what cut a drain
// short (the stream's or a send's error, errFenced), else nil.
func (s *session) close(drain bool, stopWatch context.CancelFunc) (err error) {
	// 1. Refuse new tasks.
	why := errSessionEnding
	if drain {
		s.e.setDraining() // /readyz, and runTask refuses an attempt admitted just before
		why = fmt.Errorf("%w: executor %s is shutting down", rpc.ErrUnavailable, s.e.cfg.ID)
	}
	s.mu.Lock()
	s.refuse = why
	s.mu.Unlock()
	tasksDone := make(chan struct{})
	go func() { s.tasks.Wait(); close(tasksDone) }() // joined in step 3

	// 2. Drain.
	if drain {
		timeout := time.NewTimer(s.e.cfg.DrainTimeout)
		select {
		case <-tasksDone:
			s.e.log.Info("drained running tasks")
		case <-timeout.C:
			s.e.log.Warn("drain timed out; cancelling running tasks", "timeout", s.e.cfg.DrainTimeout, "attempts", len(s.e.runningIDs()))
		case <-s.recvDone:
			err = s.recvErr
		case <-s.sendDone:
			err = s.sendErr
		case err = <-s.expired:
			s.e.log.Warn("fenced while draining: cancelling running tasks", "err", err)
		}
		timeout.Stop()
	}

	// Steps 3 to 5 wait for the driver to take what is queued, bounded:
	// past the deadline the stream is cancelled, which ends any send or
	// receive at once.
	flush, stopFlush := context.WithTimeout(context.Background(), resultFlushTimeout)
	defer stopFlush()
	await := func(done <-chan struct{}) {
		select {
		case <-done:
		case <-flush.Done():
			s.cancelStream()
			<-done
		}
	}

	// 3. Cancel what still runs; join every task goroutine (one waiting to
	// queue its result waits for the sender).
	s.cancelAttempts()
	await(tasksDone)

	// 4. The sender sends what is queued, then returns.
	close(s.out)
	await(s.sendDone)

	// 5. Half-close: the driver reads every result sent before it, then
	// ends the stream, which ends the receiver. Cancelling the stream at
	// once instead could drop the last results on the way.
	if s.sendErr == nil {
		_ = s.stream.CloseSend() // the sender has returned: no Send runs concurrently
	}
	await(s.recvDone)
	s.cancelStream()
	stopWatch()
	<-s.watchDone
	return err
}

// errSessionEnding refuses tasks that arrive while a session ends for
// another reason than shutdown; the driver will not hear of it in most
// cases, as the stream is ending too.
var errSessionEnding = fmt.Errorf("%w: the executor's session with the driver is ending", rpc.ErrUnavailable)

// send is the sender: the only goroutine that calls stream.Send. It returns
// when out is closed and emptied (step 4), or when a send fails.
func (s *session) send() {
	defer close(s.sendDone)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		var m *clusterv1.ExecutorMessage
		select {
		case res, ok := <-s.out:
			if !ok {
				return
			}
			m = s.resultsMessage(res)
		case res := <-s.refusals:
			m = &clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Result{Result: res}}
		case <-t.C:
			m = &clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Heartbeat{Heartbeat: &clusterv1.Heartbeat{RunningAttempts: s.e.runningIDs()}}}
		}
		if err := s.stream.Send(m); err != nil {
			s.sendErr = err
			return
		}
	}
}

// maxResultsPerMessage bounds how many results one message carries; far
// below gRPC's 4 MiB message limit for results without collected rows.
const maxResultsPerMessage = 256

// resultsMessage is the message for first and whatever other results are
// ready at once: one Result alone, or Results for a burst (the driver
// accepts both). Results carrying collected rows or partial aggregates
// travel alone, so that a burst stays far below the message size limit.
func (s *session) resultsMessage(first *clusterv1.TaskResult) *clusterv1.ExecutorMessage {
	burst := []*clusterv1.TaskResult{first}
	for s.batchResults && len(burst) < maxResultsPerMessage && small(burst[len(burst)-1]) {
		select {
		case res, ok := <-s.out:
			if !ok {
				return s.batch(burst) // closed: send what there is; the next receive returns
			}
			burst = append(burst, res)
			continue
		default:
		}
		break
	}
	return s.batch(burst)
}

func (s *session) batch(burst []*clusterv1.TaskResult) *clusterv1.ExecutorMessage {
	if len(burst) == 1 {
		return &clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Result{Result: burst[0]}}
	}
	return &clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Results{Results: &clusterv1.TaskResults{Results: burst}}}
}

// small reports whether res carries no payload (rows, partial aggregate).
func small(res *clusterv1.TaskResult) bool {
	return len(res.GetRows()) == 0 && len(res.GetPartialAggregate()) == 0
}

// receive is the receiver: the only goroutine that calls stream.Recv after
// the welcome. It returns when Recv fails: the driver ended or broke the
// stream, or step 5 cancelled it.
func (s *session) receive() {
	defer close(s.recvDone)
	for {
		m, err := s.stream.Recv()
		if err != nil {
			s.recvErr = err
			return
		}
		s.lease.heardFromDriver()
		switch k := m.GetKind().(type) {
		case *clusterv1.DriverMessage_Tasks:
			specs := map[string]*sluicev1.JobSpec{}
			for _, spec := range k.Tasks.GetJobs() {
				specs[spec.GetName()] = spec
			}
			for _, t := range k.Tasks.GetTasks() {
				s.start(specs[t.GetJob()], t)
			}
		case *clusterv1.DriverMessage_Cancel:
			s.e.cancelAttempts(k.Cancel.GetAttemptIds())
		}
	}
}

// start runs t in a goroutine of its own that queues its result on out, or,
// once admission has closed (step 1), queues a refusal instead.
func (s *session) start(spec *sluicev1.JobSpec, t *clusterv1.Task) {
	s.mu.Lock()
	why := s.refuse
	if why == nil {
		s.tasks.Add(1)
	}
	s.mu.Unlock()
	if why != nil {
		res := s.e.refuseTask(t, why)
		select {
		case s.refusals <- res:
		case <-s.sendDone:
		}
		return
	}
	go func() {
		defer s.tasks.Done()
		res := s.e.runTask(s.attempts, spec, t, s.lease.valid)
		select {
		case s.out <- res:
		case <-s.sendDone: // the stream is gone: the driver learns from its end
		}
	}()
}
