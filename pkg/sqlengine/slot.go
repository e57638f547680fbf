//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Input slots. A run's input reaches DuckDB as an Arrow stream registered
// as a view (duckdb-go's RegisterView, DuckDB's arrow_scan). Registering
// one per run, and dropping its view after, were two catalog writes of
// about half a millisecond each: 40% of what a count-only task spent in
// DuckDB (sqltransform's BenchmarkSmallTask). So the streams are
// registered once and reused: a slot is a view over a stream that reads
// whatever input the run holding the slot gives it, and nothing between
// runs. DuckDB asks arrow_scan's factory for the stream again at every
// scan and the schema at every bind, so one view serves any number of
// runs, one at a time, of inputs with the same schema.
//
// A slot between runs is an empty table, never a dangling pointer: a query
// that names it (they are internal names, but the catalog is shared) reads
// no rows, where a view left over a released stream would crash the
// process. The stream itself is freed only when the database is closed.
//
// The engine keeps up to maxFreeSlots slots not in use, most recently
// returned last; returning one more drops the oldest, so that the inputs
// of jobs long gone do not pile up in the catalog.

// maxFreeSlots bounds the slots kept between runs: an executor's
// concurrent runs of every job it works on, with room to spare.
const maxFreeSlots = 64

// slot is one registered input stream and its view.
type slot struct {
	name        string // the view's, database-wide unique
	fingerprint string // the input schema's (Schema.Fingerprint)
	r           *slotReader
	release     func() // duckdb-go's: frees the stream; only once the view is gone
}

// slotReader is the stream a slot's view reads: the input of the run that
// holds the slot, or nothing. Its reference count belongs to the slot:
// Retain and Release, which DuckDB's export calls, change nothing.
type slotReader struct {
	schema *arrow.Schema
	// in is set from the run's goroutine and read from DuckDB's threads.
	in atomic.Pointer[inputBox]
}

type inputBox struct{ r array.RecordReader }

var _ array.RecordReader = (*slotReader)(nil)

func (s *slotReader) set(r array.RecordReader) {
	if r == nil {
		s.in.Store(nil)
		return
	}
	s.in.Store(&inputBox{r})
}

func (s *slotReader) Retain()               {}
func (s *slotReader) Release()              {}
func (s *slotReader) Schema() *arrow.Schema { return s.schema }

func (s *slotReader) Next() bool {
	if b := s.in.Load(); b != nil {
		return b.r.Next()
	}
	return false
}

func (s *slotReader) RecordBatch() arrow.RecordBatch {
	if b := s.in.Load(); b != nil {
		return b.r.RecordBatch()
	}
	return nil
}

// Record is RecordBatch, for arrow-go's older name.
func (s *slotReader) Record() arrow.RecordBatch { return s.RecordBatch() }

func (s *slotReader) Err() error {
	if b := s.in.Load(); b != nil {
		return b.r.Err()
	}
	return nil
}

// takeSlot returns a free slot for inputs of schema, or registers a new one
// on s's connection.
func (e *Engine) takeSlot(s *session, schema *arrow.Schema) (*slot, error) {
	fp := schema.Fingerprint()
	e.smu.Lock()
	for i := len(e.free) - 1; i >= 0; i-- {
		// The fingerprint is a quick filter, Equal the test: arrow-go
		// gives an empty fingerprint for types it cannot print.
		if sl := e.free[i]; sl.fingerprint == fp && sl.r.schema.Equal(schema) {
			e.free = append(e.free[:i], e.free[i+1:]...)
			e.smu.Unlock()
			return sl, nil
		}
	}
	e.smu.Unlock()
	sl := &slot{name: e.nextSourceName(), fingerprint: fp, r: &slotReader{schema: schema}}
	release, err := s.arrow.RegisterView(sl.r, sl.name)
	if err != nil {
		return nil, err
	}
	sl.release = release
	return sl, nil
}

// putSlot takes back a slot whose run is done with it. When that makes one
// too many, the oldest free slot's view is dropped on s's connection and
// its stream freed.
func (e *Engine) putSlot(s *session, sl *slot) {
	sl.r.set(nil)
	e.smu.Lock()
	e.free = append(e.free, sl)
	var evict *slot
	if len(e.free) > maxFreeSlots {
		evict = e.free[0]
		e.free = e.free[1:]
	}
	e.smu.Unlock()
	if evict == nil {
		return
	}
	// Dropping needs no context: it must happen even when the run's is done.
	if err := s.execContext(context.Background(), "DROP VIEW IF EXISTS "+quoteIdent(evict.name)); err != nil {
		// Freeing now would leave a view on freed memory in the catalog.
		// Keep the stream instead; it reads nothing.
		e.cfg.log.Error("sqlengine: drop an unused input view failed; keeping its stream", "view", evict.name, "err", err)
		return
	}
	evict.release()
}

// releaseSlots frees the free slots' streams once the database is closed
// with no connection left: nothing can scan them any more.
func (e *Engine) releaseSlots() {
	e.smu.Lock()
	free := e.free
	e.free = nil
	e.smu.Unlock()
	for _, sl := range free {
		sl.release()
	}
}
