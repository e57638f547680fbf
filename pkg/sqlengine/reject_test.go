//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// TestRejects: rows a query drops through RejectFunction reach the run's
// Rejects once each, counted, and kept up to Keep with their columns; in a
// run without WithRejects the query fails instead of dropping them.
func TestRejects(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	schema := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}, {Name: "s", Type: arrow.BinaryTypes.String, Nullable: true}}, nil)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for i := range 5000 {
		b.Field(0).(*array.Int64Builder).Append(int64(i))
		if i%1000 == 7 {
			b.Field(1).AppendNull()
		} else {
			b.Field(1).(*array.StringBuilder).Append("x")
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	c, err := e.Compile(context.Background(), `select count(*) as n from source`, schema,
		WithInputQuery(`SELECT * FROM __sluice_input WHERE CASE WHEN n % 1000 <> 7 THEN true ELSE `+RejectFunction+`(getvariable('__sluice_run'), 'odd', 'n', n, 's', s) END`))
	if err != nil {
		t.Fatal(err)
	}
	r := &Rejects{Keep: 3}
	out, err := c.RunBatches(context.Background(), []arrow.RecordBatch{rec}, WithRejects(r))
	if err != nil {
		t.Fatal(err)
	}
	n := out[0].Column(0).(*array.Int64).Value(0)
	for _, o := range out {
		o.Release()
	}
	if n != 4995 || r.Count() != 5 || len(r.Records()) != 3 {
		t.Fatalf("count %d, rejects %d, kept %d; want 4995, 5, 3", n, r.Count(), len(r.Records()))
	}
	for _, rej := range r.Records() {
		if rej.Reason != "odd" || rej.Record["n"].(int64)%1000 != 7 || rej.Record["s"] != nil {
			t.Fatalf("reject %+v", rej)
		}
	}
	if _, err := c.RunBatches(context.Background(), []arrow.RecordBatch{rec}); !errors.Is(err, ErrExecution) {
		t.Fatalf("run without WithRejects: err = %v, want ErrExecution", err)
	}
}
