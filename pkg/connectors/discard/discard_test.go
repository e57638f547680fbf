package discard

import (
	"context"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/arrowtest"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestCounts(t *testing.T) {
	s := New()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Part: "p"})
			if err != nil {
				t.Error(err)
				return
			}
			for range 3 {
				if err := w.Write(ctx, make([]stream.Row, 5)); err != nil {
					t.Error(err)
				}
			}
			if i%2 == 0 {
				err = w.Commit(ctx)
			} else {
				err = w.Abort()
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := s.Rows(); got != 5*15 {
		t.Errorf("Rows = %d, want %d (aborted writers do not count)", got, 5*15)
	}
	if got := s.Commits(); got != 5 {
		t.Errorf("Commits = %d, want 5", got)
	}
	w, _ := s.OpenWriter(ctx, connectors.WriteKey{})
	_ = w.Commit(ctx)
	if err := w.Write(ctx, nil); err == nil {
		t.Error("Write after Commit succeeded")
	}
}

func TestWriteArrowCounts(t *testing.T) {
	mem := arrowtest.Mem(t)
	s := New()
	ctx := context.Background()
	w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Part: "p"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{7, 0, 5} {
		rec := arrowtest.Batch(mem, 0, n)
		if err := w.(connectors.ArrowWriter).WriteArrow(ctx, rec); err != nil {
			t.Fatal(err)
		}
		rec.Release()
	}
	if err := w.Write(ctx, make([]stream.Row, 3)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Rows(); got != 15 {
		t.Errorf("Rows = %d, want 15", got)
	}
	rec := arrowtest.Batch(mem, 0, 1)
	defer rec.Release()
	if err := w.(connectors.ArrowWriter).WriteArrow(ctx, rec); err == nil {
		t.Error("WriteArrow after Commit succeeded")
	}
}
