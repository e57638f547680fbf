package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/stream"
)

// The executor's fetching, in one picture:
//
//	              ReaderPool (mu guards everything below)
//	  lane 0: fetcher ── one franz-go client ── slots {t/0@next, t/1@next, ...}
//	  lane 1: fetcher ── one franz-go client ── slots {t/3@next}   (only while two
//	                                                              ranges of t/3 run at once)
//	  rangeReader ──owns──> one slot between Open and Close
//
// A fetcher is one franz-go client consuming many partitions directly
// (AddConsumePartitions, no group), each at one offset, and one goroutine
// (run) that applies what the pool asked for (add, move, drop, pause,
// resume a partition), polls the client and sorts what arrives into the
// partitions' slots. Readers never touch the client: they take records from
// their slot's buffer, and wait on the slot when it is empty. So a range
// whose records were fetched while the executor did something else
// completes without a round trip to the brokers.
//
// Why lanes. A client consumes a partition at one offset only, but the
// splits of a hot partition (maxRecordsPerPartition) run side by side at
// different offsets. The second range of a partition open at once goes to
// lane 1, a client of its own, the third to lane 2, and so on; a lane whose
// last slot goes is closed. Usually only lane 0 exists: one client per
// executor, however many partitions it reads. A second reader over the same
// client (seeking back and forth) would refetch on every switch; a second
// client keeps both positions warm, as the per-partition clients did.
//
// Prefetch is bounded by bytes over the whole pool (WithMaxPrefetchBytes):
// the fetchers pause a partition (PauseFetchPartitions) once the pool holds
// the budget, and an idle partition once it holds its share of it (the
// budget over the number of slots), so that one busy partition cannot take
// the memory the next tasks' partitions need. A partition being read is
// limited by the budget only. The fetcher decides what to fetch before each
// poll and a poll brings at most one fetch response per broker, so the pool
// never holds more than the budget plus one poll per client. A reader that
// finds its buffer empty while the budget is spent by idle partitions drops
// those buffers (they are fetched again when needed) rather than wait for
// tasks that may never come.
//
// Positions. A slot's position reaches the client only through run, between
// two polls, and a slot whose new position is not applied yet (pending)
// takes nothing from a poll: whatever a poll returns for a partition was
// fetched from the position last applied, so records of an old position
// never land in a moved slot's buffer. A move (a range that does not
// continue where the slot stopped: a retry, a replay, a split) drops the
// buffer and re-adds the partition: RemoveConsumePartitions stops the
// client's fetch session, which discards what the client had buffered and
// not returned, then AddConsumePartitions starts it at the exact offset.

const (
	// defaultMaxPrefetchBytes is the pool-wide prefetch budget.
	defaultMaxPrefetchBytes = 64 << 20
	// recordOverhead is what a fetched record costs beyond its key, value
	// and headers: the kgo.Record itself and its slot in the buffer. It
	// makes the budget count records, not only payload: a million empty
	// records are not free.
	recordOverhead = 200
	// fetchMaxWait is how long a fetch waits at the broker for records
	// when none of its partitions has any. A partition added or resumed
	// while such a fetch is in flight waits for that fetch to end before
	// it is fetched (franz-go adds it to the next request), so this bounds
	// the first-fetch latency of a new or moved partition. franz-go's
	// default, 5s, suits one client per partition; with one client for
	// all partitions, 100ms costs at most ten empty fetches a second per
	// broker when everything is caught up.
	fetchMaxWait = 100 * time.Millisecond
	// fetchMaxPartitionBytes is franz-go's default (Kafka's
	// max.partition.fetch.bytes): large enough to fetch a partition at
	// full speed, small enough that one fetch serves many partitions.
	fetchMaxPartitionBytes = 1 << 20
	// fetchMaxBytesCap is franz-go's default FetchMaxBytes (Kafka's
	// fetch.max.bytes), the most one fetch response may hold.
	fetchMaxBytesCap = 50 << 20
)

// fetchOpts are the fetch limits of every fetcher's client. A fetch response
// lands in the pool's buffers in one piece, so it is what the pool may hold
// beyond the budget: a quarter of the budget (between 64 KiB and franz-go's
// default 50 MiB) keeps that overshoot small against the budget while
// leaving room for a partition's full 1 MiB and for several partitions in
// one response. Brokers return at least one record batch even when it is
// larger, so a large record never stalls a partition.
func fetchOpts(budget int64) []kgo.Opt {
	maxBytes := min(max(budget/4, 64<<10), fetchMaxBytesCap)
	return []kgo.Opt{
		kgo.FetchMaxBytes(int32(maxBytes)),
		kgo.FetchMaxPartitionBytes(int32(min(fetchMaxPartitionBytes, maxBytes))),
		kgo.FetchMaxWait(fetchMaxWait),
	}
}

// WithMaxPrefetchBytes bounds the records the pool holds fetched but not yet
// read, over all partitions, counting each record's key, value and headers
// plus about 200 bytes (ReaderPool only). The pool may exceed it by one
// fetch response per client, and sizes fetch responses at a quarter of it
// (64 KiB to 50 MiB). Default 64 MiB.
func WithMaxPrefetchBytes(n int64) Option {
	return poolOptionFunc(func(o *poolOptions) { o.maxPrefetchBytes = n })
}

// poolOptions are the options only NewReaderPool reads. They live here, with
// the fetchers they tune, rather than in options: NewReaderPool picks them
// out of its options itself.
type poolOptions struct {
	maxPrefetchBytes int64
}

type poolOptionFunc func(*poolOptions)

func (poolOptionFunc) apply(*options) {} // not an options field: see poolOptions

func buildPoolOptions(opts []Option) (poolOptions, error) {
	o := poolOptions{maxPrefetchBytes: defaultMaxPrefetchBytes}
	for _, opt := range opts {
		if f, ok := opt.(poolOptionFunc); ok {
			f(&o)
		}
	}
	if o.maxPrefetchBytes <= 0 {
		return o, fmt.Errorf("kafka: WithMaxPrefetchBytes: must be positive (got %d)", o.maxPrefetchBytes)
	}
	return o, nil
}

// slot is one partition consumed by one fetcher at one position, and the
// records fetched for it that no range has taken yet. A rangeReader holds
// it (inUse) between Open and Close; otherwise it is idle and warm. Every
// field is guarded by the pool's mu.
//
// Invariant: every record of the partition with offset >= next is either in
// buf (in order), or at or after fetched and not yet returned by the
// client; offsets in [next, fetched) that are in neither do not exist
// (compacted, aborted under read_committed, or markers already taken).
type slot struct {
	f  *fetcher
	id stream.PartitionID
	tp topicPartition
	// next is the offset of the next record to hand out.
	next int64
	// fetched is where the client fetches from: the offset after the last
	// record buffered, or where the slot was (re)positioned. A record
	// below it is one the slot already had, and is dropped.
	fetched int64
	buf     []*kgo.Record
	bytes   int64 // recordSize of buf's records
	// pending: the client does not consume the partition from fetched
	// yet; run adds it before the next poll. Records for the partition
	// are stale until then.
	pending bool
	// err is a fetch error the client returned after buf's records; the
	// partition is paused until the slot moves or goes.
	err error
	// inUse: a rangeReader holds the slot. broken: that reader failed, so
	// the slot goes when it is released.
	inUse, broken bool
	lastUsed      time.Time
	// wake tells a reader waiting on the slot that something changed
	// (records, an error, the pool closing). One token is enough: the
	// reader looks at the slot again after each.
	wake chan struct{}
}

func (s *slot) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// recordSize is what a buffered record counts against the prefetch budget.
func recordSize(r *kgo.Record) int64 {
	n := len(r.Key) + len(r.Value) + recordOverhead
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// fetcher is one lane: a franz-go client, its slots and the goroutine that
// feeds them. The pool creates it with its first slot and closes it when
// its last slot goes (retire) or the pool closes.
type fetcher struct {
	p    *ReaderPool
	lane int
	cl   *kgo.Client
	errs *brokerErrs

	ctx     context.Context // ends when the fetcher closes; run returns
	cancel  context.CancelFunc
	stopped chan struct{} // closed when run returns

	// Guarded by p.mu.
	slots map[topicPartition]*slot
	// added and paused are what run last told the client: the partitions
	// it consumes and those it pauses. Both persist in the client across
	// slots (a partition paused stays paused until resumed), so run
	// compares them with what the slots want before each poll.
	added  map[topicPartition]bool
	paused map[topicPartition]bool
	// purge lists topics to drop from the client entirely and add back:
	// a partition of it failed, so the client's idea of the topic may be
	// stale (a deleted and recreated topic keeps failing until purged).
	purge      map[string]bool
	cancelPoll context.CancelFunc // ends the poll in progress; see wakeLocked
}

// newFetcherLocked starts lane's client and goroutine. The client does not
// reach the brokers until run adds a partition.
func (p *ReaderPool) newFetcherLocked(lane int) (*fetcher, error) {
	errs := &brokerErrs{}
	cl, err := kgo.NewClient(append(p.clientOpts[:len(p.clientOpts):len(p.clientOpts)], kgo.WithHooks(errs))...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fetcher{
		p: p, lane: lane, cl: cl, errs: errs,
		ctx: ctx, cancel: cancel, stopped: make(chan struct{}),
		slots:  map[topicPartition]*slot{},
		added:  map[topicPartition]bool{},
		paused: map[topicPartition]bool{},
		purge:  map[string]bool{},
	}
	p.stats.clients++
	go f.run()
	return f, nil
}

// close stops run and the client and waits for both. The client closes
// before run is joined: run may be waiting on the client (a purge waits for
// its metadata goroutine), and every client call returns once it is closed.
func (f *fetcher) close() {
	f.cancel()
	f.cl.Close()
	<-f.stopped
}

// wakeLocked makes run look at the slots again now rather than after the
// poll in progress.
func (f *fetcher) wakeLocked() {
	if f.cancelPoll != nil {
		f.cancelPoll()
	}
}

// addSlotLocked starts consuming tp from offset from on this lane.
func (f *fetcher) addSlotLocked(id stream.PartitionID, tp topicPartition, from int64) *slot {
	s := &slot{f: f, id: id, tp: tp, next: from, fetched: from, pending: true, wake: make(chan struct{}, 1)}
	f.slots[tp] = s
	f.p.live[s] = struct{}{}
	f.wakeLocked()
	return s
}

// seekLocked moves s to offset from: what it buffered is dropped and the
// client starts the partition again there.
func (f *fetcher) seekLocked(s *slot, from int64) {
	f.p.dropBufferLocked(s)
	s.next, s.fetched, s.pending, s.err = from, from, true, nil
	f.wakeLocked()
}

// work is what run tells the client before a poll.
type work struct {
	purge         []string
	remove        map[string][]int32
	add           map[string]map[int32]kgo.Offset
	pause, resume map[string][]int32
}

func (w *work) apply(cl *kgo.Client) {
	// Purge and remove before adding: a partition that moves is in both,
	// and must be gone before it comes back at its new offset.
	if len(w.purge) > 0 {
		cl.PurgeTopicsFromConsuming(w.purge...)
	}
	if len(w.remove) > 0 {
		cl.RemoveConsumePartitions(w.remove)
	}
	if len(w.add) > 0 {
		cl.AddConsumePartitions(w.add)
	}
	if len(w.pause) > 0 {
		cl.PauseFetchPartitions(w.pause)
	}
	if len(w.resume) > 0 {
		cl.ResumeFetchPartitions(w.resume)
	}
}

// run is the fetcher's goroutine: apply what the slots want, poll, sort
// what came into the slots; until the fetcher closes. A wake ends the poll
// early, so a new partition or a reader waiting on a paused one does not
// wait for records of others.
func (f *fetcher) run() {
	defer close(f.stopped)
	for {
		w, pollCtx, ok := f.takeWork()
		if !ok {
			return
		}
		w.apply(f.cl)
		f.distribute(f.cl.PollRecords(pollCtx, 0))
	}
}

// takeWork compares what the slots want with what the client was told, and
// returns the difference and a context for the next poll that wakeLocked
// ends. Positions are marked applied here, before run applies them: run
// sorts no poll's records until it has.
func (f *fetcher) takeWork() (work, context.Context, bool) {
	p := f.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.cancelPoll != nil {
		f.cancelPoll()
		f.cancelPoll = nil
	}
	var w work
	if f.ctx.Err() != nil {
		return w, nil, false
	}
	// Drop topics asked for and those without a slot left, so that the
	// client forgets them (no metadata requests for a deleted topic).
	hasSlots := map[string]bool{}
	for tp := range f.slots {
		hasSlots[tp.topic] = true
	}
	for tp := range f.added {
		if !hasSlots[tp.topic] {
			f.purge[tp.topic] = true
		}
	}
	for t := range f.purge {
		w.purge = append(w.purge, t)
	}
	for tp := range f.added {
		s := f.slots[tp]
		switch {
		case f.purge[tp.topic]:
			delete(f.added, tp)
			if s != nil {
				// Back at where its fetches stopped, its buffer kept.
				s.pending = true
			}
		case s == nil || s.pending:
			w.remove = appendTP(w.remove, tp)
			delete(f.added, tp)
		}
	}
	clear(f.purge)
	for tp, s := range f.slots {
		if s.pending {
			if w.add == nil {
				w.add = map[string]map[int32]kgo.Offset{}
			}
			if w.add[tp.topic] == nil {
				w.add[tp.topic] = map[int32]kgo.Offset{}
			}
			w.add[tp.topic][tp.partition] = kgo.NewOffset().At(s.fetched)
			s.pending = false
			f.added[tp] = true
		}
		switch want, paused := p.wantFetchLocked(s, f.paused[tp]), f.paused[tp]; {
		case want && paused:
			w.resume = appendTP(w.resume, tp)
			delete(f.paused, tp)
		case !want && !paused:
			w.pause = appendTP(w.pause, tp)
			f.paused[tp] = true
		}
	}
	for tp := range f.paused {
		if f.slots[tp] == nil {
			w.resume = appendTP(w.resume, tp)
			delete(f.paused, tp)
		}
	}
	pollCtx, cancel := context.WithCancel(f.ctx)
	f.cancelPoll = cancel
	return w, pollCtx, true
}

func appendTP(m map[string][]int32, tp topicPartition) map[string][]int32 {
	if m == nil {
		m = map[string][]int32{}
	}
	m[tp.topic] = append(m[tp.topic], tp.partition)
	return m
}

// distribute appends a poll's records to their slots and records partition
// errors, and wakes the readers waiting on those slots. Records of a
// partition that has no slot any more, or whose slot moved since the poll
// began (pending), are stale and dropped; so are records below a slot's
// fetched offset, which it already has.
func (f *fetcher) distribute(fetches kgo.Fetches) {
	p := f.p
	p.mu.Lock()
	defer p.mu.Unlock()
	var added int64
	for _, fetch := range fetches {
		for _, ft := range fetch.Topics {
			for _, fp := range ft.Partitions {
				s := f.slots[topicPartition{topic: ft.Topic, partition: fp.Partition}]
				if s == nil || s.pending || s.err != nil {
					continue
				}
				n := 0
				for _, rec := range fp.Records {
					if rec.Offset < s.fetched {
						continue
					}
					size := recordSize(rec)
					s.buf = append(s.buf, rec)
					s.bytes += size
					added += size
					s.fetched = rec.Offset + 1
					n++
				}
				if fp.Err != nil && !isPollEnd(fp.Err) {
					// The client stops at the error (with no offset
					// reset, an out-of-range partition fails every
					// fetch): run pauses the partition before the next
					// poll, and the reader that reaches the end of buf
					// gets the error.
					s.err = fp.Err
				}
				if n > 0 || s.err != nil {
					s.signal()
				}
			}
		}
	}
	if added == 0 {
		return
	}
	p.buffered += added
	p.stats.peakBuffered = max(p.stats.peakBuffered, p.buffered)
	p.stats.largestPoll = max(p.stats.largestPoll, added)
	if p.buffered >= p.budget && !p.overBudget {
		// The other lanes pause too, now rather than after their polls.
		p.overBudget = true
		for _, o := range p.fetchers {
			if o != nil && o != f {
				o.wakeLocked()
			}
		}
	}
}

// isPollEnd reports the errors a poll injects when it ends without a fetch:
// its context ended (a wake) or the client closed.
func isPollEnd(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed)
}

// wantFetchLocked says whether s's partition should be fetched. paused is
// whether it is paused now: a paused partition resumes only well below the
// marks that paused it, so that a partition is not paused and resumed by
// every fetch.
//
//   - A partition that failed is not fetched: the client would fail every
//     fetch of it at once, and it waits for its slot to move or go.
//   - Nothing is fetched while the pool holds the budget.
//   - An idle partition is fetched up to its share of the budget (the
//     budget over the number of slots), so that each of the next tasks finds
//     something; one being read up to the budget, since its reader takes
//     what arrives right away.
func (p *ReaderPool) wantFetchLocked(s *slot, paused bool) bool {
	if s.err != nil {
		return false
	}
	limit := p.budget
	if !s.inUse {
		limit = p.budget / int64(max(1, len(p.live)))
	}
	if !paused || (s.inUse && s.bytes == 0) {
		// A reader waiting on an empty buffer resumes as soon as there
		// is room.
		return s.bytes < limit && p.buffered < p.budget
	}
	return s.bytes <= limit/2 && p.buffered <= p.budget-p.budget/4
}

// dropBufferLocked empties s's buffer and gives its bytes back to the
// budget.
func (p *ReaderPool) dropBufferLocked(s *slot) {
	clear(s.buf)
	s.buf = nil
	p.freedLocked(s.bytes)
	s.bytes = 0
}

// freedLocked gives n bytes back to the budget; once the pool is well below
// it, the lanes resume what the budget paused.
func (p *ReaderPool) freedLocked(n int64) {
	p.buffered -= n
	if p.overBudget && p.buffered <= p.budget-p.budget/4 {
		p.overBudget = false
		for _, f := range p.fetchers {
			if f != nil {
				f.wakeLocked()
			}
		}
	}
}

// shedLocked drops the buffers of idle slots, the most recently used first,
// until the pool is below the budget: s's reader waits for records no lane
// may fetch while the budget is spent. The most recently used idle slots
// are the ones whose next task is the furthest away. Their partitions are
// fetched again from where their readers stopped.
func (p *ReaderPool) shedLocked(waiting *slot) {
	for p.buffered >= p.budget {
		var mru *slot
		for s := range p.live {
			if s != waiting && !s.inUse && s.bytes > 0 && (mru == nil || s.lastUsed.After(mru.lastUsed)) {
				mru = s
			}
		}
		if mru == nil {
			return // the budget is in ranges being read: they free it
		}
		mru.f.seekLocked(mru, mru.next)
		p.stats.shed++
	}
}
