//go:build duckdb_arrow

package sqlengine

import (
	"database/sql/driver"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// Type lists the Go types a registered function takes and returns, and the
// SQL type each stands for: bool BOOLEAN, int32 INTEGER, int64 BIGINT,
// float64 DOUBLE, string VARCHAR, []byte BLOB, time.Time TIMESTAMPTZ (an
// instant, as Spark's TIMESTAMP). DuckDB casts arguments implicitly where it
// can (an INTEGER column passed to an int64 parameter).
type Type interface {
	bool | int32 | int64 | float64 | string | []byte | time.Time
}

// Func is a scalar SQL function written in Go, made by Scalar1, Scalar2,
// Scalar3 or ScalarDuckDB and added to a Registry.
//
// The function must be deterministic (DuckDB folds calls with constant
// arguments once, at planning) and safe for concurrent use (DuckDB calls it
// from its worker threads). It is not called for NULL arguments: a NULL in
// any argument gives NULL. An error it returns fails the query, with the
// function's message.
type Func struct {
	name string
	fn   duckdb.ScalarFunc
	err  error
}

// Name is the SQL name of the function.
func (f Func) Name() string { return f.name }

// Scalar1 makes a one-argument SQL function name(a) from fn.
func Scalar1[A, R Type](name string, fn func(A) (R, error)) Func {
	return newScalar[R](name, []duckdb.Type{duckType[A]()}, func(v []driver.Value) (any, error) {
		a, err := arg[A](name, v, 0)
		if err != nil {
			return nil, err
		}
		return fn(a)
	})
}

// Scalar2 makes a two-argument SQL function name(a, b) from fn.
func Scalar2[A, B, R Type](name string, fn func(A, B) (R, error)) Func {
	return newScalar[R](name, []duckdb.Type{duckType[A](), duckType[B]()}, func(v []driver.Value) (any, error) {
		a, err := arg[A](name, v, 0)
		if err != nil {
			return nil, err
		}
		b, err := arg[B](name, v, 1)
		if err != nil {
			return nil, err
		}
		return fn(a, b)
	})
}

// Scalar3 makes a three-argument SQL function name(a, b, c) from fn.
func Scalar3[A, B, C, R Type](name string, fn func(A, B, C) (R, error)) Func {
	return newScalar[R](name, []duckdb.Type{duckType[A](), duckType[B](), duckType[C]()}, func(v []driver.Value) (any, error) {
		a, err := arg[A](name, v, 0)
		if err != nil {
			return nil, err
		}
		b, err := arg[B](name, v, 1)
		if err != nil {
			return nil, err
		}
		c, err := arg[C](name, v, 2)
		if err != nil {
			return nil, err
		}
		return fn(a, b, c)
	})
}

// ScalarDuckDB registers f, a function written against duckdb-go's own
// interface, for what the typed constructors cannot express: other types,
// variadic arguments, NULL handling, or ChunkContextExecutor, which costs
// about half as much per row as the row executor the typed constructors use.
func ScalarDuckDB(name string, f duckdb.ScalarFunc) Func {
	return Func{name: name, fn: f}
}

func newScalar[R Type](name string, in []duckdb.Type, call duckdb.RowExecutorFn) Func {
	s := &scalar{call: call}
	for _, t := range append(in, duckType[R]()) {
		ti, err := duckdb.NewTypeInfo(t)
		if err != nil {
			return Func{name: name, err: fmt.Errorf("function %q: %w", name, err)}
		}
		s.types = append(s.types, ti)
	}
	return Func{name: name, fn: s}
}

type scalar struct {
	types []duckdb.TypeInfo // the arguments', then the result's
	call  duckdb.RowExecutorFn
}

func (s *scalar) Config() duckdb.ScalarFuncConfig {
	n := len(s.types) - 1
	return duckdb.ScalarFuncConfig{InputTypeInfos: s.types[:n], ResultTypeInfo: s.types[n]}
}

func (s *scalar) Executor() duckdb.ScalarFuncExecutor {
	return duckdb.ScalarFuncExecutor{RowExecutor: s.call}
}

func duckType[T Type]() duckdb.Type {
	var z T
	switch any(z).(type) {
	case bool:
		return duckdb.TYPE_BOOLEAN
	case int32:
		return duckdb.TYPE_INTEGER
	case int64:
		return duckdb.TYPE_BIGINT
	case float64:
		return duckdb.TYPE_DOUBLE
	case string:
		return duckdb.TYPE_VARCHAR
	case []byte:
		return duckdb.TYPE_BLOB
	case time.Time:
		return duckdb.TYPE_TIMESTAMP_TZ
	}
	panic("unreachable: Type lists every case")
}

func arg[T Type](name string, v []driver.Value, i int) (T, error) {
	x, ok := v[i].(T)
	if !ok {
		var z T
		return z, fmt.Errorf("%s: argument %d is %T, want %T", name, i+1, v[i], z)
	}
	return x, nil
}

// Registry collects the Go functions a binary adds to SQL. Build one in
// main, Register the functions, and pass it to Open with WithFunctions; the
// engine registers them once on its database, before any query runs.
// Register is safe for concurrent use; a Registry may be shared by engines.
type Registry struct {
	mu    sync.Mutex
	funcs []Func
	names map[string]bool
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

var funcName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Register adds fns. It refuses, naming the function, a name that is not
// lower-case letters, digits and underscores, one used twice, one of the
// Spark names the engine defines (SparkFunctions), or one starting with
// __sluice. A name DuckDB already defines is refused by Open.
func (r *Registry) Register(fns ...Func) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range fns {
		switch {
		case f.err != nil:
			return f.err
		case f.fn == nil:
			return fmt.Errorf("function %q: no implementation", f.name)
		case !funcName.MatchString(f.name):
			return fmt.Errorf("function %q: name must be lower-case letters, digits and underscores, not starting with a digit", f.name)
		case strings.HasPrefix(f.name, "__sluice"):
			return fmt.Errorf("function %q: names starting with __sluice are the engine's", f.name)
		case sparkNames[f.name]:
			return fmt.Errorf("function %q: already defined by the engine (Spark's %s)", f.name, f.name)
		case r.names[f.name]:
			return fmt.Errorf("function %q: registered twice", f.name)
		}
		r.names[f.name] = true
		r.funcs = append(r.funcs, f)
	}
	return nil
}

func (r *Registry) snapshot() []Func {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Func(nil), r.funcs...)
}
