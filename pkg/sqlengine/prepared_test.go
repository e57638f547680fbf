//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// keptStatements reports the engine's kept run connections and how many
// statements each has prepared.
func keptStatements(e *Engine) []int {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	var out []int
	for _, s := range e.runIdle {
		out = append(out, len(s.prep.names))
	}
	return out
}

// TestPreparedRunsSeeTheirOwnTime: the pinned time is read when a kept
// plan runs, not when it was prepared, and an unpinned run after pinned
// ones sees the clock.
func TestPreparedRunsSeeTheirOwnTime(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	c := mustCompile(t, e, `select current_timestamp as ts, unix_timestamp() as u from source`, treasurySchema)
	batches := treasuryBatches(mem, treasuryRows[:1], 1)
	defer releaseAll(batches)
	for _, at := range []time.Time{
		time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC),
		time.Date(2025, 7, 9, 8, 30, 15, 0, time.UTC),
	} {
		rows := runRowsOnce(t, c, batches, WithNow(at))
		if rows[0][0] != at || rows[0][1] != at.Unix() {
			t.Errorf("run pinned at %v saw %v and %v", at, rows[0][0], rows[0][1])
		}
	}
	free := runRowsOnce(t, c, batches)
	if got := free[0][0].(time.Time); time.Since(got) > time.Minute {
		t.Errorf("unpinned run after pinned ones saw %v, want now", got)
	}
	if got := keptStatements(e); len(got) != 1 {
		t.Errorf("kept connections %v, want the one all runs used", got)
	}
}

// TestPreparedRunsAfterCatalogChanges: a kept plan stays right when views
// were created and dropped since it was prepared (DuckDB rebinds it).
func TestPreparedRunsAfterCatalogChanges(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	a := mustCompile(t, e, "select sum(x) as s from source", intBatch(mem, "x", 0).Schema())
	rec := intBatch(mem, "x", 10)
	if got := sumOf(t, a, rec); got != 45 {
		t.Fatalf("first run: sum %d, want 45", got)
	}
	rec.Release()
	// Other inputs' views created, and a view created and dropped on
	// another connection, all after a's statement was prepared.
	const others = 3
	for i := range others {
		col := fmt.Sprintf("y%d", i)
		r := intBatch(mem, col, 4)
		b := mustCompile(t, e, "select sum("+col+") as s from source", r.Schema())
		if got := sumOf(t, b, r); got != 6 {
			t.Fatalf("schema %d: sum %d, want 6", i, got)
		}
		r.Release()
	}
	s, err := e.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE VIEW other AS SELECT 1 AS x", "DROP VIEW other"} {
		if err := s.execContext(context.Background(), q); err != nil {
			t.Fatal(err)
		}
	}
	s.close()
	rec = intBatch(mem, "x", 20)
	defer rec.Release()
	if got := sumOf(t, a, rec); got != 190 {
		t.Fatalf("run after the catalog changed: sum %d, want 190", got)
	}
	// Still the statement prepared at the first run, not a new one.
	if got := keptStatements(e); len(got) != 1 || got[0] != 1+others {
		t.Errorf("kept connections' statements %v, want one connection with %d", got, 1+others)
	}
}

// stringBatch is one batch of a single string column s.
func stringBatch(mem memory.Allocator, vals ...string) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{{Name: "s", Type: arrow.BinaryTypes.String}}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	b.Field(0).(*array.StringBuilder).AppendValues(vals, nil)
	return b.NewRecordBatch()
}

// TestPreparedRunFails: a kept plan that fails on its input reports the
// error at its place in the query, like a fresh one; the connection is
// not kept, and the next run works.
func TestPreparedRunFails(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	good, bad := stringBatch(mem, "1", "2"), stringBatch(mem, "3", "x")
	defer good.Release()
	defer bad.Release()
	c := mustCompile(t, e, "select sum(cast(s as int)) as n from source", good.Schema())
	if got := sumOf(t, c, good); got != 3 {
		t.Fatalf("sum %d, want 3", got)
	}
	_, err := c.RunBatches(context.Background(), []arrow.RecordBatch{bad})
	var qe *QueryError
	if !errors.As(err, &qe) || !errors.Is(err, ErrExecution) {
		t.Fatalf("Run = %v, want a QueryError wrapping ErrExecution", err)
	}
	if qe.Position != 11 {
		t.Errorf("error at position %d, want 11 (the cast): %v", qe.Position, err)
	}
	if got := keptStatements(e); len(got) != 0 {
		t.Errorf("kept connections %v after the failed run, want none", got)
	}
	if got := sumOf(t, c, good); got != 3 {
		t.Fatalf("run after the failure: sum %d, want 3", got)
	}
}

// TestPreparedEvicted: a connection prepares at most maxPrepared
// statements; a query whose statement was evicted is prepared again.
func TestPreparedEvicted(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	rec := intBatch(mem, "x", 10)
	defer rec.Release()
	var cs []*Compiled
	for i := range maxPrepared + 3 {
		c := mustCompile(t, e, fmt.Sprintf("select sum(x) + %d as s from source", i), rec.Schema())
		cs = append(cs, c)
	}
	for round := range 2 {
		for i, c := range cs {
			if got := sumOf(t, c, rec); got != int64(45+i) {
				t.Fatalf("round %d, query %d: %d, want %d", round, i, got, 45+i)
			}
		}
	}
	if got := keptStatements(e); len(got) != 1 || got[0] != maxPrepared {
		t.Errorf("kept connections' statements %v, want one connection with %d", got, maxPrepared)
	}
}

// TestCloseClosesKeptConnections: Close does not wait for the connections
// kept between runs; it closes them.
func TestCloseClosesKeptConnections(t *testing.T) {
	e, err := Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mem := checkedMem(t)
	rec := intBatch(mem, "x", 10)
	defer rec.Release()
	c := mustCompile(t, e, "select sum(x) as s from source", rec.Schema())
	sumOf(t, c, rec)
	if got := keptStatements(e); len(got) != 1 {
		t.Fatalf("kept connections %v, want one", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if got := keptStatements(e); len(got) != 0 {
		t.Errorf("kept connections %v after Close", got)
	}
}

// TestKeptConnectionsFollowConcurrency: the engine keeps as many
// connections as runs held at once (an executor with many slots keeps one
// per slot), and a failed run's connection is not kept nor counted.
func TestKeptConnectionsFollowConcurrency(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	rec := intBatch(mem, "x", 10)
	defer rec.Release()
	c := mustCompile(t, e, "select sum(x) as s from source", rec.Schema())
	const held = 20 // more than an early version's fixed 16
	var results []array.RecordReader
	for range held {
		rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Run(context.Background(), rdr)
		rdr.Release()
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	for _, res := range results {
		res.Release()
	}
	if got := keptStatements(e); len(got) != held {
		t.Fatalf("%d kept connections after %d runs at once, want %d", len(got), held, held)
	}
	// A failing run takes a kept connection and closes it.
	bad := stringBatch(mem, "x")
	defer bad.Release()
	f := mustCompile(t, e, "select sum(cast(s as int)) as n from source", bad.Schema())
	if _, err := f.RunBatches(context.Background(), []arrow.RecordBatch{bad}); err == nil {
		t.Fatal("the failing run did not fail")
	}
	e.rmu.Lock()
	active, peak := e.runsActive, e.runsPeak
	e.rmu.Unlock()
	if got := keptStatements(e); len(got) != held-1 || active != 0 || peak != held {
		t.Errorf("after a failed run: %d kept, %d active, peak %d; want %d, 0, %d", len(got), active, peak, held-1, held)
	}
}
