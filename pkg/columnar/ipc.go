package columnar

import (
	"bytes"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// EncodeIPC writes batches, which must all have schema s, in the Arrow IPC
// stream format. The schema is written even when there are no batches, so the
// receiver always learns the columns. Executors use it to ship partial
// aggregates to the driver; the batches stay owned by the caller.
func EncodeIPC(s *arrow.Schema, batches []arrow.RecordBatch) ([]byte, error) {
	for i, rec := range batches {
		// The writer would reject a mismatch too, but only by a generic
		// message and after writing the batches before it.
		if !rec.Schema().Equal(s) {
			return nil, fmt.Errorf("encode ipc: batch %d: schema %s differs from %s", i, rec.Schema(), s)
		}
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(s))
	for i, rec := range batches {
		if err := w.Write(rec); err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("encode ipc: batch %d: %w", i, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encode ipc: close: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeIPC reads an Arrow IPC stream written by EncodeIPC. The batches'
// buffers come from mem and do not alias data; the caller must Release each
// batch. On error no batches are returned and none are left allocated.
func DecodeIPC(mem memory.Allocator, data []byte) (*arrow.Schema, []arrow.RecordBatch, error) {
	r, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(mem))
	if err != nil {
		return nil, nil, fmt.Errorf("decode ipc: read schema: %w", err)
	}
	defer r.Release()
	var out []arrow.RecordBatch
	for r.Next() {
		rec := r.RecordBatch()
		// The reader releases its current batch on Next: keep our own reference.
		rec.Retain()
		out = append(out, rec)
	}
	if err := r.Err(); err != nil {
		for _, rec := range out {
			rec.Release()
		}
		return nil, nil, fmt.Errorf("decode ipc: batch %d: %w", len(out), err)
	}
	return r.Schema(), out, nil
}
