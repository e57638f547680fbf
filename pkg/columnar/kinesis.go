package columnar

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// KinesisBuilder appends Kinesis records to Arrow record batches of
// KinesisSchema(), or of some of its columns, from plain values: what
// KafkaBuilder is for Kafka. A Kinesis reader fills a batch straight from
// the records it fetched, without the map per record of its rows; the
// batches are equal to a Builder's for the rows its Read returns
// (TestKinesisBuilderMatchesBuilder).
//
// Each batch after the first reserves what the batch before it used. A
// KinesisBuilder is not safe for concurrent use.
type KinesisBuilder struct {
	rb     *array.RecordBuilder
	schema *arrow.Schema
	// The column builders; nil for a column the schema leaves out.
	partitionKey *array.StringBuilder
	data         *array.BinaryBuilder
	stream       *array.StringBuilder
	shardID      *array.StringBuilder
	seq          *array.StringBuilder
	arrival      *array.TimestampBuilder
	sub          *array.Int64Builder

	n    int
	last lastSizes
}

// kinesisFields are KinesisSchema()'s fields, made once.
var kinesisFields = KinesisSchema().Fields()

// NewKinesisBuilderFor returns a KinesisBuilder of schema, which must be one
// or more of KinesisSchema()'s columns, of the same types and in the same
// order: the source columns a query reads. It returns false for any other
// schema. The caller must call Release when done with it.
func NewKinesisBuilderFor(mem memory.Allocator, schema *arrow.Schema) (*KinesisBuilder, bool) {
	if !isSubset(schema, kinesisFields) {
		return nil, false
	}
	rb := array.NewRecordBuilder(mem, schema)
	b := &KinesisBuilder{rb: rb, schema: schema}
	for i, f := range schema.Fields() {
		switch fb := rb.Field(i); f.Name {
		case "partitionKey":
			b.partitionKey = fb.(*array.StringBuilder)
		case "data":
			b.data = fb.(*array.BinaryBuilder)
		case "stream":
			b.stream = fb.(*array.StringBuilder)
		case "shardId":
			b.shardID = fb.(*array.StringBuilder)
		case "sequenceNumber":
			b.seq = fb.(*array.StringBuilder)
		case "approximateArrivalTimestamp":
			b.arrival = fb.(*array.TimestampBuilder)
		case "subSequenceNumber":
			b.sub = fb.(*array.Int64Builder)
		}
	}
	return b, true
}

// Schema returns the schema of the batches.
func (b *KinesisBuilder) Schema() *arrow.Schema { return b.schema }

// Append appends one record, to the columns the batches have. data is never
// null (Kinesis has no null payload: a nil one is empty). arrivalMillis is
// the approximate arrival time in milliseconds since the epoch, which is
// Kinesis' precision. Append copies the bytes it is given.
func (b *KinesisBuilder) Append(partitionKey string, data []byte, stream, shardID, seq string, arrivalMillis, sub int64) {
	if b.n == 0 {
		b.last.reserve(b.rb)
	}
	if b.partitionKey != nil {
		b.partitionKey.Append(partitionKey)
	}
	if b.data != nil {
		b.data.Append(data)
	}
	if b.stream != nil {
		b.stream.Append(stream)
	}
	if b.shardID != nil {
		b.shardID.Append(shardID)
	}
	if b.seq != nil {
		b.seq.Append(seq)
	}
	if b.arrival != nil {
		b.arrival.Append(arrow.Timestamp(arrivalMillis))
	}
	if b.sub != nil {
		b.sub.Append(sub)
	}
	b.n++
}

// Len returns the number of records appended since the last NewRecordBatch.
func (b *KinesisBuilder) Len() int { return b.n }

// NewRecordBatch returns the records appended so far as a record batch and
// resets the KinesisBuilder for the next batch. The caller owns the batch
// and must Release it.
func (b *KinesisBuilder) NewRecordBatch() arrow.RecordBatch {
	if b.n > 0 {
		b.last.note(b.rb, b.n)
	}
	b.n = 0
	return b.rb.NewRecordBatch()
}

// Release frees the KinesisBuilder's buffers, including records not yet
// turned into a batch. Batches already returned stay valid.
func (b *KinesisBuilder) Release() { b.rb.Release() }

// lastSizes is what the columns of a record builder held in its last
// batch: the next batch reserves as much before its first record, so that
// batches of similar sizes grow no buffer while they fill.
type lastSizes struct {
	rows int
	data []int // per column: the bytes of a variable-width column, else 0
}

// dataBuilder is a column builder of variable-width values (binary, utf8).
type dataBuilder interface {
	DataLen() int
	ReserveData(int)
}

// note records what rb's columns hold now, a batch of rows records about
// to be made.
func (l *lastSizes) note(rb *array.RecordBuilder, rows int) {
	l.rows = rows
	l.data = l.data[:0]
	for _, f := range rb.Fields() {
		n := 0
		if d, ok := f.(dataBuilder); ok {
			n = d.DataLen()
		}
		l.data = append(l.data, n)
	}
}

// reserve gives rb's columns, empty at the start of a batch, the room
// noted last; nothing before the first batch.
func (l *lastSizes) reserve(rb *array.RecordBuilder) {
	if l.rows == 0 {
		return
	}
	for i, f := range rb.Fields() {
		f.Reserve(l.rows)
		if d, ok := f.(dataBuilder); ok && l.data[i] > 0 {
			d.ReserveData(l.data[i])
		}
	}
}
