//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// ReadColumns returns the input columns a run of c reads, in input order,
// and true; or false when it cannot tell, and the caller must give runs
// every column. The columns it leaves out can be left out of Run's input
// (Narrow) without changing a result: count(*) reads none, SELECT * and a
// whole-row reference (hash(t), with t the view's alias) read all of them.
//
// Runs cannot learn this themselves: Arrow views are read with DuckDB's
// unused_columns optimizer off (see Open), so every run converts every
// column. ReadColumns asks DuckDB's optimizer instead, in a second database
// with the same functions (opened on first use), where the input is an
// empty TEMP table of the input's schema and the optimizer is on: the
// plan's scans of that table list the columns they read. A plan without a
// scan of the input (a constant query, WHERE false, LIMIT 0) or with a scan
// this code cannot read answers false.
func (c *Compiled) ReadColumns(ctx context.Context) ([]string, bool, error) {
	p, err := c.e.planner(ctx)
	if err != nil {
		return nil, false, err
	}
	s, err := p.connect(ctx)
	if err != nil {
		return nil, false, err
	}
	defer s.close()

	// The input as a TEMP table of exactly the types a run's Arrow view
	// has: copied from an empty stream of the input's schema.
	empty, err := array.NewRecordReader(c.input, nil)
	if err != nil {
		return nil, false, fmt.Errorf("sqlengine: read columns: %w", err)
	}
	defer empty.Release()
	table := c.view
	if c.inputQuery != "" {
		table = InputName
	}
	name, detach, err := s.register(empty)
	if err != nil {
		return nil, false, fmt.Errorf("sqlengine: read columns: %w", err)
	}
	err = s.execContext(ctx, "CREATE TEMP TABLE "+quoteIdent(table)+" AS SELECT * FROM "+quoteIdent(name))
	detach()
	if err == nil && c.inputQuery != "" {
		err = s.execContext(ctx, "CREATE TEMP VIEW "+quoteIdent(c.view)+" AS "+c.inputQuery)
	}
	if err != nil {
		return nil, false, fmt.Errorf("sqlengine: read columns: %w", err)
	}
	plans, err := s.explain(ctx, c.sql)
	if err != nil {
		return nil, false, fmt.Errorf("sqlengine: read columns: %w", err)
	}
	cols, ok := scannedColumns(plans, c.input)
	return cols, ok, nil
}

// Narrow returns c for runs whose input holds only cols, a subset of c's
// input columns in the same order that includes every column c reads
// (ReadColumns): in the view the query reads, the other columns are NULLs
// of their types. The query is not compiled again, so the output schema
// and, since the query reads none of the NULL columns, the results are
// c's; a run just builds and converts fewer columns. It fails when cols
// are not such a subset.
func (c *Compiled) Narrow(ctx context.Context, cols []string) (*Compiled, error) {
	if c.inputSelect != "" {
		return nil, fmt.Errorf("sqlengine: narrow: already narrowed")
	}
	var fields []arrow.Field
	j := 0
	for _, f := range c.input.Fields() {
		if j < len(cols) && cols[j] == f.Name {
			fields = append(fields, f)
			j++
		}
	}
	if j != len(cols) || len(cols) == 0 {
		return nil, fmt.Errorf("sqlengine: narrow: %q are not input columns in input order", cols)
	}
	types, err := c.e.duckTypes(ctx, c.input)
	if err != nil {
		return nil, fmt.Errorf("sqlengine: narrow: %w", err)
	}
	sel := make([]string, 0, len(types))
	j = 0
	for i, f := range c.input.Fields() {
		if j < len(fields) && fields[j].Name == f.Name {
			sel = append(sel, quoteIdent(f.Name))
			j++
			continue
		}
		sel = append(sel, "CAST(NULL AS "+types[i]+") AS "+quoteIdent(f.Name))
	}
	n := *c
	md := c.input.Metadata()
	n.input = arrow.NewSchema(fields, &md)
	n.inputSelect = strings.Join(sel, ", ")
	return &n, nil
}

// duckTypes returns the DuckDB types of schema's columns as a run's Arrow
// view has them, in order.
func (e *Engine) duckTypes(ctx context.Context, schema *arrow.Schema) ([]string, error) {
	s, err := e.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.close()
	empty, err := array.NewRecordReader(schema, nil)
	if err != nil {
		return nil, err
	}
	defer empty.Release()
	name, detach, err := s.register(empty)
	if err != nil {
		return nil, err
	}
	defer detach()
	rows, err := s.conn.(driver.QueryerContext).QueryContext(ctx, "SELECT column_type FROM (DESCRIBE SELECT * FROM "+quoteIdent(name)+")", nil)
	if err != nil {
		return nil, fmt.Errorf("describe the input: %w", err)
	}
	defer rows.Close()
	var types []string
	vals := make([]driver.Value, 1)
	for {
		if err := rows.Next(vals); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("describe the input: %w", err)
		}
		t, _ := vals[0].(string)
		types = append(types, t)
	}
	if len(types) != schema.NumFields() {
		return nil, fmt.Errorf("describe the input: %d types for %d columns", len(types), schema.NumFields())
	}
	return types, nil
}

// explain returns the JSON plans DuckDB gives for sql.
func (s *session) explain(ctx context.Context, sql string) ([]any, error) {
	rows, err := s.conn.(driver.QueryerContext).QueryContext(ctx, "EXPLAIN (FORMAT JSON) "+sql, nil)
	if err != nil {
		return nil, fmt.Errorf("explain: %w", err)
	}
	defer rows.Close()
	var plans []any
	vals := make([]driver.Value, len(rows.Columns()))
	for {
		if err := rows.Next(vals); errors.Is(err, io.EOF) {
			return plans, nil
		} else if err != nil {
			return nil, fmt.Errorf("explain: %w", err)
		}
		text, _ := vals[len(vals)-1].(string)
		var plan any
		if err := json.Unmarshal([]byte(text), &plan); err != nil {
			return nil, fmt.Errorf("explain: read plan: %w", err)
		}
		plans = append(plans, plan)
	}
}

// scannedColumns collects the projections of the table scans in plans (the
// planner session holds one table, the input) as input columns in input
// order. It answers false for a plan with no scan, an empty result, a scan
// without readable projections, or a projection that is not an input
// column.
func scannedColumns(plans []any, input *arrow.Schema) ([]string, bool) {
	read := map[string]bool{}
	scans, ok := 0, true
	walkJSON(plans, func(n map[string]any) {
		name, _ := n["name"].(string)
		if name == "EMPTY_RESULT" {
			ok = false
		}
		info, _ := n["extra_info"].(map[string]any)
		if _, isScan := info["Table"]; !isScan {
			return
		}
		scans++
		switch p := info["Projections"].(type) {
		case string:
			if p != "" {
				read[p] = true
			}
		case []any:
			for _, v := range p {
				col, isString := v.(string)
				if !isString {
					ok = false
					return
				}
				read[col] = true
			}
		default: // absent: DuckDB changed how it writes scans
			ok = false
		}
	})
	if !ok || scans == 0 {
		return nil, false
	}
	cols := []string{}
	for _, f := range input.Fields() {
		if read[f.Name] {
			cols = append(cols, f.Name)
			delete(read, f.Name)
		}
	}
	if len(read) > 0 {
		return nil, false // a name this code did not map back (quoted?)
	}
	return cols, true
}

// OpenPlanner opens the database ReadColumns plans in, unless it is open
// already. ReadColumns opens it at its first use; a caller that will need
// it can open it ahead, alongside other work.
func (e *Engine) OpenPlanner(ctx context.Context) error {
	_, err := e.planner(ctx)
	return err
}

// planner returns the database ReadColumns plans in: this one's options and
// functions, the configuration the planner flag selects (disabledOptimizers),
// one thread and the smallest memory limit. It is opened on first use.
func (e *Engine) planner(ctx context.Context) (*Engine, error) {
	if err := e.acquire(); err != nil {
		return nil, err
	}
	defer e.releaseConn()
	e.pmu.Lock()
	defer e.pmu.Unlock()
	if e.planned != nil {
		return e.planned, nil
	}
	cfg := e.cfg
	opts := []Option{WithThreads(1), WithMemoryLimit(minMemoryLimit), WithLogger(cfg.log),
		optionFunc(func(c *config) { c.planner = true })}
	if cfg.registry != nil {
		opts = append(opts, WithFunctions(cfg.registry))
	}
	p, err := Open(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqlengine: open the planner database: %w", err)
	}
	e.planned = p
	return p, nil
}
