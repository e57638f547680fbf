// Package connectors defines the seams between the engine and the systems it
// reads and writes: a Source plans ranges on the driver and opens Readers on
// executors; a Sink opens one Writer per task output. Connector packages
// (kafka, file, console, ...) implement these; the engine never imports a
// connector's internals.
//
// Lifecycle of a source, per running job:
//
//	driver:   NewSource → Plan (once per batch) ... → Close
//	executor: NewReaderPool → Open(range) → Read... → Reader.Close (returns
//	          the warm reader to the pool) ... → pool Close
//
// Lifecycle of a sink output: OpenWriter(key) → Write... → Commit | Abort.
// A Commit replaces whatever an earlier attempt with the same key committed,
// so retried and speculative attempts never duplicate output.
package connectors

import (
	"context"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Source is the driver half of a source connector.
type Source interface {
	// Plan lists the partitions and returns the ranges of batch req.Batch.
	// Transient failures (unreachable brokers, missing topic) are returned as
	// plain errors and retried by the driver; a *DataLossError or an error
	// wrapped with Permanent fails the job.
	Plan(ctx context.Context, req PlanRequest) (Plan, error)
	// Identity describes what the source reads, e.g. the brokers and topics.
	// A job resubmitted with a different identity is refused, so checkpoints
	// of one source are never applied to another.
	Identity() string
	Close() error
}

// Finisher is implemented by sources that clean up service-side state when
// a job ends for good, e.g. deregister a Kinesis enhanced fan-out consumer.
// The driver calls Finish before Close when the job was stopped or deleted
// by a user or finished (clean true), or failed (clean false); never when
// the job moves to another driver or the driver shuts down.
type Finisher interface {
	Finish(ctx context.Context, clean bool) error
}

// PlanRequest is what the driver knows when it plans a batch.
type PlanRequest struct {
	Batch stream.BatchID
	// Committed holds each partition's end in the last committed batch; empty
	// when the job has never committed, in which case the source's starting
	// options apply.
	Committed map[stream.PartitionID]stream.Position
	// Interval is the trigger interval, for per-second rate limits.
	Interval time.Duration
	// AvailableNow asks the source to read only what existed when the job
	// started (the first Plan call), in as many batches as the limits need.
	AvailableNow bool
}

// Plan is one batch's work.
type Plan struct {
	// Ranges to run, one task each. Empty means no new data.
	Ranges []stream.Range
	// Start holds every known partition's start position, including those
	// with no data this batch, so that the commit carries them forward.
	Start map[stream.PartitionID]stream.Position
	// Exhausted (availableNow only): after these ranges nothing remains.
	Exhausted bool
	// Metrics are source figures for batch progress, e.g. Spark's
	// minOffsetsBehindLatest, maxOffsetsBehindLatest, avgOffsetsBehindLatest.
	Metrics map[string]float64
	// TasksPerSlot lets this many of the batch's tasks share one executor
	// slot, for sources whose reads mostly wait on the service (Kinesis
	// shardsPerTask). 0 or 1: one task per slot.
	TasksPerSlot int
}

// EndChecker is implemented by sources whose ranges may be open-ended
// (Kinesis): the driver asks it about the end a task reports for a range
// without a planned or recorded end, and refuses the result on an error (the
// task runs again). A range with an end must end exactly there; the driver
// checks that itself.
type EndChecker interface {
	CheckEnd(r stream.Range, end stream.Position) error
}

// ReaderPool is the executor half of a source connector. It keeps readers
// warm between batches (sticky assignment pays off here).
type ReaderPool interface {
	// Open returns a reader for exactly the range r.
	Open(ctx context.Context, r stream.Range) (Reader, error)
	Close() error
}

// Reader reads one range.
type Reader interface {
	// Read returns the next records; io.EOF once the range is done. Records
	// are owned by the caller.
	Read(ctx context.Context) ([]stream.Record, error)
	// End is the position just after the last record returned so far, which
	// is what the task reports and the driver commits.
	End() stream.Position
	// Close releases the reader; it may return it to its pool.
	Close() error
}

// KafkaArrowReader is implemented by the Kafka source's readers, for SQL
// tasks whose input is columnar.KafkaSchema: ReadKafkaArrow appends the next
// records to b instead of returning them as rows, which saves a map per
// record. It has Read's semantics otherwise, and a task uses one or the
// other, never both: it blocks like Read, returns io.EOF at the end of the
// range (possibly with records appended by the same call), leaves End just
// after the last record appended, and fails with Read's errors (with
// nothing appended). records is how many it appended, bytes what the
// Size of the same records from Read would sum to.
type KafkaArrowReader interface {
	ReadKafkaArrow(ctx context.Context, b *columnar.KafkaBuilder) (records int, bytes int64, err error)
}

// KinesisArrowReader is implemented by the Kinesis source's readers: what
// KafkaArrowReader is for Kafka, with one difference. A record the reader
// could not unpack (a corrupt KPL aggregate, which Read returns with Err
// set) is not appended to b but returned in bad, as Read would return it,
// for the task's onError; records and bytes count it as well.
type KinesisArrowReader interface {
	ReadKinesisArrow(ctx context.Context, b *columnar.KinesisBuilder) (records int, bytes int64, bad []stream.Record, err error)
}

// RangeSizer is implemented by readers that know, before reading, how many
// records their range holds at most (Kafka's, from its offsets: markers of
// transactions take offsets too). A task uses it to pick the cheaper way
// to copy a small range.
type RangeSizer interface {
	// Remaining is how many records are left to read, at most.
	Remaining() int64
}

// ReaderMetrics is implemented by readers that report figures about the
// range they read, e.g. Kinesis millisBehindLatest, Kafka
// lastRecordTimestampMs. The task sends them back with its result; they show
// per partition in the batch progress.
type ReaderMetrics interface {
	Metrics() map[string]float64
}

// TaskMetricsSummarizer is implemented by sources whose readers report
// ReaderMetrics: after each batch the driver passes each partition's figures
// (those of its last split) and adds the summary (e.g. avgMsBehindLatest) to
// the batch's source metrics and Prometheus; a name missing from the summary
// is dropped from Prometheus.
//
// The maps are the ones the batch progress shows per partition: a summarizer
// may add per-partition figures to them (e.g. Kafka's msBehindLatest).
// Partitions without a task this batch are absent, so a summarizer keeps
// what it needs across batches; perPartition may be empty.
type TaskMetricsSummarizer interface {
	SummarizeTaskMetrics(perPartition map[stream.PartitionID]map[string]float64) map[string]float64
}

// BatchCommitObserver is implemented by sources that tell their service how
// far a job got, e.g. Kafka's commitOffsetsToGroup for lag tools. What they
// tell is for monitoring only: the checkpoint stays the one record of where
// the job reads, and nothing the service holds is ever read back.
//
// The driver calls ReportErrorsTo once, before the first Committed, then
// Committed from the batch loop right after each batch's commit is stored,
// with the ends that commit holds (the caller keeps ownership: copy what you
// keep). Committed must return at once and cannot fail the batch: hand the
// ends to a goroutine the source owns (the latest ends win) and stop it in
// Close. That goroutine passes each failure to the function ReportErrorsTo
// set (the driver counts them); a nil function drops them.
type BatchCommitObserver interface {
	ReportErrorsTo(fn func(error))
	Committed(ctx context.Context, batch stream.BatchID, ends map[stream.PartitionID]stream.Position)
}

// Sink writes task outputs.
type Sink interface {
	OpenWriter(ctx context.Context, key WriteKey) (Writer, error)
	Close() error
}

// WriteKey names one output: everything one task attempt produces. Part is
// the range key (partition and split), or "aggregate" for the merged groups of
// an aggregating job.
type WriteKey struct {
	Job stream.JobID
	// Incarnation changes when a job is deleted and submitted again under
	// the same name (its batches restart at 0); sinks that remember what
	// they committed key it by job and incarnation.
	Incarnation string
	Batch       stream.BatchID
	Part        string
	// Columns is the column order when the pipeline knows it (after select or
	// aggregate); sinks that print tables use it, others may ignore it.
	Columns []string
	// Current, when set, is nil while the attempt may still commit. Sinks
	// without a transaction (files, objects) ask it right before the step
	// that makes output visible (a rename, a PUT): an executor cut off from
	// the driver must not overwrite what the attempt's replacement wrote.
	Current func() error
}

// StillCurrent is nil while the key's attempt may commit: ctx is live and
// Current (if set) agrees.
func (k WriteKey) StillCurrent(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if k.Current != nil {
		return k.Current()
	}
	return nil
}

// Writer receives one task's rows.
type Writer interface {
	Write(ctx context.Context, rows []stream.Row) error
	// Commit makes the rows visible, replacing any earlier commit of the same
	// key.
	Commit(ctx context.Context) error
	// Abort drops what was written.
	Abort() error
}

// ArrowWriter is implemented by writers that take a SQL task's output as
// it comes out of the query, an Arrow record batch, instead of rows: every
// row of rec is written as Write would write the row columnar.AppendRows
// makes of it (same JSON bytes, same records, same table rows), without a
// map per record. A task uses one or the other for one output; a writer
// given both keeps the rows in the order they came.
//
// rec belongs to the caller and may be released (its memory freed) as soon
// as WriteArrow returns: a writer that keeps rec or any of its arrays past
// the call Retains them and Releases them by Commit or Abort, and copies any
// string or byte slice it hands to a client that outlives the call. Errors
// are Write's: a row the sink cannot take (a type with no row mapping, an
// expression that fails on it) is connectors.Permanent.
type ArrowWriter interface {
	WriteArrow(ctx context.Context, rec arrow.RecordBatch) error
}

// ColumnReader is implemented by sinks whose writes may read only some
// columns of their rows (the Kafka sink with column options). ReadsColumns
// names them (names the rows lack are ignored), or says ok false when the
// sink reads every column. A task without transforms then fills its Arrow
// batches with those columns only; the sink writes the same records.
type ColumnReader interface {
	ReadsColumns() (names []string, ok bool)
}

// EndCommitter is implemented by writers of exactly-once sinks that store
// the task's end position with its output (PostgreSQL positions table, Kafka
// commit markers). CommitEnd commits like Commit and returns the end the
// output holds: end itself, or, when an earlier attempt with the same key
// already committed, the end that attempt stored (its rows are kept and this
// attempt's are dropped). The task reports the returned end, so when the
// earlier attempt died before the driver recorded its end and this one read
// further (open-ended ranges such as Kinesis), the extra records are read
// again by the next batch instead of being lost.
type EndCommitter interface {
	CommitEnd(ctx context.Context, end stream.Position) (stream.Position, error)
}

// BatchCommitter is implemented by sinks with a second phase; the driver
// calls it once all of a batch's writers committed, before the commit log.
type BatchCommitter interface {
	CommitBatch(ctx context.Context, job stream.JobID, batch stream.BatchID) error
}

// DriverCollector is implemented by sinks that show a batch in one place
// (console): tasks send up to MaxRows rows back to the driver, which writes
// them once per batch through the sink.
type DriverCollector interface {
	MaxRows() int
}
