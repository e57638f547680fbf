package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// openPositionFileSink is the sink openPositionJob's upsert into PostgreSQL
// is replaced with: update mode appends each batch's changed groups as JSON
// lines, so the latest row of a group is its running total.
const openPositionFileSink = `sink:
  file: {path: "OUT", format: jsonl}
`

// runningTotal is a group's running sum and count.
type runningTotal struct{ position, n int64 }

// statefulRun is the open-position job on a file sink against one driver:
// what was produced, and how to read what the job wrote and reported.
type statefulRun struct {
	t        *testing.T
	c        sluicev1.DriverServiceClient
	out      string
	stateDir string
	producer *kgo.Client
	rng      *rand.Rand
	want     map[treasuryKey]runningTotal
	produced int64
}

// startStatefulRun starts etcd, one driver and the named executors (each
// with its own --state-dir), waits until they are connected, and returns
// the run with the open-position job ready to be submitted.
func startStatefulRun(t *testing.T, seed uint64, executors ...string) (*statefulRun, string, map[string]*proc) {
	t.Helper()
	brokers := startKafka(t, 3, "transaction")
	etcd := testenv.StartEtcd(t)
	_, addr := startDriver(t, "driver", etcd)
	procs := map[string]*proc{}
	for _, name := range executors {
		procs[name] = startStateExecutor(t, name, addr)
	}
	r := &statefulRun{t: t, c: client(t, addr), out: t.TempDir(), stateDir: t.TempDir(),
		rng: rand.New(rand.NewPCG(seed, 7)), want: map[treasuryKey]runningTotal{}}
	r.waitExecutors(executors...)
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transaction"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	r.producer = producer

	job, _, ok := strings.Cut(openPositionJob, "sink:\n")
	if !ok {
		t.Fatal("openPositionJob has no sink")
	}
	_, trigger, _ := strings.Cut(openPositionJob, "trigger:")
	job += openPositionFileSink + "trigger:" + trigger
	yaml := strings.NewReplacer("BROKERS", strings.Join(brokers, ","), "STATE", r.stateDir, "OUT", r.out).Replace(job)
	spec, err := jobspec.ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	r.submit(spec)
	return r, addr, procs
}

func (r *statefulRun) submit(spec *sluicev1.JobSpec) {
	r.t.Helper()
	// Submitted with nothing to read yet: the first batches plan only what
	// the tests produce, in maxOffsetsPerTrigger slices.
	if _, err := r.c.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		r.t.Fatal(err)
	}
}

// startStateExecutor is startExecutor with a fresh --state-dir of the test's.
func startStateExecutor(t *testing.T, name string, drivers ...string) *proc {
	return start(t, name, "executor", "--driver", strings.Join(drivers, ","), "--slots", "2", "--id", name,
		"--drain-timeout", "2s", "--state-dir", t.TempDir())
}

// terminate stops p with SIGTERM (the executor drains: running tasks may
// finish for --drain-timeout, then it leaves the driver) and waits for it
// to exit.
func (p *proc) terminate(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s of SIGTERM", p.name, timeout)
	}
}

// waitExecutors waits until exactly the named executors are connected.
func (r *statefulRun) waitExecutors(names ...string) {
	r.t.Helper()
	want := slices.Sorted(slices.Values(names))
	eventually(r.t, 30*time.Second, fmt.Sprintf("executors %v connected", want), func() error {
		res, err := r.c.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		var got []string
		for _, e := range res.GetExecutors() {
			got = append(got, e.GetId())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("connected: %v", got)
		}
		return nil
	})
}

// produce writes n transactions and adds them to the expected totals.
func (r *statefulRun) produce(n int) {
	r.t.Helper()
	branches := []string{"Kazan", "SPB", "Novosibirsk", "Surgut", "Omsk"}
	currencies := []string{"RUB", "USD", "EUR", "GBP"}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		b, c, a := branches[r.rng.IntN(len(branches))], currencies[r.rng.IntN(len(currencies))], r.rng.IntN(201)-100
		v, _ := json.Marshal(map[string]any{"branch": b, "currency": c, "amount": a})
		recs[i] = &kgo.Record{Value: v}
		tot := r.want[treasuryKey{b, c}]
		r.want[treasuryKey{b, c}] = runningTotal{tot.position + int64(a), tot.n + 1}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		r.t.Fatalf("produce: %v", err)
	}
	r.produced += int64(n)
}

// progress is the progress of every batch the driver committed, oldest
// first.
func (r *statefulRun) progress() ([]*sluicev1.BatchProgress, error) {
	res, err := r.c.GetRecentProgress(context.Background(), &sluicev1.GetRecentProgressRequest{Name: "open-position"})
	return res.GetProgress(), err
}

// caughtUp waits until the committed batches have read every record
// produced: no batch is in flight then, and none is planned until more is
// produced. It returns the last committed batch.
func (r *statefulRun) caughtUp() int64 {
	r.t.Helper()
	var last int64
	eventually(r.t, 30*time.Second, "the job commits everything produced", func() error {
		ps, err := r.progress()
		if err != nil {
			return err
		}
		var n int64
		for _, p := range ps {
			n += p.GetNumInputRows()
		}
		if n != r.produced {
			return fmt.Errorf("committed batches read %d of %d records", n, r.produced)
		}
		if len(ps) > 0 {
			last = ps[len(ps)-1].GetBatchId()
		}
		return nil
	})
	return last
}

// table is the latest row of each (branch, currency) in the file sink:
// update mode writes a group in every batch that changes it.
func (r *statefulRun) table() (map[treasuryKey]runningTotal, error) {
	rows, err := fileRows(r.out, "open-position")
	if err != nil {
		return nil, err
	}
	got := map[treasuryKey]runningTotal{}
	for _, row := range rows {
		b, _ := row["branch"].(string)
		c, _ := row["currency"].(string)
		got[treasuryKey{b, c}] = runningTotal{toInt(row["position"]), toInt(row["n"])}
	}
	return got, nil
}

// exact waits until the sink holds the running totals of everything
// produced.
func (r *statefulRun) exact() {
	r.t.Helper()
	eventually(r.t, 30*time.Second, "the sink's latest rows are the running totals of everything produced", func() error {
		got, err := r.table()
		if err != nil {
			return err
		}
		if diff := cmp.Diff(r.want, got, cmp.AllowUnexported(treasuryKey{}, runningTotal{})); diff != "" {
			return fmt.Errorf("open positions (-produced +sink):\n%s", diff)
		}
		return nil
	})
}

// restoredAfter logs each batch's state figures and returns the state
// partitions restored in batches later than after, and the first such
// batch's progress.
func (r *statefulRun) restoredAfter(after int64) (restored int32, first *sluicev1.BatchProgress) {
	r.t.Helper()
	ps, err := r.progress()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range ps {
		var execs []string
		for _, pp := range p.GetPartitions() {
			execs = append(execs, pp.GetExecutor())
		}
		ops := p.GetStateOperators()
		if len(ops) != 1 {
			r.t.Fatalf("batch %d: %d state operators, want 1", p.GetBatchId(), len(ops))
		}
		r.t.Logf("batch %d: %d rows in, source tasks on %v; state: %d restored (%d ms), %d groups",
			p.GetBatchId(), p.GetNumInputRows(), execs, ops[0].GetNumRestoredPartitions(), ops[0].GetRestoreTimeMs(), ops[0].GetNumRowsTotal())
		if p.GetBatchId() > after {
			if first == nil {
				first = p
			}
			restored += ops[0].GetNumRestoredPartitions()
		}
	}
	return restored, first
}

// executorTasks is how many tasks each connected executor completed.
func (r *statefulRun) executorTasks() map[string]int64 {
	res, err := r.c.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string]int64{}
	for _, e := range res.GetExecutors() {
		out[e.GetId()] = e.GetTasksCompleted()
	}
	return out
}

// TestStatefulScaleOutAndBack runs the open-position job (update mode, 4
// state partitions) on two executors of 2 slots, scales out to three,
// then back to two by draining the third (SIGTERM): the latest row of each
// group in the sink is its running total of everything produced, and
// state partitions moved (were restored from checkpoint.state) at least
// once after the scale-out or the scale-in.
func TestStatefulScaleOutAndBack(t *testing.T) {
	r, addr, _ := startStatefulRun(t, 21, "exec-1", "exec-2")

	for range 3 {
		r.produce(900)
		r.caughtUp()
	}
	scaledOut := r.caughtUp()

	exec3 := startStateExecutor(t, "exec-3", addr)
	r.waitExecutors("exec-1", "exec-2", "exec-3")
	for range 3 {
		r.produce(900)
		r.caughtUp()
	}
	r.exact()
	tasks := r.executorTasks()
	t.Logf("tasks completed while three executors ran: %v", tasks)

	exec3.terminate(t, 15*time.Second)
	r.waitExecutors("exec-1", "exec-2")
	for range 3 {
		r.produce(900)
		r.caughtUp()
	}
	r.exact()

	restored, _ := r.restoredAfter(scaledOut)
	if restored == 0 {
		// pkg/scheduler.Assign gives a task to its last owner whenever that
		// owner has a free slot, and the state stage starts after the
		// source stage has freed every slot: with 4 state partitions on
		// two executors of 2 slots, a third executor never gets one.
		t.Errorf("no state partition was restored from checkpoint.state in any batch after the scale-out (batch %d): "+
			"exec-3 never took a state partition (tasks completed while it was connected: %v)", scaledOut, tasks)
	}
}

// TestStatefulAllExecutorsReplaced runs the open-position job on executors
// A and B past a snapshot and later changelogs, SIGKILLs both, and goes on
// with new executors C and D (fresh state directories): the first batch
// after the replacement restores every state partition from
// checkpoint.state (snapshot + changelogs), and the totals stay exact.
func TestStatefulAllExecutorsReplaced(t *testing.T) {
	r, addr, procs := startStatefulRun(t, 22, "exec-a", "exec-b")

	// Commit batches until the latest version needs a snapshot and later
	// changelogs: snapshots are at versions 0, 3, 6... (snapshotInterval 3).
	var last int64
	for last < 4 || last%3 == 0 {
		r.produce(600)
		last = r.caughtUp()
	}
	r.exact()
	checkStateFiles(t, r.stateDir, 4, last)

	// Nothing is in flight (every record produced is committed): the next
	// batch runs entirely on the new executors.
	procs["exec-a"].kill()
	procs["exec-b"].kill()
	startStateExecutor(t, "exec-c", addr)
	startStateExecutor(t, "exec-d", addr)
	r.waitExecutors("exec-c", "exec-d")
	r.produce(900)
	r.caughtUp()
	r.produce(900)
	r.caughtUp()
	r.exact()

	_, first := r.restoredAfter(last)
	if first == nil {
		t.Fatalf("no batch committed after batch %d", last)
	}
	op := first.GetStateOperators()[0]
	if op.GetNumRestoredPartitions() != 4 {
		t.Fatalf("batch %d, the first on the new executors, restored %d state partitions; want all 4", first.GetBatchId(), op.GetNumRestoredPartitions())
	}
	if op.GetNumRowsTotal() != int64(len(r.want)) {
		t.Fatalf("batch %d holds %d groups in its state; want %d", first.GetBatchId(), op.GetNumRowsTotal(), len(r.want))
	}
}

// checkStateFiles checks that each state partition's latest version, last,
// is loaded from a snapshot and at least one later changelog.
func checkStateFiles(t *testing.T, stateDir string, partitions int, last int64) {
	t.Helper()
	for i := range partitions {
		dirs, _ := filepath.Glob(filepath.Join(stateDir, "open-position", "inc-*", "state", fmt.Sprint(i)))
		if len(dirs) != 1 {
			t.Fatalf("state partition %d: %d directories in checkpoint.state (%v)", i, len(dirs), dirs)
		}
		entries, err := os.ReadDir(dirs[0])
		if err != nil {
			t.Fatal(err)
		}
		snapshot, delta := int64(-1), int64(-1)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
			var v int64
			if _, err := fmt.Sscanf(e.Name(), "%d.snapshot", &v); err == nil && strings.HasSuffix(e.Name(), ".snapshot") && v <= last {
				snapshot = max(snapshot, v)
			}
			if _, err := fmt.Sscanf(e.Name(), "%d.delta", &v); err == nil && strings.HasSuffix(e.Name(), ".delta") && v <= last {
				delta = max(delta, v)
			}
		}
		if snapshot < 0 || delta != last || delta <= snapshot {
			t.Fatalf("state partition %d at version %d: want a snapshot and later changelogs up to %d; files: %v", i, last, last, names)
		}
		if i == 0 {
			t.Logf("state partition 0 at version %d: %v", last, names)
		}
	}
}
