// Package kinesis is Sluice's Amazon Kinesis Data Streams source and sink,
// built on aws-sdk-go-v2. The source follows the Databricks Kinesis
// connector: the same option names (see Config), the same record columns
// (data, stream, shardId, sequenceNumber, subSequenceNumber, partitionKey,
// approximateArrivalTimestamp) and the same lag metrics (avgMsBehindLatest,
// maxMsBehindLatest, minMsBehindLatest).
//
// # Planning and reading
//
// Kinesis has no cheap "latest offset", so the driver half (Source) plans
// only where each shard's task starts; the executor half (ReaderPool) reads
// until a limit (maxFetchDuration, fetchBufferSize, or the shard caught up:
// MillisBehindLatest 0 after at least one fetch) or SHARD_END, and reports
// the end it reached. The driver records those ends before it commits, and
// a replayed task (retry, speculative copy, new leader) gets the recorded
// end as its range's until and reads exactly to it, never past it, even
// when it falls inside a KPL aggregate. That is what makes a batch
// deterministic, and its sink output replaceable.
//
// Partitions are "<stream>/<shardId>". A position is compact JSON (see
// position): the last sequence number read, plus the sub-sequence number
// when a KPL aggregate was read only in part; or, before anything was read,
// TRIM_HORIZON or AT_TIMESTAMP; and whether the shard was read to its end.
// Each stream also has a pseudo-partition "<stream>/@identity" whose
// position holds the stream's ARN and creation time.
//
// # Resharding
//
// A shard's life in a job:
//
//	waiting (a parent is still being read)
//	  → reading (a task per batch from its committed position)
//	  → ended (SHARD_END reached and committed; no more tasks)
//	  → dropped (the service stopped listing it after retention)
//
// A child shard is planned only after every parent's end is committed, so
// the records of one partition key, which move from the parent to the child
// at a split or merge, are committed in order: all the parent's in earlier
// batches than any of the child's. Children start at TRIM_HORIZON: all their
// records were written after the reshard. The end of a shard is decided by
// the missing next iterator of its last GetRecords page (with its
// ChildShards), never by comparing sequence numbers with
// EndingSequenceNumber, which kinesis-mock reports as 2^63-1.
//
// # Stream identity
//
// Plan compares the checkpoint's ARN and creation time with
// DescribeStreamSummary: a stream deleted and recreated under the same name
// fails the job (connectors.Permanent) instead of being read with sequence
// numbers that mean nothing there. Identity() itself never calls AWS. A
// reader of a range planned before a recreation sees the old position as a
// sequence number the new stream never issued (AWS: InvalidArgument;
// kinesis-mock: ResourceNotFound) and then compares the creation time the
// range carries with the live stream's, also when failOnDataLoss false would
// otherwise start over at TRIM_HORIZON. kinesis-mock derives sequence numbers
// from the shard's creation second and the record's index and second, so a
// stream recreated and written as far within one second issues its
// predecessor's numbers again (AWS never does); tests avoid that case.
//
// # Throttling
//
// Each executor paces its GetRecords calls per shard (maxFetchRate,
// minFetchPeriod). A throttled call halves that shard's rate and records per
// call, waits a jittered back-off, and the rate recovers by a quarter per
// successful call; an episode is logged once. Expired iterators are renewed
// from the last record read. Transient errors are retried with back-off
// (WithMaxAttempts), then fail the task, which the driver retries.
//
// # Fetchers
//
// Reading one shard sits behind ShardFetcher: GetRecords polling by
// default; with ConsumerMode efo, enhanced fan-out (efofetcher.go: one
// efo.Subscription per warm shard reader, so a subscription outlives
// batches that continue where the last one stopped). Any other factory
// plugs in with WithFetcherFactory. KPL de-aggregation (a corrupt aggregate
// becomes one record with stream.Record.Err), limits, replay bounds and
// warm state are the reader's, above any fetcher.
//
// # Enhanced fan-out consumers
//
// In efo mode the Source owns one efo.Manager per stream: Plan starts it
// in the background (efo.Manager.Await) and waits for it a bounded time,
// reporting a consumer not ACTIVE yet as a plain (retried) error that says
// what is awaited (a call the service has not answered, CREATING,
// DELETING); the bound never cuts a call to the service short, so a slow
// RegisterStreamConsumer is ridden out. Finish stops it, deregistering only
// on a clean end with requireConsumerDeregistration; Close stops it without
// deregistering (hand-over, shutdown).
//
// # Sink
//
// Sink writes rows with PutRecords (at-least-once): see SinkConfig.
package kinesis
