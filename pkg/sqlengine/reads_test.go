//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"slices"
	"testing"
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
