// Package discard is a sink that drops what it is given and counts it, for
// benchmarks and dry runs. Rows count when their writer commits; an aborted
// attempt counts nothing, and a retried key counts once per commit.
package discard

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Sink counts committed rows. It is safe for concurrent use.
type Sink struct {
	rows    atomic.Int64
	commits atomic.Int64
}

var _ connectors.Sink = (*Sink)(nil)

// New returns an empty sink.
func New() *Sink { return &Sink{} }

// Rows is the number of rows in committed writers so far.
func (s *Sink) Rows() int64 { return s.rows.Load() }

// Commits is the number of committed writers so far.
func (s *Sink) Commits() int64 { return s.commits.Load() }

// Close does nothing.
func (s *Sink) Close() error { return nil }

// OpenWriter returns a writer that counts rows.
func (s *Sink) OpenWriter(ctx context.Context, _ connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &writer{sink: s}, nil
}

type writer struct {
	sink *Sink
	rows int64
	done bool
}

func (w *writer) Write(_ context.Context, rows []stream.Row) error {
	if w.done {
		return errors.New("discard sink: write after commit or abort")
	}
	w.rows += int64(len(rows))
	return nil
}

var _ connectors.ArrowWriter = (*writer)(nil)

// WriteArrow counts rec's rows; it reads nothing else.
func (w *writer) WriteArrow(_ context.Context, rec arrow.RecordBatch) error {
	if w.done {
		return errors.New("discard sink: write after commit or abort")
	}
	w.rows += rec.NumRows()
	return nil
}

func (w *writer) Commit(context.Context) error {
	if w.done {
		return errors.New("discard sink: commit after commit or abort")
	}
	w.done = true
	w.sink.rows.Add(w.rows)
	w.sink.commits.Add(1)
	return nil
}

func (w *writer) Abort() error {
	w.done = true
	return nil
}
