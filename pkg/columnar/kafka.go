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
// KafkaSchema(headers), or of some of its columns (NewKafkaBuilderFor),
// from plain values, column by column.
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
	rb     *array.RecordBuilder
	schema *arrow.Schema
	// The column builders; nil for a column the schema leaves out.
	key     *array.BinaryBuilder
	value   *array.BinaryBuilder
	topic   *array.StringBuilder
	part    *array.Int32Builder
	offset  *array.Int64Builder
	ts      *array.TimestampBuilder
	tsType  *array.Int32Builder
	headers *array.ListBuilder
	hdr     *array.StructBuilder
	hdrKey  *array.StringBuilder
	hdrVal  *array.BinaryBuilder

	n int
	// batchRows is how many records the caller puts in a batch at most
	// (SetBatchRows), 0 when it has not said.
	batchRows int
	// What the last batch held: the next one reserves as much when its
	// first record comes.
	lastRows, lastKeyBytes, lastValueBytes, lastTopicBytes int
	lastHeaders, lastHeaderKeyBytes, lastHeaderValueBytes  int
}

// NewKafkaBuilder returns a KafkaBuilder of KafkaSchema(headers) whose
// buffers come from mem. The caller must call Release when done with it.
func NewKafkaBuilder(mem memory.Allocator, headers bool) *KafkaBuilder {
	b, _ := NewKafkaBuilderFor(mem, KafkaSchema(headers))
	return b
}

// NewKafkaBuilderFor returns a KafkaBuilder of schema, which must be one or
// more of KafkaSchema(true)'s columns, of the same types and in the same
// order: the source columns a query reads. It returns false for any other
// schema. The caller must call Release when done with it.
func NewKafkaBuilderFor(mem memory.Allocator, schema *arrow.Schema) (*KafkaBuilder, bool) {
	if !isSubset(schema, kafkaFields) {
		return nil, false
	}
	rb := array.NewRecordBuilder(mem, schema)
	b := &KafkaBuilder{rb: rb, schema: schema}
	for i, f := range schema.Fields() {
		switch fb := rb.Field(i); f.Name {
		case "key":
			b.key = fb.(*array.BinaryBuilder)
		case "value":
			b.value = fb.(*array.BinaryBuilder)
		case "topic":
			b.topic = fb.(*array.StringBuilder)
		case "partition":
			b.part = fb.(*array.Int32Builder)
		case "offset":
			b.offset = fb.(*array.Int64Builder)
		case "timestamp":
			b.ts = fb.(*array.TimestampBuilder)
		case "timestampType":
			b.tsType = fb.(*array.Int32Builder)
		case "headers":
			b.headers = fb.(*array.ListBuilder)
			b.hdr = b.headers.ValueBuilder().(*array.StructBuilder)
			b.hdrKey = b.hdr.FieldBuilder(0).(*array.StringBuilder)
			b.hdrVal = b.hdr.FieldBuilder(1).(*array.BinaryBuilder)
		}
	}
	return b, true
}

// kafkaFields are KafkaSchema(true)'s fields, made once: a task of one
// record checks its schema against them.
var kafkaFields = KafkaSchema(true).Fields()

// isSubset reports whether s is one or more of the fields all, equal and
// in order, without metadata.
func isSubset(s *arrow.Schema, all []arrow.Field) bool {
	if s.NumFields() == 0 || s.HasMetadata() {
		return false
	}
	j := 0
	for _, f := range s.Fields() {
		for j < len(all) && all[j].Name != f.Name {
			j++
		}
		if j == len(all) || !all[j].Equal(f) {
			return false
		}
		j++
	}
	return true
}

// Schema returns the schema of the batches.
func (b *KafkaBuilder) Schema() *arrow.Schema { return b.schema }

// Headers reports whether the batches have the headers column.
func (b *KafkaBuilder) Headers() bool { return b.headers != nil }

// Append appends one record, to the columns the batches have. A nil key or
// value is a null (a tombstone's value), an empty one is not. tsMillis is
// the record's timestamp in milliseconds since the epoch. Without the
// headers column, headers are ignored; with it, a record without headers
// has null headers, as in Spark, and a header's nil value is a null. Append
// copies the bytes it is given.
func (b *KafkaBuilder) Append(topic string, partition int32, offset int64, key, value []byte, tsMillis int64, tsType int32, headers []KafkaHeader) {
	if b.n == 0 && b.lastRows > 0 {
		b.reserve()
	}
	if b.key != nil {
		appendBinary(b.key, key)
	}
	if b.value != nil {
		appendBinary(b.value, value)
	}
	if b.topic != nil {
		b.topic.Append(topic)
	}
	if b.part != nil {
		b.part.Append(partition)
	}
	if b.offset != nil {
		b.offset.Append(offset)
	}
	if b.ts != nil {
		b.ts.Append(arrow.Timestamp(tsMillis))
	}
	if b.tsType != nil {
		b.tsType.Append(tsType)
	}
	if b.headers != nil {
		if len(headers) == 0 {
			b.headers.AppendNull()
		} else {
			b.headers.Append(true)
			for _, h := range headers {
				b.hdr.Append(true)
				b.hdrKey.Append(h.Key)
				appendBinary(b.hdrVal, h.Value)
			}
		}
	}
	b.n++
}

// appendBinary appends v, nil as a null.
func appendBinary(b *array.BinaryBuilder, v []byte) {
	if v == nil {
		b.AppendNull()
	} else {
		b.Append(v)
	}
}

// reserve gives the column builders, empty at the start of a batch, the
// room the last batch took.
func (b *KafkaBuilder) reserve() {
	b.reserveRows(b.lastRows, b.lastKeyBytes, b.lastValueBytes, b.lastTopicBytes)
	if b.headers != nil && b.lastHeaders > 0 {
		b.hdr.Reserve(b.lastHeaders)
		b.hdrKey.Reserve(b.lastHeaders)
		b.hdrKey.ReserveData(b.lastHeaderKeyBytes)
		b.hdrVal.Reserve(b.lastHeaders)
		b.hdrVal.ReserveData(b.lastHeaderValueBytes)
	}
}

// reserveRows reserves room for n more records of the columns the batches
// have, with key, value and topic data of the sizes given.
func (b *KafkaBuilder) reserveRows(n, keyBytes, valueBytes, topicBytes int) {
	if b.key != nil {
		b.key.Reserve(n)
		b.key.ReserveData(keyBytes)
	}
	if b.value != nil {
		b.value.Reserve(n)
		b.value.ReserveData(valueBytes)
	}
	if b.topic != nil {
		b.topic.Reserve(n)
		b.topic.ReserveData(topicBytes)
	}
	if b.part != nil {
		b.part.Reserve(n)
	}
	if b.offset != nil {
		b.offset.Reserve(n)
	}
	if b.ts != nil {
		b.ts.Reserve(n)
	}
	if b.tsType != nil {
		b.tsType.Reserve(n)
	}
	if b.headers != nil {
		b.headers.Reserve(n)
	}
}

// SetBatchRows says that the caller cuts batches at n records at most, which
// bounds what Expect reserves.
func (b *KafkaBuilder) SetBatchRows(n int) { b.batchRows = n }

// Expect gives an empty batch the room for rows more records whose keys,
// values and topics take about keyBytes, valueBytes and topicBytes in all
// (a reader's estimate from the records it holds), rows capped at
// SetBatchRows. Builders grow by doubling: without it, each task's first
// batch copied its buffers about log2(rows) times and dropped them to the
// garbage collector, the largest cost of a count-only task after reading.
// It does nothing once the batch holds records, or when the last batch's
// sizes are known (they are reserved on the first Append instead).
func (b *KafkaBuilder) Expect(rows, keyBytes, valueBytes, topicBytes int) {
	if b.n > 0 || b.lastRows > 0 || rows <= 0 {
		return
	}
	if b.batchRows > 0 && rows > b.batchRows {
		scale := float64(b.batchRows) / float64(rows)
		rows = b.batchRows
		keyBytes = int(float64(keyBytes) * scale)
		valueBytes = int(float64(valueBytes) * scale)
		topicBytes = int(float64(topicBytes) * scale)
	}
	b.reserveRows(rows, keyBytes, valueBytes, topicBytes)
}

// Len returns the number of records appended since the last NewRecordBatch.
func (b *KafkaBuilder) Len() int { return b.n }

// NewRecordBatch returns the records appended so far as a record batch and
// resets the KafkaBuilder for the next batch. The caller owns the batch and
// must Release it.
func (b *KafkaBuilder) NewRecordBatch() arrow.RecordBatch {
	if b.n > 0 {
		b.lastRows = b.n
		b.lastKeyBytes, b.lastValueBytes, b.lastTopicBytes = dataLen(b.key), dataLen(b.value), 0
		if b.topic != nil {
			b.lastTopicBytes = b.topic.DataLen()
		}
		if b.headers != nil {
			b.lastHeaders = b.hdrVal.Len()
			b.lastHeaderKeyBytes, b.lastHeaderValueBytes = b.hdrKey.DataLen(), b.hdrVal.DataLen()
		}
	}
	b.n = 0
	return b.rb.NewRecordBatch()
}

// dataLen is b's data length, 0 for a column the batches leave out.
func dataLen(b *array.BinaryBuilder) int {
	if b == nil {
		return 0
	}
	return b.DataLen()
}

// Release frees the KafkaBuilder's buffers, including records not yet
// turned into a batch. Batches already returned stay valid.
func (b *KafkaBuilder) Release() { b.rb.Release() }
