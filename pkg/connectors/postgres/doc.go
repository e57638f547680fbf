// Package postgres is a sink that writes task outputs to a PostgreSQL table
// through pgx, exactly once.
//
// # Exactly once
//
// Every output is written by one transaction that also updates a row of
// the positions table (default sluice_positions) keyed by (job, sink,
// part): the job's name, which of the job's sinks writes ("sink" or
// "deadLetter"), and the WriteKey's part (the partition and split, or
// "aggregate"). The row holds the last batch committed for that key, the
// incarnation of the job that committed it, the task's end position
// (CommitEnd; NULL after Commit), the row count and the commit time. A
// writer's transaction first makes sure the row exists and locks it
// (SELECT ... FOR UPDATE); if it already holds this batch or a later one of
// the same incarnation, an earlier or concurrent attempt committed the task,
// so the writer rolls back, writes nothing, and CommitEnd returns the end
// that attempt stored. Two attempts of one task therefore never both write:
// the second waits for the first's lock and then sees its batch. The rows
// and the position commit together or not at all.
//
// Reporting the stored end is what makes open-ended ranges (Kinesis) exact:
// a replay of a task whose end the driver never recorded may read further
// than the attempt that committed, and the records past the stored end go
// to the next batch. A row of another incarnation (the job was deleted and
// submitted again under the same name, its batches restarting at 0) is no
// replay: the writer writes and its commit replaces the row.
//
// With CreateTable, a positions table of the first layout (without
// incarnation and end_position) gets the two columns added; its rows keep
// the empty incarnation and no end.
//
// # Writing
//
// Rows are buffered until Commit, or until WithFlushRows rows are pending,
// when the transaction begins and the buffered rows are sent; later rows
// follow in the same transaction. The default write method is COPY (binary,
// so values must suit their column types: int64 fits smallint to numeric,
// float64 real, double precision or numeric, time.Time timestamps and
// dates, strings text types); writeMethod insert sends multi-row INSERTs
// instead. In upsert mode each chunk keeps the last row per key (one
// statement may not change a row twice) and conflicts update every non-key
// column; with COPY the rows go through a temporary staging table first.
// Nested maps and lists are sent as JSON text, which json, jsonb and text
// columns accept.
//
// A SQL task's Arrow batches (connectors.ArrowWriter) are buffered the same
// way, retained instead of copied into rows, and sent from their columns:
// the values, table types and positions are those of the same rows.
//
// # Tables
//
// With CreateTable the positions table and the target table are created
// when absent (CREATE TABLE IF NOT EXISTS under an advisory lock, as the
// tasks of a batch start together). A target column's type is
// Columns[].Type, else inferred from the first non-null value of its field
// in the first rows written: bool boolean, integers bigint, float64 double
// precision, string text, []byte bytea, time.Time timestamptz, maps and
// lists jsonb; text when all are null. In upsert mode keyColumns become the
// primary key.
package postgres
