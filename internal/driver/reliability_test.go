package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestConcurrentSubmitsStartOneLoop pins a race: eight concurrent
// submissions of one new job were accepted twice and started two batch loops
// that handed out identical attempt ids; stop and delete reached only one.
func TestConcurrentSubmitsStartOneLoop(t *testing.T) {
	_, brokers := kafkaWith(t, "ev", 2, 100)
	c := startCluster(t, t.TempDir())
	ctx := context.Background()
	s := spec("once-only", brokers, "ev", t.TempDir(), fast)
	var wg sync.WaitGroup
	codesSeen := make(chan codes.Code, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s})
			codesSeen <- status.Code(err)
		}()
	}
	wg.Wait()
	close(codesSeen)
	n := map[codes.Code]int{}
	for code := range codesSeen {
		n[code]++
	}
	if n[codes.OK] != 1 || n[codes.AlreadyExists] != 7 {
		t.Fatalf("answers %v, want one OK and seven AlreadyExists", n)
	}
	m := c.d.currentManager()
	m.mu.Lock()
	loops := len(m.runs)
	m.mu.Unlock()
	if loops != 1 {
		t.Fatalf("%d batch loops run, want 1", loops)
	}
	j, err := c.api.StopJob(ctx, &sluicev1.StopJobRequest{Name: "once-only"})
	if err != nil || j.GetState() != sluicev1.JobState_JOB_STATE_STOPPED {
		t.Fatalf("stop: %v %v", j.GetState(), err)
	}
	if m.running("once-only") {
		t.Fatal("a loop still runs after stop")
	}
	if _, err := c.api.DeleteJob(ctx, &sluicev1.DeleteJobRequest{Name: "once-only"}); err != nil {
		t.Fatal(err)
	}
}

// TestSinkOutageRetriesThenResumes pins the worst-night bug: a sink outage
// that outlasted limits.maxTaskFailures failed the job for good. Now the job
// shows RETRYING with the cause, re-runs its recorded plan after the
// back-off, and once the sink is back the output holds every record once.
// With restartStrategy none it fails as before.
func TestSinkOutageRetriesThenResumes(t *testing.T) {
	_, brokers := kafkaWith(t, "ev", 2, 300)
	c := startCluster(t, t.TempDir())
	ctx := context.Background()

	out := t.TempDir()
	s := spec("outage", brokers, "ev", out, fast)
	s.Limits = &sluicev1.Limits{MaxTaskFailures: 2}
	s.RestartStrategy = &sluicev1.RestartStrategy{InitialBackoff: "100ms", MaxBackoff: "300ms"}
	// The file sink cannot create the job's directory while a plain file
	// stands in its way: a retryable error, as a full disk or a lost mount.
	block := filepath.Join(out, "outage")
	if err := os.WriteFile(block, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	seen := watchStates(watchCtx, t, c.api, "outage")
	waitFor(t, "RETRYING after two restarts", func() error {
		j, err := c.api.GetJob(ctx, &sluicev1.GetJobRequest{Name: "outage"})
		if err != nil {
			return err
		}
		r := j.GetRestart()
		if r.GetAttempt() < 2 || !strings.Contains(r.GetCause(), "not a directory") || r.GetNextAttemptTime() == nil {
			return fmt.Errorf("state %s, restart %v", j.GetState(), r)
		}
		return nil
	})
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all 300 records", func() error {
		rows, err := file.ReadAll(out, "outage")
		if err != nil || len(rows) < 300 {
			return fmt.Errorf("%d rows (%v)", len(rows), err)
		}
		return nil
	})
	for id, n := range ids(t, out, "outage") {
		if n != 1 {
			t.Fatalf("id %v written %d times", id, n)
		}
	}
	j := waitState(t, c.api, "outage", sluicev1.JobState_JOB_STATE_RUNNING)
	waitFor(t, "restart info cleared by a commit", func() error {
		if j, _ = c.api.GetJob(ctx, &sluicev1.GetJobRequest{Name: "outage"}); j.GetRestart() != nil {
			return fmt.Errorf("restart %v", j.GetRestart())
		}
		return nil
	})
	stopWatch()
	states := <-seen
	if states[sluicev1.JobState_JOB_STATE_FAILED] || !states[sluicev1.JobState_JOB_STATE_RETRYING] {
		t.Fatalf("states seen %v: want RETRYING and never FAILED", states)
	}

	t.Run("restartStrategy none", func(t *testing.T) {
		out := t.TempDir()
		s := spec("no-restart", brokers, "ev", out, fast)
		s.Limits = &sluicev1.Limits{MaxTaskFailures: 1}
		s.RestartStrategy = &sluicev1.RestartStrategy{Type: "none"}
		if err := os.WriteFile(filepath.Join(out, "no-restart"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
			t.Fatal(err)
		}
		j := waitState(t, c.api, "no-restart", sluicev1.JobState_JOB_STATE_FAILED)
		if !strings.Contains(j.GetLastError(), "not a directory") {
			t.Fatalf("last error %q", j.GetLastError())
		}
	})
	t.Run("attempts bound", func(t *testing.T) {
		out := t.TempDir()
		s := spec("two-restarts", brokers, "ev", out, fast)
		s.Limits = &sluicev1.Limits{MaxTaskFailures: 1}
		s.RestartStrategy = &sluicev1.RestartStrategy{Type: "fixedDelay", Delay: "50ms", Attempts: 2}
		if err := os.WriteFile(filepath.Join(out, "two-restarts"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
			t.Fatal(err)
		}
		j := waitState(t, c.api, "two-restarts", sluicev1.JobState_JOB_STATE_FAILED)
		if !strings.Contains(j.GetLastError(), "gave up after 2 restarts") {
			t.Fatalf("last error %q", j.GetLastError())
		}
	})
}

// watchStates records every state the job shows until ctx ends, then sends
// the set once.
func watchStates(ctx context.Context, t *testing.T, api sluicev1.DriverServiceClient, job string) <-chan map[sluicev1.JobState]bool {
	t.Helper()
	out := make(chan map[sluicev1.JobState]bool, 1)
	go func() {
		seen := map[sluicev1.JobState]bool{}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if j, err := api.GetJob(ctx, &sluicev1.GetJobRequest{Name: job}); err == nil {
				seen[j.GetState()] = true
			}
			select {
			case <-ctx.Done():
				out <- seen
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// fakeExecutor speaks the executor protocol by hand, so a test can send
// the results a buggy or hostile executor would.
type fakeExecutor struct {
	t      *testing.T
	id     string
	stream clusterv1.ExecutorService_ConnectClient
	sendMu sync.Mutex
	tasks  chan *clusterv1.Task
	cancel context.CancelFunc
	done   chan struct{}
}

func connectFake(t *testing.T, addr, id string, slots int32) *fakeExecutor {
	t.Helper()
	conn, err := rpc.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := clusterv1.NewExecutorServiceClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeExecutor{t: t, id: id, stream: st, tasks: make(chan *clusterv1.Task, 100), cancel: cancel, done: make(chan struct{})}
	f.send(&clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Hello{Hello: &clusterv1.Hello{ExecutorId: id, Slots: slots}}})
	if m, err := st.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("%s: no welcome: %v %v", id, m, err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // heartbeats, as a live executor sends them
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				f.send(&clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Heartbeat{Heartbeat: &clusterv1.Heartbeat{}}})
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			m, err := st.Recv()
			if err != nil {
				return
			}
			for _, task := range m.GetTasks().GetTasks() {
				f.tasks <- task
			}
		}
	}()
	go func() { wg.Wait(); close(f.done) }()
	t.Cleanup(func() { f.close(); conn.Close() })
	return f
}

func (f *fakeExecutor) send(m *clusterv1.ExecutorMessage) {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	_ = f.stream.Send(m)
}

func (f *fakeExecutor) close() {
	f.cancel()
	<-f.done
}

func (f *fakeExecutor) next() *clusterv1.Task {
	f.t.Helper()
	select {
	case task := <-f.tasks:
		return task
	case <-time.After(45 * time.Second):
		f.t.Fatalf("%s: no task within 45s", f.id)
		return nil
	}
}

// result answers task with ok and end; token and job as given.
func (f *fakeExecutor) result(task *clusterv1.Task, end []byte, token string) {
	f.send(&clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Result{Result: &clusterv1.TaskResult{
		AttemptId: task.GetAttemptId(), Job: task.GetJob(), Batch: task.GetBatch(), Partition: task.GetPartition(),
		Split: task.GetSplit(), Ok: true, End: end, Token: token,
	}}})
}

// TestForgedResultsRefused pins that results were taken on trust: an
// executor answering end 7 for a Kafka range planned [0,n) got the batch
// committed at 7, and a result counted from any executor stream. Now a short
// end, a result from another stream, one without the attempt's token and
// one for another batch than its attempt id's are refused; only the true
// ends are committed.
func TestForgedResultsRefused(t *testing.T) {
	_, brokers := kafkaWith(t, "forged", 2, 100)
	c := startClusterWith(t, t.TempDir(), 0)
	ctx := context.Background()
	s := spec("forged", brokers, "forged", t.TempDir(), availableNow)
	s.GetSource().GetKafka().MaxOffsetsPerTrigger = 0
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	e1 := connectFake(t, c.d.Addr(), "e1", 4)
	a, b := e1.next(), e1.next()
	planned := map[string]string{a.GetPartition(): string(a.GetUntil()), b.GetPartition(): string(b.GetUntil())}
	if string(a.GetFrom()) != "0" || len(a.GetUntil()) == 0 || string(a.GetUntil()) == "7" {
		t.Fatalf("planned range [%s,%s), want [0,n) with n > 7", a.GetFrom(), a.GetUntil())
	}
	// A short read reported as a success.
	e1.result(a, []byte("7"), a.GetToken())
	// Another executor's stream sends b's result with b's token.
	e2 := connectFake(t, c.d.Addr(), "e2", 0+1)
	e2.result(b, b.GetUntil(), b.GetToken())
	// The right stream without the token.
	e1.result(b, b.GetUntil(), "")
	// The right stream and token, for another batch than its attempt's:
	// counted, it would have ended b's attempt without a result for it.
	other := proto.Clone(b).(*clusterv1.Task)
	other.Batch++
	e1.result(other, b.GetUntil(), b.GetToken())
	// a runs again: the short end was refused. b is still the live attempt.
	retry := e1.next()
	if retry.GetPartition() != a.GetPartition() || retry.GetAttemptId() == a.GetAttemptId() {
		t.Fatalf("after the short end got %s (%s), want a new attempt of %s", retry.GetAttemptId(), retry.GetPartition(), a.GetPartition())
	}
	e1.result(retry, retry.GetUntil(), retry.GetToken())
	e1.result(b, b.GetUntil(), b.GetToken())
	j := waitState(t, c.api, "forged", sluicev1.JobState_JOB_STATE_FINISHED)
	for _, p := range j.GetLastProgress().GetPartitions() {
		if p.GetEnd() != planned[p.GetPartition()] {
			t.Errorf("partition %s committed at %s, want the planned %s", p.GetPartition(), p.GetEnd(), planned[p.GetPartition()])
		}
	}
	if n := len(j.GetLastProgress().GetPartitions()); n != 2 {
		t.Fatalf("%d partitions in the last batch, want 2", n)
	}
	select {
	case task := <-e2.tasks:
		t.Fatalf("e2 was given %s", task.GetAttemptId())
	default:
	}
}

// TestReconnectedExecutorLosesAttemptsAtOnce pins a delay: an executor that
// reconnected under the same id before its old stream was noticed dead
// dropped the "executor lost" notice, so the old stream's attempts waited
// the full task timeout (10 minutes by default) before running again.
func TestReconnectedExecutorLosesAttemptsAtOnce(t *testing.T) {
	_, brokers := kafkaWith(t, "re", 1, 10)
	c := startClusterWith(t, t.TempDir(), 0)
	ctx := context.Background()
	s := spec("reconnect", brokers, "re", t.TempDir(), availableNow)
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	old := connectFake(t, c.d.Addr(), "e1", 1)
	first := old.next()
	again := connectFake(t, c.d.Addr(), "e1", 1)
	second := again.next()
	if second.GetPartition() != first.GetPartition() || second.GetAttemptId() == first.GetAttemptId() {
		t.Fatalf("got %s after reconnecting, want a new attempt of %s", second.GetAttemptId(), first.GetAttemptId())
	}
	// The old stream's result no longer counts.
	old.result(first, first.GetUntil(), first.GetToken())
	again.result(second, second.GetUntil(), second.GetToken())
	waitState(t, c.api, "reconnect", sluicev1.JobState_JOB_STATE_FINISHED)
}

// TestUnreadableCatalogEntry pins that one truncated catalog entry made every
// elected driver exit, taking all jobs down. Now the entry shows as FAILED
// with what to do, the other jobs run, and sluice delete removes it.
func TestUnreadableCatalogEntry(t *testing.T) {
	_, brokers := kafkaWith(t, "ev", 1, 50)
	ckpt := t.TempDir()
	c := startCluster(t, ckpt)
	ctx := context.Background()
	for _, name := range []string{"broken", "fine"} {
		if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec(name, brokers, "ev", t.TempDir(), availableNow)}); err != nil {
			t.Fatal(err)
		}
		waitState(t, c.api, name, sluicev1.JobState_JOB_STATE_FINISHED)
	}
	c.stop()
	entry := filepath.Join(ckpt, "jobs", "broken.json")
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entry, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	c = startCluster(t, ckpt)
	j := waitState(t, c.api, "broken", sluicev1.JobState_JOB_STATE_FAILED)
	if !strings.Contains(j.GetLastError(), "catalog entry unreadable") || !strings.Contains(j.GetLastError(), "sluice delete broken") {
		t.Fatalf("last error %q", j.GetLastError())
	}
	// The other job still works: submitting it again runs it.
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec("fine", brokers, "ev", t.TempDir(), availableNow)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, c.api, "fine", sluicev1.JobState_JOB_STATE_FINISHED)
	if _, err := c.api.DeleteJob(ctx, &sluicev1.DeleteJobRequest{Name: "broken"}); err != nil {
		t.Fatalf("delete of the unreadable job: %v", err)
	}
	if _, err := c.api.GetJob(ctx, &sluicev1.GetJobRequest{Name: "broken"}); status.Code(err) != codes.NotFound {
		t.Fatalf("after delete: %v", err)
	}
}

// TestJobStateMetric: sluice_job_state says which state each job is in, so
// alerts can name RETRYING and FAILED instead of guessing from counters.
func TestJobStateMetric(t *testing.T) {
	_, brokers := kafkaWith(t, "ev", 1, 20)
	c := startCluster(t, t.TempDir())
	if _, err := c.api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: spec("done", brokers, "ev", t.TempDir(), availableNow)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, c.api, "done", sluicev1.JobState_JOB_STATE_FINISHED)
	families, err := c.d.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "sluice_job_state" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["job"] == "done" {
				got[labels["state"]] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{"PENDING": 0, "RUNNING": 0, "STOPPING": 0, "STOPPED": 0, "FINISHED": 1, "FAILED": 0, "RETRYING": 0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("sluice_job_state{job=\"done\"} = %v, want %v", got, want)
	}
}
