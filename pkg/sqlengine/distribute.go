//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Distributed is a query divided for running over a batch split into tasks.
type Distributed struct {
	// Task runs in every task over the task's rows (same input schema, view
	// and input query as the compiled query). For a row-wise query it is the
	// query itself.
	Task *Compiled
	// Final, for an aggregating query, runs once over the Task outputs of
	// all tasks (concatenated; its InputSchema is Task.OutputSchema()) and
	// returns the query's result: same column names and types as the
	// original Compiled's OutputSchema. Nil for a row-wise query.
	Final *Compiled
	// Combine, for an aggregating query, merges partial states into partial
	// states: over Task outputs (its InputSchema and OutputSchema are both
	// Task.OutputSchema()) it returns one row per group with the group's
	// states merged. Running Final over Combine's output gives what Final
	// gives over its input. It is what keeps an aggregate's state across
	// batches (stateful jobs); nil when the query cannot keep state, with
	// StateRefusal saying why.
	Combine *Compiled
	// EventTime, with WithEventTime, locates the hidden partial states of
	// the event time; nil otherwise.
	EventTime *EventTimeParts
	// KeyColumns lists, for each group key of an aggregating query (the
	// task output's __kN columns, in order), the columns it reads, lower
	// case: a key reading the event-time column is the group's event time.
	KeyColumns [][]string
	// KeyIsColumn says, for each group key, whether it is a column as it
	// is (not an expression over one).
	KeyIsColumn []bool
	// KeySession says, for each group key, whether it is a
	// session_window(ts, gap): each record's own session, which a stateful
	// aggregate merges with the overlapping sessions of its other keys.
	KeySession []bool
	// UsesSession: session_window appears anywhere in the query.
	UsesSession bool
	// Signature identifies what the task output holds: the group keys and
	// the partial states, as expressions (not their text: spacing, case
	// and aliases do not count). Two queries with one signature keep the
	// same state.
	Signature string
	// StateRefusal says why the query cannot keep state across batches
	// (a *QueryError at the construct): an ORDER BY, LIMIT or OFFSET, which
	// would apply within each state partition and batch, not to the
	// running result. Nil when Combine is set.
	StateRefusal error
}

// partialsView is the name the final step reads the tasks' outputs by.
const partialsView = "__sluice_partials"

// Distribute divides c so that running Task over each task's rows and Final
// (if any) over all the Task outputs gives what c gives over the whole
// batch. The package documentation ("Distributed aggregation") lists what
// merges. A query whose result would differ is refused with a *QueryError
// wrapping ErrNotAllowed at the construct in the user's query (Position -1
// when it has no place there); other errors (a closed engine, a cancelled
// ctx) are returned as they are. Final runs with no input query; pass it
// the same WithNow as the tasks, since the select list is evaluated there.
func (e *Engine) Distribute(ctx context.Context, c *Compiled, opts ...DistributeOption) (*Distributed, error) {
	var cfg distributeConfig
	for _, o := range opts {
		o(&cfg)
	}
	if c == nil || c.e != e {
		return nil, errors.New("sqlengine: distribute: the query was compiled by another engine")
	}
	s, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	root, err := s.serialize(ctx, c.base)
	if err != nil {
		return nil, fmt.Errorf("sqlengine: distribute: %w", err)
	}
	stmt := root["statements"].([]any)[0].(map[string]any)
	top, _ := stmt["node"].(map[string]any)
	d := &distributor{e: e, c: c, s: s, view: strings.ToLower(c.view), ctes: map[string]map[string]any{}, cfg: cfg}
	walkJSON(top, d.collectCTEs)
	if err := d.check(top); err != nil {
		return nil, err
	}
	usesSession := false
	walkJSON(top, func(n map[string]any) {
		name, _ := n["function_name"].(string)
		usesSession = usesSession || n["class"] == "FUNCTION" && strings.EqualFold(name, "session_window")
	})
	if !d.aggregating(top) {
		if err := d.checkRowWise(top); err != nil {
			return nil, err
		}
		return &Distributed{Task: c, UsesSession: usesSession}, nil
	}
	partial, final, err := d.split(ctx, top)
	if err != nil {
		return nil, err
	}
	stmt["node"] = partial
	partialSQL, err := s.deserialize(ctx, root)
	if err != nil {
		return nil, d.cannot(ctx, fmt.Errorf("write the task query: %w", err))
	}
	stmt["node"] = final
	finalSQL, err := s.deserialize(ctx, root)
	if err != nil {
		return nil, d.cannot(ctx, fmt.Errorf("write the final query: %w", err))
	}

	nowhere := posMap{nowhere: true}
	task := &Compiled{e: e, query: c.query, view: c.view, inputQuery: c.inputQuery, input: c.input, sql: partialSQL, pos: nowhere, readsNow: mentionsNow(partialSQL, c.inputQuery)}
	if err := e.build(ctx, s, task, false, false); err != nil {
		return nil, d.cannot(ctx, fmt.Errorf("task query %s: %w", partialSQL, err))
	}
	fin := &Compiled{e: e, query: c.query, view: partialsView, input: task.output, sql: finalSQL, pos: nowhere, readsNow: mentionsNow(finalSQL)}
	if err := e.build(ctx, s, fin, false, false); err != nil {
		return nil, d.cannot(ctx, fmt.Errorf("final query %s: %w", finalSQL, err))
	}
	if err := sameColumns(fin.output, c.output); err != nil {
		return nil, queryErrorAt(c.query, -1, ErrNotAllowed, "the merged result would differ from the query's: "+err.Error())
	}
	sig := sha256.Sum256([]byte(strings.Join(d.kcan, "\n") + "\n--\n" + strings.Join(d.pcan, "\n")))
	dist := &Distributed{Task: task, Final: fin, EventTime: d.eventTime, Signature: hex.EncodeToString(sig[:]), UsesSession: usesSession}
	for _, k := range d.keys {
		dist.KeyColumns = append(dist.KeyColumns, columnsOf(k))
		dist.KeyIsColumn = append(dist.KeyIsColumn, k["class"] == "COLUMN_REF")
		name, _ := k["function_name"].(string)
		dist.KeySession = append(dist.KeySession, k["class"] == "FUNCTION" && strings.EqualFold(name, "session_window"))
	}
	dist.Combine, dist.StateRefusal = d.buildCombine(ctx, task)
	return dist, nil
}

// DistributeOption changes what Distribute builds.
type DistributeOption func(*distributeConfig)

type distributeConfig struct {
	eventTime string
}

// WithEventTime adds two partial states to an aggregating query's task
// output, for a watermark on column: the largest value of column in each
// group, and the group's rows (Distributed.EventTime). column must be a
// column of the query's FROM.
func WithEventTime(column string) DistributeOption {
	return func(c *distributeConfig) { c.eventTime = column }
}

// EventTimeParts are the task output columns WithEventTime added.
type EventTimeParts struct {
	// Max is the column index of the group's largest event time; Rows of
	// its number of rows.
	Max, Rows int
}

// columnsOf lists the column names an expression reads, lower case (the
// last part of each reference: t.ts is ts).
func columnsOf(n map[string]any) []string {
	var cols []string
	walkJSON(n, func(m map[string]any) {
		if m["class"] != "COLUMN_REF" {
			return
		}
		names, _ := m["column_names"].([]any)
		if len(names) == 0 {
			return
		}
		if name, ok := names[len(names)-1].(string); ok && !slices.Contains(cols, strings.ToLower(name)) {
			cols = append(cols, strings.ToLower(name))
		}
	})
	return cols
}

// buildCombine compiles the query that merges partial states of the same
// group into one (Distributed.Combine), or says why the query cannot keep
// state.
func (d *distributor) buildCombine(ctx context.Context, task *Compiled) (*Compiled, error) {
	if d.ordered {
		return nil, queryErrorAt(d.c.query, d.wordAt("order", "limit", "offset", "distinct"), ErrNotAllowed,
			"ORDER BY, LIMIT, OFFSET and DISTINCT apply to one batch's rows of one state partition, not to the running result of a stateful query (outputMode); remove them and order or limit where you read the result")
	}
	var sel, keys []string
	for i := range d.keys {
		k := quoteIdent(fmt.Sprintf("__k%d", i))
		sel, keys = append(sel, k), append(keys, k)
	}
	for i, fn := range d.combine {
		sel = append(sel, fmt.Sprintf(fn, quoteIdent(fmt.Sprintf("__p%d", i)))+" AS "+quoteIdent(fmt.Sprintf("__p%d", i)))
	}
	sql := "SELECT " + strings.Join(sel, ", ") + " FROM " + partialsView
	if len(keys) > 0 {
		sql += " GROUP BY " + strings.Join(keys, ", ")
	}
	comb := &Compiled{e: d.e, query: d.c.query, view: partialsView, input: task.output, sql: sql, pos: posMap{nowhere: true}, readsNow: mentionsNow(sql)}
	if err := d.e.build(ctx, d.s, comb, false, false); err != nil {
		return nil, d.cannot(ctx, fmt.Errorf("state merge query %s: %w", sql, err))
	}
	if err := sameColumns(comb.output, task.output); err != nil {
		return nil, queryErrorAt(d.c.query, -1, ErrNotAllowed, "the aggregate's state cannot be kept across batches: merging it changes its columns: "+err.Error())
	}
	return comb, nil
}

// combineFor is how partial states of function fn (as the task query
// computes them) merge into one, keeping their type: %s is the column.
func combineFor(fn string, list bool) string {
	switch {
	case list:
		return "list_distinct(flatten(list(%s)))"
	case fn == "sum":
		return "sum(%s)"
	case slices.Contains([]string{"count", "count_star", "count_if", "countif"}, fn):
		return "CAST(coalesce(sum(%s), 0) AS BIGINT)"
	}
	return fn + "(%s)" // min, max, bool_and, bool_or, bit_and, bit_or, bit_xor
}

// sameColumns compares names and types: the safety net under the rewrite.
func sameColumns(got, want *arrow.Schema) error {
	if got.NumFields() != want.NumFields() {
		return fmt.Errorf("%d columns, the query gives %d", got.NumFields(), want.NumFields())
	}
	for i, f := range want.Fields() {
		g := got.Field(i)
		if g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) {
			return fmt.Errorf("column %d would be %s %s, the query gives %s %s", i+1, g.Name, g.Type, f.Name, f.Type)
		}
	}
	return nil
}

type distributor struct {
	e    *Engine
	c    *Compiled
	s    *session
	view string                    // lower case
	ctes map[string]map[string]any // lower-case name: the CTE's query node

	fromCols map[string]bool           // lower-case column names the top FROM gives
	aliases  map[string]map[string]any // lower-case select alias: its expression

	keys  []map[string]any // group keys, resolved (no ordinals or aliases)
	kcan  []string         // canon of each key
	parts []map[string]any // partial aggregate states
	pcan  []string         // canon of each part
	merge map[string]map[string]any
	// combine is, per partial state __pN, the template merging its values
	// (combineFor); ordered: the query has ORDER BY, LIMIT, OFFSET or
	// DISTINCT, which a stateful query cannot keep.
	combine []string
	ordered bool

	cfg       distributeConfig
	eventTime *EventTimeParts
}

// refuse builds the refusal at node n's place in the user's query.
func (d *distributor) refuse(n map[string]any, format string, args ...any) error {
	return queryErrorAt(d.c.query, d.location(n), ErrNotAllowed, fmt.Sprintf(format, args...))
}

func (d *distributor) location(n map[string]any) int {
	if n == nil {
		return -1
	}
	p, _, ok := rawLocation(n)
	if !ok {
		return -1
	}
	o, ok := d.c.basePos.original(p)
	if !ok {
		return -1
	}
	return o
}

// cannot reports a rewrite the engine could not bind or run: refused
// rather than risk a different result, unless the context or the engine
// ended.
func (d *distributor) cannot(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, ErrClosed) {
		return err
	}
	return queryErrorAt(d.c.query, -1, ErrNotAllowed, fmt.Sprintf("the query cannot be divided into per-task and final steps: %v", err))
}

func (d *distributor) collectCTEs(n map[string]any) {
	cm, ok := n["cte_map"].(map[string]any)
	if !ok {
		return
	}
	entries, _ := cm["map"].([]any)
	for _, e := range entries {
		kv, _ := e.(map[string]any)
		k, _ := kv["key"].(string)
		v, _ := kv["value"].(map[string]any)
		if q, ok := v["query_node"].(map[string]any); ok && k != "" {
			d.ctes[strings.ToLower(k)] = q
		}
	}
}

// reads says whether v reads the view, directly or through a CTE.
func (d *distributor) reads(v any) bool {
	return d.readsSeen(v, map[string]bool{})
}

func (d *distributor) readsSeen(v any, seen map[string]bool) bool {
	found := false
	walkJSON(v, func(n map[string]any) {
		if found || n["type"] != "BASE_TABLE" {
			return
		}
		name, _ := n["table_name"].(string)
		name = strings.ToLower(name)
		switch q, isCTE := d.ctes[name]; {
		case name == d.view:
			found = true
		case isCTE && !seen[name]:
			seen[name] = true
			found = d.readsSeen(q, seen)
		}
	})
	return found
}

// queryNodes lists every query node under v (v included), in no order.
func queryNodes(v any) []map[string]any {
	var out []map[string]any
	walkJSON(v, func(n map[string]any) {
		if _, isExpr := n["class"]; isExpr {
			return
		}
		switch n["type"] {
		case "SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE":
			out = append(out, n)
		}
	})
	return out
}

// own calls visit on n's own expressions, not those of its subqueries.
func ownExprs(n map[string]any, visit func(e map[string]any)) {
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["class"] == "SUBQUERY" {
				return
			}
			if _, ok := x["class"]; ok {
				visit(x)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	for _, k := range []string{"select_list", "where_clause", "group_expressions", "having", "qualify", "modifiers"} {
		walk(n[k])
	}
}

// earliest returns the node nearest the start of the query.
func (d *distributor) earliest(ns []map[string]any) map[string]any {
	var best map[string]any
	for _, n := range ns {
		if best == nil || d.location(n) >= 0 && (d.location(best) < 0 || d.location(n) < d.location(best)) {
			best = n
		}
	}
	return best
}

// wordAt is the offset of the first of words (case-insensitive) in the
// user's query, or -1: for constructs DuckDB's tree gives no location.
func (d *distributor) wordAt(words ...string) int {
	for _, t := range lex(d.c.query) {
		if t.kind == tokWord && slices.Contains(words, strings.ToLower(t.text(d.c.query))) {
			return t.start
		}
	}
	return -1
}

const perTask = "each task would compute it over its own rows only, and the tasks' results cannot be combined into the batch's"

// check refuses what gives another result per task than over the batch,
// whether or not the query aggregates.
func (d *distributor) check(top map[string]any) error {
	if d.c.materialize {
		var refs []map[string]any
		walkJSON(top, func(n map[string]any) {
			if name, _ := n["table_name"].(string); n["type"] == "BASE_TABLE" && strings.ToLower(name) == d.view {
				refs = append(refs, n)
			}
		})
		slices.SortFunc(refs, func(a, b map[string]any) int { return d.location(a) - d.location(b) })
		off := -1
		if len(refs) > 1 {
			off = d.location(refs[1])
		}
		return queryErrorAt(d.c.query, off, ErrNotAllowed, fmt.Sprintf("the query reads its view %q more than once (a self-join, a subquery or UNION over it, or a recursive CTE): %s", d.c.view, perTask))
	}
	if top["type"] != "SELECT_NODE" {
		return queryErrorAt(d.c.query, d.wordAt("union", "except", "intersect"), ErrNotAllowed,
			"UNION, EXCEPT and INTERSECT of a query over the view are not run per task: "+perTask)
	}
	if !d.reads(top["from_table"]) {
		from, _ := top["from_table"].(map[string]any)
		return d.refuse(from, "the query's FROM does not read its view %q: every task would produce the same rows", d.c.view)
	}
	// Joins: a task joins its own rows with the other side. Rows a join
	// keeps without a match on the view's side would come once per task.
	var bad []map[string]any
	var why string
	walkJSON(top, func(n map[string]any) {
		if n["type"] != "JOIN" {
			return
		}
		l, r := d.reads(n["left"]), d.reads(n["right"])
		if !l && !r {
			return
		}
		jt, _ := n["join_type"].(string)
		rt, _ := n["ref_type"].(string)
		switch {
		case rt == "POSITIONAL":
			bad, why = append(bad, n), "a POSITIONAL JOIN pairs rows by their place in each task"
		case (jt == "LEFT" || jt == "SEMI" || jt == "ANTI" || jt == "MARK") && !l,
			jt == "RIGHT" && !r, jt == "OUTER":
			bad, why = append(bad, n), "an outer join that keeps rows of a table other than the view would keep them once per task"
		}
	})
	if len(bad) > 0 {
		return d.refuse(d.earliest(bad), "%s", why)
	}
	// Subqueries and CTEs over the view: each task would aggregate, sort,
	// limit or deduplicate its own rows.
	for _, n := range queryNodes(top) {
		if sameNode(n, top) || !d.reads(n) {
			continue
		}
		if n["type"] != "SELECT_NODE" {
			return queryErrorAt(d.c.query, d.wordAt("union", "except", "intersect", "recursive"), ErrNotAllowed,
				"UNION, EXCEPT, INTERSECT and recursive CTEs over the view are not run per task: "+perTask)
		}
		if err := d.checkInner(n); err != nil {
			return err
		}
	}
	// Window functions and QUALIFY at the top see the task's rows only.
	var wins []map[string]any
	ownExprs(top, func(e map[string]any) {
		if e["class"] == "WINDOW" {
			wins = append(wins, e)
		}
	})
	if len(wins) > 0 {
		return d.refuse(d.earliest(wins), "window functions (OVER) see only each task's rows: %s", perTask)
	}
	if q, ok := top["qualify"].(map[string]any); ok {
		return d.refuse(q, "QUALIFY filters on window functions, which see only each task's rows")
	}
	if s, ok := top["sample"].(map[string]any); ok && len(s) > 0 {
		return queryErrorAt(d.c.query, d.wordAt("using", "tablesample"), ErrNotAllowed, "a SAMPLE would sample each task's rows, not the batch's")
	}
	return nil
}

// sameNode: a and b are one map, not two equal ones.
func sameNode(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// checkInner refuses a subquery or CTE over the view that does something
// only the whole batch can.
func (d *distributor) checkInner(n map[string]any) error {
	const where = "in a subquery or CTE that reads the view"
	var found []map[string]any
	var what string
	ownExprs(n, func(e map[string]any) {
		switch {
		case e["class"] == "WINDOW":
			found, what = append(found, e), "a window function"
		case e["class"] == "FUNCTION" && d.isAggregate(e):
			found, what = append(found, e), "an aggregate"
		}
	})
	if len(found) > 0 {
		return d.refuse(d.earliest(found), "%s %s: %s; aggregate in the outermost SELECT instead", what, where, perTask)
	}
	if g, _ := n["group_expressions"].([]any); len(g) > 0 {
		first, _ := g[0].(map[string]any)
		return d.refuse(first, "GROUP BY %s: %s; aggregate in the outermost SELECT instead", where, perTask)
	}
	if n["aggregate_handling"] == "FORCE_AGGREGATES" {
		return queryErrorAt(d.c.query, d.wordAt("all"), ErrNotAllowed, "GROUP BY ALL "+where+": "+perTask)
	}
	if h, ok := n["having"].(map[string]any); ok {
		return d.refuse(h, "HAVING %s: %s", where, perTask)
	}
	if q, ok := n["qualify"].(map[string]any); ok {
		return d.refuse(q, "QUALIFY %s: %s", where, perTask)
	}
	for _, m := range listOf(n["modifiers"]) {
		switch m["type"] {
		case "DISTINCT_MODIFIER":
			return queryErrorAt(d.c.query, d.wordAt("distinct"), ErrNotAllowed, "DISTINCT "+where+" removes duplicates within each task only")
		case "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER":
			return d.refuse(limitExpr(m), "LIMIT or OFFSET %s keeps rows of each task, not of the batch", where)
		}
	}
	return nil
}

func listOf(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func limitExpr(m map[string]any) map[string]any {
	for _, k := range []string{"limit", "offset"} {
		if e, ok := m[k].(map[string]any); ok {
			return e
		}
	}
	return nil
}

func (d *distributor) isAggregate(f map[string]any) bool {
	name, _ := f["function_name"].(string)
	return duckdbAggregates[strings.ToLower(name)]
}

// aggregating: the top SELECT groups, has HAVING or calls aggregates.
func (d *distributor) aggregating(top map[string]any) bool {
	if g, _ := top["group_expressions"].([]any); len(g) > 0 {
		return true
	}
	if top["aggregate_handling"] == "FORCE_AGGREGATES" {
		return true
	}
	if _, ok := top["having"].(map[string]any); ok {
		return true
	}
	found := false
	ownExprs(top, func(e map[string]any) {
		found = found || e["class"] == "FUNCTION" && d.isAggregate(e)
	})
	return found
}

// checkRowWise refuses what a row-wise query would do per task.
func (d *distributor) checkRowWise(top map[string]any) error {
	for _, m := range listOf(top["modifiers"]) {
		switch m["type"] {
		case "DISTINCT_MODIFIER":
			return queryErrorAt(d.c.query, d.wordAt("distinct"), ErrNotAllowed,
				"DISTINCT without an aggregate removes duplicates within each task's rows only; write GROUP BY over the columns to deduplicate the batch")
		case "ORDER_MODIFIER":
			var first map[string]any
			if o := listOf(m["orders"]); len(o) > 0 {
				first, _ = o[0]["expression"].(map[string]any)
			}
			return d.refuse(first, "ORDER BY without an aggregate sorts each task's rows only; Spark refuses sorting a streaming query without aggregation too")
		case "LIMIT_MODIFIER", "LIMIT_PERCENT_MODIFIER":
			return d.refuse(limitExpr(m), "LIMIT or OFFSET without an aggregate keeps rows of each task, not of the batch; Spark refuses it on a streaming query without aggregation too")
		}
	}
	return nil
}

// merge rules: how each aggregate is computed per task (partial function)
// and combined in the final step (a template over the partial columns).
type mergeRule struct {
	partial []string // functions computing the partial states, in template order
	list    bool     // the partial is list(DISTINCT x)
	final   string   // %[1]s, %[2]s: the partial columns
}

// countMerge: a count over no rows (a global aggregate over an empty
// batch) is 0, not NULL; and a count stays a BIGINT.
const countMerge = "CAST(coalesce(sum(%[1]s), 0) AS BIGINT)"

func mergeFor(name string, distinct bool) (mergeRule, string) {
	switch name {
	case "sum":
		if distinct {
			return mergeRule{list: true, final: "list_sum(list_distinct(flatten(list(%[1]s))))"}, ""
		}
		return mergeRule{partial: []string{"sum"}, final: "sum(%[1]s)"}, ""
	case "count", "count_star", "count_if", "countif":
		if distinct {
			if name != "count" {
				break
			}
			// list_distinct drops NULLs, as count(DISTINCT x) does.
			return mergeRule{list: true, final: "CAST(coalesce(len(list_distinct(flatten(list(%[1]s)))), 0) AS BIGINT)"}, ""
		}
		return mergeRule{partial: []string{name}, final: countMerge}, ""
	case "avg", "mean":
		if distinct {
			return mergeRule{list: true, final: "list_avg(list_distinct(flatten(list(%[1]s))))"}, ""
		}
		return mergeRule{partial: []string{"sum", "count"}, final: "CAST(sum(%[1]s) AS DOUBLE) / sum(%[2]s)"}, ""
	case "min", "max", "bool_and", "bool_or", "bit_and", "bit_or":
		// DISTINCT changes nothing for these.
		return mergeRule{partial: []string{name}, final: name + "(%[1]s)"}, ""
	case "bit_xor":
		if !distinct {
			return mergeRule{partial: []string{name}, final: name + "(%[1]s)"}, ""
		}
	}
	const mergeable = "mergeable: count, sum, avg, min, max, bool_and, bool_or, bit_and, bit_or, bit_xor, and count/sum/avg DISTINCT"
	switch {
	case strings.HasPrefix(name, "quantile") || strings.Contains(name, "quantile") || strings.Contains(name, "percentile") ||
		slices.Contains([]string{"median", "mode", "mad", "histogram", "histogram_exact", "string_agg", "group_concat", "listagg",
			"list", "array_agg", "entropy", "approx_count_distinct", "approx_top_k", "lttb", "bitstring_agg", "collect_list", "collect_set"}, name):
		return mergeRule{}, fmt.Sprintf("%s cannot be computed per task and merged exactly; it needs all the values of a group at once (%s)", name, mergeable)
	case slices.Contains([]string{"first", "last", "any_value", "arbitrary", "min_by", "max_by", "argmin", "argmax"}, name) ||
		strings.HasPrefix(name, "arg_min") || strings.HasPrefix(name, "arg_max"):
		return mergeRule{}, fmt.Sprintf("%s cannot be computed per task and merged exactly; which row it picks depends on the order of rows, which differs between the tasks and one scan of the batch (%s)", name, mergeable)
	}
	return mergeRule{}, fmt.Sprintf("%s cannot be computed per task and merged exactly; its merged result could differ from one scan of the batch (%s)", name, mergeable)
}

// split builds the task (partial) and final query nodes of an aggregating
// top SELECT.
func (d *distributor) split(ctx context.Context, top map[string]any) (partial, final map[string]any, err error) {
	if sets, _ := top["group_sets"].([]any); len(sets) > 1 {
		g, _ := top["group_expressions"].([]any)
		var first map[string]any
		if len(g) > 0 {
			first, _ = g[0].(map[string]any)
		}
		off := d.wordAt("grouping", "rollup", "cube")
		if off < 0 {
			off = d.location(first)
		}
		return nil, nil, queryErrorAt(d.c.query, off, ErrNotAllowed, "GROUPING SETS, ROLLUP and CUBE are not divided into per-task and final steps; group by plain expressions")
	}
	selects := listOf(top["select_list"])
	for _, item := range selects {
		if item["class"] == "STAR" || item["class"] == "COLUMNS" {
			return nil, nil, d.refuse(item, "* and COLUMNS(...) in an aggregating query are not divided into per-task and final steps; name the columns")
		}
	}
	if len(selects) != d.c.output.NumFields() {
		return nil, nil, queryErrorAt(d.c.query, -1, ErrNotAllowed, "the select list does not match the output columns one to one")
	}
	var refusal error
	ownExprs(top, func(e map[string]any) {
		name, _ := e["function_name"].(string)
		if refusal == nil && e["class"] == "FUNCTION" && (strings.EqualFold(name, "grouping") || strings.EqualFold(name, "grouping_id")) {
			refusal = d.refuse(e, "GROUPING() is not divided into per-task and final steps")
		}
	})
	if refusal != nil {
		return nil, nil, refusal
	}

	// The FROM's columns decide whether a bare name in GROUP BY is a
	// column or a select alias (DuckDB: the column first).
	if err := d.loadFromColumns(ctx, top); err != nil {
		return nil, nil, err
	}
	d.aliases = map[string]map[string]any{}
	for _, item := range selects {
		if a, _ := item["alias"].(string); a != "" {
			d.aliases[strings.ToLower(a)] = item
		}
	}

	// 1. The group keys, with ordinals and aliases resolved.
	if top["aggregate_handling"] == "FORCE_AGGREGATES" {
		for _, item := range selects {
			if !d.hasAggregate(item) {
				d.addKey(item)
			}
		}
	}
	for _, g := range listOf(top["group_expressions"]) {
		d.addKey(d.resolveGroup(g, selects))
	}

	// 2. The aggregates, with their partial states and merges.
	d.merge = map[string]map[string]any{}
	var aggs []map[string]any
	ownExprs(top, func(e map[string]any) {
		if e["class"] == "FUNCTION" && d.isAggregate(e) {
			aggs = append(aggs, e)
		}
	})
	slices.SortFunc(aggs, func(a, b map[string]any) int { return d.location(a) - d.location(b) })
	for _, a := range aggs {
		if err := d.addAggregate(ctx, a); err != nil {
			return nil, nil, err
		}
	}

	// 2b. The event time's partial states (WithEventTime).
	if col := d.cfg.eventTime; col != "" {
		et := &EventTimeParts{}
		for i, expr := range []string{"max(" + quoteIdent(col) + ")", "count_star()"} {
			n, err := d.s.exprNode(ctx, expr)
			if err != nil {
				return nil, nil, err
			}
			delete(n, "alias")
			c := canon(n)
			idx := slices.Index(d.pcan, c)
			if idx < 0 {
				idx = len(d.parts)
				d.parts = append(d.parts, n)
				d.pcan = append(d.pcan, c)
			}
			// The task output has the keys first, then the parts.
			if i == 0 {
				et.Max = len(d.keys) + idx
			} else {
				et.Rows = len(d.keys) + idx
			}
		}
		d.eventTime = et
	}

	// 3. The task query: keys and partial states, grouped by the keys.
	partial = deepCopy(top).(map[string]any)
	var list []any
	for i, k := range d.keys {
		k = deepCopy(k).(map[string]any)
		k["alias"] = fmt.Sprintf("__k%d", i)
		list = append(list, k)
	}
	for i, p := range d.parts {
		p = deepCopy(p).(map[string]any)
		p["alias"] = fmt.Sprintf("__p%d", i)
		list = append(list, p)
	}
	for _, p := range d.parts {
		fn, _ := p["function_name"].(string)
		list, _ := p["distinct"].(bool)
		d.combine = append(d.combine, combineFor(strings.ToLower(fn), list && fn == "list"))
	}
	if len(list) == 0 {
		// HAVING alone: a task still says that it saw its rows.
		n, err := d.s.exprNode(ctx, "count_star() AS __p0")
		if err != nil {
			return nil, nil, err
		}
		list = append(list, n)
		d.combine = append(d.combine, combineFor("count_star", false))
	}
	partial["select_list"] = list
	groups, set := []any{}, []any{}
	for i, k := range d.keys {
		k = deepCopy(k).(map[string]any)
		delete(k, "alias")
		groups = append(groups, k)
		set = append(set, json.Number(strconv.Itoa(i)))
	}
	partial["group_expressions"] = groups
	partial["group_sets"] = []any{}
	if len(groups) > 0 {
		partial["group_sets"] = []any{set}
	}
	partial["aggregate_handling"] = "STANDARD_HANDLING"
	partial["modifiers"] = []any{}
	delete(partial, "having")
	delete(partial, "qualify")

	// 4. The final query over the partials: the select list, HAVING, ORDER
	// BY and LIMIT, keys read from __kN and aggregates merged.
	tmpl := "SELECT 1 FROM " + partialsView
	if len(d.keys) > 0 {
		var ks []string
		for i := range d.keys {
			ks = append(ks, fmt.Sprintf("__k%d", i))
		}
		tmpl += " GROUP BY " + strings.Join(ks, ", ")
	}
	troot, err := d.s.serialize(ctx, tmpl)
	if err != nil {
		return nil, nil, err
	}
	final = troot["statements"].([]any)[0].(map[string]any)["node"].(map[string]any)
	var out []any
	for i, item := range selects {
		n, err := d.subst(item, false)
		if err != nil {
			return nil, nil, err
		}
		n["alias"] = d.c.output.Field(i).Name
		out = append(out, n)
	}
	final["select_list"] = out
	if h, ok := top["having"].(map[string]any); ok {
		if final["having"], err = d.subst(h, false); err != nil {
			return nil, nil, err
		}
	}
	mods := deepCopy(top["modifiers"])
	d.ordered = len(listOf(mods)) > 0
	for _, m := range listOf(mods) {
		for _, o := range listOf(m["orders"]) {
			if e, ok := o["expression"].(map[string]any); ok {
				if o["expression"], err = d.subst(e, true); err != nil {
					return nil, nil, err
				}
			}
		}
		if targets, ok := m["distinct_on_targets"].([]any); ok {
			for i, t := range targets {
				if e, ok := t.(map[string]any); ok {
					if targets[i], err = d.subst(e, true); err != nil {
						return nil, nil, err
					}
				}
			}
		}
	}
	if mods != nil {
		final["modifiers"] = mods
	}
	return partial, final, nil
}

// loadFromColumns binds SELECT * over the top FROM (with the CTEs).
func (d *distributor) loadFromColumns(ctx context.Context, top map[string]any) error {
	root, err := d.s.serialize(ctx, "SELECT * FROM __sluice_from")
	if err != nil {
		return err
	}
	stmt := root["statements"].([]any)[0].(map[string]any)
	n := stmt["node"].(map[string]any)
	n["from_table"] = deepCopy(top["from_table"])
	if cm, ok := top["cte_map"]; ok {
		n["cte_map"] = deepCopy(cm)
	}
	sql, err := d.s.deserialize(ctx, root)
	if err != nil {
		return d.cannot(ctx, fmt.Errorf("write the FROM clause: %w", err))
	}
	s, err := d.e.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	empty, err := array.NewRecordReader(d.c.input, nil)
	if err != nil {
		return err
	}
	defer empty.Release()
	detach, err := s.attach(ctx, empty, d.c.view, d.c.inputQuery, d.c.inputSelect, false)
	if err != nil {
		return d.cannot(ctx, err)
	}
	_, names, err := s.bind(ctx, d.c.query, sql, posMap{nowhere: true})
	detach()
	if err != nil {
		return d.cannot(ctx, fmt.Errorf("bind the FROM clause: %w", err))
	}
	d.fromCols = map[string]bool{}
	for _, n := range names {
		d.fromCols[strings.ToLower(n)] = true
	}
	return nil
}

// bareName is an unqualified column reference's name, lower case.
func bareName(n map[string]any) (string, bool) {
	if n["class"] != "COLUMN_REF" {
		return "", false
	}
	names, _ := n["column_names"].([]any)
	if len(names) != 1 {
		return "", false
	}
	s, ok := names[0].(string)
	return strings.ToLower(s), ok
}

// resolveGroup turns GROUP BY 2 and GROUP BY alias into the select item's
// expression, as DuckDB binds them: a constant integer is an ordinal; a bare
// name is the FROM's column if there is one, else a select alias.
func (d *distributor) resolveGroup(g map[string]any, selects []map[string]any) map[string]any {
	if g["class"] == "CONSTANT" {
		lit, _ := g["literal"].(map[string]any)
		if lit["kind"] == "INTEGER" {
			text, _ := lit["text"].(string)
			if i, err := strconv.Atoi(text); err == nil && i >= 1 && i <= len(selects) {
				return selects[i-1]
			}
		}
	}
	if name, ok := bareName(g); ok && !d.fromCols[name] {
		if item, ok := d.aliases[name]; ok {
			return item
		}
	}
	return g
}

func (d *distributor) addKey(k map[string]any) {
	k = deepCopy(k).(map[string]any)
	delete(k, "alias")
	c := canon(k)
	if slices.Contains(d.kcan, c) {
		return
	}
	d.keys = append(d.keys, k)
	d.kcan = append(d.kcan, c)
}

func (d *distributor) hasAggregate(v any) bool {
	found := false
	ownExprs(map[string]any{"select_list": []any{v}}, func(e map[string]any) {
		found = found || e["class"] == "FUNCTION" && d.isAggregate(e)
	})
	return found
}

// addAggregate records a's partial states and its merge expression.
func (d *distributor) addAggregate(ctx context.Context, a map[string]any) error {
	c := canon(a)
	if _, ok := d.merge[c]; ok {
		return nil
	}
	name, _ := a["function_name"].(string)
	name = strings.ToLower(name)
	distinct, _ := a["distinct"].(bool)
	if es, _ := a["export_state"].(bool); es {
		return d.refuse(a, "EXPORT_STATE is not divided into per-task and final steps")
	}
	rule, why := mergeFor(name, distinct)
	if why != "" {
		return d.refuse(a, "%s", why)
	}
	var cols []any
	fns := rule.partial
	if rule.list {
		fns = []string{"list"}
	}
	for _, fn := range fns {
		p := deepCopy(a).(map[string]any)
		delete(p, "alias")
		p["function_name"] = fn
		p["qualified_name"] = map[string]any{"path": []any{fn}}
		p["distinct"] = rule.list
		pc := canon(p)
		i := slices.Index(d.pcan, pc)
		if i < 0 {
			i = len(d.parts)
			d.parts = append(d.parts, p)
			d.pcan = append(d.pcan, pc)
		}
		cols = append(cols, quoteIdent(fmt.Sprintf("__p%d", i)))
	}
	n, err := d.s.exprNode(ctx, fmt.Sprintf(rule.final, cols...))
	if err != nil {
		return err
	}
	d.merge[c] = n
	return nil
}

// subst rewrites an expression of the top SELECT for the final query:
// aggregates become their merges, group keys __kN. root: n is a whole ORDER
// BY item, where a bare name or an integer names a select item.
func (d *distributor) subst(n map[string]any, root bool) (map[string]any, error) {
	alias, hasAlias := n["alias"]
	keep := func(m map[string]any) map[string]any {
		m = deepCopy(m).(map[string]any)
		delete(m, "alias")
		if hasAlias {
			m["alias"] = alias
		}
		return m
	}
	if n["class"] == "FUNCTION" && d.isAggregate(n) {
		return keep(d.merge[canon(n)]), nil
	}
	if n["class"] == "SUBQUERY" {
		return keep(n), nil
	}
	if root && n["class"] == "CONSTANT" {
		return keep(n), nil
	}
	if name, ok := bareName(n); ok {
		item, isAlias := d.aliases[name]
		switch {
		case isAlias && !d.fromCols[name]:
			return keep(n), nil // the select item of that name
		case isAlias && !sameColumnName(item, name):
			return nil, d.refuse(n, "%q names both a column and a select alias of another expression; rename the alias or qualify the column", name)
		}
	}
	c := canon(n)
	if i := slices.Index(d.kcan, c); i >= 0 {
		return keep(keyRef(i)), nil
	}
	if n["class"] == "COLUMN_REF" {
		// t.branch in GROUP BY, branch in the select list: one column.
		if i := d.keyByName(n); i >= 0 {
			return keep(keyRef(i)), nil
		}
	}
	out := map[string]any{}
	for k, v := range n {
		nv, err := d.substAny(v)
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	return out, nil
}

func (d *distributor) substAny(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		if _, ok := x["class"]; ok {
			return d.subst(x, false)
		}
		out := map[string]any{}
		for k, c := range x {
			nc, err := d.substAny(c)
			if err != nil {
				return nil, err
			}
			out[k] = nc
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			nc, err := d.substAny(c)
			if err != nil {
				return nil, err
			}
			out[i] = nc
		}
		return out, nil
	}
	return v, nil
}

// sameColumnName: the select item is a column reference named name (t.x AS
// x), so the alias and the column mean one thing.
func sameColumnName(item map[string]any, name string) bool {
	names, _ := item["column_names"].([]any)
	if item["class"] != "COLUMN_REF" || len(names) == 0 {
		return false
	}
	last, _ := names[len(names)-1].(string)
	return strings.EqualFold(last, name)
}

// keyByName finds the one column-reference key with n's column name.
func (d *distributor) keyByName(n map[string]any) int {
	names, _ := n["column_names"].([]any)
	if len(names) == 0 {
		return -1
	}
	last, _ := names[len(names)-1].(string)
	found := -1
	for i, k := range d.keys {
		kn, _ := k["column_names"].([]any)
		if k["class"] != "COLUMN_REF" || len(kn) == 0 {
			continue
		}
		if kl, _ := kn[len(kn)-1].(string); strings.EqualFold(kl, last) {
			if found >= 0 {
				return -1 // t1.id and t2.id: ambiguous
			}
			found = i
		}
	}
	return found
}

func keyRef(i int) map[string]any {
	return map[string]any{"class": "COLUMN_REF", "type": "COLUMN_REF", "column_names": []any{fmt.Sprintf("__k%d", i)}}
}

// canon is an expression's text for comparing: without places and aliases,
// column names in lower case.
func canon(n map[string]any) string {
	var strip func(v any) any
	strip = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := map[string]any{}
			for k, c := range x {
				switch k {
				case "query_location", "query_location_length", "alias":
					continue
				case "column_names":
					var names []any
					for _, s := range c.([]any) {
						if str, ok := s.(string); ok {
							s = strings.ToLower(str)
						}
						names = append(names, s)
					}
					out[k] = names
					continue
				}
				out[k] = strip(c)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i, c := range x {
				out[i] = strip(c)
			}
			return out
		}
		return v
	}
	b, _ := json.Marshal(strip(n))
	return string(b)
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, c := range x {
			out[k] = deepCopy(c)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, c := range x {
			out[i] = deepCopy(c)
		}
		return out
	}
	return v
}

// serialize returns DuckDB's parse tree of sql, the whole document
// json_deserialize_sql takes back.
func (s *session) serialize(ctx context.Context, sql string) (map[string]any, error) {
	res, err := s.queryString(ctx, `SELECT CAST(json_serialize_sql(CAST($1 AS VARCHAR)) AS VARCHAR)`, sql)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(res))
	dec.UseNumber() // keeps 2^64-1, DuckDB's "no location", exact
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("read json_serialize_sql: %w", err)
	}
	if e, _ := root["error"].(bool); e {
		return nil, fmt.Errorf("parse %q: %v", sql, root["error_message"])
	}
	if st, _ := root["statements"].([]any); len(st) != 1 {
		return nil, fmt.Errorf("parse %q: want one statement", sql)
	}
	return root, nil
}

func (s *session) deserialize(ctx context.Context, root map[string]any) (string, error) {
	b, err := json.Marshal(root)
	if err != nil {
		return "", err
	}
	return s.queryString(ctx, `SELECT json_deserialize_sql(CAST($1 AS JSON))`, string(b))
}

// exprNode parses one select-list expression written by the engine.
func (s *session) exprNode(ctx context.Context, expr string) (map[string]any, error) {
	root, err := s.serialize(ctx, "SELECT "+expr)
	if err != nil {
		return nil, err
	}
	node := root["statements"].([]any)[0].(map[string]any)["node"].(map[string]any)
	return listOf(node["select_list"])[0], nil
}
