package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/connectors/internal/sinkexpr"
)

// The Arrow path of the sink: a SQL task's output batch becomes records
// without a row map per record. The options' expressions are evaluated over
// the whole batch in one query (sinkexpr), an option that is a column of
// binary or strings is read in place (the batch lives until the client has
// sent its records: hand), and the default value is encoded from the
// columns by rowjson.ArrowEncoder. The records
// are the ones the row path makes of the rows columnar.AppendRows gives for
// the batch, byte for byte: both paths fill them with recordMaker.

var (
	_ connectors.ArrowWriter = (*prodWriter)(nil)
	_ connectors.ArrowWriter = (*txnWriter)(nil)
)

var _ connectors.ColumnReader = (*Sink)(nil)

// ReadsColumns names the columns of its rows the sink reads when every
// option is a column (connectors.ColumnReader): those, and offset and
// sequenceNumber, by which its errors name a record. ok is false without a
// value option (the value is the whole row as JSON) or when an option is
// an expression.
func (s *Sink) ReadsColumns() (names []string, ok bool) {
	if s.set.value < 0 {
		return nil, false
	}
	names, ok = s.set.exprs.Columns()
	if !ok {
		return nil, false
	}
	return append(names, "offset", "sequenceNumber"), true
}

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

// produceArrow builds the records of rec's rows and hands them to cl.
// Bytes and strings of rec's columns (and of the options' values) go into
// the records without a copy: rec and the values stay alive until the
// client has acknowledged or failed the last of them (hand).
func (s *Sink) produceArrow(ctx context.Context, cl *kgo.Client, p *produced, columns []string, rec arrow.RecordBatch) error {
	if err := columnar.CheckColumnNames(rec.Schema()); err != nil {
		return connectors.Permanent(fmt.Errorf("kafka sink: rows from batch: %w", err))
	}
	vals, err := s.set.exprs.Eval(ctx, s.mem, rec)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("kafka sink: %w", err))
	}
	slab, err := s.buildArrow(vals, columns, rec)
	if err != nil {
		vals.Release()
		return err
	}
	rec.Retain()
	hand(ctx, cl, p, slab, func() {
		vals.Release()
		rec.Release()
	})
	return nil
}

// buildArrow makes the records of rec's rows (recordMaker.records). The
// records point into vals and rec.
func (s *Sink) buildArrow(vals *sinkexpr.Values, columns []string, rec arrow.RecordBatch) ([]kgo.Record, error) {
	where, err := describeBatch(rec)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("kafka sink: %w", err))
	}
	m := s.newMaker(vals, where)
	if s.set.value < 0 {
		enc := rowjson.ArrowEncoder{Columns: columns}
		rows, err := enc.Bind(rec)
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("kafka sink: %w", err))
		}
		var line []byte
		m.value = func(i int) ([]byte, error) {
			if line, err = rows.Append(line[:0], i); err != nil {
				return nil, err
			}
			return m.mem.copy(line), nil
		}
	}
	return m.records(int(rec.NumRows()))
}

// hand gives cl the records of slab and calls release once the client has
// acknowledged or failed every one of them: their bytes may point into
// what release frees. release runs before the last record's promise, so
// that a writer done waiting (produced.wait) holds nothing more; the slab
// itself goes back to slabs after it: franz-go is done with a record once
// its promise has returned (it sets the record's offset and attributes,
// then calls the promise, and holds no pointer to it after; franz-go
// v1.22's finishPromises).
func hand(ctx context.Context, cl *kgo.Client, p *produced, slab []kgo.Record, release func()) {
	if len(slab) == 0 {
		release()
		return
	}
	var left atomic.Int64
	left.Store(int64(len(slab)))
	// One promise for the batch, not one closure per record. Every record's
	// promise counts down first, and franz-go is done with a record once
	// its promise is called; so when the count reaches 0, no record of the
	// slab is read again but by p, and the slab goes back once p has it.
	promise := func(r *kgo.Record, err error) {
		last := left.Add(-1) == 0
		if last {
			release()
		}
		p.promise(r, err)
		if last {
			slabs.PutRecords(slab)
		}
	}
	p.add(len(slab))
	p.n += int64(len(slab))
	for i := range slab {
		cl.Produce(ctx, &slab[i], promise)
	}
}

// describeBatch is describeRow for the rows of rec.
func describeBatch(rec arrow.RecordBatch) (func(i int) string, error) {
	read := func(name string) (columnar.ValueReader, error) {
		j := rec.Schema().FieldIndices(name)
		if len(j) != 1 {
			return func(int) (any, error) { return nil, nil }, nil
		}
		return columnar.NewValueReader(name, rec.Column(j[0]))
	}
	off, err := read("offset")
	if err != nil {
		return nil, err
	}
	seq, err := read("sequenceNumber")
	if err != nil {
		return nil, err
	}
	return func(i int) string {
		o, _ := off(i)
		q, _ := seq(i)
		return describe(o, q)
	}, nil
}

// recordMaker fills the records of one batch's rows (or one Write's) from
// the options' values.
type recordMaker struct {
	set   *sinkSettings
	vals  *sinkexpr.Values
	where func(i int) string          // names row i in errors
	value func(i int) ([]byte, error) // the default value, without a value option
	key   bytesOf
	val   bytesOf
	hdrs  []bytesOf // as set.headers
	mem   arena
	// now is the records' timestamp (CreateTime): the time of the write
	// that makes them, read once. Left zero, franz-go reads the clock for
	// every record, 5% of a Kafka-to-Kafka executor's CPU.
	now time.Time
}

// bytesOf gives an option's value in row i as record bytes (toBytes).
type bytesOf func(i int) ([]byte, error)

func (s *Sink) newMaker(vals *sinkexpr.Values, where func(i int) string) *recordMaker {
	m := &recordMaker{set: s.set, vals: vals, where: where, now: time.Now()}
	if s.set.key >= 0 {
		m.key = m.bytesOf(s.set.key)
	}
	if s.set.value >= 0 {
		m.val = m.bytesOf(s.set.value)
	}
	for _, h := range s.set.headers {
		m.hdrs = append(m.hdrs, m.bytesOf(h.expr))
	}
	return m
}

// bytesOf returns option k's bytesOf: binary and string values read in
// place from their array (the records then point into it: see hand),
// anything else converted by toBytes.
func (m *recordMaker) bytesOf(k int) bytesOf {
	if col := m.vals.Array(k); col != nil {
		var raw func(i int) []byte
		switch a := col.(type) {
		case *array.Binary:
			raw = func(i int) []byte { return view(a.Value(i)) }
		case *array.LargeBinary:
			raw = func(i int) []byte { return view(a.Value(i)) }
		case *array.BinaryView:
			raw = func(i int) []byte { return view(a.Value(i)) }
		case *array.String:
			raw = func(i int) []byte { return viewString(a.Value(i)) }
		case *array.LargeString:
			raw = func(i int) []byte { return viewString(a.Value(i)) }
		case *array.StringView:
			raw = func(i int) []byte { return viewString(a.Value(i)) }
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
	return func(i int) ([]byte, error) {
		v, err := m.vals.Value(k, i)
		if err != nil {
			return nil, err
		}
		return toBytes(v)
	}
}

// records makes the records of rows 0 to n-1, all of them before any goes
// to the client, so that a row that fails produces nothing of its batch.
// They share one slab from slabs, which hand gives back once the client
// has finished with every record of it.
func (m *recordMaker) records(n int) ([]kgo.Record, error) {
	slab := slabs.GetRecords(n)[:n]
	for i := range slab {
		if err := m.record(i, &slab[i]); err != nil {
			slabs.PutRecords(slab)
			return nil, connectors.Permanent(err)
		}
	}
	return slab, nil
}

// record fills rec, a zero Record, with the record of row i.
func (m *recordMaker) record(i int, rec *kgo.Record) error {
	set := m.set
	rec.Topic = set.cfg.Topic
	rec.Timestamp = m.now
	fail := func(field string, err error) error {
		return fmt.Errorf("kafka sink: sink.kafka.%s at %s: %w", field, m.where(i), err)
	}
	if set.topicExpr >= 0 {
		v, err := m.vals.Value(set.topicExpr, i)
		if err != nil {
			return fail("topicExpr", err)
		}
		t, ok := v.(string)
		if !ok {
			return fail("topicExpr", fmt.Errorf("gave %s, want a string", describeValue(v)))
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
	if m.key != nil {
		if rec.Key, err = m.key(i); err != nil {
			return fail("key", err)
		}
	}
	if m.val != nil {
		if rec.Value, err = m.val(i); err != nil {
			return fail("value", err)
		}
	} else if rec.Value, err = m.value(i); err != nil {
		return fail("value", err)
	}
	for k, h := range set.headers {
		v, err := m.hdrs[k](i)
		if err != nil {
			return fail("headers."+h.name, err)
		}
		if v == nil {
			continue
		}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h.name, Value: v})
	}
	if set.partition >= 0 {
		v, err := m.vals.Value(set.partition, i)
		if err != nil {
			return fail("partition", err)
		}
		p, ok := v.(int64)
		if !ok || p < 0 || p > math.MaxInt32 {
			return fail("partition", fmt.Errorf("gave %s, want a partition number", describeValue(v)))
		}
		rec.Partition = int32(p)
	}
	return nil
}

// describeValue names a value in an error: NULL, a number, or a type.
func describeValue(v any) string {
	switch v.(type) {
	case nil:
		return "NULL"
	case int64, float64, bool:
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("a %T", v)
}

// arena hands out copies of byte slices (the default value, encoded per
// row into a reused buffer) from shared chunks: one allocation per chunk
// instead of one per record. A chunk stays alive while any record holding
// a slice of it does.
type arena struct{ buf []byte }

// view is a value of a binary array as a record's bytes: never nil (a
// value that is not null is never nil on the row path either: nil would be
// a Kafka null), and capped so that appending to it cannot write into the
// array's next value.
func view(p []byte) []byte {
	if p == nil {
		return []byte{}
	}
	return p[:len(p):len(p)]
}

// viewString is view of a string array's value, which points into the
// array's data: the record's bytes are the array's, not a copy.
func viewString(s string) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

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

// take returns an empty slice with room for exactly n bytes.
func (a *arena) take(n int) []byte {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, arenaChunk)
	}
	start := len(a.buf)
	a.buf = a.buf[:start+n]
	return a.buf[start : start : start+n]
}
