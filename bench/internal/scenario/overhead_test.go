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
