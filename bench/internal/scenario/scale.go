package scenario

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/bench/internal/harness"
)

// Scenario 6: the scheduler's cost per batch with no I/O, from the Go
// benchmarks of pkg/scheduler (bench_scale_test.go): Assign alone, and a
// whole batch driven the way internal/driver's batch loop drives it, at
// 1,250 to 10,000 partitions with one executor per 20 partitions. Linear
// growth keeps ns/partition flat; the growth exponent between the smallest
// and the largest size says how far from linear it is.

// benchResult is one line of `go test -bench` output.
type benchResult struct {
	name    string
	n       int
	metrics map[string]float64 // "ns/op", "B/op", "allocs/op", "ns/partition"
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.+)$`)

// parseBench reads the result lines of `go test -bench` output.
func parseBench(out []byte) ([]benchResult, error) {
	var rs []benchResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		r := benchResult{name: m[1], n: n, metrics: map[string]float64{}}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark %s: value %q: %w", r.name, f[i], err)
			}
			r.metrics[f[i+1]] = v
		}
		if _, ok := r.metrics["ns/op"]; !ok {
			return nil, fmt.Errorf("benchmark %s: no ns/op in %q", r.name, m[3])
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

var sizeRe = regexp.MustCompile(`partitions=(\d+)/executors=(\d+)`)

func runSchedulerScale(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	cmd := harness.GoTest(ctx, env.Root, 5*time.Second, nil, "-run", "^$", "-count", "1", "-benchmem",
		"-bench", "^(BenchmarkAssign10kPartitions500Executors|BenchmarkAssignScale|BenchmarkBatchScale)$", "./pkg/scheduler/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench ./pkg/scheduler/: %w\n%s", err, out)
	}
	rs, err := parseBench(out)
	if err != nil {
		return err
	}
	var single *benchResult
	series := map[string][]benchResult{}
	for i, r := range rs {
		if r.name == "BenchmarkAssign10kPartitions500Executors" {
			single = &rs[i]
			continue
		}
		base, _, _ := strings.Cut(r.name, "/")
		series[base] = append(series[base], r)
	}
	for i, s := range []struct{ bench, name, what string }{
		{"BenchmarkAssignScale", "scheduler Assign", "Assign of every task of a batch"},
		{"BenchmarkBatchScale", "scheduler batch lifecycle", "NewBatch, then per result Expire/Ready/Assign/Started/NextWake/Succeeded, as the driver's loop calls them"},
	} {
		row, err := scaleRow(fmt.Sprintf("6%c", 'a'+i), s.name, s.what, series[s.bench])
		if err != nil {
			return fmt.Errorf("%s: %w", s.bench, err)
		}
		if i == 0 && single != nil {
			row.Notes += fmt.Sprintf("; existing BenchmarkAssign10kPartitions500Executors: %s, %.0f allocs/op",
				harness.Ms(single.metrics["ns/op"]/1e6), single.metrics["allocs/op"])
			row.Data["assign10k500"] = single.metrics
		}
		if err := rep.Add(row); err != nil {
			return err
		}
	}
	return nil
}

func scaleRow(id, name, what string, rs []benchResult) (harness.Row, error) {
	type point struct {
		partitions, executors int
		r                     benchResult
	}
	var pts []point
	for _, r := range rs {
		m := sizeRe.FindStringSubmatch(r.name)
		if m == nil {
			return harness.Row{}, fmt.Errorf("no size in benchmark name %s", r.name)
		}
		p, _ := strconv.Atoi(m[1])
		e, _ := strconv.Atoi(m[2])
		pts = append(pts, point{p, e, r})
	}
	if len(pts) < 2 {
		return harness.Row{}, fmt.Errorf("need at least two sizes, got %d", len(pts))
	}
	first, last := pts[0], pts[len(pts)-1]
	k := harness.GrowthExponent(float64(first.partitions), first.r.metrics["ns/op"], float64(last.partitions), last.r.metrics["ns/op"])
	var per []string
	data := map[string]any{"what": what, "growthExponent": k}
	var sizes []map[string]any
	for _, p := range pts {
		per = append(per, fmt.Sprintf("%d: %.0f ns", p.partitions, p.r.metrics["ns/op"]/float64(p.partitions)))
		sizes = append(sizes, map[string]any{"partitions": p.partitions, "executors": p.executors, "metrics": p.r.metrics})
	}
	data["sizes"] = sizes
	// Timer noise alone moves the exponent by a few hundredths.
	const tolerance = 1.1
	return harness.Row{
		ID: id, Name: name,
		Sluice: fmt.Sprintf("%s per batch, %.0f allocs at %d partitions/%d executors",
			harness.Ms(last.r.metrics["ns/op"]/1e6), last.r.metrics["allocs/op"], last.partitions, last.executors),
		Baseline: fmt.Sprintf("%s per batch at %d partitions", harness.Ms(first.r.metrics["ns/op"]/1e6), first.partitions),
		Ratio:    k, RatioNote: "growth exponent",
		Target: fmt.Sprintf("linear (exponent ≤ %.1f)", tolerance), Met: harness.Bool(!math.IsNaN(k) && k <= tolerance),
		Notes: fmt.Sprintf("%s; per partition: %s", what, strings.Join(per, ", ")),
		Data:  data,
	}, nil
}
