package transform

import (
	"fmt"
	"sync"

	"cel.dev/cel-go/common/types"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Pipeline is a compiled list of steps. It is immutable and safe for
// concurrent use.
type Pipeline struct {
	steps   []step   // the steps Process runs, in order
	agg     *aggSpec // the final aggregate, nil if none
	columns []string
	scratch sync.Pool // of *scratch
}

// step is one non-aggregate step; exactly one of decode, filter, sel is set.
type step struct {
	name   string // transforms[i].kind, for BadRow.Step
	decode *decodeStep
	filter *celExpr
	sel    []selectCol
}

type selectCol struct {
	name  string
	field string   // copy this field as it is, when expr is nil
	expr  *celExpr // compute the value
}

// BadRow is a row that failed a step.
type BadRow struct {
	// Row is the row as the failing step received it.
	Row stream.Row
	// Step is the failing step's path, e.g. "transforms[0].decode".
	Step string
	Err  error
}

func (b BadRow) String() string { return fmt.Sprintf("%s: %v", b.Step, b.Err) }

// scratch is per-call working memory, pooled so that a steady stream of
// Process calls allocates little besides the rows it produces.
type scratch struct {
	act  activation
	json jsonParser
}

func (p *Pipeline) getScratch() *scratch {
	if s, ok := p.scratch.Get().(*scratch); ok {
		return s
	}
	return &scratch{}
}

// Aggregating reports whether the last step is an aggregate: the runtime
// then feeds Process's output to an Aggregator instead of a sink.
func (p *Pipeline) Aggregating() bool { return p.agg != nil }

// Columns is the output column order when the pipeline knows it: the select
// names after a select, the groupBy fields then the aggregation names after
// an aggregate; nil otherwise (a decode makes the columns data-dependent).
// The caller must not modify the slice.
func (p *Pipeline) Columns() []string { return p.columns }

// AggregateStep is the aggregate's path ("transforms[3].aggregate"), for
// BadRow.Step when Aggregator.Add rejects a row; "" when not aggregating.
func (p *Pipeline) AggregateStep() string {
	if p.agg == nil {
		return ""
	}
	return p.agg.step
}

// Process runs the non-aggregate steps over in. Rows that pass every step
// are in out, in input order (a CSV decode may turn one row into several);
// rows that fail a step are in bad and not in out. Process does not modify
// in or its rows, though out may share values with them. With no such steps
// out is in itself.
func (p *Pipeline) Process(in []stream.Row) (out []stream.Row, bad []BadRow) {
	if len(p.steps) == 0 {
		return in, nil
	}
	s := p.getScratch()
	defer p.scratch.Put(s)
	out = make([]stream.Row, 0, len(in))
	for _, row := range in {
		out, bad = p.run(s, 0, row, out, bad)
	}
	return out, bad
}

// run passes row through steps[from:], appending the results.
func (p *Pipeline) run(s *scratch, from int, row stream.Row, out []stream.Row, bad []BadRow) ([]stream.Row, []BadRow) {
	for i := from; i < len(p.steps); i++ {
		st := &p.steps[i]
		switch {
		case st.decode != nil:
			one, many, err := st.decode.apply(s, row)
			if err != nil {
				return out, append(bad, BadRow{Row: row, Step: st.name, Err: err})
			}
			if many != nil {
				for _, r := range many {
					out, bad = p.run(s, i+1, r, out, bad)
				}
				return out, bad
			}
			row = one
		case st.filter != nil:
			v, err := st.filter.eval(&s.act, row)
			if err != nil {
				return out, append(bad, BadRow{Row: row, Step: st.name, Err: err})
			}
			keep, ok := v.(types.Bool)
			if !ok {
				err := fmt.Errorf("filter returned %s, want bool", v.Type().TypeName())
				return out, append(bad, BadRow{Row: row, Step: st.name, Err: err})
			}
			if !keep {
				return out, bad
			}
		default:
			next, err := selectRow(s, st.sel, row)
			if err != nil {
				return out, append(bad, BadRow{Row: row, Step: st.name, Err: err})
			}
			row = next
		}
	}
	return append(out, row), bad
}

func selectRow(s *scratch, cols []selectCol, row stream.Row) (stream.Row, error) {
	out := make(stream.Row, len(cols))
	for _, c := range cols {
		if c.expr == nil {
			v, ok := row[c.field]
			if !ok {
				return nil, fmt.Errorf("%s: no such field %q", c.name, c.field)
			}
			out[c.name] = v
			continue
		}
		rv, err := c.expr.eval(&s.act, row)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		v, err := toNative(rv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		out[c.name] = v
	}
	return out, nil
}
