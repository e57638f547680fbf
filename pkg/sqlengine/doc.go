// Package sqlengine runs Spark-flavoured SQL over Arrow record batches with
// an embedded DuckDB. It is the SQL step of a job: compile a query once
// against the Arrow schema of its input, then run it over each task's
// batches.
//
// The package needs cgo and the build tag duckdb_arrow (duckdb-go's Arrow
// interface exists only with it); the Makefile passes the tag to every go
// command. Without the tag the package is this documentation only.
//
// # Main types
//
// Engine is one in-memory DuckDB database per process (Open, Close), with
// WithThreads and WithMemoryLimit, locked down before any query: no files,
// network or extensions, and settings user SQL cannot change (Open lists
// them and why; one of them avoids silently wrong results in DuckDB's Arrow
// scan). Compiled is a query bound to its input schema (Engine.Compile);
// Compiled.Run runs it over an array.RecordReader on a connection of its
// own, so runs go on concurrently; the connection is kept for a later run,
// with the query prepared on it (prepared.go). Registry holds Go scalar functions a
// binary adds to SQL (Scalar1, Scalar2, Scalar3, WithFunctions).
//
// # Invariants
//
//   - A query is one SELECT that reads only its view (default "source", see
//     WithView), its own CTEs and range/generate_series/unnest. Anything else
//     is refused at Compile with a *QueryError giving the position in the
//     query as written (see QueryError and the sentinels).
//   - Each run's input reaches DuckDB through an input slot (slot.go): an
//     Arrow stream registered once per input schema under a database-wide
//     unique name, read by one run at a time and empty between runs, seen by
//     the query under its view's name (a CTE, or a TEMP view on the run's
//     connection). A query that would read its view twice reads a TEMP table
//     copy instead (a run's input can be read once).
//   - Every Arrow record handed in is released exactly once by its owner;
//     results hold a connection until released; Close closes the kept
//     connections and waits for the others.
//
// # Input queries
//
// WithInputQuery defines the view as a SELECT the program writes over the
// run's input (named __sluice_input), such as a JSON decode step, so that
// decoding and the user's query run as one DuckDB query per task. The
// user's query is checked and reports positions exactly as without it.
//
// # Built-in functions for decode steps
//
// Every Engine has two Go functions a program's decode query may call:
// CSVFunction splits text into CSV records and fields, and RejectFunction
// drops a bad record and hands it, with the reason, to the Rejects of its
// run (WithRejects), so that a decode can count or dead-letter what it
// drops instead of failing the query.
//
// # Distributed aggregation
//
// A batch runs as tasks, one per Kafka partition. Engine.Distribute divides
// a compiled query into Task, run in each task over its rows, and Final, run
// once over the concatenated Task outputs, such that the result is the
// query's over the whole batch, with the same column names and types. It
// rewrites DuckDB's own parse tree (json_serialize_sql) and prints it back
// (json_deserialize_sql). A row-wise query is its own Task (no Final).
//
// An aggregating query (GROUP BY, including ordinals, select aliases and
// GROUP BY ALL; aggregates; HAVING) becomes a Task grouping by the same keys
// with partial states, and a Final grouping the partials by the keys and
// evaluating the select list, HAVING, ORDER BY, LIMIT and DISTINCT there,
// with scalar expressions over keys (upper(branch), from_unixtime(
// unix_timestamp()) pinned by WithNow) evaluated in the Final. Merges:
//
//	sum(x)                      sum of the task sums (a sum of integers is a BIGINT per task too)
//	count(x), count(*)          sum of the task counts, 0 over no rows, BIGINT
//	avg(x), mean(x)             sum(x) and count(x) per task; sum(s)::DOUBLE / sum(c)
//	min, max, bool_and, bool_or, bit_and, bit_or, bit_xor   the same function again
//	count/sum/avg(DISTINCT x)   list(DISTINCT x) per task; len/list_sum/list_avg of the distinct union
//	FILTER (WHERE ...)          applied in the Task
//
// Sums and averages of doubles add in another order than one scan does, as
// in Spark across partitions; they may differ in the last bits. A Task's
// integer sum must fit a BIGINT, as the query's own sum must.
//
// Refused, with a *QueryError wrapping ErrNotAllowed at the construct, and
// why: aggregates that need all values at once (median, quantile, mode,
// string_agg, list...) or whose merge is inexact (stddev, var, corr...) or
// order-dependent (first, last, any_value, arg_min...); window functions
// and QUALIFY; GROUPING SETS, ROLLUP and CUBE; aggregates, GROUP BY,
// DISTINCT or LIMIT in a subquery or CTE that reads the view (each task
// would compute them over its own rows); DISTINCT, ORDER BY and LIMIT on a
// row-wise query (they would apply per task; Spark refuses sorting a
// streaming query without aggregation too); reading the view twice (a task
// would join its own rows only), not at all, or through UNION; outer joins
// that keep rows of a table other than the view. If the rewritten queries
// did not bind or gave other types, Distribute refuses rather than differ.
//
// # Spark SQL
//
// DuckDB's dialect is close to Spark's; the engine adds or redefines these
// functions (SparkFunctions lists them) so Spark queries run as written:
//
//	unix_timestamp()            the current time, epoch seconds (BIGINT)
//	unix_timestamp(x)           a timestamp, date or 'yyyy-MM-dd HH:mm:ss' string, in seconds
//	unix_timestamp(s, fmt)      s parsed with a Spark pattern; NULL if it does not parse
//	from_unixtime(n[, fmt])     epoch seconds as a string, default 'yyyy-MM-dd HH:mm:ss', UTC
//	to_timestamp(x[, fmt])      TIMESTAMPTZ from a string (pattern), date or epoch seconds; NULL if invalid
//	to_date(x[, fmt])           DATE likewise
//	date_format(ts, fmt)        a timestamp (or timestamp string) formatted with a Spark pattern
//	window(ts, '1 minute')      the tumbling window holding ts, as STRUCT(start, end), aligned to the epoch
//	from_json(s, 'a STRING, b BIGINT')   a STRUCT from a JSON string or BLOB, with a Spark DDL schema; NULL if malformed
//	get_json_object(s, '$.a.b') the value at a JSON path as a string; NULL if missing or malformed
//	nvl(a, b), nvl2(a, b, c)    as in Spark (ifnull, coalesce, concat_ws are DuckDB's own, and agree)
//	regexp_replace(s, re, r)    replaces every match, $1 names a group (DuckDB's replaces the first)
//	split(s, re)                splits on a regular expression (DuckDB's split takes a literal)
//	current_timestamp[()], now(), current_date[()]   pinned for a run by WithNow
//
// Spark datetime patterns are translated to strftime for y, yy, M..MMMM, d,
// dd, D, DDD, H, HH, h, hh, m, mm, s, ss, SSS, SSSSSS, a, E..EEEE, quoted
// text and the zone letters; any other letter is refused at Compile (see
// javaPattern in sparkfmt.go). Patterns and from_json schemas must be string
// literals: Compile translates them into DuckDB's forms in the query text.
// from_json schemas take STRING, BOOLEAN,
// TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), DATE,
// TIMESTAMP (TIMESTAMPTZ), TIMESTAMP_NTZ, ARRAY<>, MAP<> and STRUCT<>, or a
// DuckDB json_transform structure ({"a":"BIGINT"}).
//
// Other differences the engine handles:
//
//   - sum of integers: DuckDB returns a 128-bit HUGEINT, Spark a bigint.
//     HUGEINT output columns are cast to BIGINT (the query is wrapped in a
//     projection); a sum beyond int64 fails the run instead of wrapping.
//     Only top-level columns: a HUGEINT inside a struct or list stays.
//   - offset, Kafka's column, is reserved in DuckDB. Written unquoted where
//     a column name must come (after SELECT, a comma, an operator, WHERE,
//     BY, a parenthesis...), it is quoted for DuckDB; LIMIT 10 OFFSET 5
//     keeps its meaning. "offset", `offset` and t.offset work anywhere.
//   - window is reserved too: window(...) is rewritten to call the macro.
//     Spark's bare window.start after GROUP BY window(...) has no DuckDB
//     equivalent: write window(ts, '1 minute').start in the SELECT list, or
//     SELECT window(ts, '1 minute') AS w, ... GROUP BY w in a subquery and
//     read w.start outside.
//   - CAST(value AS STRING) on a binary column (Kafka's key and value) is
//     refused: DuckDB escapes bytes (\x22) where Spark decodes UTF-8; use
//     decode(value), or give value to from_json/get_json_object directly.
//   - Double quotes name columns (standard SQL); Spark also reads "EUR" as a
//     string. An unknown column written in double quotes says so.
//   - NULLs sort first ascending and last descending, as in Spark.
//   - x / 0 and x % 0 are NULL, as in Spark without ANSI mode.
//   - The session time zone is UTC; timestamps come out as Arrow
//     timestamp[us, tz=UTC].
//
// Known differences left as DuckDB has them: concat skips NULL arguments
// (Spark's returns NULL); a malformed date string gives NULL in the Spark
// functions but an error in a plain CAST; window(ts, width, slide) (sliding
// windows) does not exist; unaliased columns are named as DuckDB prints the
// expression (count_star() where Spark says count(1)): alias them.
package sqlengine
