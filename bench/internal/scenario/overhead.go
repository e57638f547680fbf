package scenario

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sluicehq/sluice/bench/internal/harness"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Scenario 3: what a micro-batch costs when there is almost nothing to do.
//
// Each partition count P gets a topic preloaded with the same number of
// records in every partition and a job with maxOffsetsPerTrigger = P and
// processingTime 0: every batch has P tasks of one record each and the
// batches run back to back, so a batch's duration is the engine's overhead.
// The first BENCH_OVERHEAD_WARMUP batches (readers being created) are not
// measured.
//
// The unit it is compared with is measured in the same run, against the
// same processes: one etcd transaction of the kind the checkpoint store
// writes (a put guarded by a comparison on the election key's revision) and
// one gRPC round trip to the driver over loopback (the standard health
// check). A batch needs at least two transactions (plan, commit) and one
// round trip (dispatch and result), so "overhead ×" is the batch's p50 over
// (2 etcd transactions + 1 round trip).
//
// The smallest P also runs BENCH_MEMORY_BATCHES batches in total, sampling
// the driver's memory, to check that it stays flat.

// phases are the keys of BatchProgress.duration_ms the table shows, in batch
// order. The driver reports "plan" (which today includes recording the
// plan), "execute" (dispatch to the last result) and "commit"; "record" and
// "dispatch" are shown as soon as the driver reports them.
var phases = []string{"plan", "record", "dispatch", "execute", "commit", "total"}

type overheadResult struct {
	partitions int
	batches    int
	tasks      float64 // mean tasks per measured batch
	missed     int     // batch events the watch did not see
	capped     bool    // BENCH_OVERHEAD_MAX_TIME ended the measurement
	profile    string  // how to read the perf profile, with BENCH_PROFILE
	phase      map[string][2]float64
	cycle      [2]float64 // p50/p99 of the time from one batch's start to the next one's
	etcdTxn    float64    // p50 ms
	grpcRTT    float64    // p50 ms
	driverRSS  []int64
	memory     *memoryResult
}

type memoryResult struct {
	batches     []float64 // batch ids of the samples
	rss         []float64 // driver VmRSS, bytes
	heap        []float64 // go_memstats_heap_inuse_bytes
	batchesRun  int
	heapGrowth  float64 // late median / early median - 1
	rssGrowth   float64
	heapSlope   float64 // bytes per batch
	early, late [2]int  // batch windows compared
}

func runBatchOverhead(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	cfg := env.Cfg
	var results []overheadResult
	for i, p := range cfg.OverheadPartitions {
		memory := 0
		if i == 0 {
			memory = cfg.MemoryBatches
		}
		r, err := measureOverhead(ctx, env, p, memory, false)
		if err != nil {
			return fmt.Errorf("partitions=%d: %w", p, err)
		}
		results = append(results, r)
		if err := rep.Add(overheadRow(i, r, results[0])); err != nil {
			return err
		}
	}
	if len(results) > 0 && results[0].memory != nil {
		if err := rep.Add(memoryRow(results[0].partitions, results[0].memory)); err != nil {
			return err
		}
	}
	for i, p := range cfg.OverheadSQLPartitions {
		r, err := measureOverhead(ctx, env, p, 0, true)
		if err != nil {
			return fmt.Errorf("SQL, partitions=%d: %w", p, err)
		}
		plain := -1
		for j := range results {
			if results[j].partitions == p {
				plain = j
			}
		}
		if err := rep.Add(sqlOverheadRow(i, r, results, plain)); err != nil {
			return err
		}
	}
	return nil
}

// measureOverhead runs scenario 3's job on partitions; with sql, the job
// decodes each record and runs the seed's query (scenario 1's steps), so
// that every task runs a query in DuckDB, and measures
// OverheadSQLBatches batches.
func measureOverhead(ctx context.Context, env *harness.Env, partitions, memoryBatches int, sql bool) (overheadResult, error) {
	cfg := env.Cfg
	r := overheadResult{partitions: partitions, phase: map[string][2]float64{}}
	k, err := env.Kafka()
	if err != nil {
		return r, err
	}
	measure, prefix := cfg.OverheadBatches, "s3-"
	if sql {
		measure, prefix = cfg.OverheadSQLBatches, "s3s-"
	}
	total := cfg.OverheadWarmup + measure
	runFor := max(total, memoryBatches)
	topic := env.Topic("trickle-" + prefix + strconv.Itoa(partitions))
	if err := k.CreateTopic(ctx, topic, partitions); err != nil {
		return r, err
	}
	defer k.DeleteTopic(context.WithoutCancel(ctx), topic)
	// A few records to spare, so that the job never idles while measured.
	if _, err := k.Preload(ctx, topic, partitions, partitions*(runFor+5), uint64(partitions)); err != nil {
		return r, err
	}

	c, err := env.StartClusterWith(ctx, prefix+strconv.Itoa(partitions), harness.ClusterOptions{Drivers: 1, Pprof: cfg.Pprof != ""})
	if err != nil {
		return r, err
	}
	defer c.Close()
	d := c.Drivers[0]
	if r.etcdTxn, err = probeEtcd(ctx, c.Etcd.Endpoints(), cfg.Probes); err != nil {
		return r, err
	}
	if r.grpcRTT, err = probeGRPC(ctx, d.Health(), cfg.Probes); err != nil {
		return r, err
	}

	name := fmt.Sprintf("overhead-%d-%s", partitions, env.Run)
	if sql {
		name = fmt.Sprintf("overhead-sql-%d-%s", partitions, env.Run)
	}
	spec := &sluicev1.JobSpec{
		Name:   name,
		Source: kafkaSource(k.Brokers, topic, int64(partitions)),
		// No transforms: the scenario measures what a batch costs around
		// its tasks (plan, dispatch, results, commit), not a query's.
		Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "0"}},
	}
	if sql {
		// The SQL rows: the same batches, each task running the seed's
		// decode and query, and the driver merging the partial sums.
		spec.Transforms = treasuryTransforms()
	}
	var prof *harness.Profiler
	if cfg.Profile != "" {
		if prof, err = harness.StartPerf(cfg.Profile, prefix+strconv.Itoa(partitions)+"-sluice", c.SluiceProcs()); err != nil {
			return r, err
		}
	}
	if err := harness.Submit(ctx, d, spec); err != nil {
		return r, err
	}
	submitted := time.Now()
	var measured []*sluicev1.BatchProgress
	var mem *memoryResult
	if memoryBatches > 0 {
		mem = &memoryResult{}
	}
	var werr error
	var capture *harness.Capture
	last := int64(-1)
	err = harness.Watch(ctx, d, name, func(ev *sluicev1.JobEvent) bool {
		if st := ev.GetJob().GetState(); st == sluicev1.JobState_JOB_STATE_FAILED || st == sluicev1.JobState_JOB_STATE_STOPPED {
			werr = fmt.Errorf("job %s is %s: %s", name, st, ev.GetJob().GetLastError())
			return true
		}
		b := ev.GetBatch()
		if b == nil {
			return false
		}
		id := b.GetBatchId()
		if last >= 0 && id > last+1 && id > int64(cfg.OverheadWarmup) && id <= int64(total) {
			r.missed += int(id - last - 1)
		}
		last = id
		if id >= int64(cfg.OverheadWarmup) && id < int64(total) {
			measured = append(measured, b)
			if capture == nil && cfg.Pprof != "" {
				// From the first measured batch: the readers are warm.
				if capture, werr = harness.StartCPUProfiles(ctx, cfg.Pprof, prefix+strconv.Itoa(partitions), c.PprofTargets(),
					cfg.PprofTime, d.Name); werr != nil {
					return true
				}
			}
		}
		if u, err := d.Stats(); err == nil {
			r.driverRSS = append(r.driverRSS, u.RSS)
			if mem != nil && id%int64(memoryEvery(memoryBatches)) == 0 {
				m, err := d.Metrics(ctx)
				if err != nil {
					werr = err
					return true
				}
				heap, ok := m.Value("go_memstats_heap_inuse_bytes", nil)
				if !ok {
					werr = fmt.Errorf("driver metrics have no go_memstats_heap_inuse_bytes")
					return true
				}
				mem.batches = append(mem.batches, float64(id))
				mem.rss = append(mem.rss, float64(u.RSS))
				mem.heap = append(mem.heap, heap)
			}
		}
		if mem == nil && len(measured) >= 10 && time.Since(submitted) > cfg.OverheadMaxTime {
			r.capped = true
			return true
		}
		return id >= int64(runFor)-1
	})
	if err == nil {
		err = werr
	}
	if capture != nil {
		cmds, perr := capture.Wait()
		if err == nil {
			err = perr
		}
		r.profile = strings.Join(filterEmpty(r.profile, cmds), "; ")
	}
	if prof != nil {
		cmd, perr := prof.Stop(ctx)
		if err == nil {
			err = perr
		}
		r.profile = strings.Join(filterEmpty(r.profile, cmd), "; ")
	}
	if err != nil {
		return r, err
	}
	if err := harness.StopJob(ctx, d, name); err != nil {
		return r, err
	}
	if len(measured) < min(measure/2, 10) {
		return r, fmt.Errorf("saw only %d of %d measured batches", len(measured), measure)
	}
	r.batches = len(measured)
	r.phase = phaseStats(measured)
	r.cycle = cycleStats(measured)
	var tasks int
	for _, b := range measured {
		tasks += int(b.GetNumTasks())
	}
	r.tasks = float64(tasks) / float64(len(measured))
	if mem != nil {
		mem.batchesRun = runFor
		mem.summarise()
		r.memory = mem
	}
	return r, nil
}

// phaseStats returns p50 and p99 in ms of every phase present.
func phaseStats(bs []*sluicev1.BatchProgress) map[string][2]float64 {
	vals := map[string][]float64{}
	for _, b := range bs {
		for k, v := range b.GetDurationMs() {
			vals[k] = append(vals[k], float64(v))
		}
	}
	out := map[string][2]float64{}
	for k, v := range vals {
		out[k] = [2]float64{harness.Percentile(v, 50), harness.Percentile(v, 99)}
	}
	return out
}

// cycleStats is the time from one batch's start to the next one's, which
// includes what happens outside the phases (progress, metrics, purge).
func cycleStats(bs []*sluicev1.BatchProgress) [2]float64 {
	var v []float64
	for i := 1; i < len(bs); i++ {
		if bs[i].GetBatchId() == bs[i-1].GetBatchId()+1 {
			v = append(v, float64(bs[i].GetTimestamp().AsTime().Sub(bs[i-1].GetTimestamp().AsTime()))/float64(time.Millisecond))
		}
	}
	return [2]float64{harness.Percentile(v, 50), harness.Percentile(v, 99)}
}

// probeEtcd times n fenced puts like the checkpoint store's: a transaction
// comparing a key's create revision, then writing a small value. It
// returns the median in ms.
func probeEtcd(ctx context.Context, endpoints []string, n int) (float64, error) {
	cl, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return 0, fmt.Errorf("etcd probe client: %w", err)
	}
	defer cl.Close()
	fence, err := cl.Put(ctx, "/sluicebench/fence", "x")
	if err != nil {
		return 0, fmt.Errorf("etcd probe: %w", err)
	}
	rev := fence.Header.Revision
	value := strings.Repeat("p", 512)
	var ds []time.Duration
	for i := range n + 10 {
		t := time.Now()
		resp, err := cl.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("/sluicebench/fence"), "=", rev)).
			Then(clientv3.OpPut("/sluicebench/probe", value)).Commit()
		if err != nil {
			return 0, fmt.Errorf("etcd probe transaction: %w", err)
		}
		if !resp.Succeeded {
			return 0, fmt.Errorf("etcd probe transaction: comparison failed")
		}
		if i >= 10 { // the first ones warm the connection up
			ds = append(ds, time.Since(t))
		}
	}
	return harness.Percentile(harness.Millis(ds), 50), nil
}

// probeGRPC times n health checks against the driver; median in ms.
func probeGRPC(ctx context.Context, h healthpb.HealthClient, n int) (float64, error) {
	var ds []time.Duration
	for i := range n + 10 {
		t := time.Now()
		if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return 0, fmt.Errorf("gRPC probe: %w", err)
		}
		if i >= 10 {
			ds = append(ds, time.Since(t))
		}
	}
	return harness.Percentile(harness.Millis(ds), 50), nil
}

// memoryEvery is how many batches apart the driver-memory run samples the
// driver: about 100 samples over the run, every batch in a short one, so
// that each window summarise compares holds samples.
func memoryEvery(batches int) int { return max(batches/100, 1) }

func (m *memoryResult) summarise() {
	n := m.batchesRun
	// Skip the first tenth: the driver's caches, etcd's store and the purge
	// of old batches (from batch 100 on) settle first.
	m.early = [2]int{n / 10, n * 3 / 10}
	m.late = [2]int{n * 8 / 10, n}
	window := func(ys []float64, w [2]int) []float64 {
		var out []float64
		for i, b := range m.batches {
			if int(b) >= w[0] && int(b) < w[1] {
				out = append(out, ys[i])
			}
		}
		return out
	}
	growth := func(ys []float64) float64 {
		e, l := harness.Percentile(window(ys, m.early), 50), harness.Percentile(window(ys, m.late), 50)
		return l/e - 1
	}
	m.heapGrowth, m.rssGrowth = growth(m.heap), growth(m.rss)
	var xs, ys []float64
	for i, b := range m.batches {
		if int(b) >= m.early[0] {
			xs, ys = append(xs, b), append(ys, m.heap[i])
		}
	}
	m.heapSlope = harness.Slope(xs, ys)
}

// sqlOverheadRow is the row of partition count i of the SQL runs: r, with
// the seed's query in every task, against plain[j], scenario 3's run of
// the same partition count without transforms (j < 0: not measured, and
// the row is read against the etcd and gRPC unit instead). There is no
// target: the row shows what a SQL task adds to a batch.
func sqlOverheadRow(i int, r overheadResult, plain []overheadResult, j int) harness.Row {
	unit := 2*r.etcdTxn + r.grpcRTT
	p50, p99 := r.phase["total"][0], r.phase["total"][1]
	perTask := p50 / r.tasks // r.tasks: the mean tasks of a measured batch, P here
	data := map[string]any{
		"partitions": r.partitions, "batches": r.batches, "tasksPerBatch": r.tasks, "missedEvents": r.missed,
		"phasesMs": r.phase, "cycleMs": r.cycle, "etcdTxnMs": r.etcdTxn, "grpcRoundTripMs": r.grpcRTT,
		"unitMs": unit, "capped": r.capped, "p50PerTaskMs": perTask,
	}
	row := harness.Row{
		ID: "3s" + string(rune('a'+i)), Name: fmt.Sprintf("batch overhead with the seed's SQL, P=%d", r.partitions),
		Sluice: fmt.Sprintf("p50 %s, p99 %s per batch (p50 %s per task)", harness.Ms(p50), harness.Ms(p99), harness.Ms(perTask)),
		Target: "none: what a SQL task adds to a batch",
		Notes:  phaseNotes(r, data), Data: data,
	}
	if j >= 0 {
		base := plain[j].phase["total"][0]
		row.Baseline = fmt.Sprintf("p50 %s per batch without transforms (row 3%c)", harness.Ms(base), rune('a'+j))
		row.Ratio, row.RatioNote = p50/base, "p50 with SQL/without"
		data["plainP50Ms"] = base
	} else {
		row.Baseline = fmt.Sprintf("etcd txn %s, gRPC RTT %s → unit %s", harness.Ms(r.etcdTxn), harness.Ms(r.grpcRTT), harness.Ms(unit))
		row.Ratio, row.RatioNote = p50/unit, "p50/unit"
	}
	return row
}

// phaseNotes are a row's notes: p50/p99 by phase, batch to batch, what was
// measured, the profile (also put in data) and the driver's memory.
func phaseNotes(r overheadResult, data map[string]any) string {
	var split []string
	for _, ph := range phases[:len(phases)-1] {
		v, ok := r.phase[ph]
		if !ok {
			continue
		}
		label := ph
		switch {
		case ph == "plan" && !hasPhase(r, "record"):
			label = "plan+record"
		case ph == "execute" && !hasPhase(r, "dispatch"):
			label = "dispatch+execute"
		}
		split = append(split, fmt.Sprintf("%s %s/%s", label, harness.Ms(v[0]), harness.Ms(v[1])))
	}
	notes := fmt.Sprintf("p50/p99 by phase: %s; batch-to-batch %s/%s; %d batches of %.0f tasks",
		strings.Join(split, ", "), harness.Ms(r.cycle[0]), harness.Ms(r.cycle[1]), r.batches, r.tasks)
	if r.capped {
		notes += " (cut short by BENCH_OVERHEAD_MAX_TIME)"
	}
	if r.profile != "" {
		notes += "; profile: " + r.profile
		data["profile"] = r.profile
	}
	if len(r.driverRSS) > 0 {
		notes += fmt.Sprintf("; driver RSS max %s", harness.MB(slices.Max(r.driverRSS)))
	}
	return notes
}

func overheadRow(i int, r, first overheadResult) harness.Row {
	unit := 2*r.etcdTxn + r.grpcRTT
	p50, p99 := r.phase["total"][0], r.phase["total"][1]
	multiple := p50 / unit
	data := map[string]any{
		"partitions": r.partitions, "batches": r.batches, "tasksPerBatch": r.tasks, "missedEvents": r.missed,
		"phasesMs": r.phase, "cycleMs": r.cycle, "etcdTxnMs": r.etcdTxn, "grpcRoundTripMs": r.grpcRTT,
		"unitMs": unit, "overheadMultiple": multiple, "capped": r.capped,
	}
	notes := phaseNotes(r, data)
	row := harness.Row{
		ID: "3" + string(rune('a'+i)), Name: fmt.Sprintf("batch overhead, P=%d", r.partitions),
		Sluice:   fmt.Sprintf("p50 %s, p99 %s per batch", harness.Ms(p50), harness.Ms(p99)),
		Baseline: fmt.Sprintf("etcd txn %s, gRPC RTT %s → unit %s", harness.Ms(r.etcdTxn), harness.Ms(r.grpcRTT), harness.Ms(unit)),
		Ratio:    multiple, RatioNote: "p50/unit",
		Notes: notes, Data: data,
	}
	// Growth against the smallest P, per unit so that a noisier moment
	// does not count as growth.
	k := math.NaN()
	if i > 0 {
		k = harness.GrowthExponent(float64(first.partitions), first.phase["total"][0]/(2*first.etcdTxn+first.grpcRTT),
			float64(r.partitions), multiple)
		data["growthExponent"] = k
		if !math.IsNaN(k) {
			row.Notes = fmt.Sprintf("growth exponent %.2f vs P=%d; ", k, first.partitions) + row.Notes
		}
	}
	row.Target, row.Met = overheadVerdict(r.partitions, first.partitions, p50, p99, k)
	return row
}

// overheadTargets are issue 15's p50 bounds per batch, in ms, by partition
// count.
var overheadTargets = map[int]float64{16: 5, 1024: 60, 4096: 250}

// overheadVerdict judges one partition count against issue 15: p50 within
// its bound where the issue sets one, p99 at most 3× p50, and, above the
// smallest count measured (ref), a growth exponent k of at most 1 (NaN: not
// judged). Met is nil when nothing could be judged.
func overheadVerdict(p, ref int, p50, p99, k float64) (string, *bool) {
	var targets []string
	met, judged := true, false
	if bound, ok := overheadTargets[p]; ok {
		targets = append(targets, fmt.Sprintf("p50 ≤ %s", harness.Ms(bound)))
		if !math.IsNaN(p50) {
			judged, met = true, met && p50 <= bound
		}
	}
	targets = append(targets, "p99 ≤ 3× p50")
	if !math.IsNaN(p50) && !math.IsNaN(p99) && p50 > 0 {
		judged, met = true, met && p99 <= 3*p50
	}
	if p != ref {
		targets = append(targets, fmt.Sprintf("exponent ≤ 1 from P=%d", ref))
		if !math.IsNaN(k) {
			judged, met = true, met && k <= 1
		}
	}
	if !judged {
		return strings.Join(targets, ", "), nil
	}
	return strings.Join(targets, ", "), harness.Bool(met)
}

// filterEmpty returns the non-empty strings of ss.
func filterEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func hasPhase(r overheadResult, ph string) bool { _, ok := r.phase[ph]; return ok }

func memoryRow(partitions int, m *memoryResult) harness.Row {
	med := func(ys []float64, w [2]int) float64 {
		var v []float64
		for i, b := range m.batches {
			if int(b) >= w[0] && int(b) < w[1] {
				v = append(v, ys[i])
			}
		}
		return harness.Percentile(v, 50)
	}
	// A window without samples (a short run, or watch events missed) has no
	// median: say so rather than print NaN or the garbage int64(NaN) makes,
	// and leave the target unjudged instead of calling it missed.
	mb := func(v float64) string {
		if math.IsNaN(v) {
			return "n/a"
		}
		return harness.MB(int64(v))
	}
	pct := func(g float64) string {
		if math.IsNaN(g) {
			return "n/a"
		}
		return fmt.Sprintf("%+.1f%%", 100*g)
	}
	const limit = 0.10
	var met *bool
	if !math.IsNaN(m.heapGrowth) && !math.IsNaN(m.rssGrowth) {
		met = harness.Bool(m.heapGrowth <= limit && m.rssGrowth <= limit)
	}
	notes := fmt.Sprintf("heap slope %+.1f KB per 100 batches over %d samples", m.heapSlope*100/1024, len(m.batches))
	if math.IsNaN(m.heapSlope) {
		notes = fmt.Sprintf("no heap slope: %d samples", len(m.batches))
	}
	if met == nil {
		notes += fmt.Sprintf("; too few samples to compare the windows (one every %d batches): raise BENCH_MEMORY_BATCHES", memoryEvery(m.batchesRun))
	}
	return harness.Row{
		ID: "3m", Name: fmt.Sprintf("driver memory over %d batches, P=%d", m.batchesRun, partitions),
		Sluice: fmt.Sprintf("heap in use %s → %s (%s), RSS %s → %s (%s)",
			mb(med(m.heap, m.early)), mb(med(m.heap, m.late)), pct(m.heapGrowth),
			mb(med(m.rss, m.early)), mb(med(m.rss, m.late)), pct(m.rssGrowth)),
		Baseline: fmt.Sprintf("batches %d–%d vs %d–%d", m.early[0], m.early[1]-1, m.late[0], m.late[1]-1),
		Ratio:    1 + m.heapGrowth, RatioNote: "late/early heap",
		Target: "flat (medians within 10%)", Met: met,
		Notes: notes,
		Data: map[string]any{
			"batches": m.batchesRun, "sampleBatches": m.batches, "heapInuseBytes": m.heap, "rssBytes": m.rss,
			"heapGrowth": m.heapGrowth, "rssGrowth": m.rssGrowth, "heapSlopeBytesPerBatch": m.heapSlope,
		},
	}
}
