package jobspec

import (
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// DefaultMinBatchesToRetain is the retention of a job's own checkpoint
// store when the spec does not set minBatchesToRetain (Spark's default for
// spark.sql.streaming.minBatchesToRetain).
const DefaultMinBatchesToRetain = 100

// compileCheckpoint validates the job's own checkpoint store (field
// "checkpoint"): exactly one store (checkpoint_dynamodb.go,
// checkpoint_s3.go), and minBatchesToRetain. Nothing is contacted here;
// the store is opened by Job.OpenCheckpoint.
func compileCheckpoint(c *sluicev1.Checkpoint, f fieldErrors) checkpointConfig {
	retain := DefaultMinBatchesToRetain
	switch n := c.GetMinBatchesToRetain(); {
	case n < 0:
		f.add("minBatchesToRetain", "must be at least 1 (got %d)", n)
	case n > 0:
		retain = int(n)
	}
	fd, block, ok := kindOf(c)
	if !ok && c.GetState() != "" {
		return nil // state only (compileState): the plans and commits stay in the driver's store
	}
	if !ok {
		f.add("", "needs a store: one of %s (leave checkpoint out to keep the job's checkpoints in the driver's store)",
			kindNames(&sluicev1.Checkpoint{}, checkpointAdapters))
		return nil
	}
	a, ok := checkpointAdapters[fd.Name()]
	if !ok {
		f.add(fd.JSONName(), "is not supported by this build")
		return nil
	}
	return a.compile(block, f.at(fd.JSONName()), retain)
}
