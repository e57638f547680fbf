// Package s3 is a sink that writes task outputs as S3 objects, in JSON
// lines or Parquet, exactly once per (job, batch, part):
//
//	<prefix>/<job>/batch=<N>/[<partitionBy>=<value>/]part-<part>.<jsonl|parquet>
//	<prefix>/<job>/batch=<N>/_SUCCESS
//
// A writer keeps its output locally (JSON lines spooled to a temporary
// file, Parquet rows in memory) and uploads at Commit with PutObject, so a
// retried or speculative attempt of the same key replaces the objects the
// earlier one uploaded instead of adding to them; it also deletes the
// earlier attempt's objects it has no rows for (with partitionBy, folders
// of values it lacks), which matters only when a replay reads another range
// than the attempt before it. Parts and the job are
// named as the file sink names its files ("transaction/3#1" is
// "transaction=3+1"). With partitionBy, each value of the field gets its own
// folder (Hive style, so engines that understand batch=N/date=.../ folders
// read it as columns); a row without the field goes to
// __HIVE_DEFAULT_PARTITION__. When all of a batch's tasks have committed the
// driver calls CommitBatch, which writes _SUCCESS: a JSON manifest listing
// the batch's objects and sizes. Read a batch only once its _SUCCESS exists.
//
// # JSON lines
//
// One object per line, encoded as the file sink encodes them (column order
// from the pipeline, floats always with a fraction, timestamps RFC 3339,
// bytes base64).
//
// # Parquet
//
// One file per object, Snappy-compressed, its schema inferred from the
// object's rows: every field any row holds becomes an optional column
// (columns in alphabetical order), typed by the values it holds: bool
// BOOLEAN; int64 INT64; float64, or a mix of int64 and float64, DOUBLE;
// string STRING; []byte BYTE_ARRAY; time.Time TIMESTAMP(MICROS, UTC), so
// sub-microsecond digits are dropped; maps and lists JSON (the value's JSON
// text, not a nested group, so that the schema stays flat and stable when
// nested fields vary between rows). A column whose values disagree
// otherwise (a string in one row, a number in another) becomes STRING
// holding each value's text; a column that is null in every row is
// STRING. Missing fields and nulls are Parquet nulls.
//
// A SQL task hands the writer its query's Arrow batches
// (connectors.ArrowWriter): JSON lines are encoded from the columns, and
// Parquet objects keep the batches (retained until Commit or Abort) and get
// the schema and values above from the columns' types and values, so that
// the object is the one the same rows would make, byte for byte, rather
// than one typed by the batch's Arrow schema.
package s3
