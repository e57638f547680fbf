package runner

import (
	"context"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// watchCommitErrors makes a source that reports committed batches to its
// service (connectors.BatchCommitObserver, e.g. Kafka commitOffsetsToGroup)
// count its failures in sluice_group_commit_errors_total{job}. The source
// logs them itself, once per distinct error; they never fail the job.
func (l *Loop) watchCommitErrors() {
	o, ok := l.source.(connectors.BatchCommitObserver)
	if !ok {
		return
	}
	o.ReportErrorsTo(func(error) { l.metrics.GroupCommitError(l.name) })
}

// observeCommit tells the source that batch committed with ends. It returns
// at once: the source does its reporting in the background.
func (l *Loop) observeCommit(ctx context.Context, batch stream.BatchID, ends map[stream.PartitionID]stream.Position) {
	if o, ok := l.source.(connectors.BatchCommitObserver); ok {
		o.Committed(ctx, batch, ends)
	}
}
