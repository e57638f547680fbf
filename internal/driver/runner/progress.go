package runner

import (
	"maps"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	storagev1 "github.com/sluicehq/sluice/proto/sluice/storage/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// A committed batch's progress is stored in the commit log in its own
// message (sluice.storage.v1), converted field by field, so that the API's
// BatchProgress may change without changing what stores hold.
//
// It is stored in the binary wire format: a batch of a thousand tasks has a
// thousand per-task entries, which protojson took about 4 ms to encode (of
// a batch's fixed cost of a few tens of ms) and made the commit 70% larger.
// Commits written before hold protojson (the storage message's, or, older
// still, the API's, which was the same field for field); they still read:
// protojson always starts with '{', and a wire-format message never does
// ('{' would be field 15 as a group, which proto3 has not). A driver from
// before this change reads the binary form as unreadable: it shows the
// batch id alone and, for a job with a watermark, resumes without the
// largest event time seen.

// storeProgress is p as the commit log keeps it.
func storeProgress(p *sluicev1.BatchProgress) ([]byte, error) {
	s := &storagev1.BatchProgress{
		BatchId: p.GetBatchId(), Timestamp: p.GetTimestamp(), NumInputRows: p.GetNumInputRows(), NumOutputRows: p.GetNumOutputRows(),
		InputBytes: p.GetInputBytes(), SkippedRows: p.GetSkippedRows(), DeadLetteredRows: p.GetDeadLetteredRows(),
		NumTasks: p.GetNumTasks(), TaskRetries: p.GetTaskRetries(), InputRowsPerSecond: p.GetInputRowsPerSecond(),
		ProcessedRowsPerSecond: p.GetProcessedRowsPerSecond(), DurationMs: maps.Clone(p.GetDurationMs()),
		Metrics: maps.Clone(p.GetMetrics()), SpeculativeTasks: p.GetSpeculativeTasks(), EventTime: maps.Clone(p.GetEventTime()),
	}
	for _, o := range p.GetStateOperators() {
		s.StateOperators = append(s.StateOperators, &storagev1.StateOperatorProgress{
			OperatorName: o.GetOperatorName(), NumRowsTotal: o.GetNumRowsTotal(), NumRowsUpdated: o.GetNumRowsUpdated(),
			MemoryUsedBytes: o.GetMemoryUsedBytes(), NumRowsDroppedByWatermark: o.GetNumRowsDroppedByWatermark(),
			CommitTimeMs: o.GetCommitTimeMs(), RestoreTimeMs: o.GetRestoreTimeMs(), NumRestoredPartitions: o.GetNumRestoredPartitions(),
			NumShufflePartitions: o.GetNumShufflePartitions(), StateOnDiskBytes: o.GetStateOnDiskBytes(),
			CheckpointBytesWritten: o.GetCheckpointBytesWritten(), NumRowsRemoved: o.GetNumRowsRemoved(),
			NumDroppedDuplicateRows: o.GetNumDroppedDuplicateRows(),
		})
	}
	for _, pp := range p.GetPartitions() {
		s.Partitions = append(s.Partitions, &storagev1.PartitionProgress{
			Partition: pp.GetPartition(), Start: pp.GetStart(), End: pp.GetEnd(), Records: pp.GetRecords(),
			Executor: pp.GetExecutor(), Metrics: maps.Clone(pp.GetMetrics()), DurationMs: pp.GetDurationMs(), Attempts: pp.GetAttempts(),
		})
	}
	return proto.Marshal(s)
}

// LoadProgress decodes the progress stored with a commit; a commit without
// one, or with one this driver cannot read, gives the batch id alone (the
// figures are for display: never a reason to stop a job).
func LoadProgress(c checkpoint.Commit) *sluicev1.BatchProgress {
	if len(c.Progress) == 0 {
		return &sluicev1.BatchProgress{BatchId: int64(c.Batch)}
	}
	s := &storagev1.BatchProgress{}
	var err error
	if c.Progress[0] == '{' {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(c.Progress, s)
	} else {
		err = proto.Unmarshal(c.Progress, s)
	}
	if err != nil {
		return &sluicev1.BatchProgress{BatchId: int64(c.Batch)}
	}
	p := &sluicev1.BatchProgress{
		BatchId: s.GetBatchId(), Timestamp: s.GetTimestamp(), NumInputRows: s.GetNumInputRows(), NumOutputRows: s.GetNumOutputRows(),
		InputBytes: s.GetInputBytes(), SkippedRows: s.GetSkippedRows(), DeadLetteredRows: s.GetDeadLetteredRows(),
		NumTasks: s.GetNumTasks(), TaskRetries: s.GetTaskRetries(), InputRowsPerSecond: s.GetInputRowsPerSecond(),
		ProcessedRowsPerSecond: s.GetProcessedRowsPerSecond(), DurationMs: s.GetDurationMs(),
		Metrics: s.GetMetrics(), SpeculativeTasks: s.GetSpeculativeTasks(), EventTime: s.GetEventTime(),
	}
	for _, o := range s.GetStateOperators() {
		p.StateOperators = append(p.StateOperators, &sluicev1.StateOperatorProgress{
			OperatorName: o.GetOperatorName(), NumRowsTotal: o.GetNumRowsTotal(), NumRowsUpdated: o.GetNumRowsUpdated(),
			MemoryUsedBytes: o.GetMemoryUsedBytes(), NumRowsDroppedByWatermark: o.GetNumRowsDroppedByWatermark(),
			CommitTimeMs: o.GetCommitTimeMs(), RestoreTimeMs: o.GetRestoreTimeMs(), NumRestoredPartitions: o.GetNumRestoredPartitions(),
			NumShufflePartitions: o.GetNumShufflePartitions(), StateOnDiskBytes: o.GetStateOnDiskBytes(),
			CheckpointBytesWritten: o.GetCheckpointBytesWritten(), NumRowsRemoved: o.GetNumRowsRemoved(),
			NumDroppedDuplicateRows: o.GetNumDroppedDuplicateRows(),
		})
	}
	for _, sp := range s.GetPartitions() {
		p.Partitions = append(p.Partitions, &sluicev1.PartitionProgress{
			Partition: sp.GetPartition(), Start: sp.GetStart(), End: sp.GetEnd(), Records: sp.GetRecords(),
			Executor: sp.GetExecutor(), Metrics: sp.GetMetrics(), DurationMs: sp.GetDurationMs(), Attempts: sp.GetAttempts(),
		})
	}
	return p
}
