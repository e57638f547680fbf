//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// intBatch is one batch of a single int64 column named col holding 0..n-1.
func intBatch(mem memory.Allocator, col string, n int) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{{Name: col, Type: arrow.PrimitiveTypes.Int64}}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := range n {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
	}
	return b.NewRecordBatch()
}

// sumOf runs c over one batch and returns its single int64 value.
func sumOf(t *testing.T, c *Compiled, rec arrow.RecordBatch) int64 {
	t.Helper()
	out, err := c.RunBatches(context.Background(), []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, r := range out {
			r.Release()
		}
	}()
	if len(out) != 1 || out[0].NumRows() != 1 {
		t.Fatalf("got %d batches, want one row", len(out))
	}
	return out[0].Column(0).(*array.Int64).Value(0)
}

// inputViews lists the slots' views in the catalog.
func inputViews(t *testing.T, e *Engine) []string {
	t.Helper()
	s, err := e.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	rows, err := s.conn.(driver.QueryerContext).QueryContext(context.Background(),
		"SELECT view_name FROM duckdb_views() WHERE view_name LIKE '__sluice_src_%' ORDER BY view_name", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	dest := make([]driver.Value, 1)
	for {
		if err := rows.Next(dest); err == io.EOF {
			return names
		} else if err != nil {
			t.Fatal(err)
		}
		names = append(names, dest[0].(string))
	}
}

// TestSlotsReused: runs of one input schema, one after the other, read
// their inputs through one registered view and one statement prepared on
// one kept connection (prepared.go), each its own rows; between runs the
// view reads nothing.
func TestSlotsReused(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	c := mustCompile(t, e, "select sum(x) as s from source", intBatch(mem, "x", 0).Schema())
	for n := 1; n <= 5; n++ {
		rec := intBatch(mem, "x", n*100)
		got := sumOf(t, c, rec)
		rec.Release()
		if want := int64(n*100*(n*100-1)) / 2; got != want {
			t.Fatalf("run %d: sum %d, want %d", n, got, want)
		}
	}
	views := inputViews(t, e)
	if len(views) != 1 {
		t.Fatalf("input views %v, want one for the five runs", views)
	}
	if got := keptStatements(e); len(got) != 1 || got[0] != 1 {
		t.Errorf("kept connections' statements %v, want one connection with one statement for the five runs", got)
	}
	// Between runs the slot is an empty table, not a released stream.
	s, err := e.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	rr, err := s.arrow.QueryContext(context.Background(), "SELECT count(*) AS n FROM "+quoteIdent(views[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Release()
	if !rr.Next() || rr.RecordBatch().Column(0).(*array.Int64).Value(0) != 0 {
		t.Fatalf("a free slot's view read rows (err %v)", rr.Err())
	}
}

// TestSlotsConcurrent: runs at the same time each hold a slot of their
// own and read only their input.
func TestSlotsConcurrent(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	c := mustCompile(t, e, "select sum(x) as s from source", intBatch(mem, "x", 0).Schema())
	const runners, runs = 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, runners*runs)
	for r := range runners {
		wg.Go(func() {
			for i := range runs {
				n := 10 + r*runs + i
				rec := intBatch(mem, "x", n)
				out, err := c.RunBatches(context.Background(), []arrow.RecordBatch{rec})
				rec.Release()
				if err != nil {
					errs <- err
					continue
				}
				if got, want := out[0].Column(0).(*array.Int64).Value(0), int64(n*(n-1)/2); got != want {
					errs <- fmt.Errorf("run of %d rows: sum %d, want %d", n, got, want)
				}
				for _, o := range out {
					o.Release()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if views := inputViews(t, e); len(views) > runners {
		t.Errorf("%d input views for %d concurrent runners", len(views), runners)
	}
}

// TestSlotsEvicted: inputs of more schemas than the engine keeps slots for
// drop the oldest slots' views; the newest stay for the next runs.
func TestSlotsEvicted(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	const schemas = maxFreeSlots + 6
	for i := range schemas {
		col := fmt.Sprintf("x%d", i)
		rec := intBatch(mem, col, 3)
		c := mustCompile(t, e, "select sum("+col+") as s from source", rec.Schema())
		if got := sumOf(t, c, rec); got != 3 {
			t.Fatalf("schema %d: sum %d, want 3", i, got)
		}
		rec.Release()
	}
	views := inputViews(t, e)
	if len(views) != maxFreeSlots {
		t.Fatalf("%d input views after %d schemas, want %d", len(views), schemas, maxFreeSlots)
	}
	e.smu.Lock()
	free := len(e.free)
	newest := e.free[len(e.free)-1].r.schema.Field(0).Name
	e.smu.Unlock()
	if free != maxFreeSlots || newest != fmt.Sprintf("x%d", schemas-1) {
		t.Errorf("free slots %d, newest for %s; want %d, the last schema's", free, newest, maxFreeSlots)
	}
	if !strings.HasPrefix(views[0], "__sluice_src_") {
		t.Errorf("view %q", views[0])
	}
}
