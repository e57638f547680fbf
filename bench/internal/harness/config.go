package harness

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config holds the knobs of a run. Every field is set from a BENCH_*
// environment variable (see Knobs); defaults are the sizes `make bench`
// claims numbers for, smaller values make a quick run.
type Config struct {
	// N is the number of records of the Kafka throughput scenarios (1, 1b,
	// 1c and 2 read the same preloaded topic).
	N int
	// Partitions of the throughput topic.
	Partitions int
	// Batches: the availableNow jobs of scenarios 1, 1b, 1c and 2 read the N
	// records in about this many micro-batches (maxOffsetsPerTrigger =
	// N/Batches), as a streaming job catching up would.
	Batches int
	// Pairs is how many times each Kafka throughput row (1, 1b, 1c, 2) runs
	// its baseline and then its Sluice job; the row reports the pair whose
	// ratio is the median.
	Pairs int
	// Executors and Slots per executor of every Sluice cluster.
	Executors int
	Slots     int
	// Scenarios to run, by id ("1", "1c", "2", ...); empty means all. A
	// number selects every scenario of its group ("1" runs 1, 1b and 1c),
	// an id with its letter only that one (see Wants).
	Scenarios []string
	// OverheadPartitions are the partition counts of scenario 3.
	OverheadPartitions []int
	// OverheadBatches are the batches measured per partition count, after
	// OverheadWarmup batches that are not.
	OverheadBatches int
	OverheadWarmup  int
	// OverheadSQLPartitions are the partition counts scenario 3 measures
	// again with the seed's decode and SQL query (rows 3s…), and
	// OverheadSQLBatches the batches it measures of each: a SQL task costs
	// DuckDB most of a millisecond, so these batches are much longer.
	OverheadSQLPartitions []int
	OverheadSQLBatches    int
	// OverheadMaxTime stops measuring a partition count early (with at
	// least 10 batches measured) so that a slow engine cannot push the run
	// past its budget; the row says how many batches it measured.
	OverheadMaxTime time.Duration
	// MemoryBatches is the length of the driver-memory run of scenario 3.
	MemoryBatches int
	// Probes is how many etcd transactions and gRPC round trips make the
	// scenario 3 baseline.
	Probes int
	// RecoveryBatch is the records per micro-batch of the scenario 5 job.
	RecoveryBatch int
	// StateKeys is the number of distinct keys of the running aggregate of
	// scenario 7: the groups its state ends with.
	StateKeys int
	// StateN is the number of records of scenario 7 (0 in the environment:
	// twice StateKeys, so every key is updated twice).
	StateN int
	// StateBatches: the scenario 7 job reads its records in about this many
	// micro-batches (two state snapshots at snapshotInterval 10).
	StateBatches int
	// KinesisN is the number of records preloaded into the 4-shard stream of
	// scenario 4.
	KinesisN int
	// LeaseTTL, HeartbeatInterval and HeartbeatTimeout are the driver
	// settings of every cluster; scenario 5 prints them beside its figures.
	LeaseTTL          time.Duration
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// Timeout bounds each scenario.
	Timeout time.Duration
	// Results is the directory receiving runs.jsonl and latest.md.
	Results string
	// Profile, when set, is a directory where `perf record` profiles of the
	// Sluice processes of scenarios 1, 2, 3 and 7 are written.
	Profile string
	// Pprof, when set, is a directory where Go CPU profiles (and a short
	// execution trace of the driver) of the Sluice processes of scenario 3
	// are written: the processes serve /debug/pprof/ then.
	Pprof string
	// PprofTime is how long each of those profiles lasts.
	PprofTime time.Duration
	// Keep keeps the work directory (process logs, etcd data) after the run.
	Keep bool
	// Kafka names external brokers; empty runs franz-go's kfake in process.
	Kafka []string
}

// Knob documents one environment variable.
type Knob struct {
	Name, Default, Doc string
}

// Knobs lists every variable Load reads, with its default.
var Knobs = []Knob{
	{"BENCH_N", "2000000", "records of the Kafka throughput scenarios (1, 1b, 1c, 2)"},
	{"BENCH_PARTITIONS", "16", "partitions of the throughput topic"},
	{"BENCH_BATCHES", "8", "micro-batches the availableNow jobs of scenarios 1, 1b, 1c and 2 take (maxOffsetsPerTrigger = N/batches)"},
	{"BENCH_PAIRS", "3", "baseline-then-Sluice pairs each Kafka throughput row (1, 1b, 1c, 2) runs; the row shows the pair of median ratio and lists every pair's ratio"},
	{"BENCH_EXECUTORS", "2", "executor processes per Sluice cluster"},
	{"BENCH_SLOTS", "2", "task slots per executor"},
	{"BENCH_SCENARIOS", "all", "comma-separated scenario ids to run, e.g. 1,3,6 (1 is 1, 1b and 1c; 1c alone is 1c)"},
	{"BENCH_OVERHEAD_PARTITIONS", "16,256,1024,4096", "partition counts of the batch-overhead scenario (3)"},
	{"BENCH_OVERHEAD_BATCHES", "100", "batches measured per partition count in scenario 3"},
	{"BENCH_OVERHEAD_WARMUP", "10", "batches run before scenario 3 starts measuring (readers warm up)"},
	{"BENCH_OVERHEAD_SQL_PARTITIONS", "16,256,1024", "partition counts scenario 3 measures again with the seed's SQL (rows 3s…); 0 for none"},
	{"BENCH_OVERHEAD_SQL_BATCHES", "30", "batches measured per partition count of the SQL rows of scenario 3"},
	{"BENCH_OVERHEAD_MAX_TIME", "2m", "stop measuring one partition count of scenario 3 after this long (at least 10 batches)"},
	{"BENCH_MEMORY_BATCHES", "1000", "batches of the driver-memory run of scenario 3"},
	{"BENCH_PROBES", "200", "etcd transactions and gRPC round trips timed for the scenario 3 baseline"},
	{"BENCH_KINESIS_N", "20000", "records preloaded into the 4-shard kinesis-mock stream of scenario 4"},
	{"BENCH_RECOVERY_BATCH", "40000", "records per micro-batch of the recovery scenario (5)"},
	{"BENCH_STATE_KEYS", "1000000", "distinct keys (groups of the state) of the stateful running aggregate (7)"},
	{"BENCH_STATE_N", "0", "records of scenario 7, each key once before any twice; 0 means twice BENCH_STATE_KEYS"},
	{"BENCH_STATE_BATCHES", "20", "micro-batches the scenario 7 job reads its records in (its state snapshots every 10), at most 100"},
	{"BENCH_LEASE_TTL", "10s", "driver --lease-ttl"},
	{"BENCH_HEARTBEAT_INTERVAL", "2s", "driver --heartbeat-interval"},
	{"BENCH_HEARTBEAT_TIMEOUT", "10s", "driver --heartbeat-timeout"},
	{"BENCH_TIMEOUT", "10m", "upper bound on each scenario"},
	{"BENCH_RESULTS", "bench/results", "directory for runs.jsonl (appended) and latest.md"},
	{"BENCH_PROFILE", "", "directory for perf profiles of the Sluice processes in scenarios 1, 2, 3 and 7 (needs perf)"},
	{"BENCH_PPROF", "", "directory for Go CPU and allocation profiles (pprof) of the driver and executors, and a 2s driver trace, in scenarios 1, 2 (from the submit) and 3 (from the first measured batch)"},
	{"BENCH_PPROF_TIME", "10s", "length of each BENCH_PPROF profile, taken from the first measured batch of each partition count"},
	{"BENCH_KEEP", "0", "1 keeps the work directory (process logs, etcd data)"},
	{"BENCH_KAFKA", "", "bootstrap servers of a real Kafka to use instead of the in-process kfake (topics are created and deleted)"},
}

// Load reads the knobs from the environment. An invalid value is an error
// naming the variable and the reason.
func Load() (Config, error) { return load(os.LookupEnv) }

func load(lookup func(string) (string, bool)) (Config, error) {
	var c Config
	var errs []error
	get := func(name string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		for _, k := range Knobs {
			if k.Name == name {
				return k.Default
			}
		}
		panic("harness: unknown knob " + name)
	}
	intVar := func(name string, min int) int {
		s := get(name)
		v, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s=%q: not an integer", name, s))
		case v < min:
			errs = append(errs, fmt.Errorf("%s=%d: must be at least %d", name, v, min))
		}
		return v
	}
	durVar := func(name string) time.Duration {
		s := get(name)
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s=%q: not a duration like 10s or 500ms", name, s))
		case d <= 0:
			errs = append(errs, fmt.Errorf("%s=%s: must be positive", name, s))
		}
		return d
	}
	c.N = intVar("BENCH_N", 1000)
	c.Partitions = intVar("BENCH_PARTITIONS", 1)
	c.Batches = intVar("BENCH_BATCHES", 1)
	c.Pairs = intVar("BENCH_PAIRS", 1)
	c.Executors = intVar("BENCH_EXECUTORS", 1)
	c.Slots = intVar("BENCH_SLOTS", 1)
	if s := get("BENCH_SCENARIOS"); s != "all" {
		for _, id := range strings.Split(s, ",") {
			if id = strings.TrimSpace(id); id != "" {
				c.Scenarios = append(c.Scenarios, id)
			}
		}
	}
	// partitionCounts parses a comma-separated list of partition counts,
	// sorted; with orNone, "0" alone is the empty list.
	partitionCounts := func(name string, orNone bool) []int {
		v := strings.TrimSpace(get(name))
		if orNone && v == "0" {
			return nil
		}
		var ps []int
		for _, f := range strings.Split(v, ",") {
			p, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || p < 1 {
				hint := ""
				if orNone {
					hint = " (0 alone: none)"
				}
				errs = append(errs, fmt.Errorf("%s: %q is not a positive partition count%s", name, f, hint))
				continue
			}
			ps = append(ps, p)
		}
		slices.Sort(ps)
		return ps
	}
	c.OverheadPartitions = partitionCounts("BENCH_OVERHEAD_PARTITIONS", false)
	c.OverheadSQLPartitions = partitionCounts("BENCH_OVERHEAD_SQL_PARTITIONS", true)
	c.OverheadSQLBatches = intVar("BENCH_OVERHEAD_SQL_BATCHES", 2)
	c.OverheadBatches = intVar("BENCH_OVERHEAD_BATCHES", 2)
	c.OverheadWarmup = intVar("BENCH_OVERHEAD_WARMUP", 0)
	c.OverheadMaxTime = durVar("BENCH_OVERHEAD_MAX_TIME")
	c.MemoryBatches = intVar("BENCH_MEMORY_BATCHES", 40)
	c.Probes = intVar("BENCH_PROBES", 10)
	c.RecoveryBatch = intVar("BENCH_RECOVERY_BATCH", 100)
	c.KinesisN = intVar("BENCH_KINESIS_N", 100)
	c.StateKeys = intVar("BENCH_STATE_KEYS", 100)
	c.StateN = intVar("BENCH_STATE_N", 0)
	c.StateBatches = intVar("BENCH_STATE_BATCHES", 1)
	if c.StateN == 0 {
		c.StateN = 2 * c.StateKeys
	}
	c.LeaseTTL = durVar("BENCH_LEASE_TTL")
	c.HeartbeatInterval = durVar("BENCH_HEARTBEAT_INTERVAL")
	c.HeartbeatTimeout = durVar("BENCH_HEARTBEAT_TIMEOUT")
	c.Timeout = durVar("BENCH_TIMEOUT")
	c.Results = get("BENCH_RESULTS")
	c.Profile = get("BENCH_PROFILE")
	c.Pprof = get("BENCH_PPROF")
	c.PprofTime = durVar("BENCH_PPROF_TIME")
	switch k := get("BENCH_KEEP"); k {
	case "0", "false":
	case "1", "true":
		c.Keep = true
	default:
		errs = append(errs, fmt.Errorf("BENCH_KEEP=%q: must be 0 or 1", k))
	}
	for _, b := range strings.Split(get("BENCH_KAFKA"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Kafka = append(c.Kafka, b)
		}
	}
	// The driver refuses these itself, but only after the harness has
	// built and started everything: say so up front.
	if c.LeaseTTL > 0 && c.LeaseTTL < 2*time.Second {
		errs = append(errs, fmt.Errorf("BENCH_LEASE_TTL=%s: the driver needs at least 2s", c.LeaseTTL))
	}
	if c.HeartbeatInterval > 0 && c.HeartbeatTimeout > 0 && c.HeartbeatTimeout < 3*c.HeartbeatInterval {
		errs = append(errs, fmt.Errorf("BENCH_HEARTBEAT_TIMEOUT=%s: must be at least 3x BENCH_HEARTBEAT_INTERVAL (%s)", c.HeartbeatTimeout, c.HeartbeatInterval))
	}
	if c.StateN < c.StateKeys {
		errs = append(errs, fmt.Errorf("BENCH_STATE_N=%d: must be at least BENCH_STATE_KEYS (%d), so that every key is written", c.StateN, c.StateKeys))
	}
	if c.StateBatches > 100 {
		// The scenario reads the batches back from the driver's recent
		// progress, which keeps the last 100.
		errs = append(errs, fmt.Errorf("BENCH_STATE_BATCHES=%d: at most 100 (the driver keeps the progress of the last 100 batches)", c.StateBatches))
	}
	if c.StateBatches > c.StateN {
		errs = append(errs, fmt.Errorf("BENCH_STATE_BATCHES=%d: must not exceed the records of scenario 7 (%d)", c.StateBatches, c.StateN))
	}
	if c.Batches > c.N {
		errs = append(errs, fmt.Errorf("BENCH_BATCHES=%d: must not exceed BENCH_N (%d)", c.Batches, c.N))
	}
	return c, errors.Join(errs...)
}

// Wants reports whether scenario id is selected: no selection, id itself,
// or its group, the number before a variant letter ("1" selects "1b").
func (c Config) Wants(id string) bool {
	return len(c.Scenarios) == 0 || slices.Contains(c.Scenarios, id) ||
		slices.Contains(c.Scenarios, strings.TrimRight(id, "abcdefghijklmnopqrstuvwxyz"))
}

// Values returns the knobs as set, for the JSON record of a run.
func (c Config) Values() map[string]any {
	scenarios := strings.Join(c.Scenarios, ",")
	if scenarios == "" {
		scenarios = "all"
	}
	join := func(ps []int) string {
		if len(ps) == 0 {
			return "0"
		}
		parts := make([]string, len(ps))
		for i, p := range ps {
			parts[i] = strconv.Itoa(p)
		}
		return strings.Join(parts, ",")
	}
	kafka := strings.Join(c.Kafka, ",")
	if kafka == "" {
		kafka = "kfake"
	}
	return map[string]any{
		"BENCH_N": c.N, "BENCH_PARTITIONS": c.Partitions, "BENCH_BATCHES": c.Batches,
		"BENCH_EXECUTORS": c.Executors, "BENCH_SLOTS": c.Slots, "BENCH_SCENARIOS": scenarios, "BENCH_KAFKA": kafka,
		"BENCH_OVERHEAD_PARTITIONS": join(c.OverheadPartitions), "BENCH_OVERHEAD_BATCHES": c.OverheadBatches,
		"BENCH_OVERHEAD_SQL_PARTITIONS": join(c.OverheadSQLPartitions), "BENCH_OVERHEAD_SQL_BATCHES": c.OverheadSQLBatches,
		"BENCH_OVERHEAD_WARMUP": c.OverheadWarmup, "BENCH_OVERHEAD_MAX_TIME": c.OverheadMaxTime.String(), "BENCH_MEMORY_BATCHES": c.MemoryBatches, "BENCH_PROBES": c.Probes,
		"BENCH_RECOVERY_BATCH": c.RecoveryBatch, "BENCH_KINESIS_N": c.KinesisN,
		"BENCH_STATE_KEYS": c.StateKeys, "BENCH_STATE_N": c.StateN, "BENCH_STATE_BATCHES": c.StateBatches, "BENCH_LEASE_TTL": c.LeaseTTL.String(),
		"BENCH_HEARTBEAT_INTERVAL": c.HeartbeatInterval.String(), "BENCH_HEARTBEAT_TIMEOUT": c.HeartbeatTimeout.String(),
	}
}
