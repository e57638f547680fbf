// Package console is a sink that prints each batch as a table, as Spark's
// console sink does:
//
//	-------------------------------------------
//	Batch: 3
//	-------------------------------------------
//	+------+--------+-----------+
//	|branch|currency|batch_value|
//	+------+--------+-----------+
//	| Kazan|     RUB|        -42|
//	+------+--------+-----------+
//	only showing top 20 rows
//
// It is a connectors.DriverCollector: tasks send at most MaxRows rows each
// to the driver, which writes them through one writer per batch, so a batch
// prints once. The table shows the first NumRows rows it is given, and says
// so when it was given more; it cannot know about rows the tasks did not
// send. Columns follow WriteKey.Columns when given, else they are the sorted
// union of the shown rows' fields. Cells render as Spark renders them: null,
// true, 1.5, 3.0, 1.0E10, [1, 2], {a -> 1}, binary as [61 62], timestamps
// in UTC as 2026-03-01 12:00:00.123.
package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// DefaultNumRows is how many rows a batch shows when NumRows is 0.
const DefaultNumRows = 20

// truncateAt is Spark's cell width limit when truncating.
const truncateAt = 20

// Config configures the sink. Start from DefaultConfig: the zero Config does
// not truncate, while Spark's default (and DefaultConfig's) does.
type Config struct {
	// NumRows is how many rows of a batch to print; 0 means DefaultNumRows.
	NumRows int
	// Truncate cuts cells longer than 20 characters to 17 and "..." and
	// right-aligns cells; without it cells are whole and left-aligned.
	Truncate bool
}

// DefaultConfig is Spark's default: 20 rows, truncated.
func DefaultConfig() Config { return Config{NumRows: DefaultNumRows, Truncate: true} }

// Validate reports the first problem with the config.
func (c Config) Validate() error {
	if c.NumRows < 0 {
		return fmt.Errorf("sink.console.numRows: must not be negative, got %d", c.NumRows)
	}
	return nil
}

// Sink prints batches to a writer. It is safe for concurrent use: each
// table is written to the underlying writer in one piece.
type Sink struct {
	cfg Config
	mu  sync.Mutex // serializes writes to out
	out io.Writer
}

var (
	_ connectors.Sink            = (*Sink)(nil)
	_ connectors.DriverCollector = (*Sink)(nil)
)

// New returns a sink printing to w (os.Stdout when nil).
func New(cfg Config, w io.Writer) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NumRows == 0 {
		cfg.NumRows = DefaultNumRows
	}
	if w == nil {
		w = os.Stdout
	}
	return &Sink{cfg: cfg, out: w}, nil
}

// MaxRows is how many rows each task sends the driver: NumRows.
func (s *Sink) MaxRows() int { return s.cfg.NumRows }

// Close does nothing.
func (s *Sink) Close() error { return nil }

// OpenWriter returns a writer that prints its rows as one table on Commit.
func (s *Sink) OpenWriter(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &writer{sink: s, key: key}, nil
}

type writer struct {
	sink  *Sink
	key   connectors.WriteKey
	cells []map[string]string // the shown rows, rendered when written
	total int
	done  bool
}

func (w *writer) Write(ctx context.Context, rows []stream.Row) error {
	if w.done {
		return errors.New("console sink: write after commit or abort")
	}
	for _, r := range rows {
		w.total++
		if len(w.cells) >= w.sink.cfg.NumRows {
			continue
		}
		c := make(map[string]string, len(r))
		for k, v := range r {
			c[k] = render(v)
		}
		w.cells = append(w.cells, c)
	}
	return nil
}

func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("console sink: commit after commit or abort")
	}
	w.done = true
	if err := ctx.Err(); err != nil {
		return err
	}
	var b bytes.Buffer
	b.WriteString("-------------------------------------------\n")
	fmt.Fprintf(&b, "Batch: %d\n", w.key.Batch)
	b.WriteString("-------------------------------------------\n")
	w.table(&b)
	b.WriteByte('\n')
	w.sink.mu.Lock()
	defer w.sink.mu.Unlock()
	_, err := w.sink.out.Write(b.Bytes())
	return err
}

func (w *writer) Abort() error {
	w.done = true
	w.cells = nil
	return nil
}

// table renders the rows as Dataset.show does.
func (w *writer) table(b *bytes.Buffer) {
	cols := w.key.Columns
	if len(cols) == 0 {
		seen := map[string]bool{}
		for _, c := range w.cells {
			for k := range c {
				if !seen[k] {
					seen[k] = true
					cols = append(cols, k)
				}
			}
		}
		slices.Sort(cols)
	}
	truncate := w.sink.cfg.Truncate
	grid := make([][]string, 0, len(w.cells)+1)
	grid = append(grid, cellsOf(cols, nil, truncate))
	for _, c := range w.cells {
		grid = append(grid, cellsOf(cols, c, truncate))
	}
	widths := make([]int, len(cols))
	for i := range widths {
		widths[i] = 3 // Spark's minimum column width
	}
	for _, row := range grid {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	// Lines are joined as Scala's addString(sb, "|", "|", "|") joins them,
	// so a table without columns is "++" and "||" lines, as in Spark.
	dashes := make([]string, len(widths))
	for i, wd := range widths {
		dashes[i] = strings.Repeat("-", wd)
	}
	sepLine := "+" + strings.Join(dashes, "+") + "+\n"
	sep := func() { b.WriteString(sepLine) }
	line := func(row []string) {
		padded := make([]string, len(row))
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if truncate {
				padded[i] = pad + cell
			} else {
				padded[i] = cell + pad
			}
		}
		b.WriteString("|" + strings.Join(padded, "|") + "|\n")
	}
	sep()
	line(grid[0])
	sep()
	for _, row := range grid[1:] {
		line(row)
	}
	sep()
	if n := w.sink.cfg.NumRows; w.total > n {
		unit := "rows"
		if n == 1 {
			unit = "row"
		}
		fmt.Fprintf(b, "only showing top %d %s\n", n, unit)
	}
}

// cellsOf returns the cells of one table line: the header when c is nil.
func cellsOf(cols []string, c map[string]string, truncate bool) []string {
	out := make([]string, len(cols))
	for i, col := range cols {
		s := col
		if c != nil {
			var ok bool
			if s, ok = c[col]; !ok {
				s = "null"
			}
		}
		if truncate && utf8.RuneCountInString(s) > truncateAt {
			r := []rune(s)
			s = string(r[:truncateAt-3]) + "..."
		}
		out[i] = s
	}
	return out
}

// render formats a value as Spark shows it.
func render(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case int:
		return strconv.Itoa(x)
	case float64:
		return formatDouble(x)
	case float32:
		return formatDouble(float64(x))
	case []byte:
		parts := make([]string, len(x))
		for i, c := range x {
			parts[i] = fmt.Sprintf("%02X", c)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case time.Time:
		return x.UTC().Format("2006-01-02 15:04:05.999999999")
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = render(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		return renderMap(x)
	case stream.Row:
		return renderMap(x)
	}
	return fmt.Sprint(v)
}

func renderMap(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " -> " + render(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// formatDouble formats f as Java's Double.toString: 1.5, 3.0, 1.0E7,
// 1.0E-4, NaN, Infinity.
func formatDouble(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	if abs := math.Abs(f); abs == 0 || (abs >= 1e-3 && abs < 1e7) {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	s := strconv.FormatFloat(f, 'E', -1, 64) // 1.5E+10
	mant, exp, _ := strings.Cut(s, "E")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	exp = strings.TrimPrefix(exp, "+")
	neg := strings.HasPrefix(exp, "-")
	exp = strings.TrimLeft(strings.TrimPrefix(exp, "-"), "0")
	if neg {
		exp = "-" + exp
	}
	return mant + "E" + exp
}
