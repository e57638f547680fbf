package columnar

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// KafkaHeader is one Kafka record header. It has the fields of franz-go's
// kgo.RecordHeader, so a reader converts one into the other without a copy
// (columnar.KafkaHeader(h)) and this package stays free of franz-go.
type KafkaHeader struct {
	Key   string
	Value []byte // nil is a null value
}

// KafkaBuilder appends Kafka records to Arrow record batches of
// KafkaSchema(headers), from plain values, column by column.
//
// It is what a Builder does with a Kafka row (see the package
// documentation), without the row: a Kafka reader that fills a batch
// straight from its fetched records never makes the per-record map that
// dominates the row path's cost. The batches are equal to a Builder's for
// the rows the reader's Read returns (TestKafkaBuilderMatchesBuilder).
//
// The column builders live as long as the KafkaBuilder; each batch after
// the first reserves what the batch before it ended up using, so a steady
// stream of batches of similar size grows no buffer while it fills. A
// KafkaBuilder is not safe for concurrent use.
type KafkaBuilder struct {
	rb      *array.RecordBuilder
	schema  *arrow.Schema
	key     *array.BinaryBuilder
	value   *array.BinaryBuilder
	topic   *array.StringBuilder
	part    *array.Int32Builder
	offset  *array.Int64Builder
	ts      *array.TimestampBuilder
	tsType  *array.Int32Builder
	headers *array.ListBuilder // nil without headers
	hdr     *array.StructBuilder
	hdrKey  *array.StringBuilder
	hdrVal  *array.BinaryBuilder

	n int
	// What the last batch held: the next one reserves as much when its
	// first record comes.
	lastRows, lastKeyBytes, lastValueBytes, lastTopicBytes int
	lastHeaders, lastHeaderKeyBytes, lastHeaderValueBytes  int
}

// NewKafkaBuilder returns a KafkaBuilder of KafkaSchema(headers) whose
// buffers come from mem. The caller must call Release when done with it.
func NewKafkaBuilder(mem memory.Allocator, headers bool) *KafkaBuilder {
	s := KafkaSchema(headers)
	rb := array.NewRecordBuilder(mem, s)
	b := &KafkaBuilder{
		rb:     rb,
		schema: s,
		key:    rb.Field(0).(*array.BinaryBuilder),
		value:  rb.Field(1).(*array.BinaryBuilder),
		topic:  rb.Field(2).(*array.StringBuilder),
		part:   rb.Field(3).(*array.Int32Builder),
		offset: rb.Field(4).(*array.Int64Builder),
		ts:     rb.Field(5).(*array.TimestampBuilder),
		tsType: rb.Field(6).(*array.Int32Builder),
	}
	if headers {
		b.headers = rb.Field(7).(*array.ListBuilder)
		b.hdr = b.headers.ValueBuilder().(*array.StructBuilder)
		b.hdrKey = b.hdr.FieldBuilder(0).(*array.StringBuilder)
		b.hdrVal = b.hdr.FieldBuilder(1).(*array.BinaryBuilder)
	}
	return b
}

// Schema returns KafkaSchema(headers) of the headers NewKafkaBuilder was
// given.
func (b *KafkaBuilder) Schema() *arrow.Schema { return b.schema }

// Headers reports whether the batches have the headers column.
func (b *KafkaBuilder) Headers() bool { return b.headers != nil }

// Append appends one record. A nil key or value is a null (a tombstone's
// value), an empty one is not. tsMillis is the record's timestamp in
// milliseconds since the epoch. Without the headers column, headers are
// ignored; with it, a record without headers has null headers, as in Spark,
// and a header's nil value is a null. Append copies the bytes it is given.
func (b *KafkaBuilder) Append(topic string, partition int32, offset int64, key, value []byte, tsMillis int64, tsType int32, headers []KafkaHeader) {
	if b.n == 0 && b.lastRows > 0 {
		b.reserve()
	}
	if key == nil {
		b.key.AppendNull()
	} else {
		b.key.Append(key)
	}
	if value == nil {
		b.value.AppendNull()
	} else {
		b.value.Append(value)
	}
	b.topic.Append(topic)
	b.part.Append(partition)
	b.offset.Append(offset)
	b.ts.Append(arrow.Timestamp(tsMillis))
	b.tsType.Append(tsType)
	if b.headers != nil {
		if len(headers) == 0 {
			b.headers.AppendNull()
		} else {
			b.headers.Append(true)
			for _, h := range headers {
				b.hdr.Append(true)
				b.hdrKey.Append(h.Key)
				if h.Value == nil {
					b.hdrVal.AppendNull()
				} else {
					b.hdrVal.Append(h.Value)
				}
			}
		}
	}
	b.n++
}

// reserve gives the column builders, empty at the start of a batch, the
// room the last batch took.
func (b *KafkaBuilder) reserve() {
	n := b.lastRows
	b.key.Reserve(n)
	b.key.ReserveData(b.lastKeyBytes)
	b.value.Reserve(n)
	b.value.ReserveData(b.lastValueBytes)
	b.topic.Reserve(n)
	b.topic.ReserveData(b.lastTopicBytes)
	b.part.Reserve(n)
	b.offset.Reserve(n)
	b.ts.Reserve(n)
	b.tsType.Reserve(n)
	if b.headers != nil {
		b.headers.Reserve(n)
		if b.lastHeaders > 0 {
			b.hdr.Reserve(b.lastHeaders)
			b.hdrKey.Reserve(b.lastHeaders)
			b.hdrKey.ReserveData(b.lastHeaderKeyBytes)
			b.hdrVal.Reserve(b.lastHeaders)
			b.hdrVal.ReserveData(b.lastHeaderValueBytes)
		}
	}
}

// Len returns the number of records appended since the last NewRecordBatch.
func (b *KafkaBuilder) Len() int { return b.n }

// NewRecordBatch returns the records appended so far as a record batch and
// resets the KafkaBuilder for the next batch. The caller owns the batch and
// must Release it.
func (b *KafkaBuilder) NewRecordBatch() arrow.RecordBatch {
	if b.n > 0 {
		b.lastRows = b.n
		b.lastKeyBytes, b.lastValueBytes, b.lastTopicBytes = b.key.DataLen(), b.value.DataLen(), b.topic.DataLen()
		if b.headers != nil {
			b.lastHeaders = b.hdrVal.Len()
			b.lastHeaderKeyBytes, b.lastHeaderValueBytes = b.hdrKey.DataLen(), b.hdrVal.DataLen()
		}
	}
	b.n = 0
	return b.rb.NewRecordBatch()
}

// Release frees the KafkaBuilder's buffers, including records not yet
// turned into a batch. Batches already returned stay valid.
func (b *KafkaBuilder) Release() { b.rb.Release() }
