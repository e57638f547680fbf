//go:build duckdb_arrow

package sqltransform

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pkg/sqlengine"
)

// The YAML shorthand steps of a SQL job: filter, select and aggregate, each
// compiled to one SELECT over the rows before it, so a job has one
// expression language, SQL, whichever form a step takes.

// SelectField is one output column of a select step: Expr, a SQL
// expression over the rows before the step (the column Name when empty).
type SelectField struct{ Name, Expr string }

// Aggregate is an aggregate step: one row per group of GroupBy columns, with
// each aggregation's value.
type Aggregate struct {
	GroupBy      []string
	Aggregations []Aggregation
}

// Aggregation is one aggregate of a group: Fn (count, sum, min, max, avg)
// of the column Field (count's may be empty: count(*)), named As.
type Aggregation struct{ Fn, Field, As string }

// shorthandFns are the aggregate step's functions, as SQL writes them.
var shorthandFns = map[string]string{"count": "count", "sum": "sum", "min": "min", "max": "max", "avg": "avg"}

// generated is a shorthand step as SQL, with where in the query each of the
// spec's fields was put, so an error DuckDB places in the query is reported
// at the field and the position in it the user wrote.
type generated struct {
	query string
	spans []span
	chars int // the query's length in characters so far
}

// span is a field's text in the query, in characters (QueryError's unit).
type span struct {
	start, end int
	field      string // relative to the step (select.fields[1].expr)
	column     string // the column it names, for a field that is a column name
}

func (g *generated) write(s string) {
	g.query += s
	g.chars += utf8.RuneCountInString(s)
}

// expr writes an expression that came from the spec's field, refusing text
// that would be more than one expression in the query.
func (g *generated) expr(path, field, text string) error {
	if err := sqlengine.CheckExpression(text); err != nil {
		return &FieldError{Field: path + "." + field, Reason: err.Error()}
	}
	g.field(field, text)
	return nil
}

// field writes text that came from the spec's field.
func (g *generated) field(field, text string) {
	start := g.chars
	g.write(text)
	g.spans = append(g.spans, span{start: start, end: g.chars, field: field})
}

// column writes a column name that came from the spec's field, qualified by
// view (an output of the same name is no column of the input).
func (g *generated) column(field, view, name string) {
	g.write(quoteIdent(view) + ".")
	g.field(field, quoteIdent(name))
	g.spans[len(g.spans)-1].column = name
}

// shorthandQuery compiles a shorthand step to SQL over view (the rows
// before it); kind is its field (filter, select, aggregate). An error is a
// *FieldError.
func shorthandQuery(st Step, view string) (*generated, string, error) {
	g := &generated{}
	from := " FROM " + quoteIdent(view)
	switch {
	case st.Filter != "":
		// The spec's text is followed by a line break wherever more SQL
		// comes after it: it may end with a -- comment.
		g.write("SELECT *" + from + " WHERE (")
		if err := g.expr(st.Path, "filter", st.Filter); err != nil {
			return nil, "", err
		}
		g.write("\n)")
		return g, "filter", nil
	case st.Select != nil:
		if len(st.Select) == 0 {
			return nil, "", &FieldError{Field: st.Path + ".select.fields", Reason: "lists no field"}
		}
		g.write("SELECT ")
		seen := map[string]bool{}
		for i, f := range st.Select {
			path := fmt.Sprintf("select.fields[%d]", i)
			if f.Name == "" {
				return nil, "", &FieldError{Field: st.Path + "." + path + ".name", Reason: "is required"}
			}
			if seen[strings.ToLower(f.Name)] {
				return nil, "", &FieldError{Field: st.Path + "." + path + ".name", Reason: fmt.Sprintf("%q is listed twice (SQL names are case-insensitive)", f.Name)}
			}
			seen[strings.ToLower(f.Name)] = true
			if i > 0 {
				g.write(", ")
			}
			if f.Expr == "" {
				g.column(path+".name", view, f.Name)
			} else {
				g.write("(")
				if err := g.expr(st.Path, path+".expr", f.Expr); err != nil {
					return nil, "", err
				}
				g.write("\n)")
			}
			g.write(" AS " + quoteIdent(f.Name))
		}
		g.write(from)
		return g, "select", nil
	case st.Aggregate != nil:
		a := st.Aggregate
		if len(a.Aggregations) == 0 {
			return nil, "", &FieldError{Field: st.Path + ".aggregate.aggregations", Reason: "lists no aggregation (count, sum, min, max, avg)"}
		}
		g.write("SELECT ")
		for i, k := range a.GroupBy {
			if i > 0 {
				g.write(", ")
			}
			g.column(fmt.Sprintf("aggregate.groupBy[%d]", i), view, k)
		}
		for i, ag := range a.Aggregations {
			path := fmt.Sprintf("aggregate.aggregations[%d]", i)
			fn, ok := shorthandFns[strings.ToLower(ag.Fn)]
			switch {
			case !ok:
				return nil, "", &FieldError{Field: st.Path + "." + path + ".fn", Reason: fmt.Sprintf("%q is not one of count, sum, min, max, avg", ag.Fn)}
			case ag.Field == "" && fn != "count":
				return nil, "", &FieldError{Field: st.Path + "." + path + ".field", Reason: fmt.Sprintf("is required for %s", fn)}
			}
			if len(a.GroupBy) > 0 || i > 0 {
				g.write(", ")
			}
			g.write(fn + "(")
			if ag.Field == "" {
				g.write("*")
			} else {
				g.column(path+".field", view, ag.Field)
			}
			as := ag.As
			if as == "" {
				as = fn
				if ag.Field != "" {
					as = fn + "_" + ag.Field
				}
			}
			g.write(") AS " + quoteIdent(as))
		}
		g.write(from)
		for i, k := range a.GroupBy {
			if i == 0 {
				g.write(" GROUP BY ")
			} else {
				g.write(", ")
			}
			g.write(quoteIdent(view) + "." + quoteIdent(k))
		}
		return g, "aggregate", nil
	}
	return nil, "", &FieldError{Field: st.Path, Reason: "empty transform"}
}

// fieldError reports err, a compile error of g's query, at the spec's field
// it points into (with the position in that field), or at the step's kind.
func (g *generated) fieldError(path, kind string, err error) error {
	var qe *sqlengine.QueryError
	if !errors.As(err, &qe) {
		return fmt.Errorf("%s.%s: %w", path, kind, err)
	}
	reason := fmt.Sprintf("%v: %s", qe.Err, qe.Reason)
	if qe.Position >= 0 {
		for _, s := range g.spans {
			if qe.Position >= s.start && qe.Position <= s.end {
				return &FieldError{Field: path + "." + s.field,
					Reason: fmt.Sprintf("position %d: %s", qe.Position-s.start, reason)}
			}
		}
	}
	// DuckDB places no unknown column of a GROUP BY: the field that names
	// the column the error quotes is the one to blame.
	for _, s := range g.spans {
		if s.column != "" && strings.Contains(qe.Reason, quoteIdent(s.column)) {
			return &FieldError{Field: path + "." + s.field, Reason: reason}
		}
	}
	return &FieldError{Field: path + "." + kind, Reason: reason}
}
