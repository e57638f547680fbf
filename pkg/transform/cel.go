package transform

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/sluicehq/sluice/pkg/stream"
)

// rowVar is the CEL variable holding the whole row.
const rowVar = "row"

// baseEnv is the environment every expression extends with its own
// identifiers. It is built once; cel.Env is safe for concurrent use.
var baseEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(rowVar, cel.MapType(cel.StringType, cel.DynType)),
		// amount > 0 must work whether amount decoded as int64 or float64.
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Math(),
		ext.Encoders(),
		ext.Lists(),
	)
})

// celExpr is one compiled expression.
type celExpr struct {
	src string
	prg cel.Program
	// ident is set when the expression is a bare field name.
	ident string
	// out is what the checker inferred; mayBeBool is false when it is
	// known not to be bool.
	out       *cel.Type
	mayBeBool bool
}

// compileExpr parses src, declares every identifier it references as a dyn
// variable (field names are only known at run time), type-checks it and
// plans a program. Errors carry CEL's position and source snippet.
func compileExpr(src string) (*celExpr, error) {
	env, err := baseEnv()
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	parsed, iss := env.Parse(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	root := parsed.NativeRep().Expr()
	idents := map[string]bool{}
	accus := map[string]bool{}
	ast.PreOrderVisit(root, ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.IdentKind:
			idents[e.AsIdent()] = true
		case ast.ComprehensionKind:
			// Macros such as exists() fold into a hidden accumulator.
			accus[e.AsComprehension().AccuVar()] = true
		}
	}))
	names := make([]string, 0, len(idents))
	for name := range idents {
		if name == rowVar || accus[name] {
			continue
		}
		// Type names (int, string, ...) are identifiers CEL already knows;
		// shadowing them would break type(x) == int.
		if _, isType := env.CELTypeProvider().FindIdent(name); isType {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	opts := make([]cel.EnvOption, 0, len(names))
	for _, n := range names {
		opts = append(opts, cel.Variable(n, cel.DynType))
	}
	exprEnv, err := env.Extend(opts...)
	if err != nil {
		return nil, err
	}
	checked, iss := exprEnv.Check(parsed)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	prg, err := exprEnv.Program(checked, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	out := checked.OutputType()
	e := &celExpr{src: src, prg: prg, out: out}
	switch out.Kind() {
	case types.BoolKind, types.DynKind, types.AnyKind, types.ErrorKind:
		e.mayBeBool = true
	}
	if root.Kind() == ast.IdentKind && root.AsIdent() != rowVar && len(names) == 1 {
		e.ident = root.AsIdent()
	}
	return e, nil
}

// Expr is one CEL expression over a row, compiled on its own in the
// transforms' dialect (a row's fields are identifiers, the whole row is
// row). Sinks use it for options they evaluate per record, such as a Kafka
// record's key, whose errors name the option rather than a transforms[i]
// path. It is immutable and safe for concurrent use.
type Expr struct{ e *celExpr }

// CompileExpr compiles src as a select expression is compiled. The error is
// CEL's, with the position and a snippet of src.
func CompileExpr(src string) (*Expr, error) {
	e, err := compileExpr(src)
	if err != nil {
		return nil, err
	}
	return &Expr{e: e}, nil
}

// OutputType is the type the checker inferred; it is dyn when the type
// depends on the row's fields, whose types are only known at run time.
func (x *Expr) OutputType() *cel.Type { return x.e.out }

// Eval evaluates the expression over row and returns the result as a row
// value (nil, bool, int64, float64, string, []byte, time.Time, []any or
// map[string]any). A bare field name is read from the row without running
// CEL, as in a select. An error names a missing field, or says that the
// operands' types do not fit.
func (x *Expr) Eval(row stream.Row) (any, error) {
	if f := x.e.ident; f != "" {
		v, ok := row[f]
		if !ok {
			return nil, fmt.Errorf("no such field %q", f)
		}
		return v, nil
	}
	var a activation
	v, err := x.e.eval(&a, row)
	if err != nil {
		return nil, err
	}
	return toNative(v)
}

// activation resolves CEL identifiers to a row's fields. One is reused for
// every row of a Process call; it is never shared between goroutines.
type activation struct {
	row stream.Row
	// missing is the first field an evaluation asked for and did not find.
	missing string
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	if name == rowVar {
		return map[string]any(a.row), true
	}
	v, ok := a.row[name]
	if !ok && a.missing == "" {
		a.missing = name
	}
	return v, ok
}

func (a *activation) Parent() interpreter.Activation { return nil }

// eval runs e over row.
func (e *celExpr) eval(a *activation, row stream.Row) (ref.Val, error) {
	a.row, a.missing = row, ""
	out, _, err := e.prg.Eval(a)
	a.row = nil
	if err != nil {
		if a.missing != "" {
			return nil, fmt.Errorf("no such field %q", a.missing)
		}
		if strings.HasPrefix(err.Error(), "no such overload") {
			return nil, fmt.Errorf("%w: the operand types do not fit (CEL never converts implicitly: "+
				"use int(), double() or string())", err)
		}
		return nil, err
	}
	return out, nil
}

var errUnsupportedValue = errors.New("unsupported value")

// toNative converts a CEL result to a row value.
func toNative(v ref.Val) (any, error) {
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("uint %d does not fit in int64", uint64(v))
		}
		return int64(v), nil
	case types.Double:
		return float64(v), nil
	case types.String:
		return string(v), nil
	case types.Bytes:
		return []byte(v), nil
	case types.Timestamp:
		return v.Time, nil
	case types.Duration:
		return v.Duration.String(), nil
	case *types.Err:
		return nil, v
	case *types.Unknown:
		return nil, fmt.Errorf("unknown value %v", v)
	case *types.Optional:
		if !v.HasValue() {
			return nil, nil
		}
		return toNative(v.GetValue())
	case ref.Type:
		return v.TypeName(), nil
	case traits.Mapper:
		out := make(map[string]any)
		for it := v.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			kv, err := toNative(k)
			if err != nil {
				return nil, err
			}
			val, err := toNative(v.Get(k))
			if err != nil {
				return nil, err
			}
			ks, ok := kv.(string)
			if !ok {
				ks = fmt.Sprint(kv)
			}
			out[ks] = val
		}
		return out, nil
	case traits.Lister:
		n, ok := v.Size().(types.Int)
		if !ok {
			return nil, fmt.Errorf("%w: list without size", errUnsupportedValue)
		}
		out := make([]any, 0, int(n))
		for it := v.Iterator(); it.HasNext() == types.True; {
			e, err := toNative(it.Next())
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: CEL type %s", errUnsupportedValue, v.Type().TypeName())
}
