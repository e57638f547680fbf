package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/bench/internal/harness"
	"github.com/sluicehq/sluice/bench/internal/kinesisbench"
)

// runKinesisPolling is scenario 4: kinesis-mock with 4 shards preloaded
// with BENCH_KINESIS_N transactions, read from TRIM_HORIZON by a raw
// GetRecords loop (one goroutine per shard) and by an availableNow Sluice
// job with polling. Both run without a minimum period between calls and at
// the same per-shard rate cap (Sluice's ceiling, 2 MB/s; it has no switch
// to lift it). The measurement itself is kinesisbench's test, because the
// emulator launcher is test-only (see package kinesisbench).
func runKinesisPolling(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	out := filepath.Join(env.Dir, "kinesis-result.json")
	// The test stops its clusters and the emulator on SIGTERM; the grace
	// covers that.
	cmd := harness.GoTest(ctx, env.Root, 30*time.Second, []string{
		kinesisbench.EnvOut + "=" + out,
		kinesisbench.EnvBins + "=" + filepath.Dir(env.Bins.Driver),
		kinesisbench.EnvSelf + "=" + env.Self,
	}, "-count=1", "-timeout", env.Cfg.Timeout.String(), "-run", "^TestKinesisPolling$", "./bench/internal/kinesisbench/")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test ./bench/internal/kinesisbench: %w\n%s", err, tail(b, 3000))
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("kinesis result: %w", err)
	}
	var r kinesisbench.Result
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("kinesis result %s: %w", data, err)
	}
	rate := func(d time.Duration) float64 { return float64(r.Records) / d.Seconds() }
	perM := func(cpu time.Duration) float64 { return cpu.Seconds() / float64(r.Records) * 1e6 }
	ratio := rate(r.Sluice.Elapsed) / rate(r.Baseline.Elapsed)
	return rep.Add(harness.Row{
		ID: "4", Name: fmt.Sprintf("Kinesis polling, %d shards", kinesisbench.Shards),
		Sluice:   fmt.Sprintf("%s in %.1f s", harness.Rate(rate(r.Sluice.Elapsed)), r.Sluice.Elapsed.Seconds()),
		Baseline: fmt.Sprintf("%s in %.1f s", harness.Rate(rate(r.Baseline.Elapsed)), r.Baseline.Elapsed.Seconds()),
		Ratio:    ratio, RatioNote: "Sluice/baseline",
		Target: "≥ 0.90", Met: harness.Bool(ratio >= 0.9),
		Notes: fmt.Sprintf("%d records of kinesis-mock (preloaded in %.1f s); both at %.0f MB/s per shard, no minimum fetch period; CPU %.2f vs %.2f s per M records; peak RSS driver %s, executor %s vs %s; %d batches",
			r.Records, r.Preload.Seconds(), kinesisbench.MaxFetchRate, perM(r.Sluice.CPU), perM(r.Baseline.CPU),
			harness.MB(r.Sluice.DriverRSS), harness.MB(r.Sluice.PeakRSS), harness.MB(r.Baseline.PeakRSS), r.Batches),
		Data: map[string]any{"result": r, "ratio": ratio},
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
