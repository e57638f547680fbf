package executor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The session tests run one session (not Run, which reconnects) against the
// fake driver and check, the moment it returns, that each goroutine of its
// own has been joined: none still waits on anything (a goroutine past its
// join point may not have exited yet, but it no longer blocks), and all are
// gone a moment later. goleak then checks, after every clean-up, that
// nothing else leaked either.

// sessionGoroutines returns the stacks of live goroutines that run a
// session's code (its sender, receiver, watchdog, task goroutines and their
// join), and those of them that are blocked.
func sessionGoroutines() (all, blocked []string) {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"executor.(*session).", "executor.(*lease).watch", "executor.(*Executor).runTask"} {
			if !strings.Contains(g, fn) {
				continue
			}
			all = append(all, g)
			// "goroutine 7 [chan receive]:"; runnable or running is a
			// goroutine on its way out.
			state := g[strings.Index(g, "[")+1:]
			if !strings.HasPrefix(state, "runnable") && !strings.HasPrefix(state, "running") {
				blocked = append(blocked, g)
			}
			break
		}
	}
	return all, blocked
}

type sessionEnd struct {
	connected bool
	err       error
}

// sessionRig is a fake driver, a Kafka topic with 5 records, a job over it
// and an executor that has not connected yet.
type sessionRig struct {
	f       *fakeDriver
	addr    string
	e       *Executor
	cluster *kfake.Cluster
	spec    *sluicev1.JobSpec
}

func newSessionRig(t *testing.T, drain time.Duration) *sessionRig {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	produce(t, cluster.ListenAddrs(), "s", 5)
	f, addr := startFakeDriver(t)
	e, err := New(Config{Driver: addr, Slots: 2, ID: "e1", DrainTimeout: drain,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.closeCaches)
	spec := &sluicev1.JobSpec{
		Name: "sess",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(cluster.ListenAddrs(), ","), Subscribe: []string{"s"}, StartingOffsets: "earliest",
		}}},
		Transforms: []*sluicev1.Transform{{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}}},
		Sink:       &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
	}
	return &sessionRig{f: f, addr: addr, e: e, cluster: cluster, spec: spec}
}

// task is the topic's one range, reaching to offset until: with until past
// 5 the attempt waits for records.
func (r *sessionRig) task(t *testing.T, id string, until int) *clusterv1.Task {
	t.Helper()
	task := plan(t, r.spec)[0]
	task.AttemptId, task.Until = id, []byte(strconv.Itoa(until))
	return task
}

// start runs one session until ctx ends and returns its stream, once
// welcomed, and where the session's end arrives.
func (r *sessionRig) start(t *testing.T, ctx context.Context) (*fakeConn, <-chan sessionEnd) {
	t.Helper()
	end := make(chan sessionEnd, 1)
	go func() {
		connected, _, err := r.e.session(ctx, r.addr)
		end <- sessionEnd{connected, err}
	}()
	r.f.welcome <- struct{}{}
	select {
	case c := <-r.f.conns:
		return c, end
	case <-time.After(20 * time.Second):
		t.Fatal("the executor did not connect")
		return nil, nil
	}
}

func (r *sessionRig) send(t *testing.T, c *fakeConn, tasks ...*clusterv1.Task) {
	t.Helper()
	if err := c.stream.Send(&clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Tasks{Tasks: &clusterv1.TaskAssignment{
		Jobs: []*sluicev1.JobSpec{r.spec}, Tasks: tasks,
	}}}); err != nil {
		t.Fatal(err)
	}
}

func (r *sessionRig) result(t *testing.T) *clusterv1.TaskResult {
	t.Helper()
	select {
	case res := <-r.f.results:
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("no task result within 20s")
		return nil
	}
}

// waitEnd waits for the session's end and checks that it joined every
// goroutine it started.
func waitEnd(t *testing.T, end <-chan sessionEnd, within time.Duration) sessionEnd {
	t.Helper()
	var se sessionEnd
	select {
	case se = <-end:
	case <-time.After(within):
		all, _ := sessionGoroutines()
		t.Fatalf("the session did not end within %s; its goroutines:\n%s", within, strings.Join(all, "\n\n"))
	}
	if _, blocked := sessionGoroutines(); len(blocked) > 0 {
		t.Fatalf("the session returned with %d goroutines of its own not joined:\n%s", len(blocked), strings.Join(blocked, "\n\n"))
	}
	waitFor(t, "the session's joined goroutines to exit", func() error {
		if all, _ := sessionGoroutines(); len(all) > 0 {
			return errors.New(strings.Join(all, "\n\n"))
		}
		return nil
	})
	if !se.connected {
		t.Errorf("session: connected false (err %v)", se.err)
	}
	return se
}

// waitRunning waits until the executor runs n attempts.
func waitRunning(t *testing.T, e *Executor, n int) {
	t.Helper()
	waitFor(t, "running attempts", func() error {
		if got := len(e.runningIDs()); got != n {
			return errors.New("running " + strconv.Itoa(got) + ", want " + strconv.Itoa(n))
		}
		return nil
	})
}

// TestSessionEndsWithStream: the driver ends the stream after a task's
// result; the session returns the stream's end with everything joined.
func TestSessionEndsWithStream(t *testing.T) {
	verifyNoLeaks(t)
	r := newSessionRig(t, time.Second)
	c, end := r.start(t, context.Background())
	r.send(t, c, r.task(t, "done-1", 5))
	if res := r.result(t); !res.GetOk() || res.GetRecordsIn() != 5 {
		t.Fatalf("result ok %v, records %d: %v", res.GetOk(), res.GetRecordsIn(), rpc.TaskFailure(res))
	}
	c.kick <- nil // the driver's handler returns: a clean end of stream
	se := waitEnd(t, end, 10*time.Second)
	if !errors.Is(se.err, io.EOF) {
		t.Errorf("session error %v, want EOF", se.err)
	}
}

// TestSessionStreamBroken: the driver breaks the stream while an attempt
// waits for records; the attempt is cancelled and joined.
func TestSessionStreamBroken(t *testing.T) {
	verifyNoLeaks(t)
	r := newSessionRig(t, time.Second)
	c, end := r.start(t, context.Background())
	r.send(t, c, r.task(t, "waits-1", 10))
	waitRunning(t, r.e, 1)
	c.kick <- status.Error(codes.Unavailable, "driver went away")
	se := waitEnd(t, end, 10*time.Second)
	if status.Code(se.err) != codes.Unavailable {
		t.Errorf("session error %v, want the driver's UNAVAILABLE", se.err)
	}
	if ids := r.e.runningIDs(); len(ids) != 0 {
		t.Errorf("attempts still running: %v", ids)
	}
}

// TestSessionFenced: a driver that goes silent fences the session; the
// waiting attempt is cancelled, and the session returns errFenced.
func TestSessionFenced(t *testing.T) {
	verifyNoLeaks(t)
	r := newSessionRig(t, time.Second)
	r.f.fenceMs = 300 // and no pings
	c, end := r.start(t, context.Background())
	r.send(t, c, r.task(t, "waits-1", 10))
	se := waitEnd(t, end, 20*time.Second)
	if !errors.Is(se.err, errFenced) {
		t.Errorf("session error %v, want errFenced", se.err)
	}
	if ids := r.e.runningIDs(); len(ids) != 0 {
		t.Errorf("attempts still running: %v", ids)
	}
}

// TestSessionDrainLetsTasksFinish pins a bug: on shutdown the attempts ran
// under the context that had just ended, so the drain only waited for
// cancelled attempts; a drain now lets them finish and report. Meanwhile
// the session heartbeats, is not ready, and refuses new tasks retryably.
func TestSessionDrainLetsTasksFinish(t *testing.T) {
	verifyNoLeaks(t)
	r := newSessionRig(t, 30*time.Second)
	r.f.beats = make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, end := r.start(t, ctx)
	r.send(t, c, r.task(t, "drains-1", 10))
	waitRunning(t, r.e, 1)

	cancel() // shutdown
	waitFor(t, "draining", func() error {
		if ok, why := r.e.Ready(); ok || !strings.Contains(why, "draining") {
			return errors.New(why)
		}
		return nil
	})
	// A task sent during the drain is refused at once, retryably.
	r.send(t, c, r.task(t, "late-1", 5))
	late := r.result(t)
	if err := rpc.TaskFailure(late); late.GetAttemptId() != "late-1" || !errors.Is(err, rpc.ErrUnavailable) || rpc.FailureKind(err) != rpc.ErrorKindRetryable {
		t.Fatalf("late task: attempt %s, error %v", late.GetAttemptId(), err)
	}
	// Heartbeats go on while the attempt drains.
	for len(r.f.beats) > 0 {
		<-r.f.beats
	}
	for range 2 {
		select {
		case <-r.f.beats:
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat during the drain")
		}
	}
	select {
	case se := <-end:
		t.Fatalf("the session ended (%v) before its attempt finished", se.err)
	default:
	}
	produce(t, r.cluster.ListenAddrs(), "s", 5) // what the attempt waits for
	res := r.result(t)
	if res.GetAttemptId() != "drains-1" || !res.GetOk() || res.GetRecordsIn() != 10 {
		t.Fatalf("drained attempt %s: ok %v, records %d, error %v", res.GetAttemptId(), res.GetOk(), res.GetRecordsIn(), rpc.TaskFailure(res))
	}
	if se := waitEnd(t, end, 10*time.Second); se.err != nil {
		t.Errorf("session error %v after a clean drain", se.err)
	}
}

// TestSessionDrainTimeout: an attempt that does not finish within the drain
// timeout is cancelled; its failure still reaches the driver (retryable,
// CANCELLED) before the session returns, within the timeout and the flush.
func TestSessionDrainTimeout(t *testing.T) {
	verifyNoLeaks(t)
	const drain = 300 * time.Millisecond
	r := newSessionRig(t, drain)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, end := r.start(t, ctx)
	r.send(t, c, r.task(t, "stuck-1", 10))
	waitRunning(t, r.e, 1)
	start := time.Now()
	cancel()
	se := waitEnd(t, end, 10*time.Second)
	if took := time.Since(start); took < drain || took > drain+resultFlushTimeout+2*time.Second {
		t.Errorf("shutdown took %s; want the drain timeout %s and at most the flush", took, drain)
	}
	if se.err != nil {
		t.Errorf("session error %v", se.err)
	}
	select {
	case res := <-r.f.results:
		err := rpc.TaskFailure(res)
		if res.GetAttemptId() != "stuck-1" || res.GetOk() || !errors.Is(err, context.Canceled) || connectors.IsPermanent(err) {
			t.Errorf("abandoned attempt %s: ok %v, error %v", res.GetAttemptId(), res.GetOk(), err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the abandoned attempt's failure did not reach the driver")
	}
}

// TestResultsMessage: results ready together travel in one message, up to
// maxResultsPerMessage, a result with a payload ends a burst, and a driver
// that did not say it accepts bursts gets one result per message.
func TestResultsMessage(t *testing.T) {
	res := func(id string, partial bool) *clusterv1.TaskResult {
		r := &clusterv1.TaskResult{AttemptId: id}
		if partial {
			r.PartialAggregate = []byte{1}
		}
		return r
	}
	ids := func(m *clusterv1.ExecutorMessage) string {
		if r := m.GetResult(); r != nil {
			return "one:" + r.GetAttemptId()
		}
		var out []string
		for _, r := range m.GetResults().GetResults() {
			out = append(out, r.GetAttemptId())
		}
		return "burst:" + strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name    string
		batch   bool
		queued  []*clusterv1.TaskResult
		first   *clusterv1.TaskResult
		want    string
		left    int
		closeIt bool
	}{
		{name: "alone", batch: true, first: res("a", false), want: "one:a"},
		{name: "burst", batch: true, first: res("a", false), queued: []*clusterv1.TaskResult{res("b", false), res("c", false)}, want: "burst:a,b,c"},
		{name: "payload ends a burst", batch: true, first: res("a", false),
			queued: []*clusterv1.TaskResult{res("b", true), res("c", false)}, want: "burst:a,b", left: 1},
		{name: "payload first travels alone", batch: true, first: res("a", true), queued: []*clusterv1.TaskResult{res("b", false)}, want: "one:a", left: 1},
		{name: "old driver", batch: false, first: res("a", false), queued: []*clusterv1.TaskResult{res("b", false)}, want: "one:a", left: 1},
		{name: "closed queue", batch: true, first: res("a", false), queued: []*clusterv1.TaskResult{res("b", false)}, want: "burst:a,b", closeIt: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &session{out: make(chan *clusterv1.TaskResult, 8), batchResults: tc.batch}
			for _, q := range tc.queued {
				s.out <- q
			}
			if tc.closeIt {
				close(s.out)
			}
			if got := ids(s.resultsMessage(tc.first)); got != tc.want {
				t.Fatalf("message %s, want %s", got, tc.want)
			}
			if len(s.out) != tc.left {
				t.Fatalf("%d results left queued, want %d", len(s.out), tc.left)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		s := &session{out: make(chan *clusterv1.TaskResult, 2*maxResultsPerMessage), batchResults: true}
		for i := range 2 * maxResultsPerMessage {
			s.out <- res(strconv.Itoa(i), false)
		}
		m := s.resultsMessage(res("first", false))
		if n := len(m.GetResults().GetResults()); n != maxResultsPerMessage {
			t.Fatalf("burst of %d, want %d", n, maxResultsPerMessage)
		}
	})
}

// TestSessionWithPreviousDriver: a driver of the previous release serves
// the protocol as sluice.v1.ExecutorService; the executor falls back to
// that name and runs its tasks.
func TestSessionWithPreviousDriver(t *testing.T) {
	r := newSessionRig(t, time.Second)
	f, addr := startFakeDriverAs(t, "sluice.v1.ExecutorService")
	r.f, r.addr = f, addr
	ctx, cancel := context.WithCancel(context.Background())
	c, end := r.start(t, ctx)
	r.send(t, c, r.task(t, "a1", 5))
	if res := r.result(t); !res.GetOk() || res.GetAttemptId() != "a1" {
		t.Fatalf("result %v", res)
	}
	cancel()
	waitEnd(t, end, 20*time.Second)
}

// TestSessionCancelsQueuedTask: the driver sends tasks beyond the free
// slots, and they wait for one; a cancel reaches such a task while it
// waits (it lost to a speculative twin, or its batch failed), so it ends
// at once rather than run once a slot frees.
func TestSessionCancelsQueuedTask(t *testing.T) {
	verifyNoLeaks(t)
	r := newSessionRig(t, 30*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, end := r.start(t, ctx)
	// Two slots: the first two wait for records 5 to 10, the third for a
	// slot.
	r.send(t, c, r.task(t, "run-1", 10), r.task(t, "run-2", 10))
	waitFor(t, "both slots taken", func() error {
		if r.e.slots.TryAcquire(1) {
			r.e.slots.Release(1)
			return errors.New("a slot is free")
		}
		return nil
	})
	r.send(t, c, r.task(t, "queued-1", 10))
	waitRunning(t, r.e, 3)
	if err := c.stream.Send(&clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Cancel{
		Cancel: &clusterv1.CancelTasks{AttemptIds: []string{"queued-1"}}}}); err != nil {
		t.Fatal(err)
	}
	res := r.result(t)
	if err := rpc.TaskFailure(res); res.GetAttemptId() != "queued-1" || res.GetOk() || !errors.Is(err, context.Canceled) {
		t.Fatalf("first result: attempt %s, ok %v, error %v; want queued-1 cancelled", res.GetAttemptId(), res.GetOk(), err)
	}
	produce(t, r.cluster.ListenAddrs(), "s", 5)
	for range 2 {
		if res := r.result(t); !res.GetOk() || !strings.HasPrefix(res.GetAttemptId(), "run-") {
			t.Fatalf("attempt %s: ok %v, error %v", res.GetAttemptId(), res.GetOk(), rpc.TaskFailure(res))
		}
	}
	cancel()
	waitEnd(t, end, 10*time.Second)
}
