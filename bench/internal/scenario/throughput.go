package scenario

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bench/internal/baseline"
	"github.com/sluicehq/sluice/bench/internal/harness"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Scenarios 1, 1b, 1c and 2: the same preloaded topic (BENCH_N transactions
// over BENCH_PARTITIONS partitions) read by a raw franz-go program and by a
// Sluice cluster (one driver, BENCH_EXECUTORS executors) running an
// availableNow job, one after the other on the same broker. Each row runs its
// own baseline right before its Sluice job, so every ratio compares two
// measurements taken moments apart.
//
//	1   decode + aggregate, as users write it: decode with a schema, then the
//	    treasury query in SQL (DuckDB over Arrow)  vs  franz-go + encoding/json
//	1b  the same with the shorthand steps (a typed decode, then aggregate:
//	    SQL generated from YAML)  vs  the same baseline
//	1c  select count(*) from source, no decode  vs  franz-go consume and count
//	2   Kafka → Kafka copy  vs  a franz-go consume-produce loop
//
// The aggregating jobs write to a file sink under the work directory (a few
// rows per batch, written by the driver after merging the tasks' partial
// aggregates), and the harness checks their sums and counts against the
// workload as it checks the baseline's: a fast job with wrong totals is an
// error, not a row.

// treasuryQuery is the treasury query as written in examples/treasury, plus
// count(*) so that the harness can check the totals record by record.
const treasuryQuery = `select from_unixtime(unix_timestamp()) as curr_time, t.branch as branch_name,
  t.currency as currency_code, sum(amount) as batch_value, count(*) as n
from treasury_stream t group by t.branch, t.currency`

// treasurySchema is the part of a transaction the query reads.
const treasurySchema = "branch STRING, currency STRING, amount BIGINT"

// runSQLAggregate is scenario 1: decode JSON and sum amount by (branch,
// currency) with a SQL step, against the same work done by hand.
func runSQLAggregate(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	return runAggregate(ctx, env, rep, aggregateJob{
		id: "1", name: "Kafka decode + aggregate (SQL)", target: 2.5, baseline: "aggregate", dir: "s1",
		transforms: treasuryTransforms(),
		check:      groupCheck("branch_name", "currency_code", "batch_value", "n"),
	})
}

// treasuryTransforms are scenario 1's steps: the seed's JSON decode and
// query.
func treasuryTransforms() []*sluicev1.Transform {
	return []*sluicev1.Transform{
		{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: treasurySchema}}},
		{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{View: "treasury_stream", Query: treasuryQuery}}},
	}
}

// runShorthandAggregate is scenario 1b: scenario 1 written with the YAML
// shorthand steps, which compile to SQL like scenario 1's query.
func runShorthandAggregate(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	return runAggregate(ctx, env, rep, aggregateJob{
		id: "1b", name: "Kafka decode + aggregate (shorthand steps)", target: 0.85, baseline: "aggregate", dir: "s1b",
		transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: treasurySchema}}},
			{Kind: &sluicev1.Transform_Aggregate{Aggregate: &sluicev1.Aggregate{
				GroupBy: []string{"branch", "currency"},
				Aggregations: []*sluicev1.Aggregation{
					{Fn: "sum", Field: "amount", As: "total"},
					{Fn: "count", As: "n"},
				},
			}}},
		},
		check: groupCheck("branch", "currency", "total", "n"),
	})
}

// runCountOnly is scenario 1c: count the records with SQL, no decode, against
// a franz-go loop that only counts: what the engine costs over reading.
func runCountOnly(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	return runAggregate(ctx, env, rep, aggregateJob{
		id: "1c", name: "count-only pass", target: 0.8, baseline: "count", dir: "s1c",
		transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{Query: "select count(*) as n from source"}}},
		},
		check: countCheck("n"),
	})
}

// aggregateJob is one row of the aggregating throughput scenarios.
type aggregateJob struct {
	id, name string
	target   float64
	// baseline is the `sluicebench baseline` kind compared with.
	baseline string
	// dir names the cluster's and the sink's directories under the run's.
	dir        string
	transforms []*sluicev1.Transform
	// check verifies every row the job wrote against the workload.
	check func(rows []map[string]any, w *harness.Workload) error
}

func runAggregate(ctx context.Context, env *harness.Env, rep *harness.Report, j aggregateJob) error {
	k, w, err := env.ThroughputTopic(ctx)
	if err != nil {
		return err
	}
	base, s, ratios, err := runPairs(env.Cfg.Pairs, func(pair int) (baselineRun, sluiceRun, error) {
		dir := pairDir(j.dir, pair)
		base, err := runBaseline(ctx, env, "baseline-"+dir+"-"+j.baseline, j.baseline, "--brokers", strings.Join(k.Brokers, ","), "--topic", w.Topic, markArg(env.Cfg))
		if err != nil {
			return base, sluiceRun{}, err
		}
		if err := checkBaseline(base.res, w); err != nil {
			return base, sluiceRun{}, err
		}
		if j.baseline == "aggregate" {
			for g, want := range w.Groups {
				if got := base.res.Groups[g]; got != (baseline.Group{Sum: want.Sum, Count: want.Count}) {
					return base, sluiceRun{}, fmt.Errorf("baseline computed %s = %+v, the workload holds %+v", g, got, want)
				}
			}
		}

		name := dir + "-" + env.Run
		out := filepath.Join(env.Dir, dir+"-out")
		spec := &sluicev1.JobSpec{
			Name:       name,
			Source:     kafkaSource(k.Brokers, w.Topic, perTrigger(env.Cfg)),
			Transforms: j.transforms,
			Sink:       &sluicev1.Sink{Kind: &sluicev1.Sink_File{File: &sluicev1.FileSink{Path: out}}},
			Trigger:    &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}},
		}
		s, err := runSluice(ctx, env, dir, spec, w.Records)
		if err != nil {
			return base, s, err
		}
		rows, err := file.ReadAll(out, name)
		if err != nil {
			return base, s, fmt.Errorf("job %s: read its output: %w", name, err)
		}
		if err := j.check(rows, w); err != nil {
			return base, s, fmt.Errorf("job %s wrote wrong totals: %w", name, err)
		}
		return base, s, nil
	})
	if err != nil {
		return err
	}
	return rep.Add(throughputRow(j.id, j.name, j.target, w, base, s, ratios))
}

// runPairs runs a throughput row's baseline and Sluice job n times (run
// gets the pair's number, from 1) and returns the pair whose ratio is the
// median, the lower middle one of an even count, with every pair's ratio in
// the order they ran. One pair's ratio moves with this machine's speed from
// one minute to the next (row 1's three pairs on one commit were 1.64, 1.01
// and 1.19); their median moves less, and the list shows the spread.
func runPairs(n int, run func(pair int) (baselineRun, sluiceRun, error)) (baselineRun, sluiceRun, []float64, error) {
	type pair struct {
		b     baselineRun
		s     sluiceRun
		ratio float64
	}
	var pairs []pair
	ratios := make([]float64, 0, n)
	for i := 1; i <= n; i++ {
		b, s, err := run(i)
		if err != nil {
			return b, s, nil, err
		}
		// The records are the same on both sides: the rates' ratio is the
		// elapsed times' inverse ratio.
		r := b.res.Elapsed.Seconds() / s.elapsed.Seconds()
		pairs = append(pairs, pair{b, s, r})
		ratios = append(ratios, r)
	}
	slices.SortStableFunc(pairs, func(x, y pair) int { return cmp.Compare(x.ratio, y.ratio) })
	m := pairs[(len(pairs)-1)/2]
	return m.b, m.s, ratios, nil
}

// pairDir names the processes, directories and job of a row's pair: the
// row's own name for the first, numbered after it for the others.
func pairDir(dir string, pair int) string {
	if pair <= 1 {
		return dir
	}
	return fmt.Sprintf("%s-%d", dir, pair)
}

// groupCheck returns a check that sums the per-batch rows of a job
// aggregating by branch and currency and compares them with the workload.
func groupCheck(branch, currency, sum, count string) func([]map[string]any, *harness.Workload) error {
	return func(rows []map[string]any, w *harness.Workload) error {
		got := map[string]harness.Group{}
		for i, r := range rows {
			b, ok1 := r[branch].(string)
			c, ok2 := r[currency].(string)
			s, ok3 := asInt(r[sum])
			n, ok4 := asInt(r[count])
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return fmt.Errorf("row %d is %v: want string %s and %s, integer %s and %s", i, r, branch, currency, sum, count)
			}
			g := got[b+"/"+c]
			g.Sum += s
			g.Count += n
			got[b+"/"+c] = g
		}
		if len(got) != len(w.Groups) {
			return fmt.Errorf("%d groups over %d rows, the workload has %d", len(got), len(rows), len(w.Groups))
		}
		for g, want := range w.Groups {
			if got[g] != want {
				return fmt.Errorf("%s sums to %+v over the batches, the workload holds %+v", g, got[g], want)
			}
		}
		return nil
	}
}

// countCheck returns a check that the per-batch counts add up to the
// workload's records.
func countCheck(count string) func([]map[string]any, *harness.Workload) error {
	return func(rows []map[string]any, w *harness.Workload) error {
		var total int64
		for i, r := range rows {
			n, ok := asInt(r[count])
			if !ok {
				return fmt.Errorf("row %d is %v: want integer %s", i, r, count)
			}
			total += n
		}
		if total != w.Records {
			return fmt.Errorf("counted %d records over %d rows, the topic holds %d", total, len(rows), w.Records)
		}
		return nil
	}
}

// asInt reads an integer column as file.ReadAll returns it: int64, or a
// float64 or string when the engine widened it (DuckDB's sum of BIGINT is a
// HUGEINT).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// runPassThrough is scenario 2: copy every record to another topic without
// decoding, against a raw consume-and-produce loop.
func runPassThrough(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	k, w, err := env.ThroughputTopic(ctx)
	if err != nil {
		return err
	}
	base, s, ratios, err := runPairs(env.Cfg.Pairs, func(pair int) (baselineRun, sluiceRun, error) {
		return runCopyPair(ctx, env, k, w, pair)
	})
	if err != nil {
		return err
	}
	return rep.Add(throughputRow("2", "Kafka → Kafka pass-through", 0.9, w, base, s, ratios))
}

// runCopyPair is one pair of scenario 2. Each side copies into a topic of
// its own, deleted once counted, so that the broker (kfake keeps every
// record in memory) holds the same data for every run.
func runCopyPair(ctx context.Context, env *harness.Env, k *harness.Kafka, w *harness.Workload, pair int) (baselineRun, sluiceRun, error) {
	var base baselineRun
	var s sluiceRun
	baseOut, sluiceOut := env.Topic(pairDir("copy-baseline", pair)), env.Topic(pairDir("copy-sluice", pair))
	for _, t := range []string{baseOut, sluiceOut} {
		if err := k.CreateTopic(ctx, t, env.Cfg.Partitions); err != nil {
			return base, s, err
		}
		defer k.DeleteTopic(context.WithoutCancel(ctx), t)
	}
	base, err := runBaseline(ctx, env, pairDir("baseline-copy", pair), "copy", "--brokers", strings.Join(k.Brokers, ","), "--topic", w.Topic, "--out", baseOut, markArg(env.Cfg))
	if err != nil {
		return base, s, err
	}
	if err := checkBaseline(base.res, w); err != nil {
		return base, s, err
	}
	if n, err := k.Records(ctx, baseOut); err != nil || n != w.Records {
		return base, s, fmt.Errorf("baseline copy: %s holds %d records, want %d (%v)", baseOut, n, w.Records, err)
	}
	// Free the baseline's copy before Sluice runs, so both find the broker
	// holding the same data.
	if err := k.DeleteTopic(ctx, baseOut); err != nil {
		return base, s, err
	}

	name := pairDir("copy", pair) + "-" + env.Run
	spec := &sluicev1.JobSpec{
		Name:   name,
		Source: kafkaSource(k.Brokers, w.Topic, perTrigger(env.Cfg)),
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Kafka{Kafka: &sluicev1.KafkaSink{
			BootstrapServers: strings.Join(k.Brokers, ","), Topic: sluiceOut, Key: "key", Value: "value",
		}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}},
	}
	s, err = runSluice(ctx, env, pairDir("s2", pair), spec, w.Records)
	if err != nil {
		return base, s, err
	}
	if n, err := k.Records(ctx, sluiceOut); err != nil || n < w.Records {
		return base, s, fmt.Errorf("sluice copy: %s holds %d records, want %d (%v)", sluiceOut, n, w.Records, err)
	}
	// The copy must be the records themselves, not a re-encoding of them.
	sample, err := k.Sample(ctx, sluiceOut, 100)
	if err != nil {
		return base, s, err
	}
	for _, v := range sample {
		var t struct {
			ID       int64  `json:"id"`
			Branch   string `json:"branch"`
			Currency string `json:"currency"`
		}
		if err := json.Unmarshal(v, &t); err != nil || t.ID == 0 || t.Branch == "" || t.Currency == "" || v[0] != '{' {
			return base, s, fmt.Errorf("sluice copy: %s holds %q, not a copied transaction (%v)", sluiceOut, v, err)
		}
	}
	return base, s, nil
}

func kafkaSource(brokers []string, topic string, perTrigger int64) *sluicev1.Source {
	return &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
		BootstrapServers: strings.Join(brokers, ","), Subscribe: []string{topic}, StartingOffsets: "earliest",
		MaxOffsetsPerTrigger: perTrigger,
	}}}
}

// markArg has a baseline note when it has handed on a first batch's worth
// of records (perTrigger), where its steady state starts (steadyRates).
func markArg(cfg harness.Config) string { return fmt.Sprintf("--mark=%d", perTrigger(cfg)) }

// perTrigger caps batches so that the availableNow job takes about
// BENCH_BATCHES micro-batches, as a job catching up on a backlog would.
func perTrigger(cfg harness.Config) int64 {
	return int64(math.Ceil(float64(cfg.N) / float64(cfg.Batches)))
}

type baselineRun struct {
	res   baseline.Result
	usage harness.Usage
	// harnessCPU is what this process (kfake, etcd) spent meanwhile.
	harnessCPU time.Duration
}

func runBaseline(ctx context.Context, env *harness.Env, name string, args ...string) (baselineRun, error) {
	var b baselineRun
	h0, err := harness.ReadProcStats(0)
	if err != nil {
		return b, err
	}
	p, out, err := env.Baseline(ctx, name, nil, args...)
	if err != nil {
		return b, err
	}
	h1, err := harness.ReadProcStats(0)
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(out, &b.res); err != nil {
		return b, fmt.Errorf("%s printed %q: %w", name, out, err)
	}
	if b.usage, err = p.Usage(); err != nil {
		return b, err
	}
	b.harnessCPU = h1.CPU - h0.CPU
	return b, nil
}

func checkBaseline(r baseline.Result, w *harness.Workload) error {
	if r.Records != w.Records || r.Bytes != w.Bytes {
		return fmt.Errorf("baseline read %d records (%d bytes), the topic holds %d (%d bytes)", r.Records, r.Bytes, w.Records, w.Bytes)
	}
	if r.Elapsed <= 0 {
		return fmt.Errorf("baseline reported no elapsed time")
	}
	return nil
}

type sluiceRun struct {
	elapsed    time.Duration
	records    int64
	batches    int
	driver     harness.Usage
	executors  []harness.Usage
	harnessCPU time.Duration
	profile    string
	// phaseMs is each batch phase's time summed over the job's batches.
	phaseMs map[string]float64
	// firstRecords is what the job's first batch read and firstAt when it
	// was reported, counted from the submit; 0 when its event was missed.
	firstRecords int64
	firstAt      time.Duration
}

func (s sluiceRun) cpu() time.Duration {
	c := s.driver.CPU
	for _, e := range s.executors {
		c += e.CPU
	}
	return c
}

// runSluice starts a fresh cluster (so peak memory is this job's), runs
// spec to the end, and checks from the driver's metrics that it read want
// records.
func runSluice(ctx context.Context, env *harness.Env, dir string, spec *sluicev1.JobSpec, want int64) (sluiceRun, error) {
	var s sluiceRun
	c, err := env.StartClusterWith(ctx, dir, harness.ClusterOptions{Drivers: 1, Pprof: env.Cfg.Pprof != ""})
	if err != nil {
		return s, err
	}
	defer c.Close()
	d := c.Drivers[0]
	procs := c.SluiceProcs()
	before := make([]harness.Usage, len(procs))
	for i, p := range procs {
		if before[i], err = p.Stats(); err != nil {
			return s, err
		}
	}
	h0, err := harness.ReadProcStats(0)
	if err != nil {
		return s, err
	}
	var prof *harness.Profiler
	if env.Cfg.Profile != "" {
		if prof, err = harness.StartPerf(env.Cfg.Profile, dir+"-sluice", procs); err != nil {
			return s, err
		}
	}
	var capture *harness.Capture
	if env.Cfg.Pprof != "" {
		// From the submit, for BENCH_PPROF_TIME: set it to about the run's
		// length, or the profiles of a short run are mostly idle.
		if capture, err = harness.StartCPUProfiles(ctx, env.Cfg.Pprof, dir, c.PprofTargets(), env.Cfg.PprofTime, d.Name); err != nil {
			return s, err
		}
	}
	res, err := harness.RunJob(ctx, d, spec)
	if capture != nil {
		cmds, perr := capture.Wait()
		if perr != nil && err == nil {
			err = perr
		}
		s.profile = cmds
	}
	if prof != nil {
		cmd, perr := prof.Stop(ctx)
		if perr != nil && err == nil {
			err = perr
		}
		s.profile = strings.Join(filterEmpty(s.profile, cmd), "; ")
	}
	if err != nil {
		return s, err
	}
	h1, err := harness.ReadProcStats(0)
	if err != nil {
		return s, err
	}
	s.elapsed, s.harnessCPU = res.Elapsed, h1.CPU-h0.CPU
	if len(res.Batches) > 0 && res.Batches[0].GetBatchId() == 0 {
		s.firstRecords, s.firstAt = res.Batches[0].GetNumInputRows(), res.BatchAt[0]
	}
	s.phaseMs = map[string]float64{}
	for _, b := range res.Batches {
		for k, v := range b.GetDurationMs() {
			s.phaseMs[k] += float64(v)
		}
	}
	for i, p := range procs {
		u, err := p.Stats()
		if err != nil {
			return s, err
		}
		if p == d.Proc {
			s.driver = u.Sub(before[i])
		} else {
			s.executors = append(s.executors, u.Sub(before[i]))
		}
	}
	m, err := d.Metrics(ctx)
	if err != nil {
		return s, err
	}
	rows, _ := m.Value("sluice_input_rows_total", map[string]string{"job": spec.GetName()})
	batches, _ := m.Value("sluice_batches_total", map[string]string{"job": spec.GetName()})
	s.records, s.batches = int64(rows), int(batches)
	if s.records != want {
		return s, fmt.Errorf("job %s read %d records, the topic holds %d", spec.GetName(), s.records, want)
	}
	return s, nil
}

// throughputRow is a row of the pair b, s; ratios are every pair's, in the
// order they ran (runPairs).
func throughputRow(id, name string, target float64, w *harness.Workload, b baselineRun, s sluiceRun, ratios []float64) harness.Row {
	bRate := float64(w.Records) / b.res.Elapsed.Seconds()
	sRate := float64(w.Records) / s.elapsed.Seconds()
	mbps := func(el time.Duration) float64 { return float64(w.Bytes) / (1 << 20) / el.Seconds() }
	perM := func(cpu time.Duration) float64 { return cpu.Seconds() / float64(w.Records) * 1e6 }
	ratio := sRate / bRate
	execRSS := make([]string, len(s.executors))
	execData := make([]map[string]any, len(s.executors))
	for i, e := range s.executors {
		execRSS[i] = harness.MB(e.PeakRSS)
		execData[i] = map[string]any{"cpuSeconds": e.CPU.Seconds(), "peakRSSBytes": e.PeakRSS}
	}
	var notes string
	if len(ratios) > 1 {
		rs := make([]string, len(ratios))
		for i, r := range ratios {
			rs[i] = fmt.Sprintf("%.2f", r)
		}
		notes = fmt.Sprintf("median of %d pairs, whose ratios were %s in the order they ran; ", len(ratios), strings.Join(rs, ", "))
	}
	notes += fmt.Sprintf("%s vs %.0f MB/s; CPU %.2f vs %.2f s per M records; peak RSS driver %s, executors %s vs %s; %d batches; harness (Kafka, etcd) CPU %.1f vs %.1f s",
		fmt.Sprintf("%.0f MB/s", mbps(s.elapsed)), mbps(b.res.Elapsed), perM(s.cpu()), perM(b.usage.CPU),
		harness.MB(s.driver.PeakRSS), strings.Join(execRSS, "/"), harness.MB(b.usage.PeakRSS), s.batches,
		s.harnessCPU.Seconds(), b.harnessCPU.Seconds())
	if p := phaseSums(s); p != "" {
		notes += "; " + p
	}
	steady := steadyRates(w.Records, b, s)
	if steady != nil {
		notes += fmt.Sprintf("; after the first batch (%d records; the baseline after as many): %s vs %s, %.2f",
			s.firstRecords, harness.Rate(steady["sluice"]), harness.Rate(steady["baseline"]), steady["ratio"])
	}
	if s.profile != "" {
		notes += "; profile: " + s.profile
	}
	return harness.Row{
		ID: id, Name: name,
		Sluice:   fmt.Sprintf("%s in %.1f s", harness.Rate(sRate), s.elapsed.Seconds()),
		Baseline: fmt.Sprintf("%s in %.1f s", harness.Rate(bRate), b.res.Elapsed.Seconds()),
		Ratio:    ratio, RatioNote: "Sluice/baseline",
		Target: fmt.Sprintf("≥ %.2f", target), Met: harness.Bool(ratio >= target),
		Notes: notes,
		Data: map[string]any{
			"records": w.Records, "bytes": w.Bytes, "partitions": w.Partitions,
			"sluice": map[string]any{
				"elapsedSeconds": s.elapsed.Seconds(), "recordsPerSecond": sRate, "mbPerSecond": mbps(s.elapsed),
				"cpuSecondsPerMillion": perM(s.cpu()), "batches": s.batches,
				"driver":    map[string]any{"cpuSeconds": s.driver.CPU.Seconds(), "peakRSSBytes": s.driver.PeakRSS},
				"executors": execData, "harnessCPUSeconds": s.harnessCPU.Seconds(), "profile": s.profile, "phaseMs": s.phaseMs,
			},
			"baseline": map[string]any{
				"elapsedSeconds": b.res.Elapsed.Seconds(), "recordsPerSecond": bRate, "mbPerSecond": mbps(b.res.Elapsed),
				"cpuSecondsPerMillion": perM(b.usage.CPU), "peakRSSBytes": b.usage.PeakRSS, "harnessCPUSeconds": b.harnessCPU.Seconds(),
			},
			"afterFirstBatch": steady,
			"pairRatios":      ratios,
		},
	}
}

// steadyRates are both sides' rates once past their start: the records
// after the job's first batch over the time after it was reported, and the
// baseline's after it had handed on about as many (its mark, the first
// fetch past perTrigger records). They leave out what a run pays once
// (starting clients, compiling the job, the first fetches), which a
// streaming job amortises over hours and a 2-second benchmark does not.
// Nil when either side lacks its mark.
func steadyRates(total int64, b baselineRun, s sluiceRun) map[string]float64 {
	rate := func(first int64, at, elapsed time.Duration) float64 {
		if first <= 0 || first >= total || at <= 0 || at >= elapsed {
			return 0
		}
		return float64(total-first) / (elapsed - at).Seconds()
	}
	sr, br := rate(s.firstRecords, s.firstAt, s.elapsed), rate(b.res.MarkRecords, b.res.MarkElapsed, b.res.Elapsed)
	if sr == 0 || br == 0 {
		return nil
	}
	return map[string]float64{"sluice": sr, "baseline": br, "ratio": sr / br}
}

// phaseSums says where the job's time went: each batch phase summed over
// its batches, and what no batch phase covers (submitting, starting the
// job, the gaps between batches), or "" when no batch reported phases.
func phaseSums(s sluiceRun) string {
	total, ok := s.phaseMs["total"]
	if !ok {
		return ""
	}
	var parts []string
	for _, ph := range phases[:len(phases)-1] {
		if v, ok := s.phaseMs[ph]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", ph, v))
		}
	}
	return fmt.Sprintf("ms in batch phases, summed: %s (total %.0f); outside batches %.0f ms",
		strings.Join(parts, ", "), total, float64(s.elapsed.Milliseconds())-total)
}
