package postgres_test

import (
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/arrowtest"
	"github.com/sluicehq/sluice/pkg/connectors/postgres"
)

// arrowBatches are arrowtest batches: ids 0-8, a slice of ids 22-28, an
// empty one, and ids 0-8 again (an upsert's repeated keys).
func arrowBatches(mem memory.Allocator) []arrow.RecordBatch {
	big := arrowtest.Batch(mem, 20, 10)
	slice := big.NewSlice(2, 9)
	big.Release()
	return []arrow.RecordBatch{arrowtest.Batch(mem, 0, 9), slice, arrowtest.Batch(mem, 0, 0), arrowtest.Batch(mem, 0, 9)}
}

// TestWriteArrowMatchesWrite writes the same batches through WriteArrow
// and, as rows, through Write, to two tables the sink creates: the tables
// get the same column types, rows and positions.
func TestWriteArrowMatchesWrite(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		cfg   postgres.Config
		flush int
	}{
		{"append with copy", postgres.Config{}, 1000},
		{"append with insert, flushed per batch", postgres.Config{WriteMethod: "insert"}, 5},
		{"upsert with copy", postgres.Config{Mode: "upsert", KeyColumns: []string{"id"}}, 1000},
		{"upsert with copy, flushed per batch", postgres.Config{Mode: "upsert", KeyColumns: []string{"id"}}, 5},
		{"upsert with insert", postgres.Config{Mode: "upsert", KeyColumns: []string{"id"}, WriteMethod: "insert"}, 1000},
		{"configured columns", postgres.Config{Columns: []postgres.Column{
			{Name: "key", Field: "id"}, {Name: "label", Field: "name"}, {Name: "cost", Field: "price", Type: "numeric(12,2)"},
			{Name: "attrs"}, {Name: "absent"},
		}}, 1000},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := arrowtest.Mem(t)
			write := func(table string, arrowPath bool) {
				cfg := tt.cfg
				cfg.Table, cfg.CreateTable = table, true
				s := e.sink(t, cfg, postgres.WithFlushRows(tt.flush))
				c := ctx(t)
				key := key(jobOf(t)+"/"+table, 0, "p/0")
				key.Columns = arrowtest.Columns()
				w, err := s.OpenWriter(c, key)
				if err != nil {
					t.Fatal(err)
				}
				recs := arrowBatches(mem)
				for _, rec := range recs {
					if arrowPath {
						err = w.(connectors.ArrowWriter).WriteArrow(c, rec)
					} else {
						err = w.Write(c, arrowtest.Rows(t, rec))
					}
					rec.Release()
					if err != nil {
						t.Fatal(err)
					}
				}
				if _, err := w.(connectors.EndCommitter).CommitEnd(c, []byte("end")); err != nil {
					t.Fatal(err)
				}
			}
			rowsTable, arrowTable := fmt.Sprintf("rows_%d", k), fmt.Sprintf("arrow_%d", k)
			write(rowsTable, false)
			write(arrowTable, true)
			types := func(table string) [][]string {
				return e.query(t, `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`, table)
			}
			if diff := cmp.Diff(types(rowsTable), types(arrowTable)); diff != "" {
				t.Errorf("column types (-Write +WriteArrow):\n%s", diff)
			}
			content := func(table string) [][]string {
				return e.query(t, `SELECT t::text FROM `+table+` t ORDER BY 1`)
			}
			want := content(rowsTable)
			if len(want) == 0 {
				t.Fatal("the row path wrote nothing")
			}
			if diff := cmp.Diff(want, content(arrowTable)); diff != "" {
				t.Errorf("rows (-Write +WriteArrow):\n%s", diff)
			}
			positions := func(table string) [][]string {
				return e.query(t, `SELECT batch, row_count, end_position FROM sluice_positions WHERE job = $1`, jobOf(t)+"/"+table)
			}
			if diff := cmp.Diff(positions(rowsTable), positions(arrowTable)); diff != "" {
				t.Errorf("positions (-Write +WriteArrow):\n%s", diff)
			}
		})
	}
}

// TestWriteArrowReplaySkips: a replay of a committed batch through
// WriteArrow writes nothing, returns the stored end and releases what it
// was given; an aborted writer releases the batches it retained.
func TestWriteArrowReplaySkips(t *testing.T) {
	e := newEnv(t)
	mem := arrowtest.Mem(t)
	s := e.sink(t, postgres.Config{Table: "replayed", CreateTable: true}, postgres.WithFlushRows(1000))
	c := ctx(t)
	attempt := func(end string, commit bool) (string, error) {
		w, err := s.OpenWriter(c, key(jobOf(t), 4, "p"))
		if err != nil {
			t.Fatal(err)
		}
		rec := arrowtest.Batch(mem, 0, 5)
		err = w.(connectors.ArrowWriter).WriteArrow(c, rec)
		rec.Release()
		if err != nil {
			return "", err
		}
		if !commit {
			return "", w.Abort()
		}
		got, err := w.(connectors.EndCommitter).CommitEnd(c, []byte(end))
		return string(got), err
	}
	if _, err := attempt("first", false); err != nil {
		t.Fatal(err)
	}
	if got, err := attempt("first", true); err != nil || got != "first" {
		t.Fatalf("first commit = %q, %v", got, err)
	}
	if got, err := attempt("second", true); err != nil || got != "first" {
		t.Fatalf("replay = %q, %v; want the stored end \"first\"", got, err)
	}
	if n := e.count(t, "replayed"); n != 5 {
		t.Fatalf("table holds %d rows, want 5", n)
	}
}
