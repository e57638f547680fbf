// Package stream is the vocabulary every other package shares: job, batch and
// partition identifiers, opaque source positions, the ranges the driver plans,
// and the rows that flow from sources through transforms into sinks.
//
// It holds names only. Behaviour lives with its owner: sources own what a
// Position means, the scheduler owns how ranges are assigned.
package stream

import (
	"encoding/hex"
	"fmt"
	"time"
)

// JobID names a job; it is the job spec's name.
type JobID string

// BatchID numbers a job's micro-batches from 0.
type BatchID int64

// PartitionID names one unit of source parallelism: a Kafka topic partition
// ("topic/3") or a Kinesis shard. Sources choose the format; everyone else
// treats it as an opaque, comparable key.
type PartitionID string

// Position is a point in a partition, serialised by the source that owns it.
// Nil means "unset". Other packages store and compare positions only as bytes.
type Position []byte

// String renders a position for humans: printable positions as they are,
// binary ones in hex.
func (p Position) String() string {
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			return hex.EncodeToString(p)
		}
	}
	return string(p)
}

// Range is one task's share of a batch: the partition, which split of it this
// is (a hot partition may be split into several tasks), and where to start and
// stop. Until is nil when the source cannot know the end in advance (Kinesis);
// the executor then reports the end it reached.
type Range struct {
	Partition PartitionID `json:"partition"`
	Split     int         `json:"split,omitempty"`
	From      Position    `json:"from,omitempty"`
	Until     Position    `json:"until,omitempty"`
}

// Key identifies the range's task within its batch.
func (r Range) Key() string {
	if r.Split == 0 {
		return string(r.Partition)
	}
	return fmt.Sprintf("%s#%d", r.Partition, r.Split)
}

// Record is one record as a source delivers it, before any transform. Fields
// holds the source's columns under the names Spark users know (Kafka: key,
// value, topic, partition, offset, timestamp, headers).
type Record struct {
	Fields Row
	// Size is the record's payload size in bytes, for byte counts and limits.
	Size int
	// Err marks a record the reader could not unpack (a corrupt KPL
	// aggregate): Fields hold what is known (raw payload, position) and the
	// task applies the job's onError policy to it instead of the pipeline.
	Err error
}

// Row is a record as transforms and sinks see it: field name to value. Values
// are nil, bool, int64, float64, string, []byte, time.Time, []any or
// map[string]any.
type Row map[string]any

// Clone returns a shallow copy of the row.
func (r Row) Clone() Row {
	out := make(Row, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// Timestamp is a convenience for sources: the UTC time of a millisecond epoch.
func Timestamp(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
