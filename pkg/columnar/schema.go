package columnar

import "github.com/apache/arrow-go/v18/arrow"

// utcMillis is the timestamp type both sources deliver: the brokers and
// Kinesis stamp records in milliseconds, and Spark shows them as UTC.
var utcMillis = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}

// KafkaSchema returns the columns of Spark's Kafka source, in Spark's order:
// key binary, value binary, topic utf8, partition int32, offset int64,
// timestamp timestamp[ms, tz=UTC], timestampType int32 and, when headers is
// true, headers list<struct<key: utf8, value: binary>>. Every column is
// nullable, as in Spark: a tombstone has a null value, a record without
// headers has null headers.
func KafkaSchema(headers bool) *arrow.Schema {
	fields := []arrow.Field{
		{Name: "key", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "topic", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "partition", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "offset", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "timestamp", Type: utcMillis, Nullable: true},
		{Name: "timestampType", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
	}
	if headers {
		header := arrow.StructOf(
			arrow.Field{Name: "key", Type: arrow.BinaryTypes.String, Nullable: true},
			arrow.Field{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true},
		)
		fields = append(fields, arrow.Field{Name: "headers", Type: arrow.ListOf(header), Nullable: true})
	}
	return arrow.NewSchema(fields, nil)
}

// KinesisSchema returns the columns of the Databricks Kinesis source, in its
// order: partitionKey utf8, data binary, stream utf8, shardId utf8,
// sequenceNumber utf8, approximateArrivalTimestamp timestamp[ms, tz=UTC],
// followed by subSequenceNumber int64. The last column is ours, not
// Databricks': records de-aggregated from one KPL aggregate share a sequence
// number and only the sub-sequence number tells them apart. Every column is
// nullable.
func KinesisSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "partitionKey", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "data", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "stream", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "shardId", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "sequenceNumber", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "approximateArrivalTimestamp", Type: utcMillis, Nullable: true},
		{Name: "subSequenceNumber", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	}, nil)
}

// Names returns the column names of s, in order.
func Names(s *arrow.Schema) []string {
	names := make([]string, s.NumFields())
	for i, f := range s.Fields() {
		names[i] = f.Name
	}
	return names
}
