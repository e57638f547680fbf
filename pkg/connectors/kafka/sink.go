package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Sink produces task outputs to Kafka with franz-go. It is safe for
// concurrent use.
//
// Without Transactional it produces with one shared idempotent client
// (acks=all, so the brokers drop the client's own retried duplicates); a
// writer's Commit waits until every record it produced is acknowledged.
// Rows of a failed attempt that were already sent stay in the topic and the
// retry sends them again: at least once.
//
// With Transactional each writer is one Kafka transaction with the
// transactional id sluice/<job>/<sink name>/<part>, so that a new attempt of
// the same task fences the one before it: the coordinator aborts the older
// attempt's open transaction when the new one initialises its producer id,
// and rejects anything the old one sends afterwards. Next to the records the
// transaction writes a commit marker, keyed <job>/<sink name>/<part> and
// holding the batch, to a compacted commits topic (sluice.commits.topic,
// created when absent). A new attempt, once it has fenced its
// predecessors, reads the key's last marker with read_committed; when the
// marker holds this batch or a later one the output is already committed
// and the attempt writes nothing. The transaction commits at Writer.Commit,
// before the driver's commit log: a Kafka transaction can only be committed
// by the producer that opened it, so "commit at batch commit" is realised per
// task, and the marker makes the replay of a batch that was committed to
// Kafka but not to the commit log (a crash in between) write nothing.
// read_committed consumers therefore see every record exactly once, provided
// the batch's content per part is the same on replay (recorded plans) and
// the commits topic keeps its markers and partition count.
type Sink struct {
	set  *sinkSettings
	log  *slog.Logger
	mem  memory.Allocator // the row path's batches and expression values
	base []kgo.Opt        // every client's options

	mu     sync.Mutex // guards the fields below
	shared *kgo.Client
	meta   *commitsMeta // the commits topic, once known
	closed bool
}

var _ connectors.Sink = (*Sink)(nil)

// SinkOption tunes NewSink.
type SinkOption interface{ applySink(*sinkOptions) }

type sinkOptions struct {
	logger *slog.Logger
	mem    memory.Allocator
}

type sinkOptionFunc func(*sinkOptions)

func (f sinkOptionFunc) applySink(o *sinkOptions) { f(o) }

// WithSinkLogger sets where the sink logs skipped replays. Default
// slog.Default().
func WithSinkLogger(l *slog.Logger) SinkOption {
	return sinkOptionFunc(func(o *sinkOptions) { o.logger = l })
}

// WithSinkAllocator sets where the sink allocates the Arrow memory of its
// expressions' values (and of the batches it makes of rows to evaluate
// them). Default memory.DefaultAllocator.
func WithSinkAllocator(mem memory.Allocator) SinkOption {
	return sinkOptionFunc(func(o *sinkOptions) { o.mem = mem })
}

// NewSink validates cfg and returns a sink. It reads the TLS files the
// properties name but does not connect: clients are created by OpenWriter.
func NewSink(cfg SinkConfig, opts ...SinkOption) (*Sink, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	o := sinkOptions{logger: slog.Default(), mem: memory.DefaultAllocator}
	for _, opt := range opts {
		opt.applySink(&o)
	}
	if o.logger == nil {
		return nil, errors.New("kafka sink: WithSinkLogger: logger must not be nil")
	}
	if o.mem == nil {
		return nil, errors.New("kafka sink: WithSinkAllocator: allocator must not be nil")
	}
	if cfg.Schema == nil && set.exprs.NeedsSQL() {
		// Rows are converted to a batch of the schema to evaluate them.
		return nil, sinkErr("schema", "is required when an option is an expression, not a column name")
	}
	base, err := set.client.clientOpts()
	if err != nil {
		return nil, asSinkErr(err)
	}
	base = append(base,
		kgo.RecordPartitioner(sinkPartitioner{manual: set.partition >= 0, commits: set.commitsTopic, keyed: kgo.StickyKeyPartitioner(nil)}),
		kgo.ProducerLinger(set.linger),
	)
	if set.compression != nil {
		base = append(base, kgo.ProducerBatchCompression(set.compression...))
	}
	return &Sink{set: set, log: o.logger, mem: o.mem, base: base}, nil
}

// sinkPartitioner sends commit markers, and every record when a partition
// expression is set, to the record's own Partition; other records go by
// key as Kafka's Java client would.
type sinkPartitioner struct {
	manual  bool
	commits string
	keyed   kgo.Partitioner
}

func (p sinkPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if p.manual || topic == p.commits {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return p.keyed.ForTopic(topic)
}

// Close closes the shared client, failing records still buffered in it.
// Transactional writers own their clients; finish them (Commit or Abort)
// before closing the sink.
func (s *Sink) Close() error {
	s.mu.Lock()
	cl := s.shared
	s.shared, s.closed = nil, true
	s.mu.Unlock()
	if cl != nil {
		cl.Close()
	}
	return nil
}

// OpenWriter returns a writer for key. A transactional writer connects,
// fences earlier attempts of the same key and reads the key's commit
// marker here, so it may block on the brokers until ctx ends.
func (s *Sink) OpenWriter(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if key.Job == "" {
		return nil, errors.New("kafka sink: empty job")
	}
	if s.set.cfg.Transactional {
		return s.openTxn(ctx, key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("kafka sink: closed")
	}
	if s.shared == nil {
		cl, err := kgo.NewClient(s.base...)
		if err != nil {
			return nil, fmt.Errorf("kafka sink: %w", err)
		}
		s.shared = cl
	}
	return &prodWriter{s: s, cl: s.shared, key: key}, nil
}

// produced tracks one writer's records in flight: how many were produced,
// how many are not yet acknowledged or failed, and the first failure.
type produced struct {
	n int64 // records produced; only the writer's goroutine touches it

	mu      sync.Mutex // guards the fields below, which promises update
	pending int
	idle    chan struct{} // closed when pending drops to 0; nil while nobody waits
	err     error
}

// add counts n records about to be handed to the client with p.promise.
func (p *produced) add(n int) {
	p.mu.Lock()
	p.pending += n
	p.mu.Unlock()
}

func (p *produced) promise(_ *kgo.Record, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.err == nil {
		p.err = err
	}
	if p.pending--; p.pending == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

func (p *produced) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// wait blocks until every record is acknowledged or failed, or ctx ends.
// Records left in flight when ctx ends are still delivered, or failed when
// the client closes; nothing waits for them any more.
func (p *produced) wait(ctx context.Context) error {
	p.mu.Lock()
	if p.pending == 0 {
		err := p.err
		p.mu.Unlock()
		return err
	}
	if p.idle == nil {
		p.idle = make(chan struct{})
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return p.firstErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// produce builds the rows' records and hands them to cl (hand). The
// expressions are evaluated over all the rows at once
// (sinkexpr.Set.EvalRows), as produceArrow evaluates them over a batch, so
// both give the same records.
func (s *Sink) produce(ctx context.Context, cl *kgo.Client, p *produced, columns []string, rows []stream.Row) error {
	vals, err := s.set.exprs.EvalRows(ctx, s.mem, rows)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("kafka sink: %w", err))
	}
	m := s.newMaker(vals, func(i int) string { return describeRow(rows[i]) })
	m.value = func(i int) ([]byte, error) { return rowjson.Append(nil, rows[i], columns) }
	slab, err := m.records(len(rows))
	if err != nil {
		vals.Release()
		return err
	}
	hand(ctx, cl, p, slab, vals.Release)
	return nil
}

// describeRow points at a record for an error message without dumping its
// payload, which may hold personal data.
func describeRow(row stream.Row) string {
	return describe(row["offset"], row["sequenceNumber"])
}

func describe(offset, sequenceNumber any) string {
	if offset != nil {
		return fmt.Sprintf("the row of offset %v", offset)
	}
	if sequenceNumber != nil {
		return fmt.Sprintf("the row of sequence number %v", sequenceNumber)
	}
	return "a row"
}

// prodWriter is a non-transactional writer on the shared client.
type prodWriter struct {
	s    *Sink
	cl   *kgo.Client
	key  connectors.WriteKey
	recs produced
	done bool
}

func (w *prodWriter) Write(ctx context.Context, rows []stream.Row) error {
	if w.done {
		return errors.New("kafka sink: write after commit or abort")
	}
	if err := w.recs.firstErr(); err != nil {
		return w.s.wrap("produce", err)
	}
	return w.s.produce(ctx, w.cl, &w.recs, w.key.Columns, rows)
}

// Commit waits until every record is acknowledged by all in-sync replicas.
func (w *prodWriter) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("kafka sink: commit after commit or abort")
	}
	w.done = true
	if err := w.recs.wait(ctx); err != nil {
		return w.s.wrap("produce", err)
	}
	return nil
}

// Abort stops waiting; records already handed to the client are still
// delivered (at least once).
func (w *prodWriter) Abort() error {
	w.done = true
	return nil
}

// endTimeout bounds ending a transaction, which must not be cut short by
// the task's context: an EndTxn cancelled in flight leaves its outcome
// unknown.
const endTimeout = 30 * time.Second
