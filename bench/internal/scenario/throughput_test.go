package scenario

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bench/internal/harness"
)

func TestAggregateChecks(t *testing.T) {
	w := &harness.Workload{Records: 5, Groups: map[string]harness.Group{
		"SPB/RUB": {Sum: 30, Count: 3}, "Kazan/USD": {Sum: -4, Count: 2},
	}}
	// Two batches, as file.ReadAll returns them: DuckDB's sum of BIGINT is a
	// HUGEINT, which may come back as a float64 or a string.
	rows := []map[string]any{
		{"branch_name": "SPB", "currency_code": "RUB", "batch_value": int64(10), "n": int64(1)},
		{"branch_name": "Kazan", "currency_code": "USD", "batch_value": "-4", "n": int64(2)},
		{"branch_name": "SPB", "currency_code": "RUB", "batch_value": 20.0, "n": int64(2)},
	}
	check := groupCheck("branch_name", "currency_code", "batch_value", "n")
	if err := check(rows, w); err != nil {
		t.Errorf("right totals: %v", err)
	}
	for _, tt := range []struct {
		name string
		rows []map[string]any
		want string
	}{
		{"a batch missing", rows[:2], "SPB/RUB sums to {Sum:10 Count:1}"},
		{"a group missing", []map[string]any{rows[0], rows[2]}, "1 groups over 2 rows, the workload has 2"},
		{"not a number", append([]map[string]any{{"branch_name": "SPB", "currency_code": "RUB", "batch_value": 1.5, "n": int64(1)}}, rows...), "row 0"},
	} {
		if err := check(tt.rows, w); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}

	count := countCheck("n")
	if err := count([]map[string]any{{"n": int64(3)}, {"n": int64(2)}, {"n": int64(0)}}, w); err != nil {
		t.Errorf("right count: %v", err)
	}
	if err := count([]map[string]any{{"n": int64(3)}}, w); err == nil || !strings.Contains(err.Error(), "counted 3 records over 1 rows, the topic holds 5") {
		t.Errorf("short count: %v", err)
	}
}

// TestRunPairs: the row is the pair of median ratio (the lower middle one
// of an even count), the ratios are listed in the order the pairs ran, and
// a pair that fails stops the row.
func TestRunPairs(t *testing.T) {
	// Each pair's baseline takes 1s; Sluice the given seconds, so the
	// ratios are their inverses.
	runOf := func(sluiceSeconds ...float64) func(int) (baselineRun, sluiceRun, error) {
		return func(pair int) (baselineRun, sluiceRun, error) {
			var b baselineRun
			b.res.Elapsed = time.Second
			return b, sluiceRun{elapsed: time.Duration(sluiceSeconds[pair-1] * float64(time.Second)), batches: pair}, nil
		}
	}
	for _, tc := range []struct {
		name      string
		seconds   []float64
		wantPair  int
		wantRatio []float64
	}{
		{"one", []float64{2}, 1, []float64{0.5}},
		{"odd", []float64{1, 4, 2}, 3, []float64{1, 0.25, 0.5}},
		{"even: the lower middle", []float64{1, 2, 4, 0.5}, 2, []float64{1, 0.5, 0.25, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, s, ratios, err := runPairs(len(tc.seconds), runOf(tc.seconds...))
			if err != nil {
				t.Fatal(err)
			}
			if s.batches != tc.wantPair || !slices.Equal(ratios, tc.wantRatio) {
				t.Errorf("got pair %d, ratios %v; want pair %d, ratios %v", s.batches, ratios, tc.wantPair, tc.wantRatio)
			}
		})
	}

	ran := 0
	_, _, _, err := runPairs(3, func(pair int) (baselineRun, sluiceRun, error) {
		ran++
		if pair == 2 {
			return baselineRun{}, sluiceRun{}, errors.New("job failed")
		}
		return baselineRun{}, sluiceRun{elapsed: time.Second}, nil
	})
	if err == nil || ran != 2 {
		t.Errorf("a failing pair: err %v after %d pairs, want the error after 2", err, ran)
	}
}

func TestPairDir(t *testing.T) {
	if got := pairDir("s1", 1); got != "s1" {
		t.Errorf("first pair: %q", got)
	}
	if got := pairDir("s1", 3); got != "s1-3" {
		t.Errorf("third pair: %q", got)
	}
}
