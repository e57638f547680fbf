package file

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/arrowtest"
)

// TestWriteArrowMatchesWrite writes the same batches through WriteArrow
// and, as rows, through Write: the two files must be byte for byte equal,
// and the batches, released right after each call, must leave nothing
// allocated.
func TestWriteArrowMatchesWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		columns []string
	}{
		{"query columns", arrowtest.Columns()},
		{"some columns", []string{"ts", "id"}},
		{"no columns", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := arrowtest.Mem(t)
			s, root := newSink(t)
			ctx := context.Background()
			open := func(part string) connectors.Writer {
				w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 1, Part: part, Columns: tc.columns})
				if err != nil {
					t.Fatal(err)
				}
				return w
			}
			rw, aw := open("rows"), open("arrow")
			for _, rec := range batches(mem) {
				if err := rw.Write(ctx, arrowtest.Rows(t, rec)); err != nil {
					t.Fatal(err)
				}
				if err := aw.(connectors.ArrowWriter).WriteArrow(ctx, rec); err != nil {
					t.Fatal(err)
				}
				rec.Release()
			}
			for _, w := range []connectors.Writer{rw, aw} {
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(filepath.Join(root, "j", "batch=1", "part-rows.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(root, "j", "batch=1", "part-arrow.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || !bytes.Equal(got, want) {
				t.Errorf("WriteArrow wrote\n%s\nWrite wrote\n%s", got, want)
			}
		})
	}
}

// batches are the batches a query might hand on: a full one, a slice (its
// arrays start at an offset), and an empty one.
func batches(mem memory.Allocator) []arrow.RecordBatch {
	full := arrowtest.Batch(mem, 0, 9)
	big := arrowtest.Batch(mem, 100, 12)
	slice := big.NewSlice(3, 11)
	big.Release()
	empty := arrowtest.Batch(mem, 0, 0)
	return []arrow.RecordBatch{full, slice, empty}
}

func TestWriteArrowErrors(t *testing.T) {
	mem := arrowtest.Mem(t)
	s, root := newSink(t)
	ctx := context.Background()
	w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 1, Part: "p"})
	if err != nil {
		t.Fatal(err)
	}
	ub := array.NewUint64Builder(mem)
	defer ub.Release()
	ub.AppendValues([]uint64{1, 1 << 63}, nil)
	arr := ub.NewArray()
	defer arr.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "u", Type: arr.DataType()}}, nil), []arrow.Array{arr}, 2)
	defer rec.Release()
	if err := w.(connectors.ArrowWriter).WriteArrow(ctx, rec); err == nil || !connectors.IsPermanent(err) {
		t.Errorf("WriteArrow(uint64 over int64) = %v, want a permanent error", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	assertOnlyFiles(t, filepath.Join(root, "j", "batch=1"))
	if err := w.(connectors.ArrowWriter).WriteArrow(ctx, rec); err == nil {
		t.Error("WriteArrow after Abort succeeded")
	}
}
