// Package columnar converts between the rows that sources and sinks exchange
// (stream.Row) and the Apache Arrow record batches that SQL steps run on, and
// holds the Arrow schemas of the sources' columns (KafkaSchema,
// KinesisSchema). It is used only at the edges of a SQL step: rows become a
// batch before DuckDB sees them, and its result becomes rows again. It needs
// no cgo and does not import DuckDB.
//
// # Rows to Arrow (Builder)
//
// A Builder fills a batch of a fixed schema, one row at a time, by column
// name. A missing key or a nil value is a null; keys that are not columns are
// ignored. A row is checked entirely before anything is appended, so a value
// that does not fit leaves the Builder as it was. Accepted values:
//
//	bool                          bool
//	int8 … int64, uint8 … uint64  any Go integer, range-checked
//	float32, float64              float64, float32 or any Go integer
//	utf8, large utf8, utf8 view   string
//	binary, large, view, fixed    []byte or string (fixed: exact length)
//	timestamp (any unit and zone) time.Time, range-checked for the unit
//	date32, date64                time.Time: its UTC date
//	list, large list, fixed list  []any (fixed: exact length), elements recursively
//	struct                        map[string]any (or stream.Row), fields by name
//	map<utf8, T>                  map[string]any, entries in key order
//
// Any other column type fails every Append with an error naming the column.
//
// # Arrow to rows (AppendRows)
//
//	null                                  nil
//	bool                                  bool
//	int8 … int64, uint8 … uint32          int64
//	uint64                                int64; above MaxInt64 is an error
//	float16, float32, float64             float64
//	utf8, large utf8, utf8 view           string
//	binary, large, view, fixed size       []byte (never nil: only null is nil)
//	timestamp (any unit, with or without zone)  time.Time in UTC
//	date32, date64                        time.Time, midnight UTC
//	time32, time64                        string "15:04:05.000000"
//	duration                              string of time.Duration ("1m30s")
//	interval (all three kinds)            string, ISO 8601 ("P1M2DT3.5S")
//	decimal32 … decimal256                scale > 0: float64 (approximate);
//	                                      scale ≤ 0: int64 if it fits, else float64
//	list, large list, fixed size list, list view  []any
//	struct                                map[string]any
//	map with string keys                  map[string]any
//	map with other keys                   []any of map{"key": k, "value": v}
//	dictionary                            the decoded value
//	extension                             the value of its storage type
//
// Other types (unions, run-end encoded) are errors naming the column.
//
// A sink that takes a SQL task's batches itself (connectors.ArrowWriter)
// reads single values with the same mapping with NewValueReader.
//
// Decimals become float64 or int64 because rows have no decimal type: a
// fractional decimal is approximated, an integral one (DuckDB exports
// HUGEINT, the type of SUM over integers, as decimal128(38, 0)) stays exact
// whenever it fits 64 bits.
//
// # Ownership
//
// Builders and the batches they produce are reference counted: call Release
// on each. AppendRows copies every value, strings and byte slices included,
// so rows never alias Arrow memory and the batch may be released (and its C
// memory freed) right after the call. EncodeIPC leaves the batches to the
// caller; DecodeIPC allocates its batches from the given allocator and the
// caller releases them.
package columnar
