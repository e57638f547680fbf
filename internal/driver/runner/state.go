package runner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/stream"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// stateKeyPrefix starts the task keys (and partition ids, for sticky
// assignment) of a stateful job's state partitions: "~state/0",
// "~state/1"... No source partition id has a "~" (Kafka topic names are
// letters, digits, ".", "_" and "-"; Kinesis shard ids "shardId-...").
const stateKeyPrefix = "~state/"

func stateKey(i int) string { return stateKeyPrefix + strconv.Itoa(i) }

func isStateKey(key string) bool { return strings.HasPrefix(key, stateKeyPrefix) }

func stateKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = stateKey(i)
	}
	return keys
}

// runState is a stateful job's second stage of a batch: the source tasks'
// partial aggregates, routed by group key, go to one task per state
// partition, which merges them into the partition's state, writes the
// output rows and commits the state as the batch's version. Every state
// partition runs every batch, so each one's versions follow the batches
// (and in complete mode each writes all its groups). The tasks stick to
// the executors that ran them last, where the state is warm.
func (l *Loop) runState(ctx context.Context, batch stream.BatchID, keys []string, results map[string]*clusterv1.TaskResult,
	run *sluicev1.BatchRun) (*stageRun, error) {
	n := l.job.State.Partitions
	partials := make([][]byte, 0, len(keys))
	for _, k := range keys {
		partials = append(partials, results[k].GetPartialAggregate())
	}
	routed, err := l.job.SQL.Route(partials, n)
	if err != nil {
		return nil, fmt.Errorf("batch %d: route the groups to state partitions: %w", batch, err)
	}
	// The watermark: groups at or before the one of the batch before are
	// late; those at or before the one after this batch's records are
	// complete. A replay gets the same: the maximum before the batch comes
	// from the last commit, the batch's own from its recorded ranges.
	var late, complete *timestamppb.Timestamp
	l.batchMax = l.maxEventTime
	if w := l.job.State.Watermark; w != nil {
		if !l.maxEventTime.IsZero() {
			late = timestamppb.New(l.maxEventTime.Add(-w.Delay))
		}
		if routed.MaxEventTime.After(l.batchMax) {
			l.batchMax = routed.MaxEventTime
		}
		if !l.batchMax.IsZero() {
			complete = timestamppb.New(l.batchMax.Add(-w.Delay))
		}
	}
	skeys := stateKeys(n)
	ranges := make(map[string]stream.Range, n)
	l.stateInputs = make(map[string]*clusterv1.StateTask, n)
	defer func() { l.stateInputs = nil }()
	for i, k := range skeys {
		ranges[k] = stream.Range{Partition: stream.PartitionID(k)}
		l.stateInputs[k] = &clusterv1.StateTask{Partition: int32(i), Partitions: int32(n), Input: routed.Shares[i],
			Watermark: late, NextWatermark: complete}
	}
	run.Phase = "state"
	run.TasksTotal += int32(n)
	return l.execute(ctx, batch, skeys, ranges, stateTasksPerSlot(n, l.reg.Snapshot(scheduler.SlotUnits)), run)
}

// stateTasksPerSlot lets a batch's state tasks share slots so that all of
// them fit at once: a state task that waited for a slot on its executor
// would otherwise go to another one and restore its partition there.
func stateTasksPerSlot(partitions int, execs []scheduler.Executor) int {
	slots := 0
	for _, e := range execs {
		slots += e.Free
	}
	if slots == 0 {
		return 1
	}
	return (partitions + slots - 1) / slots
}

// stateProgress sums the state partitions' figures into Spark's state
// operator progress: sizes and counts add up, times are the slowest
// partition's (they ran in parallel).
func stateProgress(job *jobspec.Job, results map[string]*clusterv1.TaskResult) *sluicev1.StateOperatorProgress {
	op := &sluicev1.StateOperatorProgress{OperatorName: "stateStoreSave", NumShufflePartitions: int32(job.State.Partitions)}
	if job.SQL.Dedups() {
		op.OperatorName = "dedupe"
		if job.State.DedupWithin > 0 {
			op.OperatorName = "dedupeWithinWatermark"
		}
	}
	for _, res := range results {
		m := res.GetState()
		op.NumRowsTotal += m.GetNumRowsTotal()
		op.NumRowsUpdated += m.GetNumRowsUpdated()
		op.MemoryUsedBytes += m.GetMemoryUsedBytes()
		op.StateOnDiskBytes += m.GetStateOnDiskBytes()
		op.CheckpointBytesWritten += m.GetChangelogBytes() + m.GetSnapshotBytes()
		op.NumRowsDroppedByWatermark += m.GetNumRowsDroppedByWatermark()
		op.NumRowsRemoved += m.GetNumRowsRemoved()
		op.NumDroppedDuplicateRows += m.GetNumDroppedDuplicateRows()
		op.CommitTimeMs = max(op.CommitTimeMs, m.GetCommitTimeMs())
		if m.GetRestored() {
			op.NumRestoredPartitions++
			op.RestoreTimeMs = max(op.RestoreTimeMs, m.GetLoadTimeMs())
		}
	}
	return op
}

// eventTimeProgress is Spark's eventTime of a batch: the largest event
// time seen up to it and the watermark it dropped late groups by.
func (l *Loop) eventTimeProgress() map[string]string {
	w := l.job.State.Watermark
	if w == nil || l.batchMax.IsZero() {
		return nil
	}
	et := map[string]string{"max": l.batchMax.UTC().Format(time.RFC3339Nano)}
	if !l.maxEventTime.IsZero() {
		et["watermark"] = l.maxEventTime.Add(-w.Delay).UTC().Format(time.RFC3339Nano)
	}
	return et
}

// lastMaxEventTime is the largest event time a commit's progress records
// (zero when none): where a job with a watermark resumes.
func lastMaxEventTime(c checkpoint.Commit) (time.Time, error) {
	s, ok := LoadProgress(c).GetEventTime()["max"]
	if !ok {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("batch %d's largest event time %q: %w", c.Batch, s, err)
	}
	return t, nil
}
