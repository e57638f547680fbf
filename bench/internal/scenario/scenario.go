// Package scenario holds the benchmark scenarios (docs/performance.md), one file each.
// A scenario measures Sluice and, in the same run, the baseline it is
// compared with, and adds one or more rows to the report. It returns an
// error only when it could not measure; a missed target is a row, not an
// error.
//
// Adding a scenario is one more file with a func(ctx, env, report) error
// and one line in All. A variant of a scenario that is measured on its own
// (1b, 1c beside 1) is its own entry with the group's number and a letter:
// BENCH_SCENARIOS=1 then runs the whole group, BENCH_SCENARIOS=1c only it.
//
// The rows and their targets:
//
//	1   Kafka decode + aggregate (SQL)        Sluice/baseline ≥ 2.5
//	1b  Kafka decode + aggregate (shorthand steps)  Sluice/baseline ≥ 0.85
//	1c  count-only pass                       Sluice/baseline ≥ 0.8
//	2   Kafka → Kafka pass-through            Sluice/baseline ≥ 0.90
//	3a… batch overhead per partition count, 3m driver memory
//	4   Kinesis polling; 5a–5c recovery; 6a, 6b scheduler scale
//	7   stateful running aggregate (update mode, 1M keys), then a restore;
//	    Sluice/baseline with no target (the baseline keeps no durable state)
//
// Rows 1 to 2 also print each process's peak RSS, which must not grow from
// one run to the next at the default sizes.
package scenario

import (
	"context"

	"github.com/sluicehq/sluice/bench/internal/harness"
)

// Scenario is one measurement of the issue.
type Scenario struct {
	ID   string
	Name string
	Run  func(ctx context.Context, env *harness.Env, rep *harness.Report) error
}

// All lists the scenarios in the order they run.
func All() []Scenario {
	return []Scenario{
		{ID: "1", Name: "Kafka decode + aggregate throughput (SQL)", Run: runSQLAggregate},
		{ID: "1b", Name: "Kafka decode + aggregate throughput (shorthand steps)", Run: runShorthandAggregate},
		{ID: "1c", Name: "count-only pass", Run: runCountOnly},
		{ID: "2", Name: "Kafka → Kafka pass-through", Run: runPassThrough},
		{ID: "3", Name: "batch overhead", Run: runBatchOverhead},
		{ID: "4", Name: "Kinesis polling", Run: runKinesisPolling},
		{ID: "5", Name: "recovery", Run: runRecovery},
		{ID: "6", Name: "scheduler scale (simulation)", Run: runSchedulerScale},
		{ID: "7", Name: "stateful running aggregate", Run: runStateful},
	}
}
