package harness

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr []string
	}{
		{name: "defaults", env: nil, check: func(t *testing.T, c Config) {
			if c.N != 2_000_000 || c.Partitions != 16 || c.Pairs != 3 || c.Executors != 2 || c.LeaseTTL != 10*time.Second ||
				c.StateKeys != 1_000_000 || c.StateN != 2_000_000 || c.StateBatches != 20 ||
				!cmp.Equal(c.OverheadPartitions, []int{16, 256, 1024, 4096}) ||
				!cmp.Equal(c.OverheadSQLPartitions, []int{16, 256, 1024}) || c.OverheadSQLBatches != 30 || c.Pprof != "" || c.PprofTime != 10*time.Second || len(c.Scenarios) != 0 || c.Keep {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "quick run", env: map[string]string{"BENCH_N": "200_000", "BENCH_SCENARIOS": "1, 3", "BENCH_OVERHEAD_PARTITIONS": "256,16", "BENCH_KEEP": "1"},
			check: func(t *testing.T, c Config) {
				if c.N != 200000 || !cmp.Equal(c.Scenarios, []string{"1", "3"}) || !cmp.Equal(c.OverheadPartitions, []int{16, 256}) || !c.Keep {
					t.Errorf("quick run: %+v", c)
				}
				if !c.Wants("3") || c.Wants("2") || !c.Wants("1b") || !c.Wants("1c") {
					t.Errorf("Wants: %v", c.Scenarios)
				}
			}},
		{name: "no SQL overhead rows", env: map[string]string{"BENCH_OVERHEAD_SQL_PARTITIONS": "0"},
			check: func(t *testing.T, c Config) {
				if len(c.OverheadSQLPartitions) != 0 || c.Values()["BENCH_OVERHEAD_SQL_PARTITIONS"] != "0" {
					t.Errorf("SQL partitions %v, shown as %v", c.OverheadSQLPartitions, c.Values()["BENCH_OVERHEAD_SQL_PARTITIONS"])
				}
			}},
		{name: "one variant", env: map[string]string{"BENCH_SCENARIOS": "1c,2"},
			check: func(t *testing.T, c Config) {
				if !c.Wants("1c") || c.Wants("1") || c.Wants("1b") || !c.Wants("2") || c.Wants("3") {
					t.Errorf("Wants: %v", c.Scenarios)
				}
			}},
		{name: "bad values name the variable", env: map[string]string{"BENCH_N": "lots", "BENCH_LEASE_TTL": "1s", "BENCH_OVERHEAD_PARTITIONS": "16,x", "BENCH_KEEP": "yes",
			"BENCH_OVERHEAD_SQL_PARTITIONS": "16,0"},
			wantErr: []string{`BENCH_N="lots": not an integer`, "BENCH_LEASE_TTL=1s: the driver needs at least 2s", `BENCH_OVERHEAD_PARTITIONS: "x"`, `BENCH_KEEP="yes"`,
				`BENCH_OVERHEAD_SQL_PARTITIONS: "0" is not a positive partition count`}},
		{name: "heartbeat ratio", env: map[string]string{"BENCH_HEARTBEAT_INTERVAL": "1s", "BENCH_HEARTBEAT_TIMEOUT": "2s"},
			wantErr: []string{"BENCH_HEARTBEAT_TIMEOUT=2s: must be at least 3x BENCH_HEARTBEAT_INTERVAL (1s)"}},
		{name: "state records default to twice the keys", env: map[string]string{"BENCH_STATE_KEYS": "1000"},
			check: func(t *testing.T, c Config) {
				if c.StateKeys != 1000 || c.StateN != 2000 || c.StateBatches != 20 {
					t.Errorf("state knobs: keys %d, records %d, batches %d", c.StateKeys, c.StateN, c.StateBatches)
				}
			}},
		{name: "fewer state records than keys", env: map[string]string{"BENCH_STATE_KEYS": "1000", "BENCH_STATE_N": "999"},
			wantErr: []string{"BENCH_STATE_N=999: must be at least BENCH_STATE_KEYS (1000)"}},
		{name: "too small", env: map[string]string{"BENCH_N": "10", "BENCH_TIMEOUT": "-1s", "BENCH_PAIRS": "0"},
			wantErr: []string{"BENCH_N=10: must be at least 1000", "BENCH_TIMEOUT=-1s: must be positive", "BENCH_PAIRS=0: must be at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	// The command name may contain spaces and parentheses.
	stat := []byte("4242 (exe (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 123 456 789")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 3.25s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("short stat line accepted")
	}
	status := []byte("Name:\tdriver\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads:\t9\n")
	rss, hwm, err := parseStatusMem(status)
	if err != nil || rss != 1<<20 || hwm != 2<<20 {
		t.Errorf("parseStatusMem = %d, %d, %v", rss, hwm, err)
	}
	if _, _, err := parseStatusMem([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("status without VmRSS accepted")
	}
}

func TestReadProcStatsSelf(t *testing.T) {
	u, err := ReadProcStats(0)
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 || u.PeakRSS < u.RSS {
		t.Errorf("self: %+v", u)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP sluice_input_rows_total Records read.
# TYPE sluice_input_rows_total counter
sluice_input_rows_total{job="a"} 1200
sluice_input_rows_total{job="b,\"c\""} 7
go_memstats_heap_inuse_bytes 8.388608e+06
sluice_batch_phase_seconds_bucket{job="a",phase="plan",le="0.001"} 3 1700000000000
`
	m, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sluice_input_rows_total", map[string]string{"job": "a"}, 1200},
		{"sluice_input_rows_total", map[string]string{"job": `b,"c"`}, 7},
		{"go_memstats_heap_inuse_bytes", nil, 8388608},
		{"sluice_batch_phase_seconds_bucket", map[string]string{"phase": "plan", "le": "0.001"}, 3},
	} {
		if v, ok := m.Value(c.name, c.labels); !ok || v != c.want {
			t.Errorf("%s%v = %v, %v; want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := m.Value("sluice_input_rows_total", map[string]string{"job": "z"}); ok {
		t.Error("found a series that is not there")
	}
	if _, err := ParseMetrics(strings.NewReader(`x{job="a} 1`)); err == nil {
		t.Error("unterminated label accepted")
	}
}

func TestStats(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {99, 10}, {10, 1}, {0, 1}, {100, 10}} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("percentile of nothing is not NaN")
	}
	if k := GrowthExponent(16, 1, 64, 4); math.Abs(k-1) > 1e-9 {
		t.Errorf("linear growth exponent %v", k)
	}
	if k := GrowthExponent(10, 1, 100, 100); math.Abs(k-2) > 1e-9 {
		t.Errorf("quadratic growth exponent %v", k)
	}
	if s := Slope([]float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}); math.Abs(s-2) > 1e-9 {
		t.Errorf("slope %v", s)
	}
}

func TestTransactions(t *testing.T) {
	a, b := NewTransactions(7), NewTransactions(7)
	var total int
	for i := range 1000 {
		v1, g1, amt1 := a.Next(nil)
		v2, _, _ := b.Next(nil)
		if string(v1) != string(v2) {
			t.Fatalf("record %d differs between runs with the same seed", i)
		}
		var rec struct {
			ID       int64
			Branch   string
			Currency string
			Amount   int64
			Account  string
		}
		if err := json.Unmarshal(v1, &rec); err != nil {
			t.Fatalf("record %d is not JSON: %v: %s", i, err, v1)
		}
		if rec.Branch+"/"+rec.Currency != g1 || rec.Amount != amt1 || rec.ID != int64(i+1) || len(rec.Account) != 20 {
			t.Fatalf("record %d: %s vs group %s amount %d", i, v1, g1, amt1)
		}
		total += len(v1)
	}
	if avg := total / 1000; avg < 110 || avg > 135 {
		t.Errorf("average record size %d bytes, want about 120", avg)
	}
}

func TestRowMarkdown(t *testing.T) {
	r := Row{ID: "1", Name: "x|y", Sluice: "1 rec/s", Baseline: "2 rec/s", Ratio: 0.5, RatioNote: "Sluice/baseline", Target: "≥ 0.85", Met: Bool(false), Notes: "a\nb"}
	want := "| 1 | x/y | 1 rec/s | 2 rec/s | 0.50 (Sluice/baseline) | ≥ 0.85 | **missed** | a b |"
	if got := r.markdown(); got != want {
		t.Errorf("markdown:\n got %s\nwant %s", got, want)
	}
	e := Row{ID: "2", Name: "n", Ratio: math.NaN(), Err: "boom"}
	if got := e.markdown(); !strings.Contains(got, "| — |") || !strings.Contains(got, "| error | could not measure: boom |") {
		t.Errorf("error row: %s", got)
	}
}
