// Package scenario holds the benchmark scenarios of issue 5, one file each.
// A scenario measures Sluice and, in the same run, the baseline it is
// compared with, and adds one or more rows to the report. It returns an
// error only when it could not measure; a missed target is a row, not an
// error.
//
// Adding a scenario is one more file with a func(ctx, env, report) error
// and one line in All.
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
		{ID: "1", Name: "Kafka decode + aggregate throughput", Run: runAggregateThroughput},
		{ID: "2", Name: "Kafka → Kafka pass-through", Run: runPassThrough},
		{ID: "3", Name: "batch overhead", Run: runBatchOverhead},
		{ID: "4", Name: "Kinesis polling", Run: runKinesisPolling},
		{ID: "5", Name: "recovery", Run: runRecovery},
		{ID: "6", Name: "scheduler scale (simulation)", Run: runSchedulerScale},
	}
}
