// Package sqltransform compiles the transforms of a job that has a sql step
// into one DuckDB query per task (pkg/sqlengine), and runs it over the task's
// records as Arrow batches (pkg/columnar).
//
// A job's steps are a decode (json with a Spark DDL schema, or raw) and then
// one or more sql steps; each sql step reads the rows before it under its
// view name. The steps are composed into a single query, so DuckDB decodes,
// filters and aggregates in one pass over the task's batches. A GROUP BY
// step must be the last: it runs as partial aggregates in every task and a
// final merge on the driver (sqlengine.Engine.Distribute), which gives the
// same rows as the query over the whole batch.
//
// Problems with a job's transforms are *FieldError values naming the field
// as the user wrote it (transforms[1].sql.query).
package sqltransform
