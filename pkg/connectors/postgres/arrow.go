package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
)

var _ connectors.ArrowWriter = (*writer)(nil)

// WriteArrow writes rec's rows as Write writes the same rows: the batch is
// retained (up to the sink's flush size, as Write buffers rows) and then
// sent in the transaction from its columns, COPY reading one row's values
// at a time (arrowSource), with no row map per record. The positions-table
// protocol is Write's: a skipping writer drops the batch.
func (w *writer) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	switch {
	case w.done:
		return errors.New("postgres sink: write after commit or abort")
	case w.failed != nil:
		return w.failed
	case w.skip:
		return nil
	}
	if err := columnar.CheckColumnNames(rec.Schema()); err != nil {
		return w.fail(connectors.Permanent(fmt.Errorf("postgres sink: %w", err)))
	}
	if rec.NumRows() == 0 {
		return nil
	}
	if len(w.pending) > 0 {
		// Rows go to the table in the order they came.
		if err := w.fail(w.flushRows(ctx)); err != nil {
			return err
		}
	}
	rec.Retain()
	w.pendingArrow = append(w.pendingArrow, rec)
	w.arrowRows += int(rec.NumRows())
	if w.arrowRows >= w.s.flushRows {
		return w.fail(w.flushArrow(ctx))
	}
	return nil
}

// releaseArrow drops the retained batches.
func (w *writer) releaseArrow() {
	for _, rec := range w.pendingArrow {
		rec.Release()
	}
	w.pendingArrow, w.arrowRows = nil, 0
}

// flushArrow sends the retained batches, as flushRows sends rows.
func (w *writer) flushArrow(ctx context.Context) error {
	if len(w.pendingArrow) == 0 {
		return nil
	}
	defer w.releaseArrow()
	s := w.s
	src, err := newArrowSource(s.set.arrowColumns(w.key.Columns, w.pendingArrow), w.pendingArrow)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("postgres sink: %w", err))
	}
	if err := w.prepare(ctx, src.cols, src.first); err != nil {
		return err
	}
	if w.skip {
		return nil
	}
	if s.set.upsert {
		idx, err := s.set.keyIndices(src.cols)
		if err != nil {
			return err
		}
		if err := src.dedupe(idx); err != nil {
			return connectors.Permanent(fmt.Errorf("postgres sink: %w", err))
		}
	}
	err = w.send(ctx, src.cols, src, len(src.sel))
	if src.convErr != nil {
		// A value with no row mapping: the same rows fail again.
		return connectors.Permanent(fmt.Errorf("postgres sink: %w", src.convErr))
	}
	return err
}

// arrowColumns is chunkColumns for batches: the configured columns, or else
// WriteKey.Columns followed by any other column the batches hold, sorted.
func (s *settings) arrowColumns(keyCols []string, recs []arrow.RecordBatch) []column {
	if len(s.columns) > 0 {
		return s.chunkColumns(keyCols, nil)
	}
	seen := make(map[string]bool, len(keyCols))
	out := make([]column, 0, len(keyCols))
	for _, c := range keyCols {
		if !seen[c] {
			seen[c] = true
			out = append(out, column{name: c, field: c})
		}
	}
	var extra []string
	for _, rec := range recs {
		for _, f := range rec.Schema().Fields() {
			if !seen[f.Name] {
				seen[f.Name] = true
				extra = append(extra, f.Name)
			}
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		out = append(out, column{name: k, field: k})
	}
	return out
}

// rowRef is one row of one of the source's batches.
type rowRef struct{ rec, row int }

// arrowSource is the pgx.CopyFromSource of the selected rows of batches:
// each row's values as values would convert the row's fields (pgValue of
// the row value), read from the columns. Values reuses one slice, which
// pgx encodes before asking for the next row.
type arrowSource struct {
	cols []column
	// readers[b][c] reads column c in batch b; nil when the batch lacks
	// the field (a null, as a row without it).
	readers [][]columnar.ValueReader
	sel     []rowRef // the rows to send, in order
	pos     int
	vals    []any
	convErr error // a value that could not be converted
}

func newArrowSource(cols []column, recs []arrow.RecordBatch) (*arrowSource, error) {
	src := &arrowSource{cols: cols, readers: make([][]columnar.ValueReader, len(recs)), pos: -1, vals: make([]any, len(cols))}
	for b, rec := range recs {
		rs := make([]columnar.ValueReader, len(cols))
		for c, col := range cols {
			j := rec.Schema().FieldIndices(col.field)
			if len(j) == 0 {
				continue
			}
			r, err := columnar.NewValueReader(col.field, rec.Column(j[0]))
			if err != nil {
				return nil, err
			}
			rs[c] = r
		}
		src.readers[b] = rs
		for i := range int(rec.NumRows()) {
			src.sel = append(src.sel, rowRef{b, i})
		}
	}
	return src, nil
}

// first is the first non-null value of field in the batches (for
// ensureTable), nil when there is none or it cannot be read.
func (s *arrowSource) first(field string) any {
	c := slices.IndexFunc(s.cols, func(c column) bool { return c.field == field })
	if c < 0 {
		return nil
	}
	for _, ref := range s.sel {
		r := s.readers[ref.rec][c]
		if r == nil {
			continue
		}
		if v, err := r(ref.row); err == nil && v != nil {
			return v
		}
	}
	return nil
}

// value is column c of a row, as values gives it.
func (s *arrowSource) value(ref rowRef, c int) (any, error) {
	r := s.readers[ref.rec][c]
	if r == nil {
		return nil, nil
	}
	v, err := r(ref.row)
	if err != nil {
		return nil, err
	}
	v, err = pgValue(v)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", s.cols[c].field, err)
	}
	return v, nil
}

// dedupe keeps the last row of each key, as dedupe does for rows.
func (s *arrowSource) dedupe(keyIdx []int) error {
	last := make(map[string]int, len(s.sel))
	keys := make([]string, len(s.sel))
	var kb strings.Builder
	for i, ref := range s.sel {
		kb.Reset()
		for _, c := range keyIdx {
			v, err := s.value(ref, c)
			if err != nil {
				return err
			}
			fmt.Fprintf(&kb, "%T\x00%v\x00", v, v)
		}
		keys[i] = kb.String()
		last[keys[i]] = i
	}
	if len(last) == len(s.sel) {
		return nil
	}
	kept := s.sel[:0]
	for i, ref := range s.sel {
		if last[keys[i]] == i {
			kept = append(kept, ref)
		}
	}
	s.sel = kept
	return nil
}

func (s *arrowSource) Next() bool {
	if s.convErr != nil || s.pos+1 >= len(s.sel) {
		return false
	}
	s.pos++
	return true
}

func (s *arrowSource) Values() ([]any, error) {
	ref := s.sel[s.pos]
	for c := range s.cols {
		v, err := s.value(ref, c)
		if err != nil {
			s.convErr = fmt.Errorf("row %d: %w", s.pos+1, err)
			return nil, s.convErr
		}
		s.vals[c] = v
	}
	return s.vals, nil
}

func (s *arrowSource) Err() error { return s.convErr }
