package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// ReaderPool is the executor half of the Kafka source. It reads exactly the
// ranges the driver planned and keeps one warm partition reader (a franz-go
// client consuming that one partition) per partition between batches, so
// that a partition's next range, which starts where the last one ended,
// continues from the records already fetched.
//
// Executors do only what the driver says: no consumer group, no offset
// commits, and no offset reset. A range whose records are gone (deleted by
// retention or deleteRecords between planning and reading, or a deleted or
// recreated topic) fails with a *connectors.DataLossError when
// failOnDataLoss is true. With failOnDataLoss false it reads what remains of
// the range, from the partition's earliest offset up to the planned until,
// ends at until and logs a warning, as Spark does; LostRanges counts such
// ranges.
type ReaderPool struct {
	set        *settings
	opts       options
	clientOpts []kgo.Opt

	mu sync.Mutex // guards everything below; never held while blocking on a client
	// idle readers by partition. A partition may have several: the splits
	// of a hot partition run side by side.
	idle   map[stream.PartitionID][]*partReader
	live   map[*partReader]struct{} // every open reader, idle or in use
	closed bool
	stats  poolStats

	calls sync.WaitGroup // abandoned admin calls (see await); Close waits

	stop    chan struct{} // closed by Close: the janitor stops
	stopped chan struct{} // closed by the janitor when it returns
}

// poolStats counts reader reuse, for tests and debugging.
type poolStats struct {
	created int // partition readers (clients) created
	reused  int // opens served by a warm reader at the right offset
	evicted int // idle readers closed for the idle timeout or the capacity
	// lost counts ranges that found planned records deleted and, with
	// failOnDataLoss false, skipped them.
	lost int
}

var _ connectors.ReaderPool = (*ReaderPool)(nil)

// NewReaderPool validates cfg and returns a pool. It starts one goroutine
// that closes idle readers (WithIdleTimeout); Close stops it.
func NewReaderPool(cfg Config, opts ...Option) (*ReaderPool, error) {
	set, o, copts, err := prepare(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("new kafka reader pool: %w", err)
	}
	copts = append(copts,
		// Surface out-of-range offsets as errors: resetting would read
		// records the driver did not plan.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		// Transaction markers take an offset each but carry no data; we
		// need to see them to know a range that ends on one is complete.
		kgo.KeepControlRecords(),
	)
	if set.readCommitted() {
		copts = append(copts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	p := &ReaderPool{
		set:        set,
		opts:       o,
		clientOpts: append(copts, o.clientOpts...),
		idle:       map[stream.PartitionID][]*partReader{},
		live:       map[*partReader]struct{}{},
		stop:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	go p.janitor()
	return p, nil
}

// partReader is one partition's franz-go client and what it has fetched but
// not yet handed out. Owned by the pool while idle and by one rangeReader
// while in use.
//
// Invariant: every record of the partition with offset >= next is either in
// buf (in order) or not yet polled from cl; offsets in [next, first offset
// of buf) that are neither do not exist (compacted, or transaction markers
// already seen).
type partReader struct {
	id       stream.PartitionID
	tp       topicPartition
	cl       *kgo.Client
	errs     *brokerErrs
	next     int64
	buf      []*kgo.Record
	lastUsed time.Time
	broken   bool // the client hit an error; never reuse it
	close    sync.Once
}

func (pr *partReader) closeClient() { pr.close.Do(pr.cl.Close) }

// Open returns a reader for exactly r: the records of r.Partition with
// offsets in [r.From, r.Until), in order. It reuses the partition's idle
// reader when that stopped at r.From and otherwise starts a new client at
// r.From. Open does not block on the brokers.
func (p *ReaderPool) Open(ctx context.Context, r stream.Range) (connectors.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", r.Key(), err)
	}
	tp, err := parsePartitionID(r.Partition)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("open %s: %w", r.Key(), err))
	}
	from, err := parsePosition(r.From)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("open %s: from: %w", r.Key(), err))
	}
	if r.Until == nil {
		return nil, connectors.Permanent(fmt.Errorf("open %s: a Kafka range needs an until position", r.Key()))
	}
	until, err := parsePosition(r.Until)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("open %s: until: %w", r.Key(), err))
	}
	if until < from {
		return nil, connectors.Permanent(fmt.Errorf("open %s: until %d is before from %d", r.Key(), until, from))
	}
	if until == from {
		return &emptyReader{end: r.Until}, nil
	}

	var discard []*partReader
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("open %s: reader pool closed", r.Key())
	}
	pr := p.takeIdleLocked(r.Partition, from)
	if pr != nil {
		p.stats.reused++
	} else {
		// Make room first, preferring to drop a reader of this partition
		// (it stopped elsewhere, so it is of no use), then the least
		// recently used.
		if old := p.idle[r.Partition]; len(old) > 0 {
			discard = append(discard, p.removeIdleLocked(r.Partition, 0))
		}
		for len(p.live)-len(discard) >= p.opts.cacheCapacity {
			lru := p.lruLocked()
			if lru == nil {
				break // all in use: exceed the bound rather than wait
			}
			discard = append(discard, p.removeIdleLocked(lru.id, p.indexLocked(lru)))
			p.stats.evicted++
		}
		for _, pr := range discard {
			delete(p.live, pr)
		}
		pr, err = p.newPartReaderLocked(r.Partition, tp, from)
		if err != nil {
			p.mu.Unlock()
			closeAll(discard)
			return nil, fmt.Errorf("open %s: %w", r.Key(), err)
		}
	}
	p.mu.Unlock()
	closeAll(discard)
	return &rangeReader{pool: p, pr: pr, key: r.Key(), until: until}, nil
}

// newPartReaderLocked starts a client consuming tp from offset from and
// counts it live.
func (p *ReaderPool) newPartReaderLocked(id stream.PartitionID, tp topicPartition, from int64) (*partReader, error) {
	errs := &brokerErrs{}
	cl, err := kgo.NewClient(append(p.clientOpts[:len(p.clientOpts):len(p.clientOpts)],
		kgo.WithHooks(errs),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			tp.topic: {tp.partition: kgo.NewOffset().At(from)},
		}))...)
	if err != nil {
		return nil, err
	}
	pr := &partReader{id: id, tp: tp, cl: cl, errs: errs, next: from}
	p.live[pr] = struct{}{}
	p.stats.created++
	return pr, nil
}

// reopen replaces old, in use by a rangeReader, with a new client reading
// from offset from, and closes old.
func (p *ReaderPool) reopen(old *partReader, from int64) (*partReader, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("reader pool closed")
	}
	pr, err := p.newPartReaderLocked(old.id, old.tp, from)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	delete(p.live, old)
	p.mu.Unlock()
	old.closeClient()
	return pr, nil
}

// takeIdleLocked removes and returns the partition's idle reader that
// stopped exactly at from, if any.
func (p *ReaderPool) takeIdleLocked(id stream.PartitionID, from int64) *partReader {
	for i, pr := range p.idle[id] {
		if pr.next == from {
			return p.removeIdleLocked(id, i)
		}
	}
	return nil
}

func (p *ReaderPool) removeIdleLocked(id stream.PartitionID, i int) *partReader {
	list := p.idle[id]
	pr := list[i]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.idle, id)
	} else {
		p.idle[id] = list
	}
	return pr
}

func (p *ReaderPool) indexLocked(pr *partReader) int {
	for i, x := range p.idle[pr.id] {
		if x == pr {
			return i
		}
	}
	return -1
}

func (p *ReaderPool) lruLocked() *partReader {
	var lru *partReader
	for _, list := range p.idle {
		for _, pr := range list {
			if lru == nil || pr.lastUsed.Before(lru.lastUsed) {
				lru = pr
			}
		}
	}
	return lru
}

// release takes a reader back from a rangeReader: idle and warm if healthy,
// closed otherwise.
func (p *ReaderPool) release(pr *partReader) {
	p.mu.Lock()
	if p.closed || pr.broken {
		delete(p.live, pr)
		p.mu.Unlock()
		pr.closeClient()
		return
	}
	pr.lastUsed = p.opts.now()
	p.idle[pr.id] = append(p.idle[pr.id], pr)
	p.mu.Unlock()
}

// evictIdle closes readers idle for longer than the idle timeout.
func (p *ReaderPool) evictIdle() {
	var discard []*partReader
	p.mu.Lock()
	cutoff := p.opts.now().Add(-p.opts.idleTimeout)
	for id, list := range p.idle {
		keep := list[:0]
		for _, pr := range list {
			if pr.lastUsed.Before(cutoff) {
				discard = append(discard, pr)
				delete(p.live, pr)
				p.stats.evicted++
			} else {
				keep = append(keep, pr)
			}
		}
		if len(keep) == 0 {
			delete(p.idle, id)
		} else {
			p.idle[id] = keep
		}
	}
	p.mu.Unlock()
	closeAll(discard)
}

func (p *ReaderPool) janitor() {
	defer close(p.stopped)
	t := time.NewTicker(max(p.opts.idleTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.evictIdle()
		}
	}
}

func closeAll(prs []*partReader) {
	for _, pr := range prs {
		if pr != nil {
			pr.closeClient()
		}
	}
}

// Close stops the janitor and closes every client, including those of
// readers still open: their next Read fails. It waits for the janitor, the
// clients' goroutines and any admin call a Read stopped waiting for.
func (p *ReaderPool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	all := make([]*partReader, 0, len(p.live))
	for pr := range p.live {
		all = append(all, pr)
	}
	p.live = map[*partReader]struct{}{}
	p.idle = map[stream.PartitionID][]*partReader{}
	p.mu.Unlock()
	close(p.stop)
	<-p.stopped
	closeAll(all)
	p.calls.Wait()
	return nil
}

// LostRanges is how many ranges this pool found with planned records deleted
// and, failOnDataLoss being false, read without them.
func (p *ReaderPool) LostRanges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.lost
}

// stats returns a copy of the counters.
func (p *ReaderPool) statsSnapshot() poolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// emptyReader is a range with nothing in it.
type emptyReader struct{ end stream.Position }

func (r *emptyReader) Read(context.Context) ([]stream.Record, error) { return nil, io.EOF }
func (r *emptyReader) End() stream.Position                          { return r.end }
func (r *emptyReader) Close() error                                  { return nil }

// rangeReader reads one range through a partReader it holds until Close.
// Read, End, Metrics and Close must not be called concurrently.
type rangeReader struct {
	pool   *ReaderPool
	pr     *partReader // nil after Close
	key    string
	until  int64
	end    int64 // == pr.next while open; kept after Close for End
	closed bool
	// The last record returned, for Metrics: its offset and timestamp (ms).
	hasLast         bool
	lastOff, lastTs int64
}

var _ connectors.ReaderMetrics = (*rangeReader)(nil)

// Metrics reports the offset and timestamp (ms since the epoch) of the last
// record the range returned (lastRecordOffset, lastRecordTimestampMs), from
// which the source's SummarizeTaskMetrics works out the lag in
// milliseconds. Nothing when the range returned no record (only
// transaction markers or compacted offsets) or the last one has no
// timestamp (message format v0).
func (r *rangeReader) Metrics() map[string]float64 {
	if !r.hasLast || r.lastTs < 0 {
		return nil
	}
	return map[string]float64{
		MetricLastRecordOffset:      float64(r.lastOff),
		MetricLastRecordTimestampMs: float64(r.lastTs),
	}
}

// End is the offset after the last record returned, or further when the
// offsets after it hold no records (transaction markers, compacted away);
// until once the range is done.
func (r *rangeReader) End() stream.Position {
	if r.pr != nil {
		return position(r.pr.next)
	}
	return position(r.end)
}

// Close returns the partition reader to the pool, warm, unless it failed.
func (r *rangeReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.end = r.pr.next
	pr := r.pr
	r.pr = nil
	r.pool.release(pr)
	return nil
}

// Read returns the next records of the range, at most WithMaxRecordsPerRead
// at a time, then io.EOF. It blocks until records arrive or ctx ends.
// Records beyond the range that were fetched stay buffered for the
// partition's next range. Errors: *connectors.DataLossError when the
// records are no longer in Kafka and failOnDataLoss is true (with false the
// lost records are skipped, see ReaderPool); ctx's error when it ended.
func (r *rangeReader) Read(ctx context.Context) ([]stream.Record, error) {
	if r.closed {
		return nil, fmt.Errorf("read %s: reader closed", r.key)
	}
	pr := r.pr
	if pr.next >= r.until {
		return nil, io.EOF
	}
	started := time.Now()
	for {
		out := r.drain()
		pr = r.pr // poll may have replaced it (skipping lost records)
		if len(out) > 0 || pr.next >= r.until {
			if len(out) == 0 {
				return nil, io.EOF
			}
			return out, nil
		}
		if err := r.poll(ctx, started); err != nil {
			pr = r.pr
			// The context ending leaves the client sound and warm; any
			// other failure may not, so the client is then dropped.
			if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
				pr.broken = true
			}
			return nil, fmt.Errorf("read %s at offset %d: %w", r.key, pr.next, err)
		}
	}
}

// drain hands out buffered records below until and advances next.
func (r *rangeReader) drain() []stream.Record {
	pr := r.pr
	limit := r.pool.opts.maxRecords
	var (
		out  []stream.Record
		last *kgo.Record
	)
	i := 0
	for ; i < len(pr.buf) && len(out) < limit; i++ {
		rec := pr.buf[i]
		if rec.Offset < pr.next {
			continue // fetched from the middle of a batch: before our start
		}
		if rec.Offset >= r.until {
			// Nothing exists between next and this record: the range is
			// done, and the record waits for the next range.
			pr.next = r.until
			break
		}
		pr.next = rec.Offset + 1
		if rec.Attrs.IsControl() {
			continue // a transaction marker occupies an offset, holds no data
		}
		out = append(out, r.pool.record(rec))
		last = rec
	}
	if last != nil {
		r.hasLast, r.lastOff, r.lastTs = true, last.Offset, last.Timestamp.UnixMilli()
	}
	pr.buf = pr.buf[i:]
	if len(pr.buf) == 0 {
		pr.buf = nil // let the fetched batches be collected
	}
	return out
}

// poll fetches more records into the buffer. While nothing arrives it
// checks, every stall interval, that the records still exist: a deleted
// topic otherwise looks like a quiet one forever.
func (r *rangeReader) poll(ctx context.Context, started time.Time) error {
	pr := r.pr
	for {
		pctx, cancel := context.WithTimeout(ctx, r.pool.opts.stallCheck)
		fetches := pr.cl.PollRecords(pctx, r.pool.opts.maxRecords)
		cancel()
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = err
			}
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Topic == pr.tp.topic && rec.Partition == pr.tp.partition {
				pr.buf = append(pr.buf, rec)
			}
		})
		switch {
		case ferr == nil:
			return nil
		case errors.Is(ferr, kerr.OffsetOutOfRange):
			// Below the log start: retention or deleteRecords removed the
			// records. Above the end: the topic was recreated or its log
			// truncated. Either way the planned records are gone.
			return r.lost(ctx, "offset out of range: the records were deleted (retention, deleteRecords) or the topic was recreated", true)
		case ctx.Err() != nil:
			return hint(pr.errs.explain(ctx, ctx.Err(), started), r.pool.set.brokers)
		case errors.Is(ferr, context.DeadlineExceeded) || errors.Is(ferr, context.Canceled):
			if len(pr.buf) > 0 {
				return nil
			}
			if err := r.checkStalled(ctx); err != nil {
				return err
			}
		default:
			return hint(ferr, r.pool.set.brokers)
		}
	}
}

// checkStalled runs when no record arrived for a while: it returns a
// DataLossError if the topic is gone or its log no longer holds the range,
// and nil if waiting longer is right.
func (r *rangeReader) checkStalled(ctx context.Context) error {
	pr := r.pr
	adm := kadm.NewClient(pr.cl)
	ends, err := await(ctx, &r.pool.calls, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, pr.tp.topic) })
	if err != nil {
		return nil // cannot tell; keep waiting, the client retries too
	}
	if o, ok := ends.Lookup(pr.tp.topic, pr.tp.partition); ok && o.Err == nil {
		if o.Offset < r.until {
			return r.lost(ctx, fmt.Sprintf("the partition's latest offset %d is below the planned end %d: was the topic recreated or the log truncated?", o.Offset, r.until), false)
		}
		return nil
	}
	if o, ok := ends.Lookup(pr.tp.topic, -1); ok && errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
		return r.lost(ctx, fmt.Sprintf("topic %q no longer exists", pr.tp.topic), false)
	}
	return nil
}

// lost handles planned records that are gone. With failOnDataLoss it
// returns the DataLossError, asking for the partition's earliest offset on a
// best-effort basis. Without, as Spark's failOnDataLoss false, it logs a
// warning and skips the lost records: it moves the reader to the earliest
// offset when that lies inside the range and records remain there
// (remaining), and otherwise to the range's end. It returns nil when the
// read can go on, or an error worth retrying when the earliest offset
// cannot be learnt.
func (r *rangeReader) lost(ctx context.Context, reason string, remaining bool) error {
	pr := r.pr
	earliest, known := int64(-1), false
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	adm := kadm.NewClient(pr.cl)
	starts, err := await(lctx, &r.pool.calls, func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(lctx, pr.tp.topic) })
	if err == nil {
		if o, ok := starts.Lookup(pr.tp.topic, pr.tp.partition); ok && o.Err == nil {
			earliest, known = o.Offset, true
		}
	}
	earliestText := "unknown"
	if known {
		earliestText = strconv.FormatInt(earliest, 10)
	}
	if r.pool.set.failOnDataLoss {
		return dataLoss(pr.tp, strconv.FormatInt(pr.next, 10), earliestText, reason)
	}
	if remaining && !known {
		if err == nil {
			err = errors.New("no earliest offset in the answer")
		}
		return fmt.Errorf("records lost (%s); listing the earliest offset to skip to: %w", reason, err)
	}
	requested := pr.next
	skipTo := r.until
	if remaining && earliest > pr.next && earliest < r.until {
		skipTo = earliest
	}
	r.pool.mu.Lock()
	r.pool.stats.lost++
	r.pool.mu.Unlock()
	r.pool.opts.logger.Warn("kafka reader: records lost, skipping ahead (failOnDataLoss is false)",
		"range", r.key, "partition", string(pr.tp.id()), "requested", requested,
		"earliest", earliestText, "skippedTo", skipTo, "until", r.until, "reason", reason)
	if skipTo == r.until {
		// Nothing of the range is left. The client stopped on the error:
		// do not reuse it.
		pr.broken = true
		pr.buf = nil
		pr.next = r.until
		return nil
	}
	npr, err := r.pool.reopen(pr, skipTo)
	if err != nil {
		pr.broken = true
		return fmt.Errorf("records lost (%s); reopening at the earliest offset %d: %w", reason, skipTo, err)
	}
	r.pr = npr
	return nil
}

// record converts a franz-go record to the columns Spark users know.
func (p *ReaderPool) record(rec *kgo.Record) stream.Record {
	row := stream.Row{
		"key":           nil,
		"value":         nil,
		"topic":         rec.Topic,
		"partition":     int64(rec.Partition),
		"offset":        rec.Offset,
		"timestamp":     stream.Timestamp(rec.Timestamp.UnixMilli()),
		"timestampType": int64(rec.Attrs.TimestampType()),
	}
	// A nil slice must be a nil interface: a tombstone's value is null, not
	// an empty byte string.
	if rec.Key != nil {
		row["key"] = rec.Key
	}
	if rec.Value != nil {
		row["value"] = rec.Value
	}
	if p.set.includeHeaders {
		var hs []any // null when there are none, as in Spark
		for _, h := range rec.Headers {
			var v any
			if h.Value != nil {
				v = h.Value
			}
			hs = append(hs, map[string]any{"key": h.Key, "value": v})
		}
		if hs != nil {
			row["headers"] = hs
		} else {
			row["headers"] = nil
		}
	}
	return stream.Record{Fields: row, Size: len(rec.Key) + len(rec.Value)}
}
