package s3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/stream"
)

var _ connectors.ArrowWriter = (*writer)(nil)

// arrowPart is some rows of a batch that one Parquet object holds: the
// batch, retained until the writer ends, and the rows' indices (nil: every
// row).
type arrowPart struct {
	rec  arrow.RecordBatch
	rows []int
}

func (p arrowPart) len() int {
	if p.rows == nil {
		return int(p.rec.NumRows())
	}
	return len(p.rows)
}

// row is the index in rec of the part's k-th row.
func (p arrowPart) row(k int) int {
	if p.rows == nil {
		return k
	}
	return p.rows[k]
}

// WriteArrow writes rec's rows as Write writes the same rows: JSON lines
// encoded straight from the columns (rowjson.ArrowEncoder), or, for
// Parquet, the batch itself, retained until Commit or Abort and read
// column by column when the object is encoded (see writeParquetArrow).
func (w *writer) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if w.done {
		return errors.New("s3 sink: write after commit or abort")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := columnar.CheckColumnNames(rec.Schema()); err != nil {
		return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
	}
	n := int(rec.NumRows())
	if n == 0 {
		return nil
	}
	// Rows by partitionBy value, in order of first appearance.
	var values []string
	byValue := map[string][]int{}
	if w.s.cfg.PartitionBy == "" {
		values = []string{""}
	} else {
		var read columnar.ValueReader
		if j := rec.Schema().FieldIndices(w.s.cfg.PartitionBy); len(j) == 1 {
			var err error
			if read, err = columnar.NewValueReader(w.s.cfg.PartitionBy, rec.Column(j[0])); err != nil {
				return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
			}
		}
		for i := range n {
			var v any
			if read != nil {
				var err error
				if v, err = read(i); err != nil {
					return connectors.Permanent(fmt.Errorf("s3 sink: row %d: %w", i, err))
				}
			}
			value := PartitionValue(v)
			if _, ok := byValue[value]; !ok {
				values = append(values, value)
			}
			byValue[value] = append(byValue[value], i)
		}
		if len(values) == 1 {
			byValue[values[0]] = nil // every row
		}
	}
	var lines *rowjson.ArrowRows
	if w.s.cfg.format() == FormatJSONL {
		enc := rowjson.ArrowEncoder{Columns: w.key.Columns}
		var err error
		if lines, err = enc.Bind(rec); err != nil {
			return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
		}
	}
	for _, value := range values {
		g, err := w.group(value)
		if err != nil {
			return err
		}
		part := arrowPart{rec: rec, rows: byValue[value]}
		g.n += int64(part.len())
		if g.f == nil {
			if len(g.rows) > 0 {
				// Write gave this object rows already: keep to rows.
				if err := appendPartRows(&g.rows, part); err != nil {
					return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
				}
				continue
			}
			rec.Retain()
			g.parts = append(g.parts, part)
			continue
		}
		for k := range part.len() {
			if w.line, err = lines.Append(w.line[:0], part.row(k)); err != nil {
				return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
			}
			w.line = append(w.line, '\n')
			if _, err := g.buf.Write(w.line); err != nil {
				return fmt.Errorf("s3 sink: spool: %w", err)
			}
		}
	}
	return nil
}

// group returns the writer's object for a partitionBy value, creating it
// (and its spool file for JSON lines) on first use.
func (w *writer) group(value string) (*group, error) {
	if g := w.groups[value]; g != nil {
		return g, nil
	}
	g := &group{value: value}
	if w.s.cfg.format() == FormatJSONL {
		f, err := os.CreateTemp(w.s.tempDir, "sluice-s3-*.jsonl")
		if err != nil {
			return nil, fmt.Errorf("s3 sink: spool: %w", err)
		}
		g.f, g.buf = f, bufio.NewWriterSize(f, 64<<10)
	}
	w.groups[value] = g
	return g, nil
}

// appendPartRows appends part's rows to rows, as AppendRows makes them.
func appendPartRows(rows *[]stream.Row, part arrowPart) error {
	all, err := columnar.AppendRows(nil, part.rec)
	if err != nil {
		return err
	}
	for k := range part.len() {
		*rows = append(*rows, all[part.row(k)])
	}
	return nil
}

// releaseParts turns g's retained batches into rows, for a Write that
// comes after WriteArrow on the same object, or just releases them
// (toRows false).
func (g *group) releaseParts(toRows bool) error {
	var err error
	for _, p := range g.parts {
		if toRows && err == nil {
			err = appendPartRows(&g.rows, p)
		}
		p.rec.Release()
	}
	g.parts = nil
	return err
}
