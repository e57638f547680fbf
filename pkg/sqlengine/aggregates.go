//go:build duckdb_arrow

package sqlengine

// duckdbAggregates are DuckDB's aggregate functions, lower case: what
// duckdb_functions() lists as aggregates in the DuckDB this module pins.
// Distribute tells a query's aggregates from its scalar calls by them.
// Reading the list from the catalog took 50 ms of each process's first SQL
// compile (a driver's first SubmitJob, an executor's first task), as much
// as the rest of a Distribute; and it cannot differ between engines: Go
// functions are scalar, the Spark macros too, and user SQL creates
// nothing. TestAggregatesAreDuckDBs compares it with the catalog, so that
// upgrading DuckDB cannot leave it stale.
var duckdbAggregates = setOf(
	"any_value", "approx_count_distinct", "approx_quantile", "approx_top_k", "arbitrary", "arg_max",
	"arg_max_null", "arg_max_nulls_last", "arg_min", "arg_min_null", "arg_min_nulls_last", "argmax",
	"argmin", "array_agg", "avg", "bit_and", "bit_or", "bit_xor", "bitstring_agg", "bool_and",
	"bool_or", "combine_aggr", "corr", "count", "count_if", "count_star", "countif", "covar_pop",
	"covar_samp", "decimal_average", "entropy", "favg", "first", "fsum", "group_concat",
	"histogram", "histogram_exact", "kahan_sum", "kurtosis", "kurtosis_pop", "last", "list",
	"listagg", "lttb", "mad", "max", "max_by", "mean", "median", "min", "min_by", "mode", "product",
	"quantile", "quantile_cont", "quantile_disc", "regr_avgx", "regr_avgy", "regr_count",
	"regr_intercept", "regr_r2", "regr_slope", "regr_sxx", "regr_sxy", "regr_syy",
	"reservoir_quantile", "sem", "skewness", "stddev", "stddev_pop", "stddev_samp", "string_agg",
	"sum", "sum_no_overflow", "sumkahan", "var_pop", "var_samp", "variance", "variant_group_object",
)

// setOf is a set of names.
func setOf(names ...string) map[string]bool {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		s[n] = true
	}
	return s
}
