package scenario

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/bench/internal/harness"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Scenario 7: a running aggregate over BENCH_STATE_KEYS distinct keys in
// update mode, the state kept over statePartitions state partitions (Pebble
// on the executors, changelogs and a snapshot every stateSnapshotInterval
// batches in checkpoint.state under the work directory), written to the
// discard sink. The topic holds BENCH_STATE_N records {"k": "key-…", "v": n},
// every key once before any key twice, read in about BENCH_STATE_BATCHES
// micro-batches by a job with processingTime 0, so it keeps running after
// the load for the restore measurement.
//
// Compared with a franz-go consumer that decodes the same JSON and keeps
// map[k]{sum, n} in memory: the baseline keeps no durable state, so the
// ratio has no target; it says what the state store costs over a map.
//
// The notes give the state's own figures from the batches' progress (state
// operator): commit time per batch (p50/max of the slowest partition's),
// the stores' size on disk and the checkpoint bytes written, and the groups
// at the end, which must equal the distinct keys (a mismatch is an error,
// not a row), and how many partitions were restored during the load
// although no executor was lost (a partition placed away from the executor
// holding it warm). Sluice's time runs from just before the submit to the
// commit of the batch that read the last record. Then an executor is
// SIGKILLed (and replaced, as a restarted pod would be), a small batch
// touching every state partition is produced, and the row reports that
// batch's restore_time_ms: the slowest load of a state partition from
// checkpoint.state (last snapshot, then the changelogs after it) on the
// executor it moved to.

const (
	statePartitions       = 16
	stateSnapshotInterval = 10
	// stateRestoreRecords is the size of the batch after the kill, spread
	// over the whole key space (so over every state partition).
	stateRestoreRecords = 10_000
)

// stateQuery is the running aggregate.
const stateQuery = `select k, sum(v) as s, count(*) as n from events group by k`

func runStateful(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	cfg := env.Cfg
	k, err := env.Kafka()
	if err != nil {
		return err
	}
	topic := env.Topic("state")
	if err := k.CreateTopic(ctx, topic, cfg.Partitions); err != nil {
		return err
	}
	defer k.DeleteTopic(context.WithoutCancel(ctx), topic)
	start := time.Now()
	w, err := k.ProduceKeyed(ctx, topic, cfg.Partitions, cfg.StateN, harness.SpreadKeys(cfg.StateKeys))
	if err != nil {
		return err
	}
	if w.Keys != int64(cfg.StateKeys) {
		return fmt.Errorf("the workload holds %d distinct keys, want %d", w.Keys, cfg.StateKeys)
	}
	fmt.Fprintf(os.Stderr, "sluicebench: produced %d records over %d keys (%.0f bytes each on average) into %s in %s\n",
		w.Records, w.Keys, float64(w.Bytes)/float64(w.Records), topic, time.Since(start).Round(100*time.Millisecond))

	base, err := runBaseline(ctx, env, "baseline-s7-running", "running", "--brokers", strings.Join(k.Brokers, ","), "--topic", topic)
	if err != nil {
		return err
	}
	if r := base.res; r.Records != w.Records || r.Bytes != w.Bytes || r.Keys != w.Keys || r.Total.Sum != w.Sum || r.Total.Count != w.Records {
		return fmt.Errorf("baseline read %d records (%d bytes) into %d keys summing to %+v; the topic holds %d records (%d bytes), %d keys, sum %d",
			r.Records, r.Bytes, r.Keys, r.Total, w.Records, w.Bytes, w.Keys, w.Sum)
	}
	if base.res.Elapsed <= 0 {
		return errors.New("baseline reported no elapsed time")
	}

	c, err := env.StartCluster(ctx, "s7", 1)
	if err != nil {
		return err
	}
	defer c.Close()
	d := c.Drivers[0]
	name := "state-" + env.Run
	perTrigger := (int64(cfg.StateN) + int64(cfg.StateBatches) - 1) / int64(cfg.StateBatches)
	spec := &sluicev1.JobSpec{
		Name:   name,
		Source: kafkaSource(k.Brokers, topic, perTrigger),
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "k STRING, v BIGINT"}}},
			{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{View: "events", Query: stateQuery}}},
		},
		OutputMode: "update",
		State:      &sluicev1.State{Partitions: statePartitions, SnapshotInterval: stateSnapshotInterval},
		Checkpoint: &sluicev1.Checkpoint{State: filepath.Join(env.Dir, "s7-checkpoint-state")},
		Sink:       &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
		Trigger:    &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "0"}},
	}

	procs := c.SluiceProcs()
	before := make([]harness.Usage, len(procs))
	for i, p := range procs {
		if before[i], err = p.Stats(); err != nil {
			return err
		}
	}
	h0, err := harness.ReadProcStats(0)
	if err != nil {
		return err
	}
	var prof *harness.Profiler
	if cfg.Profile != "" {
		if prof, err = harness.StartPerf(cfg.Profile, "s7-sluice", procs); err != nil {
			return err
		}
	}
	submitted := time.Now()
	err = harness.Submit(ctx, d, spec)
	var loadBatches []*sluicev1.BatchProgress
	if err == nil {
		loadBatches, err = awaitRows(ctx, d, name, -1, w.Records, cfg.Timeout)
	}
	var s sluiceRun
	if prof != nil {
		cmd, perr := prof.Stop(ctx)
		if perr != nil && err == nil {
			err = perr
		}
		s.profile = cmd
	}
	if err != nil {
		return err
	}
	h1, err := harness.ReadProcStats(0)
	if err != nil {
		return err
	}
	s.harnessCPU = h1.CPU - h0.CPU
	for i, p := range procs {
		u, err := p.Stats()
		if err != nil {
			return err
		}
		if p == d.Proc {
			s.driver = u.Sub(before[i])
		} else {
			s.executors = append(s.executors, u.Sub(before[i]))
		}
	}
	last := loadBatches[len(loadBatches)-1]
	s.elapsed = batchEnd(last).Sub(submitted)
	s.records, s.batches = w.Records, len(loadBatches)
	st, err := summarizeState(loadBatches)
	if err != nil {
		return err
	}
	if st.groups != w.Keys {
		return fmt.Errorf("job %s holds %d groups after reading %d records, the topic has %d distinct keys", name, st.groups, w.Records, w.Keys)
	}

	// Restore: kill an executor between batches, replace it, and make the
	// next batch touch every key range.
	victim := c.Executors[0]
	if err := victim.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if err := harness.Eventually(ctx, 30*time.Second, "the driver drops "+victim.Name, func() error {
		r, err := d.API.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		for _, e := range r.GetExecutors() {
			if e.GetId() == victim.Name {
				return fmt.Errorf("%s still listed", victim.Name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if _, err := c.AddExecutor(ctx); err != nil {
		return err
	}
	small := min(stateRestoreRecords, cfg.StateKeys)
	if _, err := k.ProduceKeyed(ctx, topic, cfg.Partitions, small, func(i int) (int, int64) {
		return int(int64(i) * int64(cfg.StateKeys) / int64(small)), 1
	}); err != nil {
		return err
	}
	after, err := awaitRows(ctx, d, name, last.GetBatchId(), int64(small), 2*time.Minute)
	if err != nil {
		return fmt.Errorf("after SIGKILL of %s: %w", victim.Name, err)
	}
	rb := after[0]
	rop := stateOp(rb)
	if rop == nil || rop.GetNumRestoredPartitions() == 0 {
		return fmt.Errorf("batch %d after SIGKILL of %s restored no state partition from checkpoint.state (state operator %v)", rb.GetBatchId(), victim.Name, rop)
	}
	if g := stateOp(after[len(after)-1]).GetNumRowsTotal(); g != w.Keys {
		return fmt.Errorf("job %s holds %d groups after the restore, want %d", name, g, w.Keys)
	}
	restore := restoreFigures{
		victim: victim.Name, batch: rb.GetBatchId(), timeMs: rop.GetRestoreTimeMs(), partitions: rop.GetNumRestoredPartitions(),
		totalMs: rb.GetDurationMs()["total"], records: int64(small),
	}
	return rep.Add(statefulRow(w, base, s, st, restore))
}

// awaitRows polls the job until the batches after batch after have read
// want records, and returns those batches, oldest first. The job failing
// ends the wait.
func awaitRows(ctx context.Context, d *harness.Driver, job string, after, want int64, timeout time.Duration) ([]*sluicev1.BatchProgress, error) {
	var out []*sluicev1.BatchProgress
	err := harness.Eventually(ctx, timeout, fmt.Sprintf("job %s reads %d records", job, want), func() error {
		j, err := d.API.GetJob(ctx, &sluicev1.GetJobRequest{Name: job})
		if err != nil {
			return err
		}
		switch st := j.GetState(); st {
		case sluicev1.JobState_JOB_STATE_FAILED, sluicev1.JobState_JOB_STATE_STOPPED, sluicev1.JobState_JOB_STATE_FINISHED:
			return harness.Permanent(fmt.Errorf("job %s is %s: %s", job, st, j.GetLastError()))
		}
		if j.GetLastProgress().GetBatchId() <= after {
			return errors.New("no new batch yet")
		}
		r, err := d.API.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: job})
		if err != nil {
			return err
		}
		out = out[:0]
		var rows int64
		for _, b := range r.GetProgress() {
			if b.GetBatchId() > after {
				out = append(out, b)
				rows += b.GetNumInputRows()
			}
		}
		switch {
		case rows > want:
			return harness.Permanent(fmt.Errorf("the batches after %d read %d records, only %d were produced", after, rows, want))
		case rows < want:
			return fmt.Errorf("%d of %d records read", rows, want)
		}
		if len(out) > 0 && out[0].GetBatchId() != after+1 && after >= 0 {
			return harness.Permanent(fmt.Errorf("the driver's recent progress starts at batch %d, not %d", out[0].GetBatchId(), after+1))
		}
		return nil
	})
	return out, err
}

// batchEnd is when a batch committed: its start plus its total duration.
func batchEnd(b *sluicev1.BatchProgress) time.Time {
	return b.GetTimestamp().AsTime().Add(time.Duration(b.GetDurationMs()["total"]) * time.Millisecond)
}

func stateOp(b *sluicev1.BatchProgress) *sluicev1.StateOperatorProgress {
	if ops := b.GetStateOperators(); len(ops) > 0 {
		return ops[0]
	}
	return nil
}

// stateFigures are the state operator's figures over the load.
type stateFigures struct {
	commitMs  []float64 // per batch, the slowest partition's
	onDisk    int64     // last batch
	memory    int64     // last batch
	written   int64     // sum over the batches
	groups    int64     // last batch
	executeMs []float64 // per batch, the execute phase (source and state stages)
	// restored counts state partitions loaded from checkpoint.state during
	// the load (a partition that moved to another executor); restoreMs is
	// the slowest such load.
	restored  int
	restoreMs int64
	// restoredBy counts the restores of each batch, for the JSON.
	restoredBy []int
}

func summarizeState(batches []*sluicev1.BatchProgress) (stateFigures, error) {
	var f stateFigures
	for _, b := range batches {
		op := stateOp(b)
		if op == nil {
			return f, fmt.Errorf("batch %d reports no state operator", b.GetBatchId())
		}
		f.commitMs = append(f.commitMs, float64(op.GetCommitTimeMs()))
		f.written += op.GetCheckpointBytesWritten()
		f.onDisk, f.memory, f.groups = op.GetStateOnDiskBytes(), op.GetMemoryUsedBytes(), op.GetNumRowsTotal()
		f.executeMs = append(f.executeMs, float64(b.GetDurationMs()["execute"]))
		f.restored += int(op.GetNumRestoredPartitions())
		f.restoredBy = append(f.restoredBy, int(op.GetNumRestoredPartitions()))
		f.restoreMs = max(f.restoreMs, op.GetRestoreTimeMs())
	}
	if len(f.commitMs) == 0 {
		return f, errors.New("no batch")
	}
	return f, nil
}

// restoreFigures are the batch after the executor was killed.
type restoreFigures struct {
	victim     string
	batch      int64
	timeMs     int64
	partitions int32
	totalMs    int64
	records    int64
}

func statefulRow(w *harness.KeyedWorkload, b baselineRun, s sluiceRun, st stateFigures, r restoreFigures) harness.Row {
	bRate := float64(w.Records) / b.res.Elapsed.Seconds()
	sRate := float64(w.Records) / s.elapsed.Seconds()
	perM := func(cpu time.Duration) float64 { return cpu.Seconds() / float64(w.Records) * 1e6 }
	execRSS := make([]string, len(s.executors))
	execData := make([]map[string]any, len(s.executors))
	for i, e := range s.executors {
		execRSS[i] = harness.MB(e.PeakRSS)
		execData[i] = map[string]any{"cpuSeconds": e.CPU.Seconds(), "peakRSSBytes": e.PeakRSS}
	}
	commitP50, commitMax := harness.Percentile(st.commitMs, 50), slices.Max(st.commitMs)
	notes := fmt.Sprintf("%d groups at the end (= distinct keys); state commit p50 %s, max %s per batch (slowest of %d partitions); "+
		"state on disk %s, memory %s, checkpoint written %s over %d batches; %s"+
		"restore after SIGKILL of %s (replaced): batch %d of %d records restored %d of %d partitions, restore_time_ms %s, batch total %s; "+
		"CPU %.2f vs %.2f s per M records; peak RSS driver %s, executors %s vs %s",
		st.groups, harness.Ms(commitP50), harness.Ms(commitMax), statePartitions,
		harness.MB(st.onDisk), harness.MB(st.memory), harness.MB(st.written), s.batches, loadRestores(st),
		r.victim, r.batch, r.records, r.partitions, statePartitions, harness.Ms(float64(r.timeMs)), harness.Ms(float64(r.totalMs)),
		perM(s.cpu()), perM(b.usage.CPU), harness.MB(s.driver.PeakRSS), strings.Join(execRSS, "/"), harness.MB(b.usage.PeakRSS))
	if s.profile != "" {
		notes += "; profile of the load: " + s.profile
	}
	return harness.Row{
		ID: "7", Name: fmt.Sprintf("stateful running aggregate, %s keys", keyCount(w.Keys)),
		Sluice:   fmt.Sprintf("%s in %.1f s", harness.Rate(sRate), s.elapsed.Seconds()),
		Baseline: fmt.Sprintf("%s in %.1f s", harness.Rate(bRate), b.res.Elapsed.Seconds()),
		Ratio:    sRate / bRate, RatioNote: "Sluice/baseline",
		Target: "no target: the baseline keeps no durable state",
		Notes:  notes,
		Data: map[string]any{
			"records": w.Records, "bytes": w.Bytes, "keys": w.Keys, "partitions": w.Partitions,
			"statePartitions": statePartitions, "snapshotInterval": stateSnapshotInterval,
			"sluice": map[string]any{
				"elapsedSeconds": s.elapsed.Seconds(), "recordsPerSecond": sRate, "batches": s.batches,
				"cpuSecondsPerMillion": perM(s.cpu()),
				"driver":               map[string]any{"cpuSeconds": s.driver.CPU.Seconds(), "peakRSSBytes": s.driver.PeakRSS},
				"executors":            execData, "harnessCPUSeconds": s.harnessCPU.Seconds(), "profile": s.profile,
			},
			"state": map[string]any{
				"groups": st.groups, "commitTimeMs": st.commitMs, "commitTimeP50Ms": commitP50, "commitTimeMaxMs": commitMax,
				"executeMs": st.executeMs, "stateOnDiskBytes": st.onDisk, "memoryUsedBytes": st.memory,
				"checkpointBytesWritten": st.written, "restoredDuringLoad": st.restored, "restoredByBatch": st.restoredBy, "restoreTimeMaxDuringLoadMs": st.restoreMs,
			},
			"restore": map[string]any{
				"victim": r.victim, "batch": r.batch, "records": r.records, "restoreTimeMs": r.timeMs,
				"restoredPartitions": r.partitions, "batchTotalMs": r.totalMs,
			},
			"baseline": map[string]any{
				"elapsedSeconds": b.res.Elapsed.Seconds(), "recordsPerSecond": bRate,
				"cpuSecondsPerMillion": perM(b.usage.CPU), "peakRSSBytes": b.usage.PeakRSS, "harnessCPUSeconds": b.harnessCPU.Seconds(),
			},
		},
	}
}

// loadRestores says how many state partitions were restored during the
// load: none when every partition stayed on its executor, as it should with
// no executor lost.
func loadRestores(st stateFigures) string {
	if st.restored == 0 {
		return ""
	}
	return fmt.Sprintf("%d partition restores during the load (partitions moved between executors; slowest %s); ", st.restored, harness.Ms(float64(st.restoreMs)))
}

// keyCount writes 1000000 as 1M and 250000 as 250k.
func keyCount(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
