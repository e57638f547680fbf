package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/transform"
)

// The Arrow path of the sink: a SQL task's output batch becomes records
// without a row map per record. Each expression reads the batch's columns
// at the row's index (transform.Expr.EvalFields over columnar.RowFields),
// a bare field name of a binary or string column is copied straight out of
// the column, and the default value is encoded from the columns by
// rowjson.ArrowEncoder. The records are the ones the row path makes of the
// rows columnar.AppendRows gives for the batch, byte for byte.

var (
	_ connectors.ArrowWriter = (*prodWriter)(nil)
	_ connectors.ArrowWriter = (*txnWriter)(nil)
)

// WriteArrow produces rec's rows as Write produces the same rows.
func (w *prodWriter) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if w.done {
		return errors.New("kafka sink: write after commit or abort")
	}
	if err := w.recs.firstErr(); err != nil {
		return w.s.wrap("produce", err)
	}
	return w.s.produceArrow(ctx, w.cl, &w.recs, w.key.Columns, rec)
}

// WriteArrow produces rec's rows in the transaction as Write produces the
// same rows; a skipping writer drops them.
func (w *txnWriter) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if skip, err := w.ready(); skip || err != nil {
		return err
	}
	return w.s.produceArrow(ctx, w.cl, &w.recs, w.key.Columns, rec)
}

// produceArrow builds the records of rec's rows and hands them to cl. The
// records own their bytes (copied into arenas shared by the batch's
// records), since cl sends them after rec is released.
func (s *Sink) produceArrow(ctx context.Context, cl *kgo.Client, p *produced, columns []string, rec arrow.RecordBatch) error {
	b, err := s.bindArrow(rec, columns)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("kafka sink: %w", err))
	}
	promise := p.promise // one method value for the batch, not one per record
	// The batch's records in one allocation; the client holds each until
	// it is acknowledged, which keeps the slab alive as long as any is.
	slab := make([]kgo.Record, rec.NumRows())
	for i := range slab {
		r := &slab[i]
		if err := b.record(i, r); err != nil {
			return connectors.Permanent(err)
		}
		p.add()
		p.n++
		cl.Produce(ctx, r, promise)
	}
	return nil
}

// arrowBinding is the sink's expressions bound to one batch.
type arrowBinding struct {
	set    *sinkSettings
	fields *columnar.RowFields
	value  *rowjson.ArrowRows // the default value; nil with a value expression
	key    arrowBytes
	val    arrowBytes
	hdrs   []arrowBytes // as set.headers
	mem    arena
	line   []byte
}

func (s *Sink) bindArrow(rec arrow.RecordBatch, columns []string) (*arrowBinding, error) {
	fields, err := columnar.NewRowFields(rec)
	if err != nil {
		return nil, err
	}
	b := &arrowBinding{set: s.set, fields: fields}
	if s.set.value == nil {
		enc := rowjson.ArrowEncoder{Columns: columns}
		if b.value, err = enc.Bind(rec); err != nil {
			return nil, err
		}
	} else {
		b.val = b.bytesOf(rec, s.set.value)
	}
	if s.set.key != nil {
		b.key = b.bytesOf(rec, s.set.key)
	}
	for _, h := range s.set.headers {
		b.hdrs = append(b.hdrs, b.bytesOf(rec, h.expr))
	}
	return b, nil
}

// arrowBytes gives an expression's value in row i as record bytes
// (toBytes), copied into the binding's arena.
type arrowBytes func(i int) ([]byte, error)

// bytesOf returns e's arrowBytes over rec: a bare name of a binary or
// string column read straight from the column, anything else evaluated.
func (b *arrowBinding) bytesOf(rec arrow.RecordBatch, e *transform.Expr) arrowBytes {
	if id := e.Ident(); id != "" {
		if j := rec.Schema().FieldIndices(id); len(j) == 1 {
			col := rec.Column(j[0])
			var raw func(i int) []byte
			switch a := col.(type) {
			case *array.Binary:
				raw = func(i int) []byte { return b.mem.copy(a.Value(i)) }
			case *array.LargeBinary:
				raw = func(i int) []byte { return b.mem.copy(a.Value(i)) }
			case *array.BinaryView:
				raw = func(i int) []byte { return b.mem.copy(a.Value(i)) }
			case *array.String:
				raw = func(i int) []byte { return b.mem.copyString(a.Value(i)) }
			case *array.LargeString:
				raw = func(i int) []byte { return b.mem.copyString(a.Value(i)) }
			case *array.StringView:
				raw = func(i int) []byte { return b.mem.copyString(a.Value(i)) }
			}
			if raw != nil {
				return func(i int) ([]byte, error) {
					if col.IsNull(i) {
						return nil, nil
					}
					return raw(i), nil
				}
			}
		}
	}
	return func(i int) ([]byte, error) {
		v, err := b.eval(e)
		if err != nil {
			return nil, err
		}
		return toBytes(v)
	}
}

// eval evaluates e over the selected row.
func (b *arrowBinding) eval(e *transform.Expr) (any, error) {
	v, err := e.EvalFields(b.fields)
	if ferr := b.fields.Err(); ferr != nil {
		return nil, ferr
	}
	return v, err
}

// record fills rec, a zero Record, with the record of row i, as
// Sink.record makes it of the row.
func (b *arrowBinding) record(i int, rec *kgo.Record) error {
	set := b.set
	b.fields.At(i)
	rec.Topic = set.cfg.Topic
	fail := func(field string, err error) error {
		return fmt.Errorf("kafka sink: sink.kafka.%s at %s: %w", field, b.describe(), err)
	}
	if set.topicExpr != nil {
		v, err := b.eval(set.topicExpr)
		if err != nil {
			return fail("topicExpr", err)
		}
		t, ok := v.(string)
		if !ok {
			return fail("topicExpr", fmt.Errorf("gave %T, want a string", v))
		}
		if err := validTopic(t); err != nil {
			return fail("topicExpr", err)
		}
		if t == set.commitsTopic {
			return fail("topicExpr", fmt.Errorf("%q is the commits topic", t))
		}
		rec.Topic = t
	}
	var err error
	if b.key != nil {
		if rec.Key, err = b.key(i); err != nil {
			return fail("key", err)
		}
	}
	if b.val != nil {
		if rec.Value, err = b.val(i); err != nil {
			return fail("value", err)
		}
	} else {
		if b.line, err = b.value.Append(b.line[:0], i); err != nil {
			return fail("value", err)
		}
		rec.Value = b.mem.copy(b.line)
	}
	for k, h := range set.headers {
		v, err := b.hdrs[k](i)
		if err != nil {
			return fail("headers."+h.name, err)
		}
		if v == nil {
			continue
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.name, Value: v})
	}
	if set.partition != nil {
		v, err := b.eval(set.partition)
		if err != nil {
			return fail("partition", err)
		}
		p, ok := v.(int64)
		if !ok || p < 0 || p > math.MaxInt32 {
			return fail("partition", fmt.Errorf("gave %v, want a partition number", v))
		}
		rec.Partition = int32(p)
	}
	return nil
}

// describe is describeRow for the selected row.
func (b *arrowBinding) describe() string {
	for _, name := range []string{"offset", "sequenceNumber"} {
		if v, ok := b.fields.Field(name); ok {
			if name == "offset" {
				return fmt.Sprintf("the row of offset %v", v)
			}
			return fmt.Sprintf("the row of sequence number %v", v)
		}
	}
	return "a row"
}

// arena hands out copies of byte slices from shared chunks: one allocation
// per chunk instead of one per record. A chunk stays alive while any record
// holding a slice of it does.
type arena struct{ buf []byte }

const arenaChunk = 64 << 10

// copy returns a copy of p, never nil (a value that is not null is never
// nil on the row path either: nil would be a Kafka null), capped so that
// appending to it cannot overwrite the next copy.
func (a *arena) copy(p []byte) []byte {
	if len(p) > arenaChunk/4 {
		return append(make([]byte, 0, len(p)), p...)
	}
	return append(a.take(len(p)), p...)
}

// copyString is copy of a string's bytes.
func (a *arena) copyString(s string) []byte {
	if len(s) > arenaChunk/4 {
		return append(make([]byte, 0, len(s)), s...)
	}
	return append(a.take(len(s)), s...)
}

// take returns an empty slice with room for exactly n bytes.
func (a *arena) take(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, arenaChunk)
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start : start+n]
}
