//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// TestReadColumns checks which input columns DuckDB's optimizer says a
// query reads, above all the queries that read every column without naming
// one (a whole-row reference, DISTINCT *, COLUMNS(*) in a filter), which a
// check of the names in the text would get wrong.
func TestReadColumns(t *testing.T) {
	e := newEngine(t)
	all := []string{"key", "value", "topic", "partition", "offset", "timestamp"}
	for _, tc := range []struct {
		query string
		input string // WithInputQuery, or none
		want  []string
		ok    bool
	}{
		{query: "SELECT count(*) FROM source", want: []string{}, ok: true},
		{query: "SELECT count(*) AS n, max(\"offset\") FROM source", want: []string{"offset"}, ok: true},
		{query: "SELECT key FROM source WHERE partition > 3", want: []string{"key", "partition"}, ok: true},
		{query: "SELECT s.value FROM source s WHERE s.topic = 'x'", want: []string{"value", "topic"}, ok: true},
		{query: "SELECT * FROM source", want: all, ok: true},
		{query: "SELECT * EXCLUDE (key) FROM source", want: all[1:], ok: true},
		{query: "SELECT hash(s) FROM source s", want: all, ok: true},
		{query: "SELECT count(DISTINCT source) FROM source", want: all, ok: true},
		{query: "SELECT count(*) FROM (SELECT DISTINCT * FROM source)", want: all, ok: true},
		{query: "SELECT count(*) FROM source WHERE COLUMNS(*) IS NOT NULL", want: all, ok: true},
		{query: "SELECT count(*) FROM source a JOIN source b ON a.partition = b.partition", want: []string{"partition"}, ok: true},
		{query: "WITH t AS (SELECT partition AS p, value FROM source) SELECT p FROM t", want: []string{"partition"}, ok: true},
		{query: "SELECT count(*) FROM source GROUP BY topic HAVING max(octet_length(value)) > 2", want: []string{"value", "topic"}, ok: true},
		{query: "SELECT partition, row_number() OVER (ORDER BY \"timestamp\") FROM source", want: []string{"partition", "timestamp"}, ok: true},
		{query: "SELECT partition FROM source WHERE partition IN (SELECT partition FROM source WHERE key IS NULL)", want: []string{"key", "partition"}, ok: true},
		// A plan without a scan of the input says nothing.
		{query: "SELECT count(*) FROM source WHERE false", ok: false},
		{query: "SELECT value FROM source LIMIT 0", want: []string{"value"}, ok: true},
		// An input query's reads count, and only they: here the decoded
		// view passes topic through, but the query does not read it.
		{query: "SELECT sum(amount) FROM source", input: "SELECT CAST(json_extract_string(decode(value), '$.amount') AS BIGINT) AS amount, * EXCLUDE (value) FROM __sluice_input",
			want: []string{"value"}, ok: true},
		{query: "SELECT topic, sum(amount) FROM source GROUP BY topic", input: "SELECT CAST(json_extract_string(decode(value), '$.amount') AS BIGINT) AS amount, * EXCLUDE (value) FROM __sluice_input",
			want: []string{"value", "topic"}, ok: true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			var opts []CompileOption
			if tc.input != "" {
				opts = append(opts, WithInputQuery(tc.input))
			}
			c, err := e.Compile(context.Background(), tc.query, kafkaSchema, opts...)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got, ok, err := c.ReadColumns(context.Background())
			if err != nil {
				t.Fatalf("ReadColumns: %v", err)
			}
			if ok != tc.ok || ok && !slices.Equal(got, tc.want) {
				t.Errorf("ReadColumns = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestReadColumnsAfterClose: the planner database goes with the engine.
func TestReadColumnsAfterClose(t *testing.T) {
	e, err := Open(context.Background(), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Compile(context.Background(), "SELECT key FROM source", kafkaSchema)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.ReadColumns(context.Background()); err != nil || !ok {
		t.Fatalf("ReadColumns: %v, %v", ok, err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadColumns(context.Background()); err == nil {
		t.Error("ReadColumns after Close: no error")
	}
}

// TestOpenPlanner: the planner database opened ahead, while another
// goroutine compiles on the engine, is the one ReadColumns plans in; after
// Close it cannot be opened.
func TestOpenPlanner(t *testing.T) {
	e, err := Open(context.Background(), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() { opened <- e.OpenPlanner(context.Background()) }()
	c, err := e.Compile(context.Background(), "SELECT key FROM source", kafkaSchema)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("OpenPlanner: %v", err)
	}
	ahead := e.planned
	if got, ok, err := c.ReadColumns(context.Background()); err != nil || !ok || len(got) != 1 || got[0] != "key" {
		t.Fatalf("ReadColumns = %v, %v, %v; want [key]", got, ok, err)
	}
	if ahead == nil || e.planned != ahead {
		t.Fatal("ReadColumns did not plan in the planner database OpenPlanner opened")
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.OpenPlanner(context.Background()); err == nil {
		t.Error("OpenPlanner after Close: no error")
	}
}

// TestNarrow: a query narrowed to the columns it reads gives, over batches
// of only those columns, what it gives over the whole input; the columns
// it does not read are NULLs of any type (a nested one too).
func TestNarrow(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	header := arrow.ListOf(arrow.StructOf(
		arrow.Field{Name: "key", Type: arrow.BinaryTypes.String, Nullable: true},
		arrow.Field{Name: "value", Type: arrow.BinaryTypes.Binary, Nullable: true}))
	schema := arrow.NewSchema(append(kafkaSchema.Fields(), arrow.Field{Name: "headers", Type: header, Nullable: true}), nil)
	var rows []kafkaRecord
	for i := range 50 {
		rows = append(rows, kafkaRecord{key: fmt.Sprint(i % 3), value: fmt.Sprintf(`{"a":%d}`, i), partition: int32(i % 4), offset: int64(i), ts: time.UnixMilli(int64(i) * 1000)})
	}
	// The rows with an empty headers column added.
	var full []arrow.RecordBatch
	for _, b := range kafkaBatches(mem, rows, 16) {
		hb := array.NewBuilder(mem, header)
		for range b.NumRows() {
			hb.AppendNull()
		}
		h := hb.NewArray()
		cols := append(slices.Clone(b.Columns()), h)
		full = append(full, array.NewRecordBatch(schema, cols, b.NumRows()))
		h.Release()
		hb.Release()
		b.Release()
	}
	defer releaseAll(full)
	for _, q := range []string{
		"SELECT count(*) AS n FROM source",
		`SELECT partition, sum(CAST(json_extract_string(decode(value), '$.a') AS BIGINT)) AS a FROM source GROUP BY partition`,
		`SELECT "offset", "timestamp" FROM source WHERE key IS NOT NULL AND "offset" % 7 = 0`,
		`SELECT s.partition, count(*) AS n FROM source s JOIN source t ON s."offset" = t."offset" + 1 GROUP BY s.partition`,
	} {
		t.Run(q, func(t *testing.T) {
			c, err := e.Compile(context.Background(), q, schema)
			if err != nil {
				t.Fatal(err)
			}
			cols, ok, err := c.ReadColumns(context.Background())
			if err != nil || !ok {
				t.Fatalf("ReadColumns: %v %v", ok, err)
			}
			if len(cols) == 0 {
				cols = []string{"partition"}
			}
			n, err := c.Narrow(context.Background(), cols)
			if err != nil {
				t.Fatal(err)
			}
			if got := n.InputSchema().NumFields(); got != len(cols) {
				t.Fatalf("narrowed input has %d columns, want %d", got, len(cols))
			}
			if !n.OutputSchema().Equal(c.OutputSchema()) {
				t.Fatalf("output %s, want %s", n.OutputSchema(), c.OutputSchema())
			}
			var narrow []arrow.RecordBatch
			for _, b := range full {
				var keep []arrow.Array
				for _, f := range n.InputSchema().Fields() {
					keep = append(keep, b.Column(schema.FieldIndices(f.Name)[0]))
				}
				narrow = append(narrow, array.NewRecordBatch(n.InputSchema(), keep, b.NumRows()))
			}
			defer releaseAll(narrow)
			want, err := c.RunBatches(context.Background(), full)
			if err != nil {
				t.Fatal(err)
			}
			defer releaseAll(want)
			got, err := n.RunBatches(context.Background(), narrow)
			if err != nil {
				t.Fatal(err)
			}
			defer releaseAll(got)
			w, g := rowsOf(t, want), rowsOf(t, got)
			sortRows(w)
			sortRows(g)
			if fmt.Sprint(g) != fmt.Sprint(w) || len(w) == 0 {
				t.Errorf("narrowed gives %v, want %v", g, w)
			}
		})
	}
	c, err := e.Compile(context.Background(), "SELECT key FROM source", schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, cols := range [][]string{nil, {"topic", "key"}, {"nope"}} {
		if _, err := c.Narrow(context.Background(), cols); err == nil {
			t.Errorf("Narrow(%q) accepted", cols)
		}
	}
}
