package scenario

import (
	"math"
	"strings"
	"testing"
)

// TestMemoryRowFewSamples pins a bug: with few samples of the driver's
// memory (a short BENCH_MEMORY_BATCHES run, or missed watch events), a window
// had no median, and the row printed NaN, a garbage size from int64(NaN),
// and "missed" for a target it could not judge.
func TestMemoryRowFewSamples(t *testing.T) {
	m := &memoryResult{batches: []float64{0, 10}, rss: []float64{50 << 20, 51 << 20}, heap: []float64{10 << 20, 10 << 20}, batchesRun: 40}
	m.summarise()
	row := memoryRow(16, m)
	if row.Met != nil {
		t.Errorf("Met = %v, want unjudged", *row.Met)
	}
	if !math.IsNaN(row.Ratio) {
		t.Errorf("ratio %v, want NaN (none)", row.Ratio)
	}
	for _, bad := range []string{"NaN", "-8796093022208"} {
		if strings.Contains(row.Sluice, bad) || strings.Contains(row.Notes, bad) {
			t.Errorf("row shows %s: %s; %s", bad, row.Sluice, row.Notes)
		}
	}
	if !strings.Contains(row.Sluice, "n/a") || !strings.Contains(row.Notes, "raise BENCH_MEMORY_BATCHES") {
		t.Errorf("row does not say it could not compare: %s; %s", row.Sluice, row.Notes)
	}
	if memoryEvery(40) != 1 || memoryEvery(1000) != 10 {
		t.Errorf("memoryEvery(40) = %d, memoryEvery(1000) = %d", memoryEvery(40), memoryEvery(1000))
	}
}

func TestOverheadVerdict(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name          string
		p, ref        int
		p50, p99, k   float64
		want          *bool
		targetContain string
	}{
		{name: "16 within", p: 16, ref: 16, p50: 4, p99: 10, k: nan, want: ptr(true), targetContain: "p50 ≤ 5.0 ms"},
		{name: "16 too slow", p: 16, ref: 16, p50: 8, p99: 10, k: nan, want: ptr(false)},
		{name: "16 tail too long", p: 16, ref: 16, p50: 4, p99: 13, k: nan, want: ptr(false)},
		{name: "1024 within", p: 1024, ref: 16, p50: 55, p99: 100, k: 0.6, want: ptr(true), targetContain: "exponent ≤ 1 from P=16"},
		{name: "1024 too slow", p: 1024, ref: 16, p50: 199, p99: 341, k: 0.79, want: ptr(false)},
		{name: "4096 superlinear", p: 4096, ref: 16, p50: 240, p99: 300, k: 1.1, want: ptr(false), targetContain: "p50 ≤ 250 ms"},
		{name: "256 no bound, linear", p: 256, ref: 16, p50: 54, p99: 100, k: 0.7, want: ptr(true)},
		{name: "nothing measured", p: 256, ref: 16, p50: nan, p99: nan, k: nan, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, met := overheadVerdict(tc.p, tc.ref, tc.p50, tc.p99, tc.k)
			if (met == nil) != (tc.want == nil) || (met != nil && *met != *tc.want) {
				t.Errorf("met = %v, want %v (target %q)", deref(met), deref(tc.want), target)
			}
			if !strings.Contains(target, tc.targetContain) {
				t.Errorf("target %q does not say %q", target, tc.targetContain)
			}
		})
	}
}

func ptr(b bool) *bool { return &b }

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

func TestSQLOverheadRow(t *testing.T) {
	result := func(p int, p50 float64) overheadResult {
		return overheadResult{partitions: p, batches: 30, tasks: float64(p), etcdTxn: 0.3, grpcRTT: 0.1,
			phase: map[string][2]float64{"total": {p50, 2 * p50}, "execute": {p50 - 2, 2 * p50}}}
	}
	plain := []overheadResult{result(16, 4), result(256, 9)}
	tests := []struct {
		name      string
		j         int
		wantRatio float64
		want      []string
	}{
		{"against the run without SQL", 1, 230.0 / 9, []string{"without transforms (row 3b)", "p50 230 ms, p99 460 ms per batch (p50 0.9 ms per task)"}},
		{"no such run", -1, 230 / 0.7, []string{"→ unit 0.7 ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			row := sqlOverheadRow(1, result(256, 230), plain, tc.j)
			if row.ID != "3sb" || row.Met != nil {
				t.Errorf("ID %s, met %v: want 3sb, unjudged", row.ID, deref(row.Met))
			}
			if math.Abs(row.Ratio-tc.wantRatio) > 1e-9 {
				t.Errorf("ratio %v, want %v", row.Ratio, tc.wantRatio)
			}
			text := row.Sluice + " | " + row.Baseline + " | " + row.Notes
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("row %q does not say %q", text, w)
				}
			}
		})
	}
}
