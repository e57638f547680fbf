package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Fault kinds, in the order the full form injects them.
const (
	faultExecKill   = "exec-kill"   // SIGKILL of an executor
	faultExecStop   = "exec-stop"   // SIGSTOP of an executor for 12s (past the heartbeat timeout), then SIGCONT
	faultLeaderKill = "leader-kill" // SIGKILL of the leading driver
	faultLeaderStop = "leader-stop" // SIGSTOP of the leading driver past its lease, then SIGCONT: it must step down or exit
	faultPGStop     = "pg-stop"     // PostgreSQL stopped (pg_ctl stop -m fast) for 10s
	faultEtcdStop   = "etcd-stop"   // etcd killed (SIGKILL), restarted on its data after 8s
	faultEtcdPause  = "etcd-pause"  // etcd paused (SIGSTOP) for 8s, then SIGCONT
)

var allFaults = []string{faultExecKill, faultExecStop, faultLeaderKill, faultLeaderStop, faultPGStop, faultEtcdStop, faultEtcdPause}

// faultTime is roughly how long a fault, its recovery and the pause after it
// take; the producer spreads its records over the sum, so records keep
// arriving while every fault is injected. Only the pacing depends on it.
var faultTime = map[string]time.Duration{
	faultExecKill: 8 * time.Second, faultExecStop: 18 * time.Second, faultLeaderKill: 12 * time.Second,
	faultLeaderStop: 18 * time.Second, faultPGStop: 18 * time.Second, faultEtcdStop: 18 * time.Second, faultEtcdPause: 15 * time.Second,
}

// form is what one run does: how many records, over how long, which faults.
type form struct {
	name        string
	records     int
	produceOver time.Duration
	faults      []string
	finalWait   time.Duration // bound on waiting for the table to hold every record
}

// chosenForm reads SLUICE_CHAOS (full, or short by default) and
// SLUICE_CHAOS_FAULTS (a comma-separated list of fault kinds replacing the
// form's list), SLUICE_CHAOS_RECORDS (record count).
func chosenForm(t *testing.T) form {
	f := form{name: "short", records: 3000, finalWait: time.Minute,
		faults: []string{faultExecKill, faultLeaderKill, faultPGStop}}
	switch v := os.Getenv("SLUICE_CHAOS"); v {
	case "", "short":
	case "full":
		f = form{name: "full", records: 20000, finalWait: 3 * time.Minute,
			faults: []string{faultExecKill, faultExecStop, faultLeaderKill, faultPGStop, faultLeaderStop, faultEtcdStop, faultPGStop, faultEtcdPause}}
	default:
		t.Fatalf("SLUICE_CHAOS=%q: want short or full", v)
	}
	if v := os.Getenv("SLUICE_CHAOS_FAULTS"); v != "" {
		f.faults = nil
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			known := false
			for _, a := range allFaults {
				known = known || a == k
			}
			if !known {
				t.Fatalf("SLUICE_CHAOS_FAULTS: unknown fault %q (known: %s)", k, strings.Join(allFaults, ", "))
			}
			f.faults = append(f.faults, k)
		}
	}
	f.produceOver = 5 * time.Second
	for _, k := range f.faults {
		f.produceOver += faultTime[k]
	}
	if v := os.Getenv("SLUICE_CHAOS_RECORDS"); v != "" {
		if _, err := fmt.Sscan(v, &f.records); err != nil || f.records < 1 {
			t.Fatalf("SLUICE_CHAOS_RECORDS=%q: want a positive count", v)
		}
	}
	return f
}

const (
	job      = "chaos"
	topic    = "events"
	table    = "events"
	leaseTTL = 3 * time.Second
)

// cluster is everything one run starts.
type cluster struct {
	t       *testing.T
	start   time.Time
	logDir  string
	etcd    *etcdProc
	pg      testenv.Postgres
	brokers []string
	drivers []*supervised
	grpc    []string // the drivers' gRPC addresses
	http    []string // the drivers' HTTP addresses (/readyz)
	clients []sluicev1.DriverServiceClient
	execs   []*supervised

	produced atomic.Int64 // records acknowledged by Kafka

	mu          sync.Mutex
	states      map[string]int // job state → polls that saw it
	lastState   string
	noAnswer    int // polls no driver answered
	splitBrain  int // polls where two drivers' /readyz said leader
	failedSeen  bool
	failedError string
	failed      chan struct{} // closed when FAILED is seen
}

func (c *cluster) since() time.Duration { return time.Since(c.start).Round(100 * time.Millisecond) }

// note logs a line of the timeline (faults, leaders, job states).
func (c *cluster) note(format string, args ...any) {
	c.t.Log(fmt.Sprintf("%7s  ", c.since()) + fmt.Sprintf(format, args...))
}

func (c *cluster) isFailed() bool {
	select {
	case <-c.failed:
		return true
	default:
		return false
	}
}

// TestChaos runs a Kafka → PostgreSQL job, one row per record, while faults
// are injected one after another, and checks that the table holds every
// record exactly once and the job was never FAILED.
func TestChaos(t *testing.T) {
	f := chosenForm(t)
	logDir := os.Getenv("SLUICE_CHAOS_LOGS")
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s form: %d records over %s; faults %s; process logs in %s", f.name, f.records, f.produceOver, strings.Join(f.faults, ", "), logDir)
	c := &cluster{t: t, start: time.Now(), logDir: logDir, states: map[string]int{}, failed: make(chan struct{})}

	// Services: PostgreSQL, Kafka, etcd.
	c.pg = testenv.StartPostgres(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	c.brokers = kc.ListenAddrs()
	c.etcd = startEtcd(t, logDir)

	// Two drivers and three executors, each restarted whenever it exits.
	for _, name := range []string{"driver-a", "driver-b"} {
		addr, httpAddr := freeAddr(t), freeAddr(t)
		c.grpc, c.http = append(c.grpc, addr), append(c.http, httpAddr)
		c.drivers = append(c.drivers, supervise(t, logDir, name, "driver", time.Second,
			"--listen", addr, "--advertise", addr, "--http", httpAddr, "--etcd", c.etcd.endpoint(),
			"--lease-ttl", leaseTTL.String(), "--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms", "--shutdown-timeout", "2s",
			"--secrets-key-file", secretsKeyFile))
		conn, err := rpc.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		c.clients = append(c.clients, sluicev1.NewDriverServiceClient(conn))
	}
	for _, name := range []string{"exec-1", "exec-2", "exec-3"} {
		c.execs = append(c.execs, supervise(t, logDir, name, "executor", time.Second,
			"--driver", strings.Join(c.grpc, ","), "--slots", "2", "--id", name, "--drain-timeout", "2s"))
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.dumpLogs()
		}
	})

	// Background work, all stopped when the test ends (registered after the
	// processes, so it stops first).
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	leader := c.waitLeader(ctx, time.Minute)
	if leader < 0 {
		t.Fatal("no driver leads after a minute")
	}
	c.note("%s leads", c.drivers[leader].name)
	c.waitExecutors(ctx, 3, time.Minute)
	c.submit(ctx)

	wg.Add(2)
	go func() { defer wg.Done(); c.watch(ctx) }()
	producerDone := make(chan struct{})
	go func() { defer wg.Done(); defer close(producerDone); c.produce(ctx, f.records, f.produceOver) }()

	// The job commits something before the first fault.
	c.waitCaughtUp(ctx, "first rows", 1, time.Minute)

	var injected []string
	for i, kind := range f.faults {
		if c.isFailed() || ctx.Err() != nil {
			c.note("job FAILED: skipping the remaining faults %s", strings.Join(f.faults[i:], ", "))
			break
		}
		c.note("fault %d/%d: %s", i+1, len(f.faults), kind)
		c.inject(ctx, kind, i)
		injected = append(injected, kind)
		// Pause: everything produced so far reaches the table, then a few
		// more batches run before the next fault.
		c.waitCaughtUp(ctx, "after "+kind, c.produced.Load(), 2*time.Minute)
		sleepCtx(ctx, 3*time.Second)
	}

	// The end: the producer finishes, the table holds every record.
	select {
	case <-producerDone:
	case <-c.failed:
	case <-time.After(f.produceOver + 2*time.Minute):
		t.Errorf("producer still running %s after the start", c.since())
	}
	produced := c.produced.Load()
	if !c.isFailed() {
		c.waitCaughtUp(ctx, "all records", produced, f.finalWait)
	}
	c.report(ctx, f, injected, produced)
}

// inject runs one fault and its recovery; the recovery always runs.
func (c *cluster) inject(ctx context.Context, kind string, n int) {
	t := c.t
	switch kind {
	case faultExecKill:
		e := c.execs[n%len(c.execs)]
		c.note("SIGKILL %s (pid %d)", e.name, e.signal(syscall.SIGKILL))
	case faultExecStop:
		e := c.execs[n%len(c.execs)]
		c.note("SIGSTOP %s (pid %d) for 12s", e.name, e.signal(syscall.SIGSTOP))
		sleepCtx(ctx, 12*time.Second)
		c.note("SIGCONT %s (pid %d)", e.name, e.signal(syscall.SIGCONT))
	case faultLeaderKill:
		l := c.waitLeader(ctx, time.Minute)
		if l < 0 {
			t.Errorf("%s: no leader to kill", kind)
			return
		}
		c.note("SIGKILL leader %s (pid %d)", c.drivers[l].name, c.drivers[l].signal(syscall.SIGKILL))
		c.noteLeader(ctx, kind)
	case faultLeaderStop:
		l := c.waitLeader(ctx, time.Minute)
		if l < 0 {
			t.Errorf("%s: no leader to pause", kind)
			return
		}
		d := c.drivers[l]
		pid := d.signal(syscall.SIGSTOP)
		c.note("SIGSTOP leader %s (pid %d) for %s (lease %s)", d.name, pid, 3*leaseTTL+time.Second, leaseTTL)
		// The other driver takes over while it is paused.
		other := 1 - l
		takeover := time.Duration(-1)
		for deadline := time.Now().Add(3*leaseTTL + time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
			if takeover < 0 && readyz(c.http[other]) {
				takeover = c.since()
				c.note("%s leads while %s is paused", c.drivers[other].name, d.name)
			}
			sleepCtx(ctx, 200*time.Millisecond)
		}
		if takeover < 0 {
			c.note("%s did not take over while %s was paused", c.drivers[other].name, d.name)
		}
		c.note("SIGCONT %s (pid %d)", d.name, d.signal(syscall.SIGCONT))
		// It must exit or step down.
		outcome := ""
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
			if d.pid() != pid {
				outcome = "exited"
				break
			}
			if !readyz(c.http[l]) {
				outcome = "stepped down (no longer ready)"
				break
			}
			sleepCtx(ctx, 100*time.Millisecond)
		}
		if outcome == "" {
			t.Errorf("%s: %s still says it leads 30s after SIGCONT", kind, d.name)
			outcome = "still leads"
		}
		c.note("paused leader %s after SIGCONT: %s", d.name, outcome)
		c.noteLeader(ctx, kind)
	case faultPGStop:
		if err := c.pg.Stop(); err != nil {
			t.Errorf("%s: %v", kind, err)
			return
		}
		c.note("PostgreSQL stopped for 10s")
		sleepCtx(ctx, 10*time.Second)
		if err := c.pg.Start(); err != nil {
			t.Errorf("%s: %v", kind, err)
			return
		}
		c.note("PostgreSQL started again")
	case faultEtcdStop:
		c.etcd.kill()
		c.note("etcd killed (SIGKILL) for 8s")
		sleepCtx(ctx, 8*time.Second)
		if err := c.etcd.start(); err != nil {
			t.Errorf("%s: restart etcd: %v", kind, err)
			return
		}
		c.note("etcd restarted on its data directory")
		c.noteLeader(ctx, kind)
	case faultEtcdPause:
		c.etcd.signal(syscall.SIGSTOP)
		c.note("etcd paused (SIGSTOP) for 8s")
		sleepCtx(ctx, 8*time.Second)
		c.etcd.signal(syscall.SIGCONT)
		c.note("etcd resumed (SIGCONT)")
		c.noteLeader(ctx, kind)
	}
}

// noteLeader waits for a leader after a fault and notes which driver leads.
func (c *cluster) noteLeader(ctx context.Context, kind string) {
	if l := c.waitLeader(ctx, time.Minute); l >= 0 {
		c.note("%s leads", c.drivers[l].name)
	} else {
		c.t.Errorf("%s: no driver leads a minute after the fault", kind)
	}
}

// waitLeader polls the drivers' /readyz until exactly one leads; -1 when
// none does within timeout.
func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) int {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		leaders := -1
		n := 0
		for i, h := range c.http {
			if readyz(h) {
				leaders, n = i, n+1
			}
		}
		if n == 1 {
			return leaders
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	return -1
}

// call runs f against each driver in turn and returns the first answer
// that is not an error (the leader's).
func call[T any](ctx context.Context, c *cluster, f func(context.Context, sluicev1.DriverServiceClient) (T, error)) (T, error) {
	var zero T
	var errs []string
	for i, cl := range c.clients {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := f(cctx, cl)
		cancel()
		if err == nil {
			return r, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", c.drivers[i].name, err))
	}
	return zero, errors.New(strings.Join(errs, "; "))
}

func (c *cluster) waitExecutors(ctx context.Context, n int, timeout time.Duration) {
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		r, err := call(ctx, c, func(ctx context.Context, cl sluicev1.DriverServiceClient) (*sluicev1.ListExecutorsResponse, error) {
			return cl.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		})
		if err == nil && len(r.GetExecutors()) == n {
			c.note("%d executors connected", n)
			return
		}
		last = err
		if err == nil {
			last = fmt.Errorf("%d executors", len(r.GetExecutors()))
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			break
		}
	}
	c.t.Fatalf("%d executors not connected after %s: %v", n, timeout, last)
}

// submit submits the pass-through job: every Kafka record becomes one row
// (id, amount, partition, offset) of the PostgreSQL table.
func (c *cluster) submit(ctx context.Context) {
	spec := &sluicev1.JobSpec{
		Name: job,
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(c.brokers, ","), Subscribe: []string{topic}, StartingOffsets: "earliest",
			MaxOffsetsPerTrigger: 500,
		}}},
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}},
			{Kind: &sluicev1.Transform_Select{Select: &sluicev1.Select{Fields: []*sluicev1.SelectField{
				{Name: "id"}, {Name: "amount"}, {Name: "partition"}, {Name: "offset"}}}}},
		},
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
			Url: c.pg.URL, Table: table, CreateTable: true,
		}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "200ms"}},
	}
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		_, err := call(ctx, c, func(ctx context.Context, cl sluicev1.DriverServiceClient) (*sluicev1.Job, error) {
			return cl.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec})
		})
		if err == nil {
			c.note("job %s submitted", job)
			return
		}
		last = err
		if !sleepCtx(ctx, 300*time.Millisecond) {
			break
		}
	}
	c.t.Fatalf("submit: %v", last)
}

// watch polls the job's state through the driver API for the whole run and
// records every state seen; FAILED closes c.failed.
func (c *cluster) watch(ctx context.Context) {
	for ctx.Err() == nil {
		j, err := call(ctx, c, func(ctx context.Context, cl sluicev1.DriverServiceClient) (*sluicev1.Job, error) {
			return cl.GetJob(ctx, &sluicev1.GetJobRequest{Name: job})
		})
		leaders := 0
		for _, h := range c.http {
			if readyz(h) {
				leaders++
			}
		}
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		if leaders > 1 {
			c.splitBrain++
		}
		if err != nil {
			c.noAnswer++
			c.mu.Unlock()
		} else {
			s := strings.TrimPrefix(j.GetState().String(), "JOB_STATE_")
			c.states[s]++
			changed := s != c.lastState
			c.lastState = s
			failedNow := s == "FAILED" && !c.failedSeen
			if failedNow {
				c.failedSeen, c.failedError = true, j.GetLastError()
			}
			c.mu.Unlock()
			if changed {
				c.note("job state %s (batch %d) %s", s, j.GetLastProgress().GetBatchId(), j.GetLastError())
			}
			if failedNow {
				close(c.failed)
			}
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
}

// produce writes records {"id": 0..n-1, "amount": id%7} keyed by id, spread
// evenly over the given duration.
func (c *cluster) produce(ctx context.Context, n int, over time.Duration) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		c.t.Errorf("producer: %v", err)
		return
	}
	defer cl.Close()
	const tick = 250 * time.Millisecond
	per := max(1, int(int64(n)*int64(tick)/int64(over)))
	for next := 0; next < n; {
		k := min(per, n-next)
		recs := make([]*kgo.Record, k)
		for i := range recs {
			id := next + i
			v, _ := json.Marshal(map[string]any{"id": id, "amount": id % 7})
			recs[i] = &kgo.Record{Key: []byte(fmt.Sprint(id)), Value: v}
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := cl.ProduceSync(pctx, recs...).FirstErr()
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				c.t.Errorf("produce records %d..%d: %v", next, next+k-1, err)
			}
			return
		}
		next += k
		c.produced.Store(int64(next))
		if !sleepCtx(ctx, tick) {
			return
		}
	}
	c.note("producer done: %d records", n)
}

// counts are the table's figures.
type counts struct {
	rows, distinctPos, distinctIDs int64
}

// count reads the table over a fresh connection (PostgreSQL restarts during
// the run).
func (c *cluster) count(ctx context.Context, n int64) (counts, error) {
	var r counts
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, c.pg.URL)
	if err != nil {
		return r, err
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(cctx, `SELECT count(*), count(DISTINCT ("partition", "offset")),
		count(DISTINCT id) FILTER (WHERE id >= 0 AND id < $1) FROM `+table, n).Scan(&r.rows, &r.distinctPos, &r.distinctIDs)
	return r, err
}

// waitCaughtUp waits until the table holds at least want distinct records,
// the job fails, or timeout passes (noted, and an error unless the job
// failed: the job made no progress).
func (c *cluster) waitCaughtUp(ctx context.Context, what string, want int64, timeout time.Duration) {
	var last counts
	var lastErr error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		last, lastErr = c.count(ctx, 1<<62)
		if lastErr == nil && last.distinctPos >= want {
			return
		}
		if c.isFailed() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-c.failed:
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
	c.note("%s: table holds %d distinct records, want %d, after %s (err %v)", what, last.distinctPos, want, timeout, lastErr)
	c.t.Errorf("%s: the table did not catch up to %d records within %s", what, want, timeout)
}

// report prints the run's figures and fails the test on duplicates,
// missing records, or a FAILED job.
func (c *cluster) report(ctx context.Context, f form, injected []string, produced int64) {
	t := c.t
	r, err := c.count(ctx, produced)
	if err != nil {
		t.Errorf("count rows: %v", err)
	}
	dups := c.duplicates(ctx)
	status := c.cli("status", job)
	c.mu.Lock()
	var states []string
	for s, n := range c.states {
		states = append(states, fmt.Sprintf("%s (%d polls)", s, n))
	}
	sort.Strings(states)
	noAnswer, split, failedSeen, failedErr := c.noAnswer, c.splitBrain, c.failedSeen, c.failedError
	c.mu.Unlock()
	var restarts []string
	for _, p := range append(append([]*supervised(nil), c.drivers...), c.execs...) {
		starts, exits := p.restarts()
		restarts = append(restarts, fmt.Sprintf("%s %d", p.name, starts-1))
		if starts > 1 {
			t.Logf("  %s exits: %s", p.name, strings.Join(exits, "; "))
		}
	}
	missing := produced - r.distinctIDs
	summary := []string{
		fmt.Sprintf("chaos summary (%s form)", f.name),
		fmt.Sprintf("  faults:            %d (%s)", len(injected), strings.Join(injected, ", ")),
		fmt.Sprintf("  records produced:  %d", produced),
		fmt.Sprintf("  rows in table:     %d (distinct (partition, offset): %d; distinct ids: %d)", r.rows, r.distinctPos, r.distinctIDs),
		fmt.Sprintf("  duplicates:        %d %s", r.rows-r.distinctPos, dups),
		fmt.Sprintf("  missing:           %d", missing),
		fmt.Sprintf("  states seen:       %s; polls without an answer: %d; polls with two leaders: %d", strings.Join(states, ", "), noAnswer, split),
		fmt.Sprintf("  restarts:          %s", strings.Join(restarts, ", ")),
		fmt.Sprintf("  duration:          %s", c.since()),
	}
	if i := strings.Index(status, "\nSpec:"); i > 0 {
		status = status[:i]
	}
	t.Log("sluice status " + job + ":\n" + status)
	t.Log("\n" + strings.Join(summary, "\n"))
	if failedSeen {
		t.Errorf("job %s was FAILED: %s", job, failedErr)
	}
	if r.rows != r.distinctPos {
		t.Errorf("%d duplicate rows: %s", r.rows-r.distinctPos, dups)
	}
	if missing != 0 || r.distinctPos != produced {
		t.Errorf("%d of %d records missing (table holds %d distinct records)", missing, produced, r.distinctPos)
	}
}

// duplicates lists up to ten (partition, offset) pairs stored more than once.
func (c *cluster) duplicates(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, c.pg.URL)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(cctx, `SELECT "partition", "offset", count(*) FROM `+table+`
		GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 1, 2 LIMIT 10`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p, o, n int64
		if err := rows.Scan(&p, &o, &n); err == nil {
			out = append(out, fmt.Sprintf("(%d, %d)×%d", p, o, n))
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "[" + strings.Join(out, " ") + "]"
}

// cli runs bin/sluice against the drivers (a follower redirects).
func (c *cluster) cli(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []byte
	var err error
	for _, addr := range c.grpc {
		out, err = exec.CommandContext(ctx, filepath.Join(binDir, "sluice"), append([]string{"--driver", addr}, args...)...).CombinedOutput()
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Sprintf("%v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// dumpLogs prints the log lines that matter of every process when the test
// failed; the whole logs are in SLUICE_CHAOS_LOGS when set.
func (c *cluster) dumpLogs() {
	for _, name := range []string{"driver-a", "driver-b", "exec-1", "exec-2", "exec-3", "etcd"} {
		// Executors retrying their driver stream during a failover are
		// expected; the rest is what explains a failure.
		lines := logLines(filepath.Join(c.logDir, name+".log"), 25, []string{"driver stream ended"},
			"level=ERROR", "level=WARN", "====", "panic", "driver:", "executor:", "etcdproc:")
		c.t.Logf("---- %s (warnings, errors, restarts) ----\n%s", name, strings.Join(lines, "\n"))
	}
}
