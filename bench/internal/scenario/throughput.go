package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bench/internal/baseline"
	"github.com/sluicehq/sluice/bench/internal/harness"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Scenarios 1 and 2: the same preloaded topic (BENCH_N transactions over
// BENCH_PARTITIONS partitions) read by a raw franz-go program and by a
// Sluice cluster (one driver, BENCH_EXECUTORS executors) running an
// availableNow job, one after the other on the same broker.

// runAggregateThroughput is scenario 1: decode JSON and sum amount by
// (branch, currency), against the same work done by hand.
func runAggregateThroughput(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	k, w, err := env.ThroughputTopic(ctx)
	if err != nil {
		return err
	}
	base, err := runBaseline(ctx, env, "baseline-aggregate", "aggregate", "--brokers", strings.Join(k.Brokers, ","), "--topic", w.Topic)
	if err != nil {
		return err
	}
	if err := checkBaseline(base.res, w); err != nil {
		return err
	}
	for g, want := range w.Groups {
		if got := base.res.Groups[g]; got != (baseline.Group{Sum: want.Sum, Count: want.Count}) {
			return fmt.Errorf("baseline computed %s = %+v, the workload holds %+v", g, got, want)
		}
	}

	name := "agg-" + env.Run
	spec := &sluicev1.JobSpec{
		Name:   name,
		Source: kafkaSource(k.Brokers, w.Topic, perTrigger(env.Cfg)),
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json"}}},
			{Kind: &sluicev1.Transform_Aggregate{Aggregate: &sluicev1.Aggregate{
				GroupBy: []string{"branch", "currency"},
				Aggregations: []*sluicev1.Aggregation{
					{Fn: "sum", Field: "amount", As: "total"},
					{Fn: "count", As: "n"},
				},
			}}},
		},
		Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}},
	}
	s, err := runSluice(ctx, env, "s1", spec, w.Records)
	if err != nil {
		return err
	}
	return rep.Add(throughputRow("1", "Kafka decode + aggregate", 0.85, w, base, s))
}

// runPassThrough is scenario 2: copy every record to another topic without
// decoding, against a raw consume-and-produce loop.
func runPassThrough(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	k, w, err := env.ThroughputTopic(ctx)
	if err != nil {
		return err
	}
	baseOut, sluiceOut := env.Topic("copy-baseline"), env.Topic("copy-sluice")
	for _, t := range []string{baseOut, sluiceOut} {
		if err := k.CreateTopic(ctx, t, env.Cfg.Partitions); err != nil {
			return err
		}
		defer k.DeleteTopic(context.WithoutCancel(ctx), t)
	}
	base, err := runBaseline(ctx, env, "baseline-copy", "copy", "--brokers", strings.Join(k.Brokers, ","), "--topic", w.Topic, "--out", baseOut)
	if err != nil {
		return err
	}
	if err := checkBaseline(base.res, w); err != nil {
		return err
	}
	if n, err := k.Records(ctx, baseOut); err != nil || n != w.Records {
		return fmt.Errorf("baseline copy: %s holds %d records, want %d (%v)", baseOut, n, w.Records, err)
	}
	// Free the baseline's copy before Sluice runs, so both find the broker
	// holding the same data.
	if err := k.DeleteTopic(ctx, baseOut); err != nil {
		return err
	}

	name := "copy-" + env.Run
	spec := &sluicev1.JobSpec{
		Name:   name,
		Source: kafkaSource(k.Brokers, w.Topic, perTrigger(env.Cfg)),
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Kafka{Kafka: &sluicev1.KafkaSink{
			BootstrapServers: strings.Join(k.Brokers, ","), Topic: sluiceOut, Key: "key", Value: "value",
		}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}},
	}
	s, err := runSluice(ctx, env, "s2", spec, w.Records)
	if err != nil {
		return err
	}
	if n, err := k.Records(ctx, sluiceOut); err != nil || n < w.Records {
		return fmt.Errorf("sluice copy: %s holds %d records, want %d (%v)", sluiceOut, n, w.Records, err)
	}
	// The copy must be the records themselves, not a re-encoding of them.
	sample, err := k.Sample(ctx, sluiceOut, 100)
	if err != nil {
		return err
	}
	for _, v := range sample {
		var t struct {
			ID       int64  `json:"id"`
			Branch   string `json:"branch"`
			Currency string `json:"currency"`
		}
		if err := json.Unmarshal(v, &t); err != nil || t.ID == 0 || t.Branch == "" || t.Currency == "" || v[0] != '{' {
			return fmt.Errorf("sluice copy: %s holds %q, not a copied transaction (%v)", sluiceOut, v, err)
		}
	}
	return rep.Add(throughputRow("2", "Kafka → Kafka pass-through", 0.8, w, base, s))
}

func kafkaSource(brokers []string, topic string, perTrigger int64) *sluicev1.Source {
	return &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
		BootstrapServers: strings.Join(brokers, ","), Subscribe: []string{topic}, StartingOffsets: "earliest",
		MaxOffsetsPerTrigger: perTrigger,
	}}}
}

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
	c, err := env.StartCluster(ctx, dir, 1)
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
	res, err := harness.RunJob(ctx, d, spec)
	if prof != nil {
		cmd, perr := prof.Stop(ctx)
		if perr != nil && err == nil {
			err = perr
		}
		s.profile = cmd
	}
	if err != nil {
		return s, err
	}
	h1, err := harness.ReadProcStats(0)
	if err != nil {
		return s, err
	}
	s.elapsed, s.harnessCPU = res.Elapsed, h1.CPU-h0.CPU
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

func throughputRow(id, name string, target float64, w *harness.Workload, b baselineRun, s sluiceRun) harness.Row {
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
	notes := fmt.Sprintf("%s vs %.0f MB/s; CPU %.2f vs %.2f s per M records; peak RSS driver %s, executors %s vs %s; %d batches; harness (Kafka, etcd) CPU %.1f vs %.1f s",
		fmt.Sprintf("%.0f MB/s", mbps(s.elapsed)), mbps(b.res.Elapsed), perM(s.cpu()), perM(b.usage.CPU),
		harness.MB(s.driver.PeakRSS), strings.Join(execRSS, "/"), harness.MB(b.usage.PeakRSS), s.batches,
		s.harnessCPU.Seconds(), b.harnessCPU.Seconds())
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
				"executors": execData, "harnessCPUSeconds": s.harnessCPU.Seconds(), "profile": s.profile,
			},
			"baseline": map[string]any{
				"elapsedSeconds": b.res.Elapsed.Seconds(), "recordsPerSecond": bRate, "mbPerSecond": mbps(b.res.Elapsed),
				"cpuSecondsPerMillion": perM(b.usage.CPU), "peakRSSBytes": b.usage.PeakRSS, "harnessCPUSeconds": b.harnessCPU.Seconds(),
			},
		},
	}
}
