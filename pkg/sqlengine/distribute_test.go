//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"
)

// manyTreasuryRows are n rows with repeated amounts (for DISTINCT), NULL
// notes, negative amounts and rates that are sums of powers of two, so that
// sums of doubles do not depend on the order of addition.
func manyTreasuryRows(n int) []treasuryRow {
	currencies := []string{"EUR", "USD", "GBP"}
	var rows []treasuryRow
	for i := range n {
		r := treasuryRow{
			branch:   fmt.Sprintf("b%d", i%3),
			currency: currencies[(i/2)%3],
			amount:   int64((i*37)%11 - 3),
			rate:     float64(i%4)*0.25 + 0.5,
			ok:       i%2 == 0,
		}
		if i%3 != 0 {
			r.note = str(fmt.Sprintf("n%d", i%4))
		}
		rows = append(rows, r)
	}
	return rows
}

// distInput is the input of a distribution case, split into three tasks of
// unequal sizes, the second one empty.
type distInput struct {
	schema *arrow.Schema
	opts   []CompileOption
	tasks  [][]arrow.RecordBatch
}

func (in distInput) all() []arrow.RecordBatch {
	var out []arrow.RecordBatch
	for _, t := range in.tasks {
		out = append(out, t...)
	}
	return out
}

func (in distInput) release() {
	for _, t := range in.tasks {
		releaseAll(t)
	}
}

func newDistInput(mem memory.Allocator, input string, empty bool) distInput {
	switch input {
	case "kafka", "decoded":
		rows := validKafkaRows()
		if empty {
			rows = nil
		}
		cut := len(rows) / 3
		in := distInput{schema: kafkaSchema, tasks: [][]arrow.RecordBatch{
			kafkaBatches(mem, rows[:cut], 2), nil, kafkaBatches(mem, rows[cut:], 2)}}
		if input == "decoded" {
			in.opts = []CompileOption{WithView("treasury_stream"), WithInputQuery(decodeQuery)}
		}
		return in
	}
	rows := manyTreasuryRows(40)
	if empty {
		rows = nil
	}
	cut := len(rows) / 4
	in := distInput{schema: treasurySchema, tasks: [][]arrow.RecordBatch{
		treasuryBatches(mem, rows[:cut], 4), nil, treasuryBatches(mem, rows[cut:], 7)}}
	if input == "treasury_stream" {
		in.opts = []CompileOption{WithView("treasury_stream")}
	}
	return in
}

// TestDistributeExact checks that running Task over each task's rows and
// Final over all the Task outputs gives the query's result over the whole
// batch, with the same schema.
func TestDistributeExact(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		input   string // "treasury" (view source), "treasury_stream", "kafka" or "decoded" (kafka + decodeQuery)
		query   string
		empty   bool // no rows at all
		ordered bool
		rowWise bool // Final is nil
	}{
		{name: "seed query over decoded Kafka values", input: "decoded", query: seedQuery},
		{name: "seed query", input: "treasury_stream", query: seedQuery},
		{name: "row-wise filter and projection", query: `select branch, amount * 2 as dbl from source where ok`, rowWise: true},
		{name: "count(*)", query: `select branch, count(*) as n from source group by branch`},
		{name: "count(x) with NULLs", query: `select currency, count(note) as notes, count(*) as n from source group by currency`},
		{name: "sum, avg, min, max of integers", query: `select branch, sum(amount) s, avg(amount) a, min(amount) mn, max(amount) mx from source group by branch`},
		{name: "sum, avg, min, max of doubles", query: `select currency, sum(rate), avg(rate), min(rate), max(rate) from source group by currency`},
		{name: "min and max of strings", query: `select branch, min(currency) mn, max(note) mx from source group by branch`},
		{name: "min and max of timestamps", input: "kafka", query: `select key, min(timestamp) as first_ts, max(timestamp) as last_ts, count(*) as n from source group by key`},
		{name: "bool_and and bool_or", query: `select currency, bool_and(ok) as all_ok, bool_or(ok) as any_ok from source group by currency`},
		{name: "count(DISTINCT)", query: `select branch, count(distinct amount) as d from source group by branch`},
		{name: "two distincts", query: `select branch, count(distinct amount) ca, count(distinct note) cn, sum(amount) s from source group by 1`},
		{name: "sum and avg DISTINCT", query: `select currency, sum(distinct amount) sd, avg(distinct amount) ad from source group by currency`},
		{name: "HAVING with aggregates not selected", query: `select branch, count(*) as n from source group by branch having sum(amount) > 10 and max(rate) >= 1`},
		{name: "GROUP BY ordinal and alias", query: `select branch as b, currency c, sum(amount) s from source group by b, 2`},
		{name: "GROUP BY ALL", query: `select branch, currency, count(*) n, max(amount) from source group by all`},
		{name: "expression key", query: `select amount % 3 as m, count(*) as n, sum(amount) as s from source group by amount % 3`},
		{name: "scalar over a key and aggregates", query: `select upper(t.branch) as ub, sum(t.amount) + count(*) as x, sum(amount) / 2 as half from source t group by t.branch`},
		{name: "global aggregate", query: `select count(*) n, sum(amount) s, avg(rate) a, count(distinct currency) d, min(note) mn, count(note) c from source`},
		{name: "global aggregate over no rows", empty: true, query: `select count(*) n, sum(amount) s, avg(rate) a, count(distinct currency) d, min(note) mn, count(note) c from source`},
		{name: "grouped aggregate over no rows", empty: true, query: `select branch, count(*) from source group by branch`},
		{name: "FILTER", query: `select branch, count(*) filter (where ok) as n_ok, sum(amount) filter (where amount > 0) as pos, count(distinct currency) filter (where note is null) as cd from source group by branch`},
		{name: "WHERE and CTE", query: `with big as (select * from source where amount > 0) select currency, count(*) as n, sum(amount) as s from big where branch <> 'b2' group by currency`},
		{name: "ORDER BY and LIMIT on the aggregate", ordered: true, query: `select branch, currency, sum(amount) s from source group by branch, currency order by s desc, branch, currency limit 4`},
		{name: "ORDER BY an aggregate not selected", ordered: true, query: `select currency from source group by currency order by count(*), currency`},
		{name: "tumbling window", input: "kafka", ordered: true, query: `select window(timestamp, '1 minute').start as ws, window(timestamp, '1 minute') as w, count(*) as n, min(offset) as first_offset from source group by window(timestamp, '1 minute') order by ws`},
		{name: "sliding window", input: "kafka", query: `select window(timestamp, '1 minute', '20 seconds') as w, count(*) as n, sum(partition) as s from source group by window(timestamp, '1 minute', '20 seconds')`},
		{name: "sum and avg of INTEGER and offset", input: "kafka", query: `select key, sum(partition) as s, avg(offset) as a, count(distinct partition) as d from source group by key`},
		{name: "alias that is also the key's column", query: `select t.branch as branch, count(*) as n from source t group by branch having count(*) > 1 order by branch`, ordered: true},
		{name: "same aggregate twice", query: `select branch, sum(amount) as a, sum(amount) * 2 as b from source group by branch having sum(amount) <> 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			in := newDistInput(mem, tc.input, tc.empty)
			defer in.release()
			c, err := e.Compile(ctx, tc.query, in.schema, in.opts...)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			d, err := e.Distribute(ctx, c)
			if err != nil {
				t.Fatalf("Distribute: %v", err)
			}
			if tc.rowWise != (d.Final == nil) || tc.rowWise && d.Task != c {
				t.Fatalf("row-wise: Task %p (query %p), Final %v; want row-wise %v", d.Task, c, d.Final, tc.rowWise)
			}
			if d.Task.InputQuery() != c.InputQuery() || d.Task.View() != c.View() || !d.Task.InputSchema().Equal(c.InputSchema()) {
				t.Errorf("Task reads %s %q through %q, want %s %q through %q", d.Task.InputSchema(), d.Task.View(), d.Task.InputQuery(), c.InputSchema(), c.View(), c.InputQuery())
			}
			want := runRowsOnce(t, c, in.all(), WithNow(pinned))
			got := distributedRows(t, d, in.tasks)
			if d.Final != nil {
				if !d.Final.InputSchema().Equal(d.Task.OutputSchema()) {
					t.Errorf("Final input %s, Task output %s", d.Final.InputSchema(), d.Task.OutputSchema())
				}
				if g, w := schemaString(d.Final.OutputSchema()), schemaString(c.OutputSchema()); g != w {
					t.Errorf("output schema\n got %s\nwant %s", g, w)
				}
			}
			if !tc.ordered {
				sortRows(got)
				sortRows(want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("distributed rows differ from the whole query's (-whole +distributed):\n%s\ntask: %s\nfinal: %s", diff, d.Task.SQL(), finalSQL(d))
			}
			if len(want) == 0 && !tc.empty {
				t.Error("the case gives no rows: it tests nothing")
			}
			switch {
			case d.Final == nil:
			case tc.ordered:
				if d.Combine != nil || !errors.Is(d.StateRefusal, ErrNotAllowed) {
					t.Errorf("an ordered query: Combine %v, StateRefusal %v; want a refusal", d.Combine, d.StateRefusal)
				}
			default:
				// As a stateful job keeps it: the state after each task is
				// Combine over the state before and the task's partials, and
				// Final over the last state is the query over all rows.
				if d.Combine == nil {
					t.Fatalf("no Combine: %v", d.StateRefusal)
				}
				got := statefulRows(t, d, in.tasks)
				sortRows(got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("rows from the combined state differ from the whole query's (-whole +state):\n%s\ncombine: %s", diff, d.Combine.SQL())
				}
			}
		})
	}
}

// statefulRows folds the tasks' partials into a state one task at a time
// with Combine, as a state partition does batch after batch, then runs
// Final over the state.
func statefulRows(t *testing.T, d *Distributed, tasks [][]arrow.RecordBatch) [][]any {
	t.Helper()
	ctx := context.Background()
	var state []arrow.RecordBatch
	defer func() { releaseAll(state) }()
	for i, batches := range tasks {
		out, err := d.Task.RunBatches(ctx, batches, WithNow(pinned))
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		next, err := d.Combine.RunBatches(ctx, append(append([]arrow.RecordBatch(nil), state...), out...), WithNow(pinned))
		releaseAll(out)
		if err != nil {
			t.Fatalf("combine after task %d: %v", i, err)
		}
		for _, r := range next {
			if !r.Schema().Equal(d.Task.OutputSchema()) {
				t.Fatalf("combine: schema %s, want the partials' %s", r.Schema(), d.Task.OutputSchema())
			}
		}
		releaseAll(state)
		state = next
	}
	return runRowsOnce(t, d.Final, state, WithNow(pinned))
}

func finalSQL(d *Distributed) string {
	if d.Final == nil {
		return "(none)"
	}
	return d.Final.SQL()
}

// distributedRows runs d as a job would: Task over each task's batches,
// then Final over every Task output batch.
func distributedRows(t *testing.T, d *Distributed, tasks [][]arrow.RecordBatch) [][]any {
	t.Helper()
	ctx := context.Background()
	var partials []arrow.RecordBatch
	defer func() { releaseAll(partials) }()
	for i, batches := range tasks {
		out, err := d.Task.RunBatches(ctx, batches, WithNow(pinned))
		if err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		for _, r := range out {
			if !r.Schema().Equal(d.Task.OutputSchema()) {
				t.Fatalf("task %d: result schema %s, OutputSchema %s", i, r.Schema(), d.Task.OutputSchema())
			}
		}
		partials = append(partials, out...)
	}
	if d.Final == nil {
		return rowsOf(t, partials)
	}
	return runRowsOnce(t, d.Final, partials, WithNow(pinned))
}

// TestDistributeRefused checks what cannot run per task is refused at its
// place in the query, with the reason.
func TestDistributeRefused(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	tests := []struct {
		name, query string
		at          string // the refused text: its first occurrence is the position
		nth         int    // which occurrence of at (0: the first)
		reason      string
	}{
		{name: "median", query: `select branch, median(amount) from source group by branch`, at: "median", reason: "median cannot be computed per task and merged exactly"},
		{name: "quantile", query: `select quantile_cont(rate, 0.5) from source`, at: "quantile_cont", reason: "needs all the values"},
		{name: "stddev", query: `select branch, stddev(rate) from source group by branch`, at: "stddev", reason: "stddev cannot be computed per task"},
		{name: "string_agg", query: `select string_agg(branch, ',') from source`, at: "string_agg", reason: "string_agg cannot"},
		{name: "first", query: `select branch, first(amount) from source group by branch`, at: "first", reason: "order of rows"},
		{name: "any_value", query: `select branch, any_value(amount) from source group by branch`, at: "any_value", reason: "order of rows"},
		{name: "arg_max", query: `select arg_max(branch, amount) from source`, at: "arg_max", reason: "order of rows"},
		{name: "aggregate in HAVING", query: `select branch from source group by branch having mode(amount) > 1`, at: "mode", reason: "mode cannot"},
		{name: "window function", query: `select amount, sum(amount) over (partition by branch) from source`, at: "sum", reason: "window functions (OVER)"},
		{name: "window over an aggregate", query: `select branch, rank() over (order by sum(amount)) from source group by branch`, at: "rank", reason: "window functions"},
		{name: "ROLLUP", query: `select branch, currency, sum(amount) from source group by rollup(branch, currency)`, at: "rollup", reason: "ROLLUP"},
		{name: "GROUPING SETS", query: `select branch, sum(amount) from source group by grouping sets ((branch), ())`, at: "grouping", reason: "GROUPING SETS"},
		{name: "ORDER BY without an aggregate", query: `select amount from source order by amount`, at: "amount", nth: 1, reason: "ORDER BY without an aggregate sorts each task's rows only"},
		{name: "LIMIT without an aggregate", query: `select amount from source limit 3`, at: "3", reason: "LIMIT"},
		{name: "DISTINCT without an aggregate", query: `select distinct branch from source`, at: "distinct", reason: "DISTINCT without an aggregate"},
		{name: "aggregate in a subquery feeding a row-wise query", query: `select * from (select branch, sum(amount) as s from source group by branch) where s > 0`, at: "sum", reason: "an aggregate in a subquery or CTE"},
		{name: "aggregate in a CTE", query: `with t as (select branch, count(*) as n from source group by branch) select branch, sum(n) from t group by branch`, at: "count", reason: "subquery or CTE"},
		{name: "LIMIT in a subquery", query: `select count(*) from (select * from source limit 5)`, at: "5", reason: "LIMIT"},
		{name: "self-join", query: `select count(*) from source a join source b on a.branch = b.branch`, at: "source", nth: 1, reason: "more than once"},
		{name: "scalar subquery over the view", query: `select amount from source where amount > (select avg(amount) from source)`, at: "source", nth: 1, reason: "more than once"},
		{name: "does not read the view", query: `select count(*) from range(3)`, at: "range", reason: "does not read its view"},
		{name: "outer join keeping other rows", query: `select r.range, count(s.amount) from range(3) r left join source s on s.amount = r.range group by 1`, at: "left", reason: "outer join"},
		{name: "UNION", query: `select branch from source union all select 'x'`, at: "union", reason: "UNION"},
		{name: "no FROM", query: `select 1 as one`, at: "", reason: "does not read its view"},
		{name: "QUALIFY", query: `select branch from source qualify row_number() over (partition by branch order by amount) = 1`, at: "row_number", reason: "window functions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.Compile(ctx, tc.query, treasurySchema)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			d, err := e.Distribute(ctx, c)
			var qe *QueryError
			if !errors.As(err, &qe) || !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("Distribute = %+v, %v; want a *QueryError wrapping ErrNotAllowed", d, err)
			}
			pos := -1
			for range tc.nth + 1 {
				if tc.at == "" {
					break // no place in the query
				}
				i := strings.Index(strings.ToLower(tc.query[pos+1:]), tc.at)
				if i < 0 {
					t.Fatalf("bad case: %q has no %q", tc.query, tc.at)
				}
				pos += 1 + i
			}
			if qe.Position != pos || !strings.Contains(qe.Reason, tc.reason) {
				t.Errorf("refused at %d: %s\nwant position %d (%q), reason containing %q", qe.Position, qe.Reason, pos, tc.at, tc.reason)
			}
		})
	}
}

// TestAggregatesAreDuckDBs: duckdbAggregates is exactly what the catalog
// lists as aggregate functions, the Go functions of an engine included.
func TestAggregatesAreDuckDBs(t *testing.T) {
	e := newEngine(t, WithFunctions(testFunctions(t)))
	s, err := e.connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	res, err := s.queryString(t.Context(), `SELECT string_agg(DISTINCT lower(function_name), ',' ORDER BY lower(function_name)) FROM duckdb_functions() WHERE function_type = 'aggregate'`)
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for n := range duckdbAggregates {
		have = append(have, n)
	}
	slices.Sort(have)
	if want := strings.Split(res, ","); !slices.Equal(have, want) {
		t.Fatalf("duckdbAggregates differs from the catalog (-have +want):\n%s\nthe catalog's list, for aggregates.go: %q", cmp.Diff(have, want), want)
	}
}
