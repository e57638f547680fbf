// Package registry keeps the executors connected to the leading driver:
// it serves their Connect streams, sends them tasks and cancellations,
// checks each result against the attempt it answers, and routes results
// and lost attempts to the runner.Loop of their job. It is the loops'
// runner.Dispatcher.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/internal/driver/runner"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/scheduler"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Registry tracks connected executors. Each executor holds one Connect
// stream; the registry owns a sender goroutine per stream and routes results
// to the batch loop of their job.
//
// Lock order: registry.mu, then nothing (subscriber channels are sent to
// outside the lock).
type Registry struct {
	clusterv1.UnimplementedExecutorServiceServer

	log       *slog.Logger
	heartbeat time.Duration
	timeout   time.Duration
	// leading reports whether this driver currently leads; Connect refuses
	// executors otherwise.
	leading func() (bool, string, int64)
	// refused, when set, counts a refused result by reason (metrics).
	refused func(reason string)

	mu        sync.Mutex
	executors map[string]*executorConn
	subs      map[string]*runner.Subscription // job → its batch loop
	running   map[string]attempt              // attempt ID → where it runs
}

// attempt is a running task attempt: its executor, the stream it was sent
// on, its token, and what it costs there in scheduler.SlotUnits. A result
// counts only from that stream and with that token.
type attempt struct {
	executor string
	conn     *executorConn
	token    string
	job      string
	cost     int
}

type executorConn struct {
	id, addr   string
	slots      int
	running    int // attempts
	used       int // scheduler.SlotUnits taken by the attempts
	connected  time.Time
	lastBeat   time.Time
	done, fail int64
	send       chan *clusterv1.DriverMessage
	cancel     context.CancelFunc
}

// New returns a registry that expects a heartbeat every heartbeat and
// declares an executor lost after timeout without one. leading reports
// whether this driver leads (and its id and epoch); executors are refused
// otherwise. refused, when not nil, counts a refused result by reason.
func New(log *slog.Logger, heartbeat, timeout time.Duration, leading func() (bool, string, int64), refused func(reason string)) *Registry {
	return &Registry{
		log: log, heartbeat: heartbeat, timeout: timeout, leading: leading, refused: refused,
		executors: map[string]*executorConn{},
		subs:      map[string]*runner.Subscription{},
		running:   map[string]attempt{},
	}
}

// Connect serves one executor's stream until it ends, the executor stops
// heartbeating, or this driver stops leading.
func (r *Registry) Connect(stream clusterv1.ExecutorService_ConnectServer) error {
	lead, leader, epoch := r.leading()
	if !lead {
		return &rpc.NotLeaderError{Leader: leader}
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil || hello.GetExecutorId() == "" || hello.GetSlots() < 1 {
		return fmt.Errorf("first executor message must be a hello with an id and at least one slot: %w", rpc.ErrConflict)
	}
	if err := checkExecutorID(stream.Context(), hello.GetExecutorId()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	now := time.Now()
	ec := &executorConn{
		id: hello.GetExecutorId(), addr: hello.GetAddress(), slots: int(hello.GetSlots()),
		connected: now, lastBeat: now, send: make(chan *clusterv1.DriverMessage, 64), cancel: cancel,
	}
	r.mu.Lock()
	var lost map[*runner.Subscription][]string
	if old, ok := r.executors[ec.id]; ok {
		// The same executor reconnected before its old stream was noticed
		// dead: the old stream's attempts are lost, and their loops must hear
		// it now rather than wait for the task timeout.
		old.cancel()
		lost = r.dropLocked(old)
	}
	r.executors[ec.id] = ec
	r.mu.Unlock()
	r.notifyLost(ec.id, lost)
	r.log.Info("executor connected", "executor", ec.id, "slots", ec.slots, "address", ec.addr)
	var endErr error
	defer func() { r.remove(ec, endErr) }()

	if err := stream.Send(&clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Welcome{Welcome: &clusterv1.Welcome{
		HeartbeatIntervalMs: r.heartbeat.Milliseconds(), Epoch: epoch, HeartbeatFenceMs: r.fenceAfter().Milliseconds(),
		AcceptsResultBatches: true,
	}}}); err != nil {
		return err
	}

	// Sender: the only goroutine that calls stream.Send after the welcome.
	// It pings every heartbeat interval, so an executor cut off from this
	// driver notices and fences itself (see fenceAfter).
	sendErr := make(chan error, 1)
	go func() {
		ping := time.NewTicker(r.heartbeat)
		defer ping.Stop()
		for {
			var m *clusterv1.DriverMessage
			select {
			case <-ctx.Done():
				sendErr <- nil
				return
			case <-ping.C:
				m = &clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Ping{Ping: &clusterv1.Ping{}}}
			case m = <-ec.send:
			}
			if err := stream.Send(m); err != nil {
				cancel()
				sendErr <- err
				return
			}
		}
	}()
	// Watchdog: an executor that stops heartbeating is gone even if TCP
	// has not noticed yet. Its timer fires when the timeout after the last
	// heartbeat ends, not at the next tick after that: a tick would add up
	// to a heartbeat interval to every frozen executor's detection (and to
	// the time its batch takes).
	go func() {
		leadCheck := time.NewTicker(r.heartbeat)
		defer leadCheck.Stop()
		stale := time.NewTimer(r.timeout)
		defer stale.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-stale.C:
				r.mu.Lock()
				left := r.timeout - time.Since(ec.lastBeat)
				r.mu.Unlock()
				if left <= 0 {
					r.log.Warn("executor missed heartbeats; dropping it", "executor", ec.id, "timeout", r.timeout)
					cancel()
					return
				}
				stale.Reset(left)
			case <-leadCheck.C:
				if lead, _, _ := r.leading(); !lead {
					cancel()
					return
				}
			}
		}
	}()

	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			r.mu.Lock()
			ec.lastBeat = time.Now()
			r.mu.Unlock()
			if res := m.GetResult(); res != nil {
				r.deliver(ctx, ec, res)
			}
			for _, res := range m.GetResults().GetResults() {
				r.deliver(ctx, ec, res)
			}
		}
	}()
	select {
	case err = <-recvErr:
	case <-ctx.Done():
		err = ctx.Err()
	}
	cancel()
	<-sendErr
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
		err = nil
	}
	endErr = err
	return err
}

// deliver routes a result to its job's loop. It counts only for a live
// attempt that was sent on this very stream and with the attempt's token:
// anything else (an attempt given to another executor or to an earlier
// stream of this one, cancelled, re-dispatched, or a forged id) is refused
// and logged with the executor's id.
func (r *Registry) deliver(ctx context.Context, ec *executorConn, res *clusterv1.TaskResult) {
	r.mu.Lock()
	a, ok := r.running[res.GetAttemptId()]
	var refused, kind string
	switch {
	case !ok:
		refused, kind = "the attempt is not running (cancelled, re-dispatched or unknown)", "not_running"
	case a.conn != ec:
		refused, kind = "the attempt was sent to executor "+a.executor+" on another stream", "other_stream"
	case a.token != res.GetToken() || a.job != res.GetJob():
		refused, kind = "the result does not carry the attempt's token and job", "token"
	default:
		if id, err := runner.ParseAttemptID(res.GetAttemptId()); err != nil || id.Job != res.GetJob() || int64(id.Batch) != res.GetBatch() {
			refused, kind = "the result's job and batch are not its attempt's", "token"
		}
	}
	if refused != "" {
		r.mu.Unlock()
		r.log.Warn("task result refused", "executor", ec.id, "attempt", res.GetAttemptId(), "job", res.GetJob(), "reason", refused)
		if r.refused != nil {
			r.refused(kind)
		}
		return
	}
	delete(r.running, res.GetAttemptId())
	ec.release(a.cost)
	if res.GetOk() {
		ec.done++
	} else {
		ec.fail++
	}
	sub := r.subs[res.GetJob()]
	r.mu.Unlock()
	if sub == nil {
		return // the job's loop is gone; the result is stale
	}
	select {
	case sub.Results <- res:
	case <-ctx.Done():
	}
}

func (r *Registry) remove(ec *executorConn, cause error) {
	r.mu.Lock()
	if r.executors[ec.id] != ec {
		r.mu.Unlock()
		return
	}
	delete(r.executors, ec.id)
	lost := r.dropLocked(ec)
	r.mu.Unlock()
	if cause != nil {
		r.log.Warn("executor disconnected", "executor", ec.id, "err", cause)
	} else {
		r.log.Info("executor left", "executor", ec.id)
	}
	r.notifyLost(ec.id, lost)
}

// dropLocked forgets the attempts sent on ec's stream and returns them by the
// subscription of their job.
func (r *Registry) dropLocked(ec *executorConn) map[*runner.Subscription][]string {
	lost := map[*runner.Subscription][]string{}
	for id, a := range r.running {
		if a.conn != ec {
			continue
		}
		delete(r.running, id)
		if s := r.subs[a.job]; s != nil {
			lost[s] = append(lost[s], id)
		}
	}
	return lost
}

// notifyLost tells each loop which of its attempts were lost with an
// executor's stream. It never blocks the registry on a slow loop: the loop
// also notices through attempt timeouts, so a dropped notice only delays.
func (r *Registry) notifyLost(executor string, lost map[*runner.Subscription][]string) {
	for s, ids := range lost {
		select {
		case s.Lost <- runner.LostNotice{Executor: executor, Attempts: ids}:
		default:
			r.log.Warn("a job loop is not keeping up with lost-executor notices", "executor", executor, "attempts", len(ids))
		}
	}
}

// fenceAfter is how long an executor may go without hearing from this driver
// before it cancels its attempts: one heartbeat interval less than the
// timeout after which this driver declares it lost and runs them elsewhere,
// so a cut-off executor has stopped writing before the replacement starts.
func (r *Registry) fenceAfter() time.Duration { return r.timeout - r.heartbeat }

// Subscribe routes results of job to the returned subscription until
// unsubscribe is called.
func (r *Registry) Subscribe(job string) (*runner.Subscription, func()) {
	s := runner.NewSubscription()
	r.mu.Lock()
	r.subs[job] = s
	r.mu.Unlock()
	return s, func() {
		r.mu.Lock()
		if r.subs[job] == s {
			delete(r.subs, job)
		}
		r.mu.Unlock()
	}
}

func (ec *executorConn) release(cost int) {
	ec.running--
	ec.used -= cost
}

// queuePerSlot bounds how many tasks an executor is sent beyond its slots,
// per slot: they wait for a slot there (the executor's slot semaphore). The
// batch loop queues far fewer, only as many as start within a few tens of
// milliseconds (runner.queueAllowance); this bound only keeps a message
// and the executor's waiting goroutines finite.
const queuePerSlot = 1024

// free is how many more tasks of cost start at once on the executor.
func (ec *executorConn) free(cost int) int {
	return max(ec.slots*scheduler.SlotUnits-ec.used, 0) / cost
}

// room is how many more tasks of cost the executor accepts, to start at
// once or to wait for a slot.
func (ec *executorConn) room(cost int) int {
	return max(ec.slots*scheduler.SlotUnits*(1+queuePerSlot)-ec.used, 0) / cost
}

// Snapshot lists executors with, in tasks of cost (scheduler.TaskCost),
// their slots, their free slots, the tasks waiting for a slot and the room
// left for more to wait.
func (r *Registry) Snapshot(cost int) []scheduler.Executor {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]scheduler.Executor, 0, len(r.executors))
	for _, e := range r.executors {
		slots := e.slots * scheduler.SlotUnits
		free := e.free(cost)
		out = append(out, scheduler.Executor{ID: e.id, Free: free, Slots: slots / cost,
			Queued: (max(e.used-slots, 0) + cost - 1) / cost, QueueRoom: e.room(cost) - free})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Dispatch sends tasks (all of one job) to executor, as many as it still has
// room for (free slots, then room to wait for one), in one message, and
// returns how many it took (a prefix of tasks).
func (r *Registry) Dispatch(ctx context.Context, executor string, spec *sluicev1.JobSpec, tasks []*clusterv1.Task) int {
	if len(tasks) == 0 {
		return 0
	}
	cost := scheduler.TaskCost(int(tasks[0].GetTasksPerSlot()))
	r.mu.Lock()
	ec := r.executors[executor]
	if ec == nil {
		r.mu.Unlock()
		return 0
	}
	n := min(len(tasks), ec.room(cost))
	if n <= 0 {
		r.mu.Unlock()
		return 0
	}
	for _, t := range tasks[:n] {
		r.running[t.GetAttemptId()] = attempt{executor: executor, conn: ec, token: t.GetToken(), job: t.GetJob(), cost: cost}
	}
	ec.running += n
	ec.used += n * cost
	r.mu.Unlock()
	msg := &clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Tasks{Tasks: &clusterv1.TaskAssignment{
		Jobs: []*sluicev1.JobSpec{spec}, Tasks: tasks[:n],
	}}}
	select {
	case ec.send <- msg:
		return n
	case <-ctx.Done():
	case <-time.After(r.timeout):
	}
	// Not sent: give the slots back; the attempts never started.
	r.mu.Lock()
	for _, t := range tasks[:n] {
		if a, ok := r.running[t.GetAttemptId()]; ok && a.executor == executor {
			delete(r.running, t.GetAttemptId())
			ec.release(a.cost)
		}
	}
	r.mu.Unlock()
	return 0
}

// Cancel asks executors to stop attempts; best effort.
func (r *Registry) Cancel(attempts []string) {
	if len(attempts) == 0 {
		return
	}
	byExec := map[string][]string{}
	conns := map[string]*executorConn{}
	r.mu.Lock()
	for _, id := range attempts {
		if a, ok := r.running[id]; ok {
			byExec[a.executor] = append(byExec[a.executor], id)
			delete(r.running, id)
			a.conn.release(a.cost)
			conns[a.executor] = a.conn
		}
	}
	r.mu.Unlock()
	for e, ids := range byExec {
		if ec := conns[e]; ec != nil {
			select {
			case ec.send <- &clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Cancel{Cancel: &clusterv1.CancelTasks{AttemptIds: ids}}}:
			default:
			}
		}
	}
}

// List describes the connected executors for the API.
func (r *Registry) List() []*sluicev1.ExecutorInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*sluicev1.ExecutorInfo, 0, len(r.executors))
	for _, e := range r.executors {
		out = append(out, &sluicev1.ExecutorInfo{
			Id: e.id, Address: e.addr, Slots: int32(e.slots), Running: int32(e.running),
			ConnectTime: timestamppb.New(e.connected), LastHeartbeatTime: timestamppb.New(e.lastBeat),
			TasksCompleted: e.done, TasksFailed: e.fail,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Id < out[j].Id })
	return out
}

// DisconnectAll drops every executor, e.g. when leadership is lost; they
// reconnect to the new leader.
func (r *Registry) DisconnectAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.executors {
		e.cancel()
	}
}

// checkExecutorID refuses a hello whose id differs from the executor's
// certificate. Refusing rather than overriding: an executor configured with
// another id logs and reports under that id, so a silent override would
// leave its operator reading the wrong name; the refusal says what to fix.
func checkExecutorID(ctx context.Context, id string) error {
	p, ok := rpc.PrincipalFrom(ctx)
	if !ok || !p.Executor || p.Name == id {
		return nil
	}
	return fmt.Errorf("hello names executor %q but its certificate names %q; start it with --id %s or without --id: %w",
		id, p.Name, p.Name, rpc.ErrPermissionDenied)
}
