package task

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// filler is a reader that appends its records to Arrow batches of the
// source's columns itself (connectors.KafkaArrowReader,
// connectors.KinesisArrowReader), with the builder it fills: the task's
// records then never become rows.
type filler interface {
	// fill appends the reader's next records, with the reader's semantics:
	// how many it read, their bytes, the records it could not unpack
	// (appended to nothing, for onError) and Read's error (io.EOF at the
	// end).
	fill(ctx context.Context) (records int, bytes int64, bad []stream.Record, err error)
	// Len is how many records the batch being built holds.
	Len() int
	// NewRecordBatch returns them as a batch, which the caller releases.
	NewRecordBatch() arrow.RecordBatch
	// Release frees the builder.
	Release()
}

// newFiller returns a filler of batches of schema, from mem, for r; false
// when r does not fill batches, or not of schema. Batches are cut at
// sqlBatchRows records.
func newFiller(r connectors.Reader, schema *arrow.Schema, mem memory.Allocator) (filler, bool) {
	switch r := r.(type) {
	case connectors.KafkaArrowReader:
		if b, ok := columnar.NewKafkaBuilderFor(mem, schema); ok {
			b.SetBatchRows(sqlBatchRows)
			return kafkaFiller{r, b}, true
		}
	case connectors.KinesisArrowReader:
		if b, ok := columnar.NewKinesisBuilderFor(mem, schema); ok {
			return kinesisFiller{r, b}, true
		}
	}
	return nil, false
}

type kafkaFiller struct {
	r connectors.KafkaArrowReader
	*columnar.KafkaBuilder
}

func (f kafkaFiller) fill(ctx context.Context) (int, int64, []stream.Record, error) {
	n, bytes, err := f.r.ReadKafkaArrow(ctx, f.KafkaBuilder)
	return n, bytes, nil, err
}

type kinesisFiller struct {
	r connectors.KinesisArrowReader
	*columnar.KinesisBuilder
}

func (f kinesisFiller) fill(ctx context.Context) (int, int64, []stream.Record, error) {
	return f.r.ReadKinesisArrow(ctx, f.KinesisBuilder)
}

// badRecord applies onError to a record the reader could not unpack (its
// Err is set): skip counts it in skipped, deadLetter keeps it in dead (up
// to maxDeadLetters), and otherwise the returned error fails the task.
func badRecord(a *Attempt, rec stream.Record, skipped *int64, dead *[]stream.Row) error {
	switch {
	case a.OnError == OnErrorSkip:
		*skipped++
		return nil
	case a.OnError == OnErrorDeadLetter && len(*dead) < maxDeadLetters:
		row := rec.Fields.Clone()
		row["error"] = fmt.Sprintf("read: %v", rec.Err)
		*dead = append(*dead, row)
		return nil
	}
	return connectors.Permanent(fmt.Errorf("bad record in %s at %s: read: %w (set onError: skip or deadLetter to keep going)",
		a.Range.Partition, describe(rec.Fields), rec.Err))
}
