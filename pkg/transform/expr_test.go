package transform

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestExprEval(t *testing.T) {
	row := stream.Row{"id": int64(3), "name": "ada", "tags": []any{"a", "b"}}
	tests := []struct {
		src     string
		outType string
		want    any
		wantErr string // substring; "" = no error
	}{
		{src: "id", outType: "dyn", want: int64(3)},
		{src: "missing", outType: "dyn", wantErr: `no such field "missing"`},
		{src: "name + string(id)", outType: "string", want: "ada3"},
		{src: "row.name", outType: "dyn", want: "ada"},
		{src: "tags.exists(t, t == 'b')", outType: "bool", want: true},
		{src: "{'n': id}", outType: "map(string, dyn)", want: map[string]any{"n": int64(3)}},
		{src: "name + id", outType: "dyn", wantErr: "use int(), double() or string()"},
		{src: "nope + 1", outType: "int", wantErr: `no such field "nope"`},
	}
	for _, tt := range tests {
		e, err := CompileExpr(tt.src)
		if err != nil {
			t.Fatalf("CompileExpr(%q): %v", tt.src, err)
		}
		if got := e.OutputType().String(); got != tt.outType {
			t.Errorf("CompileExpr(%q).OutputType() = %s, want %s", tt.src, got, tt.outType)
		}
		got, err := e.Eval(row)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Eval(%q) = %v, %v; want an error containing %q", tt.src, got, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("Eval(%q): %v", tt.src, err)
		default:
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Eval(%q) (-want +got):\n%s", tt.src, diff)
			}
		}
	}
	if _, err := CompileExpr("id +"); err == nil || !strings.Contains(err.Error(), "Syntax error") {
		t.Errorf("CompileExpr(%q) = %v, want a syntax error", "id +", err)
	}
}
