package harness

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReportNaN pins a bug: a row whose Data held a NaN (the median of an
// empty window when the driver-memory run took few samples) could not be
// encoded, and Add failed, losing the row. NaN and infinities are now null.
func TestReportNaN(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	r, err := NewReport(&out, dir, Machine{}, nil, "make bench")
	if err != nil {
		t.Fatal(err)
	}
	row := Row{ID: "3m", Name: "memory", Ratio: math.NaN(), Data: map[string]any{
		"growth": math.NaN(), "slope": math.Inf(1), "samples": []float64{1, math.NaN()},
		"phases": map[string][2]float64{"plan": {math.NaN(), 2}}, "n": 3, "none": map[string]any(nil),
	}}
	if err := r.Add(row); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "runs.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Ratio *float64       `json:"ratio"`
		Data  map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	want := map[string]any{
		"growth": nil, "slope": nil, "samples": []any{1.0, nil},
		"phases": map[string]any{"plan": []any{nil, 2.0}}, "n": 3.0, "none": nil,
	}
	if rec.Ratio != nil || !cmp.Equal(rec.Data, want) {
		t.Errorf("ratio %v, data %s", rec.Ratio, cmp.Diff(want, rec.Data))
	}
}
