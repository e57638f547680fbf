package transform

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

// rowFields is Fields over a row, counting what the expression read.
type rowFields struct {
	row   stream.Row
	reads []string
	whole int
}

func (f *rowFields) Field(name string) (any, bool) {
	f.reads = append(f.reads, name)
	v, ok := f.row[name]
	return v, ok
}

func (f *rowFields) Row() stream.Row { f.whole++; return f.row }

// TestEvalFieldsMatchesEval: EvalFields gives Eval's result and error, and
// reads only the fields the expression names (the whole row only for row).
func TestEvalFieldsMatchesEval(t *testing.T) {
	row := stream.Row{"id": int64(3), "name": "ada", "tags": []any{"a", "b"}, "n": nil}
	tests := []struct {
		src   string
		reads []string
		whole int
	}{
		{"id", []string{"id"}, 0},
		{"missing", []string{"missing"}, 0},
		{"name + string(id)", []string{"name", "id"}, 0},
		{"row.name", nil, 1},
		{"tags.exists(t, t == 'b')", []string{"tags"}, 0},
		{"{'n': id}", []string{"id"}, 0},
		{"name + id", []string{"name", "id"}, 0},
		{"nope + 1", []string{"nope"}, 0},
		{"n == null ? 'none' : n", []string{"n"}, 0},
	}
	for _, tt := range tests {
		e, err := CompileExpr(tt.src)
		if err != nil {
			t.Fatalf("CompileExpr(%q): %v", tt.src, err)
		}
		want, wantErr := e.Eval(row)
		f := &rowFields{row: row}
		got, err := e.EvalFields(f)
		if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Errorf("EvalFields(%q) error %v, Eval's %v", tt.src, err, wantErr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("EvalFields(%q) (-Eval +EvalFields):\n%s", tt.src, diff)
		}
		if diff := cmp.Diff(tt.reads, f.reads); diff != "" || f.whole != tt.whole {
			t.Errorf("EvalFields(%q) read fields (-want +got):\n%s and the whole row %d times, want %d", tt.src, diff, f.whole, tt.whole)
		}
		if id := e.Ident(); (id != "") != (tt.src == "id" || tt.src == "missing") {
			t.Errorf("Ident(%q) = %q", tt.src, id)
		}
	}
}
