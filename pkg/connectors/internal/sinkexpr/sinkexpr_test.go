//go:build duckdb_arrow

package sinkexpr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	gocmp "github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors/internal/sinkexpr"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) {
	// What may outlive the tests: testenv.SharedEngineGoroutine.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(testenv.SharedEngineGoroutine))
}

// schema is the rows' columns in most tests: a name that needs quoting, a
// bytes column and nested types, every column but id nullable.
var schema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64},
	{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "Weird-Name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "payload", Type: arrow.BinaryTypes.Binary, Nullable: true},
	{Name: "attrs", Type: arrow.StructOf(
		arrow.Field{Name: "n", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		arrow.Field{Name: "s", Type: arrow.BinaryTypes.String, Nullable: true},
	), Nullable: true},
	{Name: "tags", Type: arrow.ListOf(arrow.BinaryTypes.String), Nullable: true},
}, nil)

// rows are rows of schema holding the Go types a batch of it reads back
// as (columnar.AppendRows), so that the row path's column reads compare
// equal to the Arrow path's. Row 1 is NULL in every nullable column.
var rows = []stream.Row{
	{"id": int64(10), "name": "ada", "Weird-Name": "w-ada", "payload": []byte("p0"),
		"attrs": map[string]any{"n": int64(1), "s": "x"}, "tags": []any{"a", "b"}},
	{"id": int64(11), "name": nil, "Weird-Name": nil, "payload": nil, "attrs": nil, "tags": nil},
	{"id": int64(12), "name": "bob", "Weird-Name": "w-bob", "payload": []byte{},
		"attrs": map[string]any{"n": int64(2), "s": nil}, "tags": []any{}},
	{"id": int64(13), "name": "cy", "Weird-Name": nil, "payload": []byte("p3"),
		"attrs": map[string]any{"n": nil, "s": "z"}, "tags": []any{"c"}},
}

// checkedMem returns an allocator that fails the test if anything built
// with it, by the test or by sinkexpr, is still allocated when it ends.
func checkedMem(t *testing.T) *memory.CheckedAllocator {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return mem
}

// mustEval is set.Eval over rec, failing t on an error; the values are
// released when t ends, before checkedMem's check.
func mustEval(t *testing.T, set *sinkexpr.Set, mem memory.Allocator, rec arrow.RecordBatch) *sinkexpr.Values {
	t.Helper()
	v, err := set.Eval(context.Background(), mem, rec)
	if err != nil {
		t.Fatalf("Eval: %v", err)
	}
	t.Cleanup(v.Release)
	return v
}

// mustEvalRows is mustEval for set.EvalRows over rows.
func mustEvalRows(t *testing.T, set *sinkexpr.Set, mem memory.Allocator, rows []stream.Row) *sinkexpr.Values {
	t.Helper()
	v, err := set.EvalRows(context.Background(), mem, rows)
	if err != nil {
		t.Fatalf("EvalRows: %v", err)
	}
	t.Cleanup(v.Release)
	return v
}

// newBatch builds rows into a batch of s.
func newBatch(t *testing.T, mem memory.Allocator, s *arrow.Schema, rows []stream.Row) arrow.RecordBatch {
	t.Helper()
	b := columnar.NewBuilder(mem, s)
	defer b.Release()
	for i, r := range rows {
		if err := b.Append(r); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
	}
	return b.NewRecordBatch()
}

// texts is one option per text, each named after its text.
func texts(ts ...string) []sinkexpr.Option {
	opts := make([]sinkexpr.Option, len(ts))
	for k, text := range ts {
		opts[k] = sinkexpr.Option{Field: text, Text: text}
	}
	return opts
}

func mustNew(t *testing.T, opts []sinkexpr.Option, s *arrow.Schema) *sinkexpr.Set {
	t.Helper()
	set, err := sinkexpr.New(opts, s)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return set
}

// read returns option k's values, one per row of v.
func read(t *testing.T, v *sinkexpr.Values, k int) []any {
	t.Helper()
	out := make([]any, v.Len())
	for i := range out {
		x, err := v.Value(k, i)
		if err != nil {
			t.Fatalf("Value(%d, %d): %v", k, i, err)
		}
		out[i] = x
	}
	return out
}

func wantString(t arrow.DataType) error {
	if t.ID() == arrow.STRING {
		return nil
	}
	return fmt.Errorf("gives %s, want a string", t)
}

// errorsOf splits New's error into its *sinkexpr.Error parts, failing on
// any other kind: every refusal must name its option.
func errorsOf(t *testing.T, err error) []*sinkexpr.Error {
	t.Helper()
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	var out []*sinkexpr.Error
	for _, e := range list {
		var xe *sinkexpr.Error
		if !errors.As(e, &xe) {
			t.Fatalf("%v (%T) is not a *sinkexpr.Error", e, e)
		}
		if got := xe.Error(); got != xe.Field+": "+xe.Reason {
			t.Errorf("Error() = %q, want field: reason", got)
		}
		out = append(out, xe)
	}
	return out
}

func TestNewRefuses(t *testing.T) {
	// wantErr is one refused option: its field and what its reason says
	// (substrings, in order), or that it must not mention CEL.
	type wantErr struct {
		field  string
		reason []string
	}
	const cel = "(sink options are SQL expressions, no longer CEL: "
	timeSchema := arrow.NewSchema([]arrow.Field{{Name: "t", Type: arrow.FixedWidthTypes.Time64us, Nullable: true}}, nil)
	tests := []struct {
		name   string
		schema *arrow.Schema
		opts   []sinkexpr.Option
		want   []wantErr
	}{
		// The shape of a text is checked with or without a schema.
		{"empty", nil, texts(""), []wantErr{{"", []string{"is empty"}}}},
		{"blank", schema, []sinkexpr.Option{{Field: "key", Text: " \t\n"}}, []wantErr{{"key", []string{"is empty"}}}},
		{"two statements", nil, texts("id; DROP TABLE x"), []wantErr{{"id; DROP TABLE x", []string{"position 2: ';' ends a statement"}}}},
		{"unclosed parenthesis", schema, texts("upper(name"), []wantErr{{"upper(name", []string{"position 10: a '(' is not closed"}}}},
		{"stray parenthesis", schema, texts("id) OR (id"), []wantErr{{"id) OR (id", []string{"position 2: a ')' with no '('"}}}},
		{
			// Shape errors are each option's, joined; the good one between
			// them is not blamed.
			"every option's shape error", nil,
			[]sinkexpr.Option{{Field: "key", Text: ""}, {Field: "value", Text: "id"}, {Field: "headers.h", Text: "1;2"}},
			[]wantErr{{"key", []string{"is empty"}}, {"headers.h", []string{"position 1: ';'"}}},
		},

		// Compile errors of the options' one query, placed in the option
		// they point into, with the position in its own text.
		{"unknown column", schema, texts("nope + 1"), []wantErr{{"nope + 1", []string{"position 0: unknown column", `"nope"`}}}},
		{"unknown bare column", schema, texts("nope"), []wantErr{{"nope", []string{"position 0: unknown column"}}}},
		{
			"unknown column in the third option", schema,
			[]sinkexpr.Option{{Field: "key", Text: "id"}, {Field: "value", Text: "upper(name)"}, {Field: "partition", Text: "id + nope"}},
			[]wantErr{{"partition", []string{"position 5: unknown column"}}},
		},
		// Positions count characters, as QueryError does, not bytes: é is
		// two bytes.
		{"position in characters", schema, texts("'é' ||\n nope"), []wantErr{{"'é' ||\n nope", []string{"position 8: unknown column"}}}},
		// The parser places an expression that ends too early on the ')'
		// the query adds after it: the position is the text's end.
		{"syntax error at the end", schema, texts("id", "id +"), []wantErr{{"id +", []string{"position 4: syntax error"}}}},
		{"unknown function", schema, texts("frob(id)"), []wantErr{{"frob(id)", []string{"position 0: unknown function", "frob"}}}},
		{"unknown table", schema, texts("id IN (SELECT id FROM other)"), []wantErr{{"id IN (SELECT id FROM other)", []string{"position 22: unknown table"}}}},
		{"parameter", schema, texts("id + $1"), []wantErr{{"id + $1", []string{"position 5: not allowed: parameters"}}}},
		{"window function", schema, texts("row_number() OVER ()"), []wantErr{{"row_number() OVER ()", []string{"not allowed: window functions"}}}},
		{
			// DuckDB places no position on this one: the option is found
			// by the name the message quotes (the view, which only its
			// text holds).
			"unplaced error blames the option quoting the name", schema,
			texts("id + 1", "(SELECT max(id) FROM __sink)"),
			[]wantErr{{"(SELECT max(id) FROM __sink)", []string{"not allowed", `"__sink"`}}},
		},

		// Aggregates give one value per batch, not per record: each
		// aggregating option is named, not the ones beside it.
		{"aggregate", schema, []sinkexpr.Option{{Field: "key", Text: "id"}, {Field: "value", Text: "count(*)"}},
			[]wantErr{{"value", []string{"aggregates the rows"}}}},
		{"two aggregates", schema, texts("id", "sum(id)", "max(name)"),
			[]wantErr{{"sum(id)", []string{"aggregates the rows"}}, {"max(name)", []string{"aggregates the rows"}}}},
		// Beside a computed option the query fails with GROUP BY advice
		// for that one: the aggregate is still the one blamed.
		{"aggregate beside an expression", schema, []sinkexpr.Option{{Field: "key", Text: "upper(name)"}, {Field: "value", Text: "sum(id)"}},
			[]wantErr{{"value", []string{"aggregates the rows"}}}},

		// Want refuses a result type: a column's, or each expression's.
		{"wrong column type", schema, []sinkexpr.Option{{Field: "topic", Text: "id", Want: wantString}, {Field: "headers.a", Text: "name", Want: wantString}},
			[]wantErr{{"topic", []string{"gives int64, want a string"}}}},
		{
			"wrong result types", schema,
			[]sinkexpr.Option{
				{Field: "topic", Text: "id * 3", Want: wantString},
				{Field: "headers.a", Text: "upper(name)", Want: wantString},
				{Field: "headers.b", Text: "id * 2", Want: wantString},
			},
			[]wantErr{{"topic", []string{"gives int64, want a string"}}, {"headers.b", []string{"gives int64, want a string"}}},
		},
		// A column's wrong type does not hide an expression's error.
		{"column type and compile error", schema, []sinkexpr.Option{{Field: "topic", Text: "id", Want: wantString}, {Field: "key", Text: "nope + 1"}},
			[]wantErr{{"topic", []string{"gives int64, want a string"}}, {"key", []string{"position 0: unknown column"}}}},
		// A union is refused at New: Eval could not hand it to a sink.
		{"union result", schema, []sinkexpr.Option{{Field: "value", Text: "union_value(k := id)"}},
			[]wantErr{{"value", []string{"which a sink cannot write: cast it"}}}},
		{"union inside a list", schema, []sinkexpr.Option{{Field: "value", Text: "[union_value(k := id)]"}},
			[]wantErr{{"value", []string{"which a sink cannot write"}}}},

		// What the options used to be written in gets a hint how SQL
		// writes it, for shape and compile errors alike.
		{"CEL field access", schema, texts("row.id"), []wantErr{{"row.id", []string{"position 0:", cel + "row. → the column's name)"}}}},
		{"CEL conversion", schema, texts("string(id)"), []wantErr{{"string(id)", []string{"unknown function", cel + "string( → CAST(x AS STRING))"}}}},
		{"CEL conditional", schema, texts("id > 1 ? 'a' : 'b'"), []wantErr{{"id > 1 ? 'a' : 'b'", []string{"syntax error", cel + "? → CASE WHEN c THEN a ELSE b END)"}}}},
		{"CEL string literal", schema, texts(`name == "ada"`), []wantErr{{`name == "ada"`, []string{"unknown column", cel + `" → 'text' for a string ("x" names a column))`}}}},
		{"CEL hints together", schema, texts("has(row.name) && id > 1"),
			[]wantErr{{"has(row.name) && id > 1", []string{cel + "row. → the column's name; && → AND; has( → x IS NOT NULL)"}}}},
		{"CEL shape error", nil, texts("int(row['id']))"), []wantErr{{"int(row['id']))", []string{"position 14: a ')' with no '('", cel + "int( → CAST(x AS BIGINT); row[ → the column's name)"}}}},

		// Rows are evaluated over a batch of RowsSchema, where a TIME
		// column is a string: New refuses what only the row path could
		// not run.
		{"refused on the row path", timeSchema, texts("hour(t)"), []wantErr{{"hour(t)", []string{"hour(VARCHAR)"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := sinkexpr.New(tc.opts, tc.schema)
			if err == nil {
				t.Fatalf("New accepted %+v", tc.opts)
			}
			if set != nil {
				t.Errorf("New returned a Set with its error")
			}
			got := errorsOf(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("New: %d errors, want %d: %v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if got[i].Field != w.field {
					t.Errorf("error %d: Field %q, want %q (%v)", i, got[i].Field, w.field, got[i])
				}
				rest := got[i].Reason
				for _, sub := range w.reason {
					j := strings.Index(rest, sub)
					if j < 0 {
						t.Errorf("error %d: Reason %q lacks %q (after what came before it)", i, got[i].Reason, sub)
						break
					}
					rest = rest[j+len(sub):]
				}
				// A hint only for what looks like CEL.
				if !strings.Contains(strings.Join(w.reason, ""), "CEL") && strings.Contains(got[i].Reason, "CEL") {
					t.Errorf("error %d: Reason %q hints at CEL", i, got[i].Reason)
				}
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	tests := []struct {
		name     string
		schema   *arrow.Schema
		opts     []sinkexpr.Option
		needsSQL bool
		// columns is what Columns names, comma-separated; "!" when
		// it names none (ok false).
		columns string
	}{
		{"no options", schema, nil, false, ""},
		{"a column", schema, texts("id"), false, "id"},
		// SQL matches a bare name in any case.
		{"a column in another case", schema, texts("NAME"), false, "name"},
		{"a quoted column", schema, texts(`"Weird-Name"`), false, "Weird-Name"},
		{"a column between comments", schema, texts("/* the key */ id -- as it is"), false, "id"},
		// A quoted name matches a column exactly; DuckDB still resolves
		// it in any case, so it is valid SQL, not a column read.
		{"a quoted column in another case", schema, texts(`"ID"`), true, "!"},
		{"an expression", schema, texts("id + 1"), true, "!"},
		{"columns and an expression", schema, texts("id", "name", "upper(name)"), true, "!"},
		// A NULL result has no type to refuse: Want is not asked.
		{"NULL passes Want", schema, []sinkexpr.Option{{Field: "topic", Text: "NULL", Want: wantString}}, true, "!"},
		{"Want satisfied", schema, []sinkexpr.Option{{Field: "topic", Text: "name", Want: wantString}, {Field: "t", Text: "'t-' || id", Want: wantString}}, true, "!"},
		// Without a schema nothing is compiled: unknown columns and
		// functions pass, and only a text that is more than a name needs
		// SQL.
		{"no schema, a name", nil, texts("nope"), false, "!"},
		{"no schema, an expression", nil, texts("id", "frob(nope)"), true, "!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := mustNew(t, tc.opts, tc.schema)
			if got := set.NeedsSQL(); got != tc.needsSQL {
				t.Errorf("NeedsSQL() = %v, want %v", got, tc.needsSQL)
			}
			cols, ok := set.Columns()
			got := strings.Join(cols, ",")
			if !ok {
				got = "!"
			}
			if got != tc.columns {
				t.Errorf("Columns() = %q, want %q", got, tc.columns)
			}
			if got := set.Schema(); got != tc.schema {
				t.Errorf("Schema() = %v, want %v", got, tc.schema)
			}
		})
	}
}

// TestEval evaluates every kind of option together, as a sink does, over
// one batch: columns are read from it, the others come from one query.
func TestEval(t *testing.T) {
	tests := []struct {
		text   string
		column int // the batch's column the option reads, -1 for SQL
		want   []any
	}{
		{"id", 0, []any{int64(10), int64(11), int64(12), int64(13)}},
		{"NAME", 1, []any{"ada", nil, "bob", "cy"}},
		{`"Weird-Name"`, 2, []any{"w-ada", nil, "w-bob", nil}},
		{"payload", 3, []any{[]byte("p0"), nil, []byte{}, []byte("p3")}},
		{"attrs", 4, []any{map[string]any{"n": int64(1), "s": "x"}, nil, map[string]any{"n": int64(2), "s": nil}, map[string]any{"n": nil, "s": "z"}}},
		{"tags", 5, []any{[]any{"a", "b"}, nil, []any{}, []any{"c"}}},
		{`"ID"`, -1, []any{int64(10), int64(11), int64(12), int64(13)}},
		{"id + 1", -1, []any{int64(11), int64(12), int64(13), int64(14)}},
		{"upper(name)", -1, []any{"ADA", nil, "BOB", "CY"}},
		{"CAST(id AS STRING) || '-' || name", -1, []any{"10-ada", nil, "12-bob", "13-cy"}},
		{"coalesce(name, 'none')", -1, []any{"ada", "none", "bob", "cy"}},
		{"CASE WHEN id % 2 = 0 THEN 'even' END", -1, []any{"even", nil, "even", nil}},
		{"attrs.n", -1, []any{int64(1), nil, int64(2), nil}},
		{"tags[1]", -1, []any{"a", nil, nil, "c"}},
		{"len(tags)", -1, []any{int64(2), nil, int64(0), int64(1)}},
		{"{'id': id, 'name': name}", -1, []any{
			map[string]any{"id": int64(10), "name": "ada"}, map[string]any{"id": int64(11), "name": nil},
			map[string]any{"id": int64(12), "name": "bob"}, map[string]any{"id": int64(13), "name": "cy"},
		}},
		{"payload || 'x'::BLOB", -1, []any{[]byte("p0x"), nil, []byte("x"), []byte("p3x")}},
		{"id -- comments end at the query's line break\n + 1", -1, []any{int64(11), int64(12), int64(13), int64(14)}},
		{"NULL", -1, []any{nil, nil, nil, nil}},
	}
	mem := checkedMem(t)
	opts := make([]sinkexpr.Option, len(tests))
	for k, tc := range tests {
		opts[k] = sinkexpr.Option{Field: fmt.Sprintf("o%d", k), Text: tc.text}
	}
	set := mustNew(t, opts, schema)
	rec := newBatch(t, mem, schema, rows)
	defer rec.Release()

	v := mustEval(t, set, mem, rec)
	if v.Len() != len(rows) {
		t.Fatalf("Len() = %d, want %d", v.Len(), len(rows))
	}
	for k, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			if diff := gocmp.Diff(tc.want, read(t, v, k)); diff != "" {
				t.Errorf("values (-want +got):\n%s", diff)
			}
			a := v.Array(k)
			switch {
			case a == nil:
				t.Fatalf("Array(%d) is nil", k)
			case tc.column >= 0 && a != rec.Column(tc.column):
				// A column is handed over as it is, not copied.
				t.Errorf("Array(%d) is not the batch's column %d", k, tc.column)
			case a.Len() != len(rows):
				t.Errorf("Array(%d).Len() = %d, want %d", k, a.Len(), len(rows))
			}
		})
	}
}

// manyRows are n rows of schema whose values all differ, NULLs in every
// fourth.
func manyRows(n int) []stream.Row {
	out := make([]stream.Row, n)
	for i := range out {
		out[i] = stream.Row{"id": int64(i)}
		if i%4 == 3 {
			continue
		}
		out[i]["name"] = fmt.Sprintf("n%d", i)
		out[i]["attrs"] = map[string]any{"n": int64(100 + i), "s": fmt.Sprintf("s%d", i)}
		out[i]["tags"] = []any{fmt.Sprintf("t%d", i)}
	}
	return out
}

// TestEvalSliced evaluates a batch that is a slice of a larger one. DuckDB
// reads the fields of a sliced struct column at the wrong rows (later
// rows', then zeros), so Eval copies such a batch first: its values must
// be those of the same rows built on their own.
func TestEvalSliced(t *testing.T) {
	const n = 10
	opts := texts("attrs.n", "attrs.s", "attrs", "tags[1]", "upper(name)", "id", "name", "id * 1000 + coalesce(attrs.n, -1)")
	tests := []struct{ offset, length int64 }{
		{0, 4}, // a slice that starts at 0 is read as it is
		{1, 3},
		{2, 5},
		{7, 3}, // to the end
		{5, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("rows %d-%d", tc.offset, tc.offset+tc.length), func(t *testing.T) {
			mem := checkedMem(t)
			set := mustNew(t, opts, schema)
			all := newBatch(t, mem, schema, manyRows(n))
			defer all.Release()
			slice := all.NewSlice(tc.offset, tc.offset+tc.length)
			defer slice.Release()
			alone := newBatch(t, mem, schema, manyRows(n)[tc.offset:tc.offset+tc.length])
			defer alone.Release()

			got, want := mustEval(t, set, mem, slice), mustEval(t, set, mem, alone)
			if got.Len() != int(tc.length) {
				t.Fatalf("Len() = %d, want %d", got.Len(), tc.length)
			}
			for k, o := range opts {
				if diff := gocmp.Diff(read(t, want, k), read(t, got, k)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", o.Text, diff)
				}
			}
		})
	}
}

// TestEvalEmpty evaluates a batch of no rows: no query runs, and every
// option still has an array to read (of none).
func TestEvalEmpty(t *testing.T) {
	mem := checkedMem(t)
	set := mustNew(t, texts("id", "upper(name)", "attrs.n"), schema)
	rec := newBatch(t, mem, schema, nil)
	defer rec.Release()
	v := mustEval(t, set, mem, rec)
	if v.Len() != 0 {
		t.Errorf("Len() = %d, want 0", v.Len())
	}
	for k := range 3 {
		if a := v.Array(k); a == nil || a.Len() != 0 {
			t.Errorf("Array(%d) = %v, want an empty array", k, a)
		}
	}
}

// TestEvalFails checks what Eval returns when the options cannot be
// evaluated over a batch, and that it leaves nothing allocated.
func TestEvalFails(t *testing.T) {
	other := arrow.NewSchema([]arrow.Field{{Name: "other", Type: arrow.PrimitiveTypes.Int64}}, nil)
	tests := []struct {
		name   string
		opts   []sinkexpr.Option
		schema *arrow.Schema // New's
		batch  *arrow.Schema
		rows   []stream.Row
		check  func(t *testing.T, err error)
	}{
		{
			// A failed cast is the rows' fault: the same batch fails the
			// same way again.
			"execution error", texts("id", "CAST(name AS INT)"), schema, schema, rows,
			func(t *testing.T, err error) {
				if !errors.Is(err, sqlengine.ErrExecution) {
					t.Errorf("Eval: %v, want sqlengine.ErrExecution", err)
				}
			},
		},
		{
			// Without a schema the query is compiled for each batch's
			// schema as it comes: a batch without a column the options
			// read is refused then, naming the option.
			"unknown column of a batch", texts("id + 1"), nil, other, []stream.Row{{"other": int64(1)}},
			func(t *testing.T, err error) {
				got := errorsOf(t, err)
				if len(got) != 1 || got[0].Field != "id + 1" || !strings.Contains(got[0].Reason, "position 0: unknown column") {
					t.Errorf("Eval: %v, want an unknown column in option \"id + 1\"", err)
				}
			},
		},
		{
			"unknown bare column of a batch", texts("id"), nil, other, []stream.Row{{"other": int64(1)}},
			func(t *testing.T, err error) {
				if got := errorsOf(t, err); len(got) != 1 || got[0].Field != "id" {
					t.Errorf("Eval: %v, want an error of option \"id\"", err)
				}
			},
		},
		{
			"wrong column type in a batch", []sinkexpr.Option{{Field: "topic", Text: "other", Want: wantString}}, nil, other, []stream.Row{{"other": int64(1)}},
			func(t *testing.T, err error) {
				if got := errorsOf(t, err); len(got) != 1 || got[0].Field != "topic" || !strings.Contains(got[0].Reason, "want a string") {
					t.Errorf("Eval: %v, want Want's refusal of option \"topic\"", err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			set := mustNew(t, tc.opts, tc.schema)
			rec := newBatch(t, mem, tc.batch, tc.rows)
			defer rec.Release()
			v, err := set.Eval(context.Background(), mem, rec)
			if err == nil {
				v.Release()
				t.Fatal("Eval succeeded")
			}
			if v != nil {
				t.Errorf("Eval returned Values with its error")
			}
			tc.check(t, err)
		})
	}
}

// TestEvalSchemas evaluates a Set made without a schema over batches of
// different schemas, each compiled as it comes and kept.
func TestEvalSchemas(t *testing.T) {
	mem := checkedMem(t)
	set := mustNew(t, texts("id", "CAST(id AS STRING) || '!'"), nil)
	asString := arrow.NewSchema([]arrow.Field{{Name: "ID", Type: arrow.BinaryTypes.String}}, nil)
	tests := []struct {
		schema *arrow.Schema
		rows   []stream.Row
		want   [][]any // per option
	}{
		{schema, rows[:2], [][]any{{int64(10), int64(11)}, {"10!", "11!"}}},
		{asString, []stream.Row{{"ID": "a"}}, [][]any{{"a"}, {"a!"}}},
		{schema, rows[2:], [][]any{{int64(12), int64(13)}, {"12!", "13!"}}},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			rec := newBatch(t, mem, tc.schema, tc.rows)
			defer rec.Release()
			v := mustEval(t, set, mem, rec)
			for k, want := range tc.want {
				if diff := gocmp.Diff(want, read(t, v, k)); diff != "" {
					t.Errorf("option %d (-want +got):\n%s", k, diff)
				}
			}
		})
	}
}

// TestEvalConcurrent evaluates one Set from several goroutines, as the
// sinks' writers do; run with -race. The Set has no schema, so the first
// batches of each schema also compile concurrently.
func TestEvalConcurrent(t *testing.T) {
	mem := checkedMem(t)
	set := mustNew(t, texts("id", "upper(name)", "attrs.n * 2"), nil)
	small := arrow.NewSchema(schema.Fields()[:5], nil)
	// The goroutines share the batches, as Eval only reads them.
	recs := []arrow.RecordBatch{newBatch(t, mem, schema, rows), newBatch(t, mem, small, rows)}
	defer recs[0].Release()
	defer recs[1].Release()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 5 {
				v, err := set.Eval(context.Background(), mem, recs[g%2])
				if err != nil {
					t.Errorf("Eval: %v", err)
					return
				}
				if x, err := v.Value(2, 2); err != nil || x != int64(4) {
					t.Errorf("Value(2, 2) = %v, %v; want 4", x, err)
				}
				v.Release()
			}
		})
	}
	wg.Wait()
}

// TestEvalRows evaluates options over rows, as the sinks do for rows that
// come without a batch, and compares with Eval over the same rows in a
// batch: the row path must give the same values.
func TestEvalRows(t *testing.T) {
	// The texts below that name a column of schema.
	columnTexts := map[string]bool{"id": true, "NAME": true, "name": true, `"Weird-Name"`: true, "payload": true, "attrs": true, "tags": true}
	// A row without most keys: they are NULL.
	in := append(append([]stream.Row{}, rows...), stream.Row{"id": int64(14)})
	tests := []struct {
		name   string
		schema *arrow.Schema
		opts   []sinkexpr.Option
	}{
		{"columns", schema, texts("id", "NAME", `"Weird-Name"`, "payload", "attrs", "tags")},
		{"columns without a schema", nil, texts("id", "name", `"Weird-Name"`, "tags")},
		{"expressions", schema, texts("id + 1", "upper(name)", "attrs.n", "tags[1]", "{'id': id, 'name': name}", "payload || 'x'::BLOB", "NULL")},
		{"columns and expressions", schema, texts("upper(name)", "id", "tags", "CAST(id AS STRING) || '-' || name", `"Weird-Name"`, `"ID"`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			set := mustNew(t, tc.opts, tc.schema)
			got := mustEvalRows(t, set, mem, in)
			rec := newBatch(t, mem, schema, in)
			defer rec.Release()
			want := mustEval(t, set, mem, rec)

			if got.Len() != len(in) {
				t.Fatalf("Len() = %d, want %d", got.Len(), len(in))
			}
			for k, o := range tc.opts {
				if diff := gocmp.Diff(read(t, want, k), read(t, got, k)); diff != "" {
					t.Errorf("%s (-Eval +EvalRows):\n%s", o.Text, diff)
				}
				// A column is read from the rows, with no array; an
				// expression has its array, of a value per row.
				column, a := columnTexts[o.Text], got.Array(k)
				switch {
				case column && a != nil:
					t.Errorf("%s: Array is %v, want nil for a column of the rows", o.Text, a)
				case !column && (a == nil || a.Len() != len(in)):
					t.Errorf("%s: Array is %v, want %d values", o.Text, a, len(in))
				}
			}
		})
	}
}

// TestEvalRowsColumnsAsTheyAre checks that, when every option is a column,
// EvalRows builds no batch and hands out the rows' values as they are,
// even one a batch of the schema could not hold. A bare name reads the
// key the schema spells it with (ID reads "id").
func TestEvalRowsColumnsAsTheyAre(t *testing.T) {
	mem := checkedMem(t)
	set := mustNew(t, texts("ID", "attrs"), schema)
	in := []stream.Row{{"id": "not a number", "attrs": 7}}
	v := mustEvalRows(t, set, mem, in)
	for k, want := range []any{"not a number", 7} {
		if got := read(t, v, k); !gocmp.Equal(got, []any{want}) {
			t.Errorf("option %d: %#v, want [%#v]", k, got, want)
		}
	}
}

// TestEvalRowsTypes evaluates rows of a schema whose types rows do not
// hold: the row path's batch is of RowsSchema (a decimal is a DOUBLE, a
// TIME a string), and gives what rows of the Arrow path's output hold.
func TestEvalRowsTypes(t *testing.T) {
	mem := checkedMem(t)
	s := arrow.NewSchema([]arrow.Field{
		{Name: "price", Type: &arrow.Decimal128Type{Precision: 10, Scale: 2}, Nullable: true},
		{Name: "count", Type: &arrow.Decimal128Type{Precision: 18, Scale: 0}, Nullable: true},
		{Name: "tod", Type: arrow.FixedWidthTypes.Time64us, Nullable: true},
	}, nil)
	opts := texts("price * 2", "count + 1", "CAST(tod AS STRING)", "price")
	set := mustNew(t, opts, s)
	in := []stream.Row{
		{"price": 2.5, "count": int64(41), "tod": "12:34:56"},
		{},
	}
	v := mustEvalRows(t, set, mem, in)
	want := [][]any{{5.0, nil}, {int64(42), nil}, {"12:34:56", nil}, {2.5, nil}}
	for k, w := range want {
		if diff := gocmp.Diff(w, read(t, v, k)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", opts[k].Text, diff)
		}
	}
}

func TestEvalRowsFails(t *testing.T) {
	tests := []struct {
		name   string
		schema *arrow.Schema
		opts   []sinkexpr.Option
		rows   []stream.Row
		want   string // in the error
		is     error  // the error wraps it, when set
	}{
		{"expression without a schema", nil, texts("id", "id + 1"), rows, "need the schema of its rows", nil},
		{"row that does not fit", schema, texts("id + 1"), []stream.Row{{"id": int64(1)}, {"id": "x"}}, `row 1: append row: column "id"`, nil},
		{"row without a non-nullable column", schema, texts("upper(name)"), []stream.Row{{"name": "a"}}, `row 0: append row: column "id"`, nil},
		{"execution error", schema, texts("CAST(name AS INT)"), rows, "", sqlengine.ErrExecution},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			set := mustNew(t, tc.opts, tc.schema)
			v, err := set.EvalRows(context.Background(), mem, tc.rows)
			if err == nil {
				v.Release()
				t.Fatal("EvalRows succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("EvalRows: %v, want %q in it", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("EvalRows: %v, want it to wrap %v", err, tc.is)
			}
		})
	}
}

func TestRowsSchema(t *testing.T) {
	dec := func(p, s int32) arrow.DataType { return &arrow.Decimal128Type{Precision: p, Scale: s} }
	tests := []struct {
		name     string
		in, want arrow.DataType
	}{
		{"int64", arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Int64},
		{"string", arrow.BinaryTypes.String, arrow.BinaryTypes.String},
		{"decimal, scale 0", dec(38, 0), arrow.PrimitiveTypes.Int64},
		{"decimal, negative scale", dec(10, -2), arrow.PrimitiveTypes.Int64},
		{"decimal with a fraction", dec(10, 2), arrow.PrimitiveTypes.Float64},
		{"time", arrow.FixedWidthTypes.Time64us, arrow.BinaryTypes.String},
		{"duration", arrow.FixedWidthTypes.Duration_ms, arrow.BinaryTypes.String},
		{"interval", arrow.FixedWidthTypes.MonthDayNanoInterval, arrow.BinaryTypes.String},
		{"dictionary", &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}, arrow.BinaryTypes.String},
		{"list", arrow.ListOf(dec(10, 2)), arrow.ListOf(arrow.PrimitiveTypes.Float64)},
		{"large list", arrow.LargeListOf(arrow.FixedWidthTypes.Time32s), arrow.LargeListOf(arrow.BinaryTypes.String)},
		{"struct", arrow.StructOf(arrow.Field{Name: "a", Type: dec(5, 0)}, arrow.Field{Name: "b", Type: arrow.BinaryTypes.String, Nullable: true}),
			arrow.StructOf(arrow.Field{Name: "a", Type: arrow.PrimitiveTypes.Int64}, arrow.Field{Name: "b", Type: arrow.BinaryTypes.String, Nullable: true})},
		{"map by string", arrow.MapOf(arrow.BinaryTypes.String, dec(10, 2)), arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float64)},
		// Only a string-keyed map becomes a row's map: others are kept.
		{"map by int", arrow.MapOf(arrow.PrimitiveTypes.Int64, dec(10, 2)), arrow.MapOf(arrow.PrimitiveTypes.Int64, dec(10, 2))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			md := arrow.NewMetadata([]string{"k"}, []string{"v"})
			in := arrow.NewSchema([]arrow.Field{{Name: "c", Type: tc.in, Nullable: true}}, &md)
			want := arrow.NewSchema([]arrow.Field{{Name: "c", Type: tc.want, Nullable: true}}, &md)
			if got := sinkexpr.RowsSchema(in); !got.Equal(want) || !got.Metadata().Equal(md) {
				t.Errorf("RowsSchema:\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// TestBareWords checks that the row path and the batch path agree on a
// single word when New had no schema: a word SQL reads as a value (true,
// current_date) is SQL, so the rows need a schema; a bare name reads a key
// in any case, as SQL reads a column.
func TestBareWords(t *testing.T) {
	for _, text := range []string{"true", "NULL", "current_date", "current_timestamp"} {
		if set := mustNew(t, texts(text), nil); !set.NeedsSQL() {
			t.Errorf("%s: NeedsSQL() = false, want true: it is a value, not a column", text)
		}
	}
	mem := checkedMem(t)
	in := []stream.Row{{"id": int64(7), "Name": "ada"}, {"id": int64(8), "name": "bob", "Name": "ada"}}
	set := mustNew(t, texts("ID", "name", `"ID"`), nil)
	if set.NeedsSQL() {
		t.Fatal("NeedsSQL() = true for column names")
	}
	v := mustEvalRows(t, set, mem, in)
	for k, want := range [][]any{{int64(7), int64(8)}, {"ada", "bob"}, {nil, nil}} {
		if diff := gocmp.Diff(want, read(t, v, k)); diff != "" {
			t.Errorf("option %d (-want +got):\n%s", k, diff)
		}
	}
}
