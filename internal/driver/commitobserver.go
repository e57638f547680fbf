package driver

import (
	"context"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// watchCommitErrors makes a source that reports committed batches to its
// service (connectors.BatchCommitObserver, e.g. Kafka commitOffsetsToGroup)
// count its failures in sluice_group_commit_errors_total{job}. The source
// logs them itself, once per distinct error; they never fail the job.
func (l *batchLoop) watchCommitErrors() {
	o, ok := l.source.(connectors.BatchCommitObserver)
	if !ok {
		return
	}
	errs := l.m.d.metrics.groupCommitErrors.WithLabelValues(l.name)
	o.ReportErrorsTo(func(error) { errs.Inc() })
}

// observeCommit tells the source that batch committed with ends. It returns
// at once: the source does its reporting in the background.
func (l *batchLoop) observeCommit(ctx context.Context, batch stream.BatchID, ends map[stream.PartitionID]stream.Position) {
	if o, ok := l.source.(connectors.BatchCommitObserver); ok {
		o.Committed(ctx, batch, ends)
	}
}
