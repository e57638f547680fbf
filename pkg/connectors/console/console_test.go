package console

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func printBatch(t *testing.T, cfg Config, key connectors.WriteKey, rows []stream.Row) string {
	t.Helper()
	var out bytes.Buffer
	s, err := New(cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := s.OpenWriter(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestTable(t *testing.T) {
	rows := []stream.Row{
		{"branch": "Kazan", "currency": "RUB", "batch_value": int64(-42)},
		{"branch": "Nizhny Novgorod Central Office", "currency": "USD", "batch_value": 1.5},
		{"branch": "Omsk", "batch_value": nil},
	}
	got := printBatch(t, DefaultConfig(), connectors.WriteKey{Batch: 3, Columns: []string{"branch", "currency", "batch_value"}}, rows)
	want := `-------------------------------------------
Batch: 3
-------------------------------------------
+--------------------+--------+-----------+
|              branch|currency|batch_value|
+--------------------+--------+-----------+
|               Kazan|     RUB|        -42|
|Nizhny Novgorod C...|     USD|        1.5|
|                Omsk|    null|       null|
+--------------------+--------+-----------+

`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestTableNoTruncateSortedColumnsAndFooter(t *testing.T) {
	var rows []stream.Row
	for i := range 5 {
		rows = append(rows, stream.Row{"b": fmt.Sprintf("row %d of a rather long table", i), "a": int64(i)})
	}
	got := printBatch(t, Config{NumRows: 2}, connectors.WriteKey{Batch: 0}, rows)
	want := `-------------------------------------------
Batch: 0
-------------------------------------------
+---+----------------------------+
|a  |b                           |
+---+----------------------------+
|0  |row 0 of a rather long table|
|1  |row 1 of a rather long table|
+---+----------------------------+
only showing top 2 rows

`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
	if !strings.Contains(printBatch(t, Config{NumRows: 1, Truncate: true}, connectors.WriteKey{}, rows), "only showing top 1 row\n") {
		t.Error("singular footer missing")
	}
}

func TestTableEmpty(t *testing.T) {
	got := printBatch(t, DefaultConfig(), connectors.WriteKey{Batch: 1}, nil)
	want := "-------------------------------------------\nBatch: 1\n-------------------------------------------\n++\n||\n++\n++\n\n"
	if got != want {
		t.Errorf("empty batch:\n%q\nwant\n%q", got, want)
	}
	got = printBatch(t, DefaultConfig(), connectors.WriteKey{Batch: 1, Columns: []string{"a"}}, nil)
	if !strings.HasSuffix(got, "+---+\n|  a|\n+---+\n+---+\n\n") {
		t.Errorf("empty batch with columns:\n%s", got)
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		v    any
		want string
	}{
		{nil, "null"}, {true, "true"}, {int64(-7), "-7"}, {3.0, "3.0"}, {1.5, "1.5"}, {0.0, "0.0"},
		{math.Copysign(0, -1), "-0.0"}, {1e7, "1.0E7"}, {1.25e-4, "1.25E-4"}, {123456.789, "123456.789"},
		{math.NaN(), "NaN"}, {math.Inf(-1), "-Infinity"},
		{[]byte("ab"), "[61 62]"}, {"ü", "ü"},
		{time.Date(2026, 3, 1, 15, 0, 0, 123000000, time.FixedZone("MSK", 3*3600)), "2026-03-01 12:00:00.123"},
		{[]any{int64(1), "x", nil}, "[1, x, null]"},
		{map[string]any{"b": int64(2), "a": []any{}}, "{a -> [], b -> 2}"},
	}
	for _, tt := range tests {
		if got := render(tt.v); got != tt.want {
			t.Errorf("render(%#v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestConfig(t *testing.T) {
	s, err := New(Config{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxRows() != DefaultNumRows {
		t.Errorf("MaxRows = %d, want %d", s.MaxRows(), DefaultNumRows)
	}
	if _, err := New(Config{NumRows: -1}, nil); err == nil || !strings.Contains(err.Error(), "sink.console.numRows") {
		t.Errorf("New with negative numRows = %v", err)
	}
}

// TestConcurrentCommits checks tables from concurrent writers never
// interleave; run it with -race.
func TestConcurrentCommits(t *testing.T) {
	var out bytes.Buffer
	s, err := New(DefaultConfig(), &out)
	if err != nil {
		t.Fatal(err)
	}
	const writers = 20
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			ctx := context.Background()
			w, err := s.OpenWriter(ctx, connectors.WriteKey{Batch: stream.BatchID(i), Columns: []string{"v"}})
			if err != nil {
				t.Error(err)
				return
			}
			if err := w.Write(ctx, []stream.Row{{"v": int64(i)}}); err != nil {
				t.Error(err)
			}
			if err := w.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	tables := strings.Split(strings.TrimSuffix(out.String(), "\n\n"), "\n\n")
	if len(tables) != writers {
		t.Fatalf("got %d tables, want %d:\n%s", len(tables), writers, out.String())
	}
	for _, tb := range tables {
		var batch int
		if _, err := fmt.Sscanf(strings.Split(tb, "\n")[1], "Batch: %d", &batch); err != nil {
			t.Fatalf("table without a batch line: %q", tb)
		}
		if !strings.Contains(tb, fmt.Sprintf("|%3d|", batch)) {
			t.Errorf("table of batch %d does not hold its own row:\n%s", batch, tb)
		}
	}
}

func TestAbortPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	s, _ := New(DefaultConfig(), &out)
	w, _ := s.OpenWriter(context.Background(), connectors.WriteKey{})
	_ = w.Write(context.Background(), []stream.Row{{"a": int64(1)}})
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("Abort printed %q", out.String())
	}
}
