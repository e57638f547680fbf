//go:build duckdb_arrow

package sqlengine

import (
	"database/sql/driver"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// RejectFunction is a built-in Go function of every Engine for decode
// steps that keep going past bad records:
//
//	__sluice_reject(reason VARCHAR, name VARCHAR, value ANY, ...) BOOLEAN
//
// hands the record given as name/value pairs and the reason to the Rejects
// of the run it is called in (WithRejects) and returns false, so that
// `WHERE CASE WHEN ok THEN true ELSE __sluice_reject(...) END` drops the
// record and reports it. DuckDB evaluates a CASE branch only for the rows
// that take it, once each. Called in a run without WithRejects it fails the
// query (nothing may be dropped unseen).
const RejectFunction = "__sluice_reject"

// runVariable is the connection variable naming the run's Rejects.
const runVariable = "__sluice_run"

// Rejects collects the records a run's query dropped through
// RejectFunction: how many, and up to Keep of them with their reason. It is
// safe for concurrent use (DuckDB calls the function from its threads).
type Rejects struct {
	// Keep is how many records to keep (0: count only).
	Keep int

	mu      sync.Mutex
	count   int64
	records []Reject
}

// Reject is one dropped record: its columns by name, and why.
type Reject struct {
	Record map[string]any
	Reason string
}

// Count is how many records were dropped.
func (r *Rejects) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// Records are the dropped records kept, in the order DuckDB reported them
// (the input's order within a batch).
func (r *Rejects) Records() []Reject {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records
}

func (r *Rejects) add(reason string, kv []driver.Value) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.count++
	if len(r.records) >= r.Keep {
		return nil
	}
	rec := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		name, ok := kv[i].(string)
		if !ok {
			return fmt.Errorf("%s: argument %d: want a column name, got %T", RejectFunction, i+2, kv[i])
		}
		rec[name] = kv[i+1]
	}
	r.records = append(r.records, Reject{Record: rec, Reason: reason})
	return nil
}

// rejectRuns maps a run's id (runVariable) to its Rejects while it runs.
var rejectRuns struct {
	seq  atomic.Uint64
	runs sync.Map // string -> *Rejects
}

// registerRejects makes r the target of RejectFunction for the run id it
// returns, until the returned function is called.
func registerRejects(r *Rejects) (id string, unregister func()) {
	id = "r" + strconv.FormatUint(rejectRuns.seq.Add(1), 10)
	rejectRuns.runs.Store(id, r)
	return id, func() { rejectRuns.runs.Delete(id) }
}

type rejectFunc struct{ in, out, any duckdb.TypeInfo }

func newRejectFunc() (*rejectFunc, error) {
	v, err := duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
	if err != nil {
		return nil, err
	}
	b, err := duckdb.NewTypeInfo(duckdb.TYPE_BOOLEAN)
	if err != nil {
		return nil, err
	}
	a, err := duckdb.NewTypeInfo(duckdb.TYPE_ANY)
	if err != nil {
		return nil, err
	}
	return &rejectFunc{in: v, out: b, any: a}, nil
}

func (f *rejectFunc) Config() duckdb.ScalarFuncConfig {
	// Volatile: a call per row, never folded; special NULL handling: a
	// record with NULL columns (a tombstone's value) is still reported.
	return duckdb.ScalarFuncConfig{InputTypeInfos: []duckdb.TypeInfo{f.in, f.in}, ResultTypeInfo: f.out,
		VariadicTypeInfo: f.any, Volatile: true, SpecialNullHandling: true}
}

func (f *rejectFunc) Executor() duckdb.ScalarFuncExecutor {
	return duckdb.ScalarFuncExecutor{RowExecutor: func(v []driver.Value) (any, error) {
		run, _ := v[0].(string)
		reason, _ := v[1].(string)
		r, ok := rejectRuns.runs.Load(run)
		if !ok {
			return nil, fmt.Errorf("%s: a record was rejected (%s) in a run that does not collect rejects", RejectFunction, reason)
		}
		if err := r.(*Rejects).add(reason, v[2:]); err != nil {
			return nil, err
		}
		return false, nil
	}}
}
