// Package kafka is Sluice's Kafka source, built on franz-go. It follows
// Spark's Kafka source: the same option names (see Config), the same record
// columns (key, value, topic, partition, offset, timestamp, timestampType,
// headers) and the same planning rules.
//
// The driver half, Source, discovers partitions at every batch (subscribe,
// subscribePattern or assign) and plans exact offset ranges [from, until)
// from the last committed ends, the high watermarks and the rate limits.
// The executor half, ReaderPool, reads a range and nothing else. It reads
// all of an executor's partitions through one franz-go client, keeps each
// partition's position warm between batches (WithCacheCapacity) and
// prefetches within a byte budget (WithMaxPrefetchBytes), so that a
// partition's next range continues from records already fetched.
//
// Lag figures. Plan.Metrics carries Spark's minOffsetsBehindLatest,
// maxOffsetsBehindLatest and avgOffsetsBehindLatest (latest offset minus
// planned until, at plan time) and dataLoss. After each batch the driver
// passes the readers' figures (lastRecordOffset, lastRecordTimestampMs: the
// last record each range returned) to Source.SummarizeTaskMetrics, which
// adds avgMsBehindLatest, maxMsBehindLatest and minMsBehindLatest (the
// Kinesis source's names): per partition, the newest record's timestamp
// minus the timestamp of the last record the job read, 0 when the plan read
// up to the latest offset, never negative; and, per partition,
// msBehindLatest and offsetsBehindLatest. The newest timestamps come from
// one ListOffsets request (max timestamp, KIP-734) beside the end offsets:
// brokers before Kafka 3.0 cannot answer it and get no ms figures. Details
// in lag.go.
//
// Partitions are named "topic/partition" (e.g. "transaction/3"); a position
// is a Kafka offset in decimal ASCII (e.g. "42"), the offset of the next
// record to read, so a range's until is the next range's from.
//
// Invariants:
//   - A reader returns exactly the records with offsets in [from, until) of
//     its partition, in order, each once; its End is until when it is done,
//     even when the last offsets hold transaction markers or were compacted
//     away.
//   - Neither half ever moves an offset by itself: no consumer group, no
//     commits, no offset reset. Records that are gone are data loss: a
//     *connectors.DataLossError, or with failOnDataLoss false a warning and a
//     skip to the earliest offset: on the driver when planning, and in a
//     reader whose planned records were deleted before it read them (it
//     then reads what remains and still ends at until).
//   - A plan is a pure function of the committed positions, the cluster's
//     offsets and the options (plus, for availableNow, the first plan's
//     snapshot): ranges are sorted by topic, partition and split, and
//     maxOffsetsPerTrigger is never exceeded.
package kafka
