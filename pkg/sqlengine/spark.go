//go:build duckdb_arrow

package sqlengine

import (
	"slices"
	"strings"
)

// Spark's names for functions, as DuckDB macros created once in the
// database's main schema, where they shadow DuckDB's built-ins of the same
// name (to_timestamp, from_json, now, split, regexp_replace). The macros
// dispatch on typeof(x), which DuckDB folds at planning, so only one branch
// ever runs; TRY_CAST in the other branches keeps them bindable for every
// argument type.
//
// Datetime patterns and from_json schemas are Spark's (yyyy-MM-dd, 'a
// STRING'), but DuckDB's strptime and json_transform need their own as
// constants when the query is bound, and a macro cannot compute one from its
// argument. So Compile translates those string literals in the query text
// (javaPattern, sparkSchema), and the macros receive DuckDB's forms.
//
// The time functions read the time from get_current_timestamp(), which
// current_timestamp and current_date call too, so a run pinned with WithNow
// sees one instant everywhere, as Spark fixes it for a micro-batch.
var sparkMacros = []string{
	// Helpers.
	`CREATE MACRO __sluice_text(x) AS CASE WHEN typeof(x) = 'BLOB' THEN decode(TRY_CAST(x AS BLOB)) ELSE TRY_CAST(x AS VARCHAR) END`,
	`CREATE MACRO __sluice_ts(x) AS CASE
		WHEN typeof(x) IN ('TINYINT','SMALLINT','INTEGER','BIGINT','HUGEINT','UTINYINT','USMALLINT','UINTEGER','UBIGINT','UHUGEINT','FLOAT','DOUBLE') OR typeof(x) LIKE 'DECIMAL%'
		THEN make_timestamptz(TRY_CAST(TRY_CAST(x AS DOUBLE) * 1000000 AS BIGINT))
		ELSE TRY_CAST(x AS TIMESTAMPTZ) END`,
	`CREATE MACRO __sluice_seconds(x) AS TRY_CAST(trunc(TRY_CAST(x AS DOUBLE)) AS BIGINT)`,

	// The current time, pinned by WithNow through a connection variable.
	`CREATE MACRO get_current_timestamp() AS coalesce(TRY_CAST(getvariable('` + nowVariable + `') AS TIMESTAMPTZ), system.main.get_current_timestamp())`,
	`CREATE MACRO now() AS get_current_timestamp()`,
	`CREATE MACRO current_timestamp() AS get_current_timestamp()`,
	`CREATE MACRO current_date() AS CAST(get_current_timestamp() AS DATE)`,

	// Time.
	`CREATE MACRO unix_timestamp() AS CAST(epoch(date_trunc('second', get_current_timestamp())) AS BIGINT),
		(x) AS CAST(epoch(date_trunc('second', __sluice_ts(x))) AS BIGINT),
		(s, fmt) AS CAST(epoch(date_trunc('second', try_strptime(TRY_CAST(s AS VARCHAR), fmt))) AS BIGINT)`,
	`CREATE MACRO from_unixtime(x) AS strftime(make_timestamptz(__sluice_seconds(x) * 1000000), '%Y-%m-%d %H:%M:%S'),
		(x, fmt) AS strftime(make_timestamptz(__sluice_seconds(x) * 1000000), fmt)`,
	`CREATE MACRO to_timestamp(x) AS __sluice_ts(x),
		(s, fmt) AS CAST(try_strptime(TRY_CAST(s AS VARCHAR), fmt) AS TIMESTAMPTZ)`,
	`CREATE MACRO to_date(x) AS CAST(__sluice_ts(x) AS DATE),
		(s, fmt) AS CAST(try_strptime(TRY_CAST(s AS VARCHAR), fmt) AS DATE)`,
	`CREATE MACRO date_format(x, fmt) AS strftime(__sluice_ts(x), fmt)`,
	// Spark aligns windows to the epoch; DuckDB's time_bucket to 2000-01-03
	// unless told, which differs for windows of a week.
	`CREATE MACRO __sluice_windows(t, w, s) AS list_filter(
		list_transform(generate_series(0, CAST(ceil(epoch(w) / epoch(s)) AS BIGINT) - 1),
			lambda k: {'start': time_bucket(s, t, TIMESTAMPTZ '1970-01-01 00:00:00+00') - k * s,
				'end': time_bucket(s, t, TIMESTAMPTZ '1970-01-01 00:00:00+00') - k * s + w}),
		lambda x: x.start <= t AND t < x."end")`,
	// A record's own session: [ts, ts + gap). A stateful aggregate grouped
	// by it merges the sessions of a key that overlap or touch into one,
	// across tasks and batches (sqltransform); nothing else may use it.
	`CREATE MACRO session_window(ts, gap) AS {'start': __sluice_ts(ts), 'end': __sluice_ts(ts) + CAST(gap AS INTERVAL)}`,
	// A sliding window (width, slide) gives every window holding ts: the
	// row is repeated once per window (unnest), as Spark expands it, and
	// GROUP BY window(ts, width, slide) groups by each.
	`CREATE MACRO "window"(ts, width) AS {
		'start': time_bucket(CAST(width AS INTERVAL), __sluice_ts(ts), TIMESTAMPTZ '1970-01-01 00:00:00+00'),
		'end': time_bucket(CAST(width AS INTERVAL), __sluice_ts(ts), TIMESTAMPTZ '1970-01-01 00:00:00+00') + CAST(width AS INTERVAL)},
		(ts, width, slide) AS unnest(__sluice_windows(__sluice_ts(ts), CAST(width AS INTERVAL), CAST(slide AS INTERVAL)))`,

	// JSON. A malformed document gives NULL, as Spark's default PERMISSIVE
	// mode does; a BLOB (Kafka's value) is read as UTF-8 text.
	`CREATE MACRO from_json(s, schema) AS try(json_transform(__sluice_text(s), schema))`,
	`CREATE MACRO get_json_object(s, path) AS try(json_extract_string(__sluice_text(s), path))`,

	// Nulls.
	`CREATE MACRO nvl(a, b) AS coalesce(a, b)`,
	`CREATE MACRO nvl2(a, b, c) AS CASE WHEN a IS NOT NULL THEN b ELSE c END`,

	// Strings whose DuckDB namesakes differ silently: Spark's regexp_replace
	// replaces every match and writes groups as $1; its split takes a regex.
	`CREATE MACRO regexp_replace(s, pattern, replacement) AS
		system.main.regexp_replace(s, pattern, system.main.regexp_replace(replacement, '\$(\d)', '\\\1', 'g'), 'g'),
		(s, pattern, replacement, options) AS system.main.regexp_replace(s, pattern, replacement, options)`,
	`CREATE MACRO split(s, pattern) AS regexp_split_to_array(s, pattern)`,
}

// nowVariable is the connection variable WithNow sets.
const nowVariable = "__sluice_now"

// nowReaders are the names through which SQL reaches nowVariable:
// getvariable itself, and the macros above whose bodies read it, directly
// or through another of them. They are derived from the macros so that a
// new time function cannot be missed.
var nowReaders = func() map[string]bool {
	readers := map[string]bool{}
	for grew := true; grew; {
		grew = false
		for _, m := range sparkMacros {
			name, body, _ := strings.Cut(strings.TrimPrefix(m, "CREATE MACRO "), "(")
			if !readers[name] && (strings.Contains(body, nowVariable) || mentions(readers, body)) {
				readers[name], grew = true, true
			}
		}
	}
	readers["getvariable"] = true
	return readers
}()

// mentionsNow reports whether one of qs names a function that reads
// nowVariable, as a bare or quoted identifier. A column of such a name
// counts too; that only costs a run the statement that pins the time.
func mentionsNow(qs ...string) bool { return mentions(nowReaders, qs...) }

// mentions reports whether one of qs holds one of names (lower case) as a
// bare or quoted identifier, outside strings and comments.
func mentions(names map[string]bool, qs ...string) bool {
	for _, q := range qs {
		for _, t := range lex(q) {
			var name string
			switch t.kind {
			case tokWord:
				name = t.text(q)
			case tokQuoted:
				name, _ = unquote(t.text(q))
			default:
				continue
			}
			if names[strings.ToLower(name)] {
				return true
			}
		}
	}
	return false
}

// sparkNames are the names the engine defines; a Registry refuses them.
var sparkNames = map[string]bool{
	"unix_timestamp": true, "from_unixtime": true, "to_timestamp": true, "to_date": true,
	"date_format": true, "window": true, "session_window": true, "from_json": true, "get_json_object": true,
	"nvl": true, "nvl2": true, "regexp_replace": true, "split": true,
	"now": true, "current_timestamp": true, "current_date": true, "get_current_timestamp": true,
}

// SparkFunctions lists the functions the engine adds or redefines to follow
// Spark SQL, sorted (the package documentation describes each).
func SparkFunctions() []string {
	out := make([]string, 0, len(sparkNames))
	for n := range sparkNames {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// literalArgs names the Spark functions whose second argument Compile
// translates: a datetime pattern to parse (true) or to format (false) with,
// or (from_json) a DDL schema.
var literalArgs = map[string]literalKind{
	"unix_timestamp": parsePattern, "to_timestamp": parsePattern, "to_date": parsePattern,
	"from_unixtime": formatPattern, "date_format": formatPattern, "from_json": ddlSchema,
}

type literalKind int

const (
	parsePattern literalKind = iota
	formatPattern
	ddlSchema
)

// translate turns the Spark form of a literal argument into DuckDB's.
func (k literalKind) translate(s string) (string, error) {
	switch k {
	case parsePattern:
		return javaPattern(s, true)
	case formatPattern:
		return javaPattern(s, false)
	}
	return sparkSchema(s)
}
