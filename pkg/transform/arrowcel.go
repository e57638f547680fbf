package transform

import (
	"fmt"
	"strings"

	"cel.dev/cel-go/interpreter"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Fields gives an expression a record's fields one at a time, for callers
// that hold records as something other than a stream.Row (a row of an
// Arrow batch): the expression reads only the fields it names, and no map
// is built per record unless it reads the whole row.
type Fields interface {
	// Field returns the named field as a row value (nil for a null); ok
	// is false when the record has no such field.
	Field(name string) (v any, ok bool)
	// Row returns the whole record as a row, for an expression that reads
	// row.
	Row() stream.Row
}

// Ident is the field an expression that is a bare field name reads, which
// Eval reads without running CEL; "" for any other expression.
func (x *Expr) Ident() string { return x.e.ident }

// EvalFields is Eval over the record f gives: the same result and the same
// errors as Eval over f's record as a row.
func (x *Expr) EvalFields(f Fields) (any, error) {
	if id := x.e.ident; id != "" {
		v, ok := f.Field(id)
		if !ok {
			return nil, fmt.Errorf("no such field %q", id)
		}
		return v, nil
	}
	a := fieldsActivation{f: f}
	out, _, err := x.e.prg.Eval(&a)
	if err != nil {
		// As celExpr.eval words them.
		if a.missing != "" {
			return nil, fmt.Errorf("no such field %q", a.missing)
		}
		if strings.HasPrefix(err.Error(), "no such overload") {
			return nil, fmt.Errorf("%w: the operand types do not fit (CEL never converts implicitly: "+
				"use int(), double() or string())", err)
		}
		return nil, err
	}
	return toNative(out)
}

// fieldsActivation resolves CEL identifiers through Fields.
type fieldsActivation struct {
	f       Fields
	missing string // the first field asked for and not found
}

var _ interpreter.Activation = (*fieldsActivation)(nil)

func (a *fieldsActivation) ResolveName(name string) (any, bool) {
	if name == rowVar {
		return map[string]any(a.f.Row()), true
	}
	v, ok := a.f.Field(name)
	if !ok && a.missing == "" {
		a.missing = name
	}
	return v, ok
}

func (a *fieldsActivation) Parent() interpreter.Activation { return nil }
