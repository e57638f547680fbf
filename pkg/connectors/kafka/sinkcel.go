package kafka

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/stream"
)

// The sink's expressions follow the transforms' CEL dialect (see
// pkg/transform): a row's fields are top-level identifiers, the whole row
// is the map "row", numbers compare across int and double, and the
// strings, math, encoders and lists extensions and optional types are
// there. pkg/transform does not export its compiler, so the few lines that
// build the environment are repeated here and must stay in step with it.

const sinkRowVar = "row"

var sinkCELEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable(sinkRowVar, cel.MapType(cel.StringType, cel.DynType)),
		cel.CrossTypeNumericComparisons(true),
		cel.DefaultUTCTimeZone(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Math(),
		ext.Encoders(),
		ext.Lists(),
	)
})

// sinkExpr is one compiled expression of the sink's options.
type sinkExpr struct {
	src string
	prg cel.Program
	out *cel.Type
	// field is set when src is just a field name (key: id): the value is
	// then read from the row without evaluating CEL, which on a
	// pass-through job costs more than the rest of the record.
	field string
}

// celReserved are identifiers that are not field names in CEL.
var celReserved = map[string]bool{"true": true, "false": true, "null": true, "in": true}

var bareField = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// compileSinkExpr parses and checks src, declaring every identifier it
// references as a dyn variable (fields are only known at run time).
func compileSinkExpr(src string) (*sinkExpr, error) {
	env, err := sinkCELEnv()
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	parsed, iss := env.Parse(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	idents := map[string]bool{}
	accus := map[string]bool{}
	ast.PreOrderVisit(parsed.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		switch e.Kind() {
		case ast.IdentKind:
			idents[e.AsIdent()] = true
		case ast.ComprehensionKind:
			accus[e.AsComprehension().AccuVar()] = true
			accus[e.AsComprehension().IterVar()] = true
		}
	}))
	names := make([]string, 0, len(idents))
	for name := range idents {
		if name == sinkRowVar || accus[name] {
			continue
		}
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
	e := &sinkExpr{src: src, prg: prg, out: checked.OutputType()}
	if bareField.MatchString(src) && src != sinkRowVar && !celReserved[src] {
		e.field = src
	}
	return e, nil
}

// mayBe reports whether the expression's checked type can be one of kinds
// (dyn and any can be anything).
func (e *sinkExpr) mayBe(kinds ...types.Kind) bool {
	switch k := e.out.Kind(); k {
	case types.DynKind, types.AnyKind, types.ErrorKind:
		return true
	default:
		for _, want := range kinds {
			if k == want {
				return true
			}
		}
	}
	return false
}

// sinkActivation resolves identifiers to a row's fields. Each writer owns
// one; it is never shared between goroutines.
type sinkActivation struct {
	row     stream.Row
	missing string
}

var _ interpreter.Activation = (*sinkActivation)(nil)

func (a *sinkActivation) ResolveName(name string) (any, bool) {
	if name == sinkRowVar {
		return map[string]any(a.row), true
	}
	v, ok := a.row[name]
	if !ok && a.missing == "" {
		a.missing = name
	}
	return v, ok
}

func (a *sinkActivation) Parent() interpreter.Activation { return nil }

func (e *sinkExpr) eval(a *sinkActivation, row stream.Row) (ref.Val, error) {
	a.row, a.missing = row, ""
	out, _, err := e.prg.Eval(a)
	a.row = nil
	if err != nil {
		if a.missing != "" {
			return nil, fmt.Errorf("no such field %q", a.missing)
		}
		if strings.HasPrefix(err.Error(), "no such overload") {
			return nil, fmt.Errorf("%w: the operand types do not fit (CEL never converts implicitly: use int(), double() or string())", err)
		}
		return nil, err
	}
	return out, nil
}

// celNative converts a CEL result to a row value (nil, bool, int64,
// float64, string, []byte, time.Time, []any, map[string]any).
func celNative(v ref.Val) (any, error) {
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
	case *types.Optional:
		if !v.HasValue() {
			return nil, nil
		}
		return celNative(v.GetValue())
	case traits.Mapper:
		out := map[string]any{}
		for it := v.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			kv, err := celNative(k)
			if err != nil {
				return nil, err
			}
			val, err := celNative(v.Get(k))
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
		var out []any
		for it := v.Iterator(); it.HasNext() == types.True; {
			e, err := celNative(it.Next())
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported CEL value of type %s", v.Type().TypeName())
}

// toBytes renders a value as record bytes: strings as UTF-8, bytes as they
// are, numbers and booleans as text, timestamps in RFC 3339, maps and lists
// as JSON. Nil stays nil (no key, a tombstone value, no header).
func toBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	case bool:
		return strconv.AppendBool(nil, x), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case float64:
		return rowjson.AppendFloat(nil, x), nil
	case time.Time:
		return x.AppendFormat(nil, time.RFC3339Nano), nil
	}
	return rowjson.AppendValue(nil, v)
}
