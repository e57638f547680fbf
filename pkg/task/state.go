package task

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/statestore"
	"github.com/sluicehq/sluice/pkg/stream"
)

// StateAttempt is one attempt of a state task: one state partition's share
// of a stateful job's batch.
type StateAttempt struct {
	Job         stream.JobID
	Incarnation string
	Batch       stream.BatchID
	// Partition is the state partition; Part names it in the sink's write
	// key.
	Partition int
	Part      string
	// Input is the partition's share of the batch's partial aggregates
	// (sqltransform.Pipeline.Route).
	Input []byte
	// Watermarks are the job's, for the batch (zero without a watermark).
	Watermarks sqltransform.Watermarks
	SQL        *sqltransform.Pipeline
	BatchTime  time.Time
	// Store is the partition's state; the caller makes sure no other
	// attempt uses it meanwhile.
	Store     *statestore.Store
	Allocator memory.Allocator
	// Sink receives the output rows unless CollectRows is set (console:
	// up to that many rows go back to the driver).
	Sink        connectors.Sink
	CollectRows int
	Current     func() error
}

// StateResult is what a state attempt reports.
type StateResult struct {
	RowsOut int64
	// Rows are collected rows (CollectRows) as JSON lines.
	Rows []byte
	// Total: groups in the partition after the batch; Updated: groups the
	// batch changed.
	Total, Updated int64
	// Removed: groups the watermark completed; Dropped: late records;
	// Duplicates: rows dropped as duplicates (dropDuplicates).
	Removed, Dropped, Duplicates int64
	Memory, Disk                 int64
	Restored                     bool
	Load, Commit                 time.Duration
	Changelog                    int64
	Snapshot                     int64
}

// stateEnd is the end a state task's output is committed with: sinks that
// keep ends with their output need one, and a state partition has no
// source position.
var stateEnd = stream.Position("state")

// RunState runs a state attempt: load the partition's state as of the batch
// before (from checkpoint.state when this executor does not hold it: the
// partition moved here, or the batch is replayed), merge the batch's groups
// into it, write the output rows under the (job, batch, partition) key,
// then commit the state as the batch's version. The output is committed
// first: if the state commit then fails, the retry computes the same rows
// from the same version, and the sink keeps one copy. Until the driver
// commits the batch, neither is final: a replay of the batch loads the
// version before it again.
func RunState(ctx context.Context, a StateAttempt) (res StateResult, err error) {
	start := time.Now()
	restored, err := a.Store.Load(ctx, int64(a.Batch)-1)
	if err != nil {
		return res, fmt.Errorf("load state partition %d at batch %d: %w", a.Partition, int64(a.Batch)-1, err)
	}
	res.Restored, res.Load = restored, time.Since(start)

	merged, err := a.SQL.MergeState(ctx, a.Allocator, a.Store, a.Input, a.BatchTime, a.Watermarks)
	if err != nil {
		return res, fmt.Errorf("state partition %d: %w", a.Partition, err)
	}
	if a.CollectRows > 0 {
		var sample bytes.Buffer
		var r Result
		if err := collect(&sample, &r, a.CollectRows, merged.Rows); err != nil {
			return res, err
		}
		res.Rows, res.RowsOut = sample.Bytes(), r.RowsTotal
	} else if len(merged.Rows) > 0 {
		key := connectors.WriteKey{Job: a.Job, Incarnation: a.Incarnation, Batch: a.Batch, Current: a.Current, Part: a.Part, Columns: a.SQL.Columns()}
		if err := writeAll(ctx, a.Sink, key, merged.Rows, stateEnd, "sink output "+a.Part); err != nil {
			return res, err
		}
		res.RowsOut = int64(len(merged.Rows))
	}

	if err := (connectors.WriteKey{Current: a.Current}).StillCurrent(ctx); err != nil {
		return res, fmt.Errorf("commit state partition %d: %w", a.Partition, err)
	}
	changes := make([]statestore.Change, len(merged.Changes))
	for i, c := range merged.Changes {
		changes[i] = statestore.Change{Key: c.Key, Value: c.Value, Known: true, Existed: c.Existed}
	}
	commitStart := time.Now()
	cs, err := a.Store.Commit(ctx, int64(a.Batch), changes)
	if err != nil {
		return res, fmt.Errorf("commit state partition %d at batch %d: %w", a.Partition, a.Batch, err)
	}
	res.Commit = time.Since(commitStart)
	res.Changelog, res.Snapshot = cs.DeltaBytes, cs.SnapshotBytes
	st := a.Store.Stats()
	res.Total, res.Memory, res.Disk = st.Keys, st.MemoryBytes, st.DiskBytes
	res.Updated, res.Removed, res.Dropped, res.Duplicates = merged.Updated, merged.Removed, merged.Dropped, merged.Duplicates
	return res, nil
}
