// Package transform compiles and runs a job's transforms: decode (json, csv,
// raw), CEL filter and select, and a per-batch group-by aggregate whose
// partial results are merged across tasks.
//
// Compile validates a whole list of steps up front and returns a Pipeline, or
// an error naming every problem by its field path as the user wrote it in
// YAML (transforms[1].filter: ...). Every such error wraps ErrInvalid and is
// a *FieldError.
//
// # Running
//
// Pipeline.Process runs the non-aggregate steps over a chunk of rows. A row
// that fails a step (an undecodable payload, a CEL error such as a missing
// field or a type mismatch) leaves the pipeline as a BadRow naming the step;
// what happens to it is the job's error policy, not this package's. A
// Pipeline is immutable after Compile and safe for concurrent use; Process
// never modifies the rows it is given.
//
// When the last step is an aggregate (Pipeline.Aggregating), each task feeds
// Process's output into its own Aggregator (Add), ships the partial state
// (MarshalBinary) to the driver, and the driver merges all partials of a
// batch (Pipeline.Merge) and writes Aggregator.Rows once. Merging is exact:
// integer sums stay int64 and checked for overflow, avg is the total sum over
// the total count, min and max keep their value's type, and the encoding
// preserves int64, float64, string, bool, null, bytes, timestamps, lists and
// maps exactly. A batch may hold at most MaxGroups groups (default 100000);
// beyond that Add and Merge fail with ErrTooManyGroups.
//
// # Values
//
// Rows hold nil, bool, int64, float64, string, []byte, time.Time, []any and
// map[string]any. JSON decoding yields int64 for integer literals and float64
// for other numbers; CSV decoding yields strings (convert with int(x) or
// double(x) in a select). CEL results convert back to those types; a uint
// beyond int64 is an error, a duration becomes its Go string ("1h30m0s").
//
// # CEL
//
// Filter and select expressions see a row's fields as top-level identifiers
// (amount > 0 && currency == "USD") and the whole row as the map row, for
// presence tests and names that are not identifiers (has(row.note),
// row["weird-name"], row.?amount.orValue(0)). A field literally named "row"
// is only reachable as row.row. Since fields are not known in advance, every
// identifier an expression references is declared dyn; a field missing from
// a row makes that row bad ("no such field \"amount\""). Numbers compare
// across int, uint and double (amount > 0 works for either), but arithmetic
// does not mix them: write double(amount) * 1.5. The standard library is
// extended with cel-go's strings, math, encoders and lists extensions and
// optional types; timestamp accessors default to UTC.
//
// CompileExpr compiles one expression of this dialect on its own, for sinks
// that evaluate options per record (a Kafka key, a Kinesis partition key)
// and name the option in their errors.
package transform
