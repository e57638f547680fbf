package scenario

import (
	"strings"
	"testing"

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
