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

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// ReaderPool is the executor half of the Kafka source. It reads exactly the
// ranges the driver planned, through one franz-go client for all the
// partitions it reads (a fetcher; fetcher.go explains the design), and keeps
// each partition it read warm between batches: consumed, at the offset where
// its last range ended, with the records fetched since buffered within a
// pool-wide budget (WithMaxPrefetchBytes). A partition's next range, which
// starts where the last one ended, takes what is already there; a range
// that starts elsewhere (a retry, a replay) moves the partition. Two ranges
// of one partition open at once (the splits of a hot partition) read
// through a second client.
//
// Executors do only what the driver says: no consumer group, no offset
// commits, and no offset reset. A range whose records are gone (deleted by
// retention or deleteRecords between planning and reading, or a deleted or
// recreated topic) fails with a *connectors.DataLossError when
// failOnDataLoss is true. With failOnDataLoss false it reads what remains of
// the range, from the partition's earliest offset up to the planned until,
// ends at until and logs a warning, as Spark does; LostRanges counts such
// ranges.
//
// Goroutines: one per client (fetcher.run), one that closes idle partitions
// (janitor), and the admin calls a Read stopped waiting for; Close joins
// them all.
type ReaderPool struct {
	set        *settings
	opts       options
	clientOpts []kgo.Opt

	// mu guards everything below and every fetcher's and slot's state.
	// It is never held while calling a client: run calls its client
	// outside it, and so do the readers' admin requests.
	mu sync.Mutex
	// fetchers by lane; nil where no client runs. A partition goes to
	// the lowest lane that does not read it already, so lane 0 serves
	// most, and lane n exists while n+1 ranges of a partition run at once.
	fetchers []*fetcher
	live     map[*slot]struct{} // every slot of every lane, idle or in use
	buffered int64              // recordSize of every slot's buffer
	// budget bounds buffered: prefetch's, fixed when WithMaxPrefetchBytes
	// was given, otherwise following len(live) (liveChangedLocked).
	budget int64
	// sizes are the fetch sizes every client asks for: following the
	// budget and len(live) (sizeFetches), unless fixed.
	sizes fetchSizes
	// sizedRatio is the wire ratio sizes were computed for (ratio);
	// fetchedRecords and fetchedCounted (recordSize) count the records
	// fetched, and wire what they took on the wire, for the ratio.
	sizedRatio                     int64
	fetchedRecords, fetchedCounted int64
	wire                           wireMeter
	prefetch                       poolOptions
	closed                         bool
	stats                          poolStats

	calls    sync.WaitGroup // abandoned admin calls (see await); Close waits
	retiring sync.WaitGroup // fetchers closing in the background; Close waits

	stop    chan struct{} // closed by Close: the janitor stops
	stopped chan struct{} // closed by the janitor when it returns
}

// poolStats counts reader reuse, for tests and debugging.
type poolStats struct {
	// created counts partition readers started: a partition added to a
	// client, or moved to an offset other than where it stopped.
	created int
	reused  int // opens served by a warm partition at the right offset
	evicted int // idle partitions dropped for the idle timeout or the capacity
	// lost counts ranges that found planned records deleted and, with
	// failOnDataLoss false, skipped them.
	lost    int
	clients int // franz-go clients created (lanes started)
	// shed counts idle buffers dropped for a reader starved by the
	// budget; trimmed, idle buffers cut to their share for one.
	shed, trimmed int
	// kicks counts restarts of a client's stranded fetching (fetcher.kick).
	kicks int
	// peakBuffered is the most the pool held fetched and unread;
	// largestPoll the most one poll added.
	peakBuffered, largestPoll int64
}

var _ connectors.ReaderPool = (*ReaderPool)(nil)

// NewReaderPool validates cfg and returns a pool. It starts one goroutine
// that closes idle partition readers (WithIdleTimeout); Close stops it. The
// pool starts a client with the first Open.
func NewReaderPool(cfg Config, opts ...Option) (*ReaderPool, error) {
	set, o, copts, err := prepare(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("new kafka reader pool: %w", err)
	}
	po, err := buildPoolOptions(opts)
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
	copts = append(copts, fetchOpts()...)
	p := &ReaderPool{
		set:        set,
		opts:       o,
		budget:     po.maxPrefetchBytes,
		sizes:      sizeFetches(po.maxPrefetchBytes, 0, 0, 0),
		prefetch:   po,
		clientOpts: copts,
		live:       map[*slot]struct{}{},
		stop:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	if po.fixedSizes != nil {
		p.sizes = *po.fixedSizes
	}
	go p.janitor()
	return p, nil
}

// Open returns a reader for exactly r: the records of r.Partition with
// offsets in [r.From, r.Until), in order. It takes the partition's warm
// slot when that stopped at r.From, moves an idle slot of the partition
// that stopped elsewhere, and otherwise adds the partition to a client.
// Open does not block on the brokers.
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

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("open %s: reader pool closed", r.Key())
	}
	s, err := p.slotLocked(r.Partition, tp, from)
	if err != nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("open %s: %w", r.Key(), err)
	}
	s.inUse = true
	// The range was planned from the partition's end: a slot fetched up to
	// an older end is fetched again.
	s.end = max(s.end, until)
	s.f.markLocked(tp)
	if s.f.paused[tp] && p.wantFetchLocked(s, true) {
		s.f.wakeLocked() // paused as an idle slot; a range being read may fetch more
	}
	retire := p.takeEmptyLocked()
	p.mu.Unlock()
	p.retire(retire)
	return &rangeReader{pool: p, s: s, key: r.Key(), until: until, end: from}, nil
}

// slotLocked finds or makes the slot that reads tp from offset from.
func (p *ReaderPool) slotLocked(id stream.PartitionID, tp topicPartition, from int64) (*slot, error) {
	var idle *slot
	for _, f := range p.fetchers {
		if f == nil {
			continue
		}
		s := f.slots[tp]
		if s == nil || s.inUse {
			continue
		}
		if s.next == from {
			p.stats.reused++
			return s, nil
		}
		if idle == nil {
			idle = s
		}
	}
	p.stats.created++
	if idle != nil {
		// It stopped elsewhere, so what it holds is of no use: move it
		// rather than add the partition to another lane.
		idle.f.seekLocked(idle, from)
		return idle, nil
	}
	for len(p.live) >= p.opts.cacheCapacity {
		lru := p.lruLocked()
		if lru == nil {
			break // all in use: exceed the bound rather than wait
		}
		// Its buffer goes; its lane keeps the partition paused until
		// the idle timeout (fetcher.parked).
		lru.f.parked[lru.tp] = lru.lastUsed
		p.removeSlotLocked(lru)
		p.stats.evicted++
	}
	f, err := p.laneLocked(tp)
	if err != nil {
		return nil, err
	}
	return f.addSlotLocked(id, tp, from), nil
}

// laneLocked returns the lane to add tp to: one that parked it, or else the
// lowest one without a slot for it. When every lane has one, it starts a
// lane, with the lowest free number, so that lanes stay few.
func (p *ReaderPool) laneLocked(tp topicPartition) (*fetcher, error) {
	for _, f := range p.fetchers {
		if f != nil {
			if _, ok := f.parked[tp]; ok {
				return f, nil
			}
		}
	}
	free := len(p.fetchers)
	for i, f := range p.fetchers {
		if f == nil {
			free = min(free, i)
			continue
		}
		if f.slots[tp] == nil {
			return f, nil
		}
	}
	f, err := p.newFetcherLocked()
	if err != nil {
		return nil, err
	}
	if free == len(p.fetchers) {
		p.fetchers = append(p.fetchers, f)
	} else {
		p.fetchers[free] = f
	}
	return f, nil
}

func (p *ReaderPool) lruLocked() *slot {
	var lru *slot
	for s := range p.live {
		if !s.inUse && (lru == nil || s.lastUsed.Before(lru.lastUsed)) {
			lru = s
		}
	}
	return lru
}

// removeSlotLocked drops s: its lane stops consuming the partition before
// its next poll.
func (p *ReaderPool) removeSlotLocked(s *slot) {
	f := s.f
	p.dropBufferLocked(s)
	f.setAddingLocked(s, false)
	if f.slots[s.tp] == s {
		delete(f.slots, s.tp)
	}
	delete(p.live, s)
	p.liveChangedLocked()
	if _, parked := f.parked[s.tp]; !parked && f.added[s.tp] {
		f.gone[s.tp] = true
	}
	f.markLocked(s.tp)
	f.wakeLocked()
}

// takeEmptyLocked takes the lanes left without a slot or a parked partition
// out of the pool, for retire.
func (p *ReaderPool) takeEmptyLocked() []*fetcher {
	var empty []*fetcher
	for i, f := range p.fetchers {
		if f != nil && len(f.slots) == 0 && len(f.parked) == 0 {
			empty = append(empty, f)
			p.fetchers[i] = nil
		}
	}
	for len(p.fetchers) > 0 && p.fetchers[len(p.fetchers)-1] == nil {
		p.fetchers = p.fetchers[:len(p.fetchers)-1]
	}
	return empty
}

// retire closes fetchers in the background: closing a client waits for its
// connections, which a task's Open or Close should not. Close waits for
// them.
func (p *ReaderPool) retire(fs []*fetcher) {
	for _, f := range fs {
		p.retiring.Add(1)
		go func() {
			defer p.retiring.Done()
			f.close()
		}()
	}
}

// release takes a slot back from a rangeReader: idle and warm if its reader
// did not fail, dropped otherwise.
func (p *ReaderPool) release(s *slot) {
	p.mu.Lock()
	s.inUse, s.waiting = false, false
	s.f.setAddingLocked(s, false)
	s.f.markLocked(s.tp)
	if p.closed {
		p.mu.Unlock()
		return
	}
	var retire []*fetcher
	if s.broken {
		// The client may have a stale idea of the topic (deleted,
		// recreated): purge it from the lane, the other slots of the
		// topic keep their buffers and positions.
		s.f.purge[s.tp.topic] = true
		p.removeSlotLocked(s)
		retire = p.takeEmptyLocked()
	} else {
		s.lastUsed = p.opts.now()
		// What it fetched past its range is idle prefetch now, and may
		// hold the budget another reader waits for.
		p.makeRoomLocked()
	}
	p.mu.Unlock()
	p.retire(retire)
}

// evictIdle drops partitions not read for longer than the idle timeout: their
// lanes stop consuming them, and a lane left without any closes.
func (p *ReaderPool) evictIdle() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	cutoff := p.opts.now().Add(-p.opts.idleTimeout)
	for s := range p.live {
		if !s.inUse && s.lastUsed.Before(cutoff) {
			p.removeSlotLocked(s)
			p.stats.evicted++
		}
	}
	for _, f := range p.fetchers {
		if f == nil {
			continue
		}
		for tp, used := range f.parked {
			if used.Before(cutoff) {
				delete(f.parked, tp)
				if f.added[tp] {
					f.gone[tp] = true
				}
				f.markLocked(tp)
				f.wakeLocked()
			}
		}
	}
	retire := p.takeEmptyLocked()
	p.mu.Unlock()
	p.retire(retire)
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

// Close closes the pool, including readers still open: their next Read
// fails, and a Read blocked waiting for records returns. It waits, in
// order, for:
//
//  1. the janitor;
//  2. every client and its fetcher goroutine, and the clients of lanes
//     that closed earlier;
//  3. any admin call a Read stopped waiting for.
func (p *ReaderPool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var fs []*fetcher
	for _, f := range p.fetchers {
		if f != nil {
			fs = append(fs, f)
		}
	}
	p.fetchers = nil
	for s := range p.live {
		s.signal()
	}
	p.live = map[*slot]struct{}{}
	p.mu.Unlock()
	close(p.stop)
	<-p.stopped
	p.retire(fs)
	p.retiring.Wait()
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

func (r *emptyReader) ReadKafkaArrow(context.Context, *columnar.KafkaBuilder) (int, int64, error) {
	return 0, 0, io.EOF
}

func (r *emptyReader) Remaining() int64 { return 0 }

var (
	_ connectors.KafkaArrowReader = (*emptyReader)(nil)
	_ connectors.KafkaArrowReader = (*rangeReader)(nil)
	_ connectors.RangeSizer       = (*emptyReader)(nil)
	_ connectors.RangeSizer       = (*rangeReader)(nil)
)

// Remaining is how many offsets of the range are left to read
// (connectors.RangeSizer).
func (r *rangeReader) Remaining() int64 { return max(0, r.until-r.end) }

// errPoolClosed is what a reader returns once its pool closed.
var errPoolClosed = errors.New("reader pool closed")

// rangeReader reads one range from a slot it holds until Close. Read, End,
// Metrics and Close must not be called concurrently.
type rangeReader struct {
	pool   *ReaderPool
	s      *slot
	key    string
	until  int64
	end    int64 // s.next as of the last Read: End reads it without the lock
	closed bool
	// The last record returned, for Metrics: its offset and timestamp (ms).
	hasLast         bool
	lastOff, lastTs int64
	// headers is ReadKafkaArrow's scratch for one record's headers.
	headers []columnar.KafkaHeader
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
func (r *rangeReader) End() stream.Position { return position(r.end) }

// Close returns the slot to the pool, warm, unless the reader failed.
func (r *rangeReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.pool.release(r.s)
	return nil
}

// Read returns the next records of the range, at most WithMaxRecordsPerRead
// at a time, then io.EOF. It blocks until records arrive or ctx ends.
// Records beyond the range that were fetched stay buffered for the
// partition's next range. Errors: *connectors.DataLossError when the
// records are no longer in Kafka and failOnDataLoss is true (with false the
// lost records are skipped, see ReaderPool); ctx's error when it ended; an
// error when the pool closed.
func (r *rangeReader) Read(ctx context.Context) ([]stream.Record, error) {
	recs, err := r.next(ctx)
	if len(recs) == 0 {
		return nil, err
	}
	out := make([]stream.Record, len(recs))
	for i, rec := range recs {
		out[i] = r.pool.record(rec)
	}
	clear(recs) // let the fetched batches be collected
	return out, nil
}

// ReadKafkaArrow is Read appending to b (connectors.KafkaArrowReader): the
// same records, positions, blocking and errors, with the columns that Read's
// rows hold (headers only with includeHeaders), and bytes the sum of their
// Size.
func (r *rangeReader) ReadKafkaArrow(ctx context.Context, b *columnar.KafkaBuilder) (int, int64, error) {
	recs, err := r.next(ctx)
	if b.Len() == 0 && len(recs) > 0 {
		r.expect(b, recs)
	}
	var bytes int64
	for _, rec := range recs {
		var hs []columnar.KafkaHeader
		if r.pool.set.includeHeaders && b.Headers() && len(rec.Headers) > 0 {
			hs = r.headers[:0]
			for _, h := range rec.Headers {
				hs = append(hs, columnar.KafkaHeader(h))
			}
			r.headers = hs
		}
		b.Append(rec.Topic, rec.Partition, rec.Offset, rec.Key, rec.Value,
			rec.Timestamp.UnixMilli(), int32(rec.Attrs.TimestampType()), hs)
		bytes += int64(recordBytes(rec))
		// b copied it: its batch's slices may be lent again (slabs).
		rec.Recycle()
	}
	clear(r.headers[:cap(r.headers)]) // let the records' header values be collected
	clear(recs)                       // and the fetched batches
	return len(recs), bytes, err
}

// expect tells b, about to start a batch with recs, how big the batch will
// be: the rest of the range (offsets, an upper bound: some may be
// transaction markers), at the sizes of recs plus an eighth, so that an
// estimate a little short does not double a buffer for the last records.
func (r *rangeReader) expect(b *columnar.KafkaBuilder, recs []*kgo.Record) {
	var key, value int
	for _, rec := range recs {
		key += len(rec.Key)
		value += len(rec.Value)
	}
	rows := r.until - recs[0].Offset
	per := func(total, n int) int { return int(float64(total) / float64(n) * 1.125 * float64(rows)) }
	b.Expect(int(rows), per(key, len(recs)), per(value, len(recs)), per(len(recs[0].Topic)*len(recs), len(recs)))
}

// next is Read and ReadKafkaArrow without the conversion: the next records
// of the range, or nothing and an error (io.EOF at the end). It remembers
// the last record for Metrics. The records are valid until the next call
// (they are the slot's scratch); the caller clears them once converted.
func (r *rangeReader) next(ctx context.Context) ([]*kgo.Record, error) {
	if r.closed {
		return nil, fmt.Errorf("read %s: reader closed", r.key)
	}
	if r.end >= r.until {
		return nil, io.EOF
	}
	started := time.Now()
	var stall *time.Timer
	defer func() {
		if stall != nil {
			stall.Stop()
		}
	}()
	for {
		recs, done, ferr := r.take(r.s.scratch[:0])
		r.s.scratch = recs[:0]
		switch {
		case len(recs) > 0:
			last := recs[len(recs)-1]
			r.hasLast, r.lastOff, r.lastTs = true, last.Offset, last.Timestamp.UnixMilli()
			return recs, nil
		case done:
			return nil, io.EOF
		case errors.Is(ferr, errPoolClosed):
			return nil, fmt.Errorf("read %s at offset %d: %w", r.key, r.end, ferr)
		case ferr != nil:
			if err := r.fetchFailed(ctx, ferr); err != nil {
				return nil, r.fail(ctx, err)
			}
			continue // lost records skipped
		}
		if stall == nil {
			stall = time.NewTimer(r.pool.opts.stallCheck)
		}
		select {
		case <-r.s.wake:
		case <-ctx.Done():
			r.pool.stopWaiting(r.s)
			return nil, r.fail(ctx, hint(r.s.f.errs.explain(ctx, ctx.Err(), started), r.pool.set.brokers))
		case <-stall.C:
			// Nothing arrived for a while: a deleted topic otherwise
			// looks like a quiet one forever.
			if err := r.checkStalled(ctx); err != nil {
				return nil, r.fail(ctx, err)
			}
			stall.Reset(r.pool.opts.stallCheck)
		}
	}
}

// stopWaiting notes that s's reader no longer waits in Read.
func (p *ReaderPool) stopWaiting(s *slot) {
	p.mu.Lock()
	s.waiting = false
	p.mu.Unlock()
}

// fail wraps a Read error and marks the slot broken unless the error is
// only ctx ending, which leaves the partition sound and warm.
func (r *rangeReader) fail(ctx context.Context, err error) error {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		r.pool.mu.Lock()
		r.s.broken = true
		r.pool.mu.Unlock()
	}
	return fmt.Errorf("read %s at offset %d: %w", r.key, r.end, err)
}

// take appends to recs the slot's buffered records below until, at most
// WithMaxRecordsPerRead, and advances next past them (and past transaction
// markers). done: the range is complete. With nothing to hand out it
// returns the fetch error the slot stopped at, if any, and otherwise makes
// sure the slot's lane fetches for it: the reader then waits on the slot.
func (r *rangeReader) take(recs []*kgo.Record) (_ []*kgo.Record, done bool, err error) {
	p, s := r.pool, r.s
	limit := p.opts.maxRecords
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return recs, false, errPoolClosed
	}
	var freed int64
	i := 0
	for ; i < len(s.buf) && len(recs) < limit; i++ {
		rec := s.buf[i]
		if rec.Offset >= r.until {
			// Nothing exists between next and this record: the range is
			// done, and the record waits for the next range.
			s.next = r.until
			break
		}
		freed += recordSize(rec)
		if rec.Offset < s.next {
			continue // fetched from the middle of a batch: before our start
		}
		s.next = rec.Offset + 1
		if rec.Attrs.IsControl() {
			continue // a transaction marker occupies an offset, holds no data
		}
		recs = append(recs, rec)
	}
	clear(s.buf[:i])
	s.buf = s.buf[i:]
	if len(s.buf) == 0 {
		s.buf = nil // let the fetched batches be collected
	}
	s.bytes -= freed
	p.freedLocked(freed)
	r.end = s.next
	done = s.next >= r.until
	if len(recs) > 0 || done || s.err != nil {
		s.waiting = false
		if s.f.paused[s.tp] && p.wantFetchLocked(s, true) {
			s.f.markLocked(s.tp)
			s.f.wakeLocked()
		}
		if len(recs) > 0 || done {
			return recs, done, nil
		}
		return recs, false, s.err
	}
	// Waiting on an empty buffer: make room if idle prefetch holds the
	// budget, and have the lane fetch the partition if it paused it.
	s.waiting = true
	p.shedLocked(s)
	if s.f.paused[s.tp] && p.wantFetchLocked(s, true) {
		s.f.markLocked(s.tp)
		s.f.wakeLocked()
	}
	return recs, false, nil
}

// fetchFailed handles the fetch error the slot stopped at, reached with
// nothing left to read before it. It returns nil when the read can go on
// (lost records skipped).
func (r *rangeReader) fetchFailed(ctx context.Context, ferr error) error {
	if errors.Is(ferr, kerr.OffsetOutOfRange) {
		// Below the log start: retention or deleteRecords removed the
		// records. Above the end: the topic was recreated or its log
		// truncated. Either way the planned records are gone.
		return r.lost(ctx, "offset out of range: the records were deleted (retention, deleteRecords) or the topic was recreated", true)
	}
	return hint(ferr, r.pool.set.brokers)
}

// checkStalled runs when no record arrived for a while: it returns a
// DataLossError if the topic is gone or its log no longer holds the range,
// and nil if waiting longer is right.
func (r *rangeReader) checkStalled(ctx context.Context) error {
	tp := r.s.tp
	adm := kadm.NewClient(r.s.f.cl)
	ends, err := await(ctx, &r.pool.calls, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, tp.topic) })
	if err != nil {
		return nil // cannot tell; keep waiting, the client retries too
	}
	if o, ok := ends.Lookup(tp.topic, tp.partition); ok && o.Err == nil {
		if o.Offset < r.until {
			return r.lost(ctx, fmt.Sprintf("the partition's latest offset %d is below the planned end %d: was the topic recreated or the log truncated?", o.Offset, r.until), false)
		}
		return nil
	}
	if o, ok := ends.Lookup(tp.topic, -1); ok && errors.Is(o.Err, kerr.UnknownTopicOrPartition) {
		return r.lost(ctx, fmt.Sprintf("topic %q no longer exists", tp.topic), false)
	}
	return nil
}

// lost handles planned records that are gone. With failOnDataLoss it
// returns the DataLossError, asking for the partition's earliest offset on a
// best-effort basis. Without, as Spark's failOnDataLoss false, it logs a
// warning and skips the lost records: it moves the slot to the earliest
// offset when that lies inside the range and records remain there
// (remaining), and otherwise to the range's end. It returns nil when the
// read can go on, or an error worth retrying when the earliest offset
// cannot be learnt.
func (r *rangeReader) lost(ctx context.Context, reason string, remaining bool) error {
	s, p := r.s, r.pool
	tp := s.tp
	earliest, known := int64(-1), false
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	adm := kadm.NewClient(s.f.cl)
	starts, err := await(lctx, &p.calls, func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(lctx, tp.topic) })
	if err == nil {
		if o, ok := starts.Lookup(tp.topic, tp.partition); ok && o.Err == nil {
			earliest, known = o.Offset, true
		}
	}
	earliestText := "unknown"
	if known {
		earliestText = strconv.FormatInt(earliest, 10)
	}
	if p.set.failOnDataLoss {
		return dataLoss(tp, strconv.FormatInt(r.end, 10), earliestText, reason)
	}
	if remaining && !known {
		if err == nil {
			err = errors.New("no earliest offset in the answer")
		}
		return fmt.Errorf("records lost (%s); listing the earliest offset to skip to: %w", reason, err)
	}
	requested := r.end
	skipTo := r.until
	if remaining && earliest > requested && earliest < r.until {
		skipTo = earliest
	}
	p.opts.logger.Warn("kafka reader: records lost, skipping ahead (failOnDataLoss is false)",
		"range", r.key, "partition", string(tp.id()), "requested", requested,
		"earliest", earliestText, "skippedTo", skipTo, "until", r.until, "reason", reason)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.lost++
	if p.closed {
		return errPoolClosed
	}
	if skipTo == r.until {
		// Nothing of the range is left. The partition stopped on the
		// error (or its topic is gone): drop the slot on release.
		s.broken = true
		p.dropBufferLocked(s)
		s.next = r.until
		r.end = r.until
		return nil
	}
	// Read on from the earliest offset: a new position for the partition.
	p.stats.created++
	s.f.seekLocked(s, skipTo)
	r.end = skipTo
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
	return stream.Record{Fields: row, Size: recordBytes(rec)}
}

// recordBytes is a record's stream.Record Size: its key and value.
func recordBytes(rec *kgo.Record) int { return len(rec.Key) + len(rec.Value) }
