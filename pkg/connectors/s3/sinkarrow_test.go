package s3

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/arrowtest"
	"github.com/sluicehq/sluice/pkg/stream"
)

// TestWriteParquetArrowMatchesRows: the Parquet file of batches is the file
// of their rows, byte for byte, including columns that are null in every
// row of the object (STRING) and integral decimals too big for int64
// (DOUBLE).
func TestWriteParquetArrowMatchesRows(t *testing.T) {
	mem := arrowtest.Mem(t)
	full := arrowtest.Batch(mem, 0, 12)
	defer full.Release()
	huge := hugeDecimals(t, mem)
	defer huge.Release()
	tests := []struct {
		name  string
		parts []arrowPart
	}{
		{"one batch", []arrowPart{{rec: full}}},
		{"selected rows", []arrowPart{{rec: full, rows: []int{1, 5, 6}}, {rec: full, rows: []int{0}}}},
		{"only null rows", []arrowPart{{rec: full, rows: []int{3, 7}}}},
		{"null rows, then values", []arrowPart{{rec: full, rows: []int{3}}, {rec: full, rows: []int{2}}}},
		{"decimals beyond int64", []arrowPart{{rec: huge}}},
		{"int64 decimals only", []arrowPart{{rec: huge, rows: []int{0}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rows []stream.Row
			for _, p := range tt.parts {
				if err := appendPartRows(&rows, p); err != nil {
					t.Fatal(err)
				}
			}
			var want, got bytes.Buffer
			if err := writeParquet(&want, rows); err != nil {
				t.Fatal(err)
			}
			if err := writeParquetArrow(&got, tt.parts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				_, wantRows := readParquet(t, want.Bytes())
				schema, gotRows := readParquet(t, got.Bytes())
				t.Errorf("files differ; schema %s, rows (-rows +arrow):\n%s", schema, cmp.Diff(wantRows, gotRows))
			}
		})
	}
}

// hugeDecimals is a decimal128(38, 0) column holding 7, then 2^70.
func hugeDecimals(t *testing.T, mem memory.Allocator) arrow.RecordBatch {
	t.Helper()
	b := array.NewDecimal128Builder(mem, &arrow.Decimal128Type{Precision: 38, Scale: 0})
	defer b.Release()
	b.Append(decimal128.FromI64(7))
	b.Append(decimal128.FromI64(1).Mul(decimal128.FromI64(1 << 62)).Mul(decimal128.FromI64(256)))
	arr := b.NewArray()
	defer arr.Release()
	return array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "sum", Type: arr.DataType(), Nullable: true}}, nil), []arrow.Array{arr}, 2)
}

// TestSinkWriteArrowOnMinIO writes the same batches through WriteArrow and,
// as rows, through Write, in each format, with and without partitionBy:
// both jobs' objects have the same names and the same bytes.
func TestSinkWriteArrowOnMinIO(t *testing.T) {
	m := startMinIO(t)
	m.bucket(t, "arrow")
	for _, cfg := range []Config{
		{Format: "jsonl"},
		{Format: "jsonl", PartitionBy: "ok"},
		{Format: "parquet"},
		{Format: "parquet", PartitionBy: "name"},
		{Format: "parquet", PartitionBy: "missing"},
	} {
		name := cfg.Format + "/" + cfg.PartitionBy
		t.Run(name, func(t *testing.T) {
			mem := arrowtest.Mem(t)
			cfg.Bucket, cfg.Prefix = "arrow", strings.ReplaceAll(name, "/", "-")
			s := m.sink(t, cfg)
			write := func(job string, arrowPath bool) {
				ctx := tctx(t)
				w, err := s.OpenWriter(ctx, wkey(job, 0, "t/0", arrowtest.Columns()...))
				if err != nil {
					t.Fatal(err)
				}
				recs := arrowtest.Batches(mem)
				defer func() {
					for _, rec := range recs {
						rec.Release()
					}
				}()
				arrowtest.Write(t, ctx, w, recs, arrowPath)
				// The batches are released before Commit encodes Parquet:
				// the writer holds its own references.
				for _, rec := range recs {
					rec.Release()
				}
				recs = nil
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			write("rows", false)
			write("arrow", true)
			wantKeys := m.keys(t, "arrow", cfg.Prefix+"/rows/")
			gotKeys := m.keys(t, "arrow", cfg.Prefix+"/arrow/")
			if len(wantKeys) == 0 {
				t.Fatal("the row path wrote nothing")
			}
			var renamed []string
			for _, k := range wantKeys {
				renamed = append(renamed, strings.Replace(k, "/rows/", "/arrow/", 1))
			}
			if diff := cmp.Diff(renamed, gotKeys); diff != "" {
				t.Fatalf("objects (-Write +WriteArrow):\n%s", diff)
			}
			for i, k := range wantKeys {
				if want, got := m.get(t, "arrow", k), m.get(t, "arrow", gotKeys[i]); !bytes.Equal(want, got) {
					t.Errorf("%s differs from %s", gotKeys[i], k)
				}
			}
		})
	}
}

// TestSinkWriteArrowThenWrite: an object fed both ways holds the rows in
// the order they came, and Abort releases what the writer retained.
func TestSinkWriteArrowThenWrite(t *testing.T) {
	mem := arrowtest.Mem(t)
	s, err := New(Config{Bucket: "bkt", Region: "us-east-1", Format: "parquet"}, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rec := arrowtest.Batch(mem, 0, 3)
	defer rec.Release()

	w, _ := s.OpenWriter(ctx, wkey("j", 0, "p"))
	if err := w.(connectors.ArrowWriter).WriteArrow(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []stream.Row{{"id": int64(99)}}); err != nil {
		t.Fatal(err)
	}
	g := w.(*writer).groups[""]
	if len(g.parts) != 0 || len(g.rows) != 4 || g.rows[0]["id"] != int64(0) || g.rows[3]["id"] != int64(99) {
		t.Fatalf("group holds parts %v, rows %v; want the 4 rows in order", g.parts, g.rows)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}

	w, _ = s.OpenWriter(ctx, wkey("j", 0, "p"))
	if err := w.(connectors.ArrowWriter).WriteArrow(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	// arrowtest.Mem checks at the end that nothing stays retained.
}
