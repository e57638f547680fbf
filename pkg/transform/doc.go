// Package transform holds what is left of the CEL steps that preceded SQL
// transforms (pkg/sqltransform): the CEL dialect of the Kafka and Kinesis
// sinks' per-record options (a key, a topic, a partition key), and
// FieldError, the field-path error every transform and sink option reports.
//
// CompileExpr compiles one expression and names its problems; Expr.Eval runs
// it over a row, Expr.EvalFields over a record read field by field (a row of
// an Arrow batch). Expressions see a row's fields as top-level identifiers
// (country + ":" + string(n)) and the whole row as the map row, for presence
// tests and names that are not identifiers (has(row.note),
// row["weird-name"]). Every identifier is declared dyn; a field missing from
// a row is an error ("no such field \"amount\""). Numbers compare across int,
// uint and double, but arithmetic does not mix them: write double(amount) *
// 1.5. The standard library is extended with cel-go's strings, math,
// encoders and lists extensions and optional types.
//
// Results convert back to row values: nil, bool, int64, float64, string,
// []byte, time.Time, []any and map[string]any; a uint beyond int64 is an
// error, a duration becomes its Go string ("1h30m0s").
package transform
