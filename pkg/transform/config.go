package transform

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Step is one transform of a job. Exactly one of its fields is set.
type Step struct {
	Decode    *Decode
	Filter    string
	Select    []SelectField
	Aggregate *Aggregate
}

// Decode turns a source payload into fields.
type Decode struct {
	// Format is json, csv or raw.
	Format string
	// Field names the payload field. Default: "value" when the row has it
	// (Kafka), else "data" (Kinesis).
	Field string
	// Columns names the CSV fields, in order (csv only).
	Columns []string
	// Header says each CSV payload starts with a header line naming the
	// fields; every following line becomes a row. With Columns as well, the
	// header line is skipped and Columns name the fields (csv only).
	Header bool
	// Delimiter is the CSV field separator, one character. Default ",".
	Delimiter string
}

// SelectField is one output field of a select step.
type SelectField struct {
	// Name is the output field. With Expr empty it is also the input field
	// copied as it is.
	Name string
	// Expr is a CEL expression computing the field.
	Expr string
}

// Aggregate groups a batch's rows and aggregates each group. It must be the
// last step.
type Aggregate struct {
	GroupBy      []string
	Aggregations []Aggregation
	// MaxGroups bounds the groups of one batch. 0 means DefaultMaxGroups.
	MaxGroups int64
}

// Aggregation is one aggregate column.
type Aggregation struct {
	// Fn is count, sum, min, max or avg.
	Fn string
	// Field is the aggregated field; optional for count, which then counts
	// rows. Null and missing values are ignored, as in SQL.
	Field string
	// As names the output column. Default: "count" for count without a
	// field, else fn_field ("sum_amount").
	As string
}

// DefaultMaxGroups is the bound on groups per batch when MaxGroups is 0.
const DefaultMaxGroups = 100000

// ErrInvalid is wrapped by every error Compile returns.
var ErrInvalid = errors.New("invalid transforms")

// FieldError is one problem in a transform spec. Field is the path as the
// user wrote it in YAML: transforms[3].aggregate.aggregations[0].fn.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// validator collects every problem of a spec, so one round trip shows them all.
type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	switch len(v.errs) {
	case 0:
		return nil
	case 1:
		return v.errs[0]
	}
	return errors.Join(v.errs...)
}

// Compile validates steps and prepares them to run. The error, if any,
// wraps ErrInvalid and lists every problem found, each a *FieldError.
func Compile(steps []Step) (*Pipeline, error) {
	var v validator
	p := &Pipeline{}
	for i, s := range steps {
		path := fmt.Sprintf("transforms[%d]", i)
		var set []string
		if s.Decode != nil {
			set = append(set, "decode")
		}
		if s.Filter != "" {
			set = append(set, "filter")
		}
		if len(s.Select) > 0 {
			set = append(set, "select")
		}
		if s.Aggregate != nil {
			set = append(set, "aggregate")
		}
		if len(set) != 1 {
			found := "none"
			if len(set) > 1 {
				found = strings.Join(set, " and ")
			}
			v.add(path, "set exactly one of decode, filter, select or aggregate (found %s)", found)
			continue
		}
		switch {
		case s.Decode != nil:
			d := compileDecode(&v, path+".decode", s.Decode)
			p.steps = append(p.steps, step{name: path + ".decode", decode: d})
			p.columns = nil
		case s.Filter != "":
			e := compileFilter(&v, path+".filter", s.Filter)
			p.steps = append(p.steps, step{name: path + ".filter", filter: e})
		case len(s.Select) > 0:
			cols, names := compileSelect(&v, path+".select", s.Select)
			p.steps = append(p.steps, step{name: path + ".select", sel: cols})
			p.columns = names
		case s.Aggregate != nil:
			if after := len(steps) - 1 - i; after > 0 {
				v.add(path+".aggregate", "must be the last transform (found %d more after it)", after)
			}
			p.agg = compileAggregate(&v, path+".aggregate", s.Aggregate)
			if p.agg != nil {
				p.columns = p.agg.columns()
			}
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	return p, nil
}

func compileDecode(v *validator, path string, d *Decode) *decodeStep {
	ds := &decodeStep{format: d.Format, field: d.Field, header: d.Header, comma: ','}
	ok := true
	switch d.Format {
	case "json", "raw":
		if len(d.Columns) > 0 {
			v.add(path+".columns", "only applies to format csv")
			ok = false
		}
		if d.Header {
			v.add(path+".header", "only applies to format csv")
			ok = false
		}
		if d.Delimiter != "" {
			v.add(path+".delimiter", "only applies to format csv")
			ok = false
		}
	case "csv":
		if len(d.Columns) == 0 && !d.Header {
			v.add(path, "format csv needs columns or header: true")
			ok = false
		}
		seen := map[string]bool{}
		for i, c := range d.Columns {
			switch {
			case c == "":
				v.add(fmt.Sprintf("%s.columns[%d]", path, i), "must not be empty")
				ok = false
			case seen[c]:
				v.add(fmt.Sprintf("%s.columns[%d]", path, i), "duplicate column %q", c)
				ok = false
			}
			seen[c] = true
		}
		ds.columns = d.Columns
		if d.Delimiter != "" {
			r, size := utf8.DecodeRuneInString(d.Delimiter)
			if size != len(d.Delimiter) || r == utf8.RuneError || r == '"' || r == '\r' || r == '\n' {
				v.add(path+".delimiter", "must be one character other than a quote or a line break, got %q", d.Delimiter)
				ok = false
			}
			ds.comma = r
		}
	case "":
		v.add(path+".format", "required (json, csv or raw)")
		ok = false
	default:
		v.add(path+".format", "unknown format %q (want json, csv or raw)", d.Format)
		ok = false
	}
	if !ok {
		return nil
	}
	return ds
}

func compileFilter(v *validator, path, src string) *celExpr {
	e, err := compileExpr(src)
	if err != nil {
		v.add(path, "%s", err.Error())
		return nil
	}
	if !e.mayBeBool {
		v.add(path, "must evaluate to bool, but %q is %s", src, e.out)
		return nil
	}
	return e
}

func compileSelect(v *validator, path string, fields []SelectField) ([]selectCol, []string) {
	cols := make([]selectCol, 0, len(fields))
	names := make([]string, 0, len(fields))
	seen := map[string]bool{}
	for i, f := range fields {
		fp := fmt.Sprintf("%s[%d]", path, i)
		if f.Name == "" {
			v.add(fp+".name", "required")
			continue
		}
		if seen[f.Name] {
			v.add(fp+".name", "duplicate output field %q", f.Name)
		}
		seen[f.Name] = true
		names = append(names, f.Name)
		if f.Expr == "" {
			cols = append(cols, selectCol{name: f.Name, field: f.Name})
			continue
		}
		e, err := compileExpr(f.Expr)
		if err != nil {
			v.add(fp+".expr", "%s", err.Error())
			continue
		}
		c := selectCol{name: f.Name, expr: e}
		if e.ident != "" {
			// A bare identifier copies the field as it is, without a CEL
			// round trip.
			c = selectCol{name: f.Name, field: e.ident}
		}
		cols = append(cols, c)
	}
	return cols, names
}

func compileAggregate(v *validator, path string, a *Aggregate) *aggSpec {
	spec := &aggSpec{step: path, groupBy: a.GroupBy, maxGroups: a.MaxGroups}
	ok := true
	if spec.maxGroups == 0 {
		spec.maxGroups = DefaultMaxGroups
	}
	if a.MaxGroups < 0 {
		v.add(path+".maxGroups", "must not be negative, got %d", a.MaxGroups)
		ok = false
	}
	if len(a.GroupBy) == 0 && len(a.Aggregations) == 0 {
		v.add(path, "needs groupBy fields, aggregations or both")
		ok = false
	}
	outputs := map[string]string{} // output name -> field path that produces it
	for i, g := range a.GroupBy {
		fp := fmt.Sprintf("%s.groupBy[%d]", path, i)
		if g == "" {
			v.add(fp, "must not be empty")
			ok = false
			continue
		}
		if prev, dup := outputs[g]; dup {
			v.add(fp, "duplicate output column %q (also %s)", g, prev)
			ok = false
		}
		outputs[g] = fp
	}
	for i, ag := range a.Aggregations {
		fp := fmt.Sprintf("%s.aggregations[%d]", path, i)
		fn, known := aggFns[strings.ToLower(ag.Fn)]
		switch {
		case ag.Fn == "":
			v.add(fp+".fn", "required (count, sum, min, max or avg)")
			ok = false
			continue
		case !known:
			v.add(fp+".fn", "unknown function %q (want count, sum, min, max or avg)", ag.Fn)
			ok = false
			continue
		}
		if ag.Field == "" && fn != fnCount {
			v.add(fp+".field", "required for %s", fn)
			ok = false
			continue
		}
		as := ag.As
		if as == "" {
			as = fn.String()
			if ag.Field != "" {
				as += "_" + ag.Field
			}
		}
		if prev, dup := outputs[as]; dup {
			field := fp + ".as"
			if ag.As == "" {
				field = fp
			}
			v.add(field, "duplicate output column %q (also %s); name it with as", as, prev)
			ok = false
		}
		outputs[as] = fp
		spec.aggs = append(spec.aggs, aggCol{fn: fn, field: ag.Field, as: as})
	}
	if !ok {
		return nil
	}
	spec.fingerprint = spec.computeFingerprint()
	return spec
}
