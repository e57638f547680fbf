//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

// TestCompileRefuses checks every refusal names its field, its kind, the
// position in the query as written (0-based, in characters) with line and
// column, and a reason.
func TestCompileRefuses(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name   string
		query  string
		schema *arrow.Schema // default treasurySchema
		view   string
		kind   error
		field  string // default "query"
		pos    int    // -1: none
		line   int
		col    int
		reason string // substring
	}{
		{name: "syntax error on the second line", query: "select branch,\n  sum(amount) from source group by branch,,",
			kind: ErrSyntax, pos: 57, line: 2, col: 43, reason: `syntax error at or near ","`},
		{name: "unknown column", query: "select brnch, sum(amount) from source group by branch",
			kind: ErrUnknownColumn, pos: 7, line: 1, col: 8, reason: `Referenced column "brnch" not found in FROM clause! Candidate bindings: "branch"`},
		{name: "unknown column after a non-ASCII literal", query: "select 'Zürich', brnch from source",
			kind: ErrUnknownColumn, pos: 17, line: 1, col: 18, reason: `"brnch"`},
		{name: "unknown column after a rewritten offset", query: "select offset, brnch from source", schema: kafkaSchema,
			kind: ErrUnknownColumn, pos: 15, line: 1, col: 16, reason: `"brnch"`},
		{name: "unknown column after a translated pattern", query: "select date_format(note, 'yyyy-MM-dd'), brnch from source",
			kind: ErrUnknownColumn, pos: 40, line: 1, col: 41, reason: `"brnch"`},
		{name: "a Spark string in double quotes", query: `select branch from source where currency = "EUR"`,
			kind: ErrUnknownColumn, pos: 43, line: 1, col: 44, reason: `double quotes name a column here: write a string as 'EUR'`},
		{name: "unknown function", query: "select branch,\n  summ(amount) from source group by branch",
			kind: ErrUnknownFunction, pos: 17, line: 2, col: 3, reason: `Scalar Function with name summ does not exist! Did you mean "sum"?`},
		{name: "unknown table", query: "select * from other", kind: ErrUnknownTable, pos: 14, line: 1, col: 15,
			reason: `table "other" does not exist: a SQL step reads only its view "source"`},
		{name: "qualified table", query: "select * from main.source", kind: ErrUnknownTable, pos: 14, line: 1, col: 15,
			reason: "table main.source is not available"},
		{name: "the view under another name", query: "select * from treasury_stream", kind: ErrUnknownTable, pos: 14, line: 1, col: 15},
		{name: "GROUP BY misuse", query: "select branch, amount from source group by branch",
			kind: ErrInvalidQuery, pos: 15, line: 1, col: 16, reason: `column "amount" must appear in the GROUP BY clause`},
		{name: "second statement", query: "select 1 from source; select 2", kind: ErrNotAllowed, pos: 22, line: 1, col: 23,
			reason: "a second statement"},
		{name: "second statement that writes", query: "select 1;\ndrop table x", kind: ErrNotAllowed, pos: 10, line: 2, col: 1},
		{name: "COPY", query: "COPY (select * from source) TO '/tmp/out.csv'", kind: ErrNotAllowed, pos: 0, line: 1, col: 1,
			reason: "a SQL step runs one SELECT statement, not COPY"},
		{name: "ATTACH", query: "  attach 'x.db' as x", kind: ErrNotAllowed, pos: 2, line: 1, col: 3, reason: "not ATTACH"},
		{name: "PRAGMA", query: "pragma version", kind: ErrNotAllowed, pos: 0, line: 1, col: 1, reason: "not PRAGMA"},
		{name: "SET", query: "set threads = 8", kind: ErrNotAllowed, pos: 0, line: 1, col: 1, reason: "not SET"},
		{name: "CREATE", query: "create table t as select * from source", kind: ErrNotAllowed, pos: 0, line: 1, col: 1, reason: "not CREATE"},
		{name: "INSTALL", query: "install httpfs", kind: ErrNotAllowed, pos: 0, line: 1, col: 1, reason: "not INSTALL"},
		{name: "LOAD", query: "load httpfs", kind: ErrNotAllowed, pos: 0, line: 1, col: 1, reason: "not LOAD"},
		{name: "EXPLAIN", query: "explain select * from source", kind: ErrNotAllowed, pos: 0, line: 1, col: 1, reason: "not EXPLAIN"},
		{name: "read_csv", query: "select * from read_csv('/etc/hostname')", kind: ErrNotAllowed, pos: 14, line: 1, col: 15,
			reason: `table function read_csv is not allowed: a SQL step reads only its view "source"`},
		{name: "read_parquet in a join", query: "select * from source s join read_parquet('x.parquet') p on true",
			kind: ErrNotAllowed, pos: 28, line: 1, col: 29, reason: "table function read_parquet"},
		{name: "glob", query: "select * from glob('/etc/*')", kind: ErrNotAllowed, pos: 14, line: 1, col: 15, reason: "table function glob"},
		{name: "query() runs SQL", query: "select * from query('select 1')", kind: ErrNotAllowed, pos: 14, line: 1, col: 15, reason: "table function query"},
		{name: "read_text in a subquery", query: "select (select content from read_text('/etc/passwd')) from source",
			kind: ErrNotAllowed, pos: 28, line: 1, col: 29, reason: "table function read_text"},
		{name: "DESCRIBE", query: "describe source", kind: ErrNotAllowed, pos: -1, reason: "DESCRIBE, SHOW and SUMMARIZE are not allowed"},
		{name: "parameters", query: "select * from source where amount > $1", kind: ErrNotAllowed, pos: 36, line: 1, col: 37,
			reason: "parameters ($1, ?) are not supported"},
		{name: "CAST of Kafka's value to a string", query: "select from_json(cast(value as string), 'a INT') from source",
			schema: kafkaSchema, kind: ErrNotAllowed, pos: 17, line: 1, col: 18, reason: "write decode(value)"},
		{name: "value::varchar", query: "select get_json_object(value::varchar, '$.a') from source",
			schema: kafkaSchema, kind: ErrNotAllowed, pos: 23, line: 1, col: 24, reason: "CAST(value AS VARCHAR) of a binary column"},
		{name: "bad datetime pattern", query: "select date_format(current_timestamp, 'yyyy-QQ') from source",
			kind: ErrInvalidQuery, pos: 38, line: 1, col: 39, reason: "date_format: datetime pattern \"yyyy-QQ\": QQ at character 5 is not supported"},
		{name: "pattern that is not a literal", query: "select unix_timestamp(note, branch) from source",
			kind: ErrNotAllowed, pos: 28, line: 1, col: 29, reason: "unix_timestamp: the datetime pattern must be a string literal"},
		{name: "bad from_json schema", query: "select from_json(doc, 'a STRNG') from source",
			kind: ErrInvalidQuery, pos: 22, line: 1, col: 23, reason: `from_json: schema "a STRNG" at character 2: unknown or unsupported type "strng"`},
		{name: "empty query", query: " \n ", kind: ErrSyntax, pos: -1, reason: "empty query"},
		{name: "bad view name", query: "select 1", view: "my-view", kind: ErrInvalidQuery, field: "view", pos: -1,
			reason: `"my-view": want a letter or underscore`},
		{name: "engine's view name", query: "select 1", view: "__sluice_src_1", kind: ErrInvalidQuery, field: "view", pos: -1},
		{name: "an Arrow type DuckDB cannot read", query: "select x from source", kind: ErrInvalidQuery, field: "schema", pos: -1,
			schema: arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.FixedWidthTypes.Float16}}, nil),
			reason: "DuckDB cannot read this Arrow schema"},
		{name: "columns differing in case", query: "select 1", kind: ErrInvalidQuery, field: "schema", pos: -1,
			schema: arrow.NewSchema([]arrow.Field{{Name: "a", Type: arrow.PrimitiveTypes.Int64}, {Name: "A", Type: arrow.PrimitiveTypes.Int64}}, nil),
			reason: `columns "a" and "A" differ only in case`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			schema := tt.schema
			if schema == nil {
				schema = treasurySchema
			}
			var opts []CompileOption
			if tt.view != "" {
				opts = append(opts, WithView(tt.view))
			}
			_, err := e.Compile(context.Background(), tt.query, schema, opts...)
			var qe *QueryError
			if !errors.As(err, &qe) {
				t.Fatalf("Compile(%q) = %v, want a *QueryError", tt.query, err)
			}
			t.Logf("%v", err)
			field := tt.field
			if field == "" {
				field = "query"
			}
			if qe.Field != field || qe.Position != tt.pos || tt.pos >= 0 && (qe.Line != tt.line || qe.Column != tt.col) {
				t.Errorf("field %s position %d at %d:%d, want %s %d at %d:%d", qe.Field, qe.Position, qe.Line, qe.Column, field, tt.pos, tt.line, tt.col)
			}
			if !errors.Is(err, tt.kind) || !errors.Is(err, ErrInvalidQuery) {
				t.Errorf("error %v is not %v and ErrInvalidQuery", err, tt.kind)
			}
			if !strings.Contains(qe.Reason, tt.reason) {
				t.Errorf("reason %q, want containing %q", qe.Reason, tt.reason)
			}
		})
	}
}

func TestQueryErrorMessage(t *testing.T) {
	e := newEngine(t)
	_, err := e.Compile(context.Background(), "select branch,\n  summ(amount) from source group by branch", treasurySchema)
	want := `query at 2:3 (position 17): unknown function: Scalar Function with name summ does not exist! Did you mean "sum"?`
	if err == nil || err.Error() != want {
		t.Errorf("error\n got %v\nwant %s", err, want)
	}
}

// TestRunErrors checks errors DuckDB raises while running: a QueryError
// wrapping ErrExecution, at the position in the query as written even when
// the engine wrapped the query (a sum made BIGINT).
func TestRunErrors(t *testing.T) {
	e := newEngine(t)
	mem := checkedMem(t)
	batches := treasuryBatches(mem, treasuryRows, 3)
	defer releaseAll(batches)
	tests := []struct {
		name, query, reason string
		pos                 int
	}{
		{name: "cast", query: "select cast(branch as int) from source", pos: 7, reason: "Could not convert string 'b1' to INT32"},
		{name: "cast in a wrapped query", query: "select sum(amount), cast(currency as int) from source group by currency", pos: 20,
			reason: "Could not convert string"},
		{name: "sum beyond BIGINT", query: "select sum(amount + 9000000000000000000) from source", pos: -1,
			reason: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := e.Compile(context.Background(), tt.query, treasurySchema)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			_, err = c.RunBatches(context.Background(), batches)
			var qe *QueryError
			if !errors.As(err, &qe) || !errors.Is(err, ErrExecution) || errors.Is(err, ErrInvalidQuery) {
				t.Fatalf("Run = %v, want a QueryError wrapping ErrExecution only", err)
			}
			t.Logf("%v", err)
			if qe.Position != tt.pos || !strings.Contains(qe.Reason, tt.reason) {
				t.Errorf("position %d reason %q, want %d and %q", qe.Position, qe.Reason, tt.pos, tt.reason)
			}
		})
	}
}
