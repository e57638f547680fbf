package kafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
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
// partitions' slots. Readers never change what the client consumes (they
// use it only to ask whether a stalled partition's records still exist):
// they take records from their slot's buffer, and wait on the slot when it
// is empty. So a range whose records were fetched while the executor did
// something else completes without a round trip to the brokers.
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
// Prefetch is bounded by bytes over the whole pool (WithMaxPrefetchBytes).
// A partition being read is fetched while the pool holds less than the
// budget; idle partitions, the prefetch for the next tasks, while it holds
// less than half, each up to its share of that half, so that ranges being
// read always find room and one busy partition cannot take what the next
// tasks' partitions need. Otherwise the partition is paused
// (PauseFetchPartitions). The fetcher decides what to fetch before each
// poll and a poll brings at most one fetch response per broker, so the pool
// never holds more than the budget plus one poll per client. Each fetch
// asks per partition for about half of a partition's share, converted to
// bytes on the wire (sizeFetches), so that a partition with a backlog does
// not bring all of it at once. While a reader waits on an empty buffer and
// idle partitions hold the budget (they overshot, or a range that ended
// left what was fetched past it), their buffers are cut to their share,
// and dropped whole only if that is not enough (they are fetched again
// when needed), rather than the reader wait for tasks that may never come
// (makeRoomLocked, shedLocked).
//
// The default budget grows with the partitions the pool holds: 32 MiB, or
// 128 KiB per partition when that is more, so that an executor holding
// thousands of partitions keeps a useful share for each. When the budget
// was spent, each read dropped idle buffers and waited for a fetch that
// restarted the client's fetch session, a few milliseconds per read
// (scenario 3 of make bench; BenchmarkReaderPoolBatches gives the cost of
// such a fetch). An explicit WithMaxPrefetchBytes stays fixed.
//
// Positions. A slot's position reaches the client only through run, between
// two polls, and a slot whose new position is not applied yet (pending)
// takes nothing from a poll: whatever a poll returns for a partition was
// fetched from the position last applied, so records of an old position
// never land in a moved slot's buffer. A move (a range that does not
// continue where the slot stopped: a retry, a replay, a range the
// scheduler gave another executor last time) drops the buffer and sets the
// partition's offset (SetOffsets), which also stops the client's fetch
// session: franz-go discards what it had fetched and not returned, and the
// next fetch asks from the new offset. A new partition is added
// (AddConsumePartitions) and takes the client a metadata round trip to
// start, so a partition whose slot goes for the capacity
// (WithCacheCapacity) stays in the client, paused (parked), until the idle
// timeout: coming back to it is a move.
//
// First fetches. franz-go adds a partition to the next fetch request, so a
// partition added or moved while a fetch waits at the broker for records
// (up to FetchMaxWait, when every partition is caught up) would wait for
// that fetch. While a range being read waits for its partition's first
// fetch, its lane pauses every partition nobody is waiting on, and the
// SetOffsets that positions the partition ends the fetch in flight (franz-go
// closes the fetch connection to do so: Kafka answers one request per
// connection at a time); so the next fetch asks for the new partition and
// the partitions readers wait on only, and returns as soon as they have
// records. The lane resumes the others with the first answer.

const (
	// defaultMaxPrefetchBytes is the pool-wide prefetch budget, unless
	// the partitions held need more (prefetchPerPartition). It was 64 MiB.
	// In make bench's rows 1 and 2 (16 partitions, two executors), 32 MiB
	// took 60-90 MB off each executor's peak RSS, back to what executors
	// used before the SQL data plane, for no throughput lost that we could
	// measure; 16 MiB took 40-50 MB more, but the copy (row 2) fell by
	// about 0.05 of its baseline, its reads waiting on fetches
	// (docs/performance.md).
	defaultMaxPrefetchBytes = 32 << 20
	// prefetchPerPartition is what the default budget grows by for each
	// partition the pool holds beyond 256: up to 512 MiB at the default
	// WithCacheCapacity of 4096 partitions.
	prefetchPerPartition = 128 << 10
	// recordOverhead is what a fetched record costs beyond its key, value
	// and headers: the kgo.Record itself and its slot in the buffer. It
	// makes the budget count records, not only payload: a million empty
	// records are not free.
	recordOverhead = 200
	// batchOverhead is what a record batch's header takes on the wire,
	// which FetchBatchMetrics leaves out.
	batchOverhead = 61
	// fetchMaxWait is how long a fetch waits at the broker for records
	// when none of its partitions has any. A partition added or resumed
	// while such a fetch is in flight waits for that fetch to end before
	// it is fetched (franz-go adds it to the next request), so this bounds
	// the first-fetch latency of a new or moved partition, and how long a
	// reader waits on a partition resumed for it. franz-go's default, 5s,
	// suits one client per partition. It was 100ms: at the end of a
	// backlog, the fetch franz-go sends right after a poll, before the lane
	// pauses the partitions that poll caught up, waited that long, and so
	// did each reader whose partition was resumed meanwhile (make bench: a
	// job's last batch took 0.2-0.3 s more than the others). A partition
	// fetched up to its end is not fetched again (wantFetchLocked), so a
	// caught-up pool sends no empty fetches, whatever this is.
	fetchMaxWait = 20 * time.Millisecond
	// kickAfter is how long a poll waits before run checks that the
	// client still fetches for the readers waiting on it; see kick.
	kickAfter = 2*fetchMaxWait + 50*time.Millisecond
	// fetchMaxPartitionBytes is franz-go's default (Kafka's
	// max.partition.fetch.bytes): large enough to fetch a partition at
	// full speed, small enough that one fetch serves many partitions. It
	// is the most a fetch asks per partition (see sizeFetches).
	fetchMaxPartitionBytes = 1 << 20
	// minFetchPartitionBytes is the least a fetch asks per partition (as
	// the budget counts), however many partitions share the budget: a few
	// dozen records. Brokers send at least one record batch whatever the
	// limit.
	minFetchPartitionBytes = 16 << 10
	// minFetchWireBytes is the least a fetch asks for on the wire, in all
	// or per partition, however well its records compress.
	minFetchWireBytes = 1 << 10
	// fetchMaxBytesCap is franz-go's default FetchMaxBytes (Kafka's
	// fetch.max.bytes), the most one fetch response may hold.
	fetchMaxBytesCap = 50 << 20
)

// fetchOpts are the options of every fetcher's client besides its fetch
// sizes (sizeFetches). The retry backoff starts at 5ms rather than
// franz-go's 250ms: moving a partition while a fetch waits at the broker
// closes the fetch connection (see First fetches), and the next fetch may
// still pick the closing connection, fail, and back off before it
// reconnects. Real outages still back off to franz-go's 5s within a few
// retries.
func fetchOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.RetryBackoffFn(retryBackoff),
	}
}

// fetchSizes are what a client's fetch asks for: in all (FetchMaxBytes)
// and per partition (FetchMaxPartitionBytes).
type fetchSizes struct{ total, partition int32 }

// sizeFetches sizes the fetches of a pool whose budget live partitions
// share, when wire bytes of a fetch hold what the budget counts as
// counted bytes (both 0: nothing fetched yet). A fetch response lands in
// the pool's buffers in one piece, so it is what the pool may hold beyond
// the budget: a quarter of the budget (between 64 KiB and franz-go's
// default 50 MiB) keeps that overshoot small while leaving room for
// several partitions in one response. Per partition, a fetch asks for half
// the partition's share of the idle half of the budget (between 16 KiB and
// 1 MiB): wantFetchLocked fetches an idle partition until it holds its
// share, so each then holds at most one and a half shares, and the idle
// partitions together three quarters of the budget. Asking for 1 MiB made
// each partition's fetch bring its whole backlog, which the slot kept
// after its range ended: an executor reading one record from each of 512
// partitions with a backlog filled a 64 MiB budget that way, and each read
// then shed another partition's buffer and waited for a fetch (scenario 3
// of make bench at 1,024 partitions).
//
// Fetch sizes are in bytes on the wire, where records take far less than
// the budget counts for them (recordOverhead, and compression): both
// limits are converted at the ratio measured over what was fetched, so
// that a fetch of small or well-compressed records does not bring several
// times what the budget allows. The lower bounds (64 KiB, 16 KiB) are
// what the budget counts, the upper ones (50 MiB, 1 MiB) are on the wire;
// no fetch asks for less than 1 KiB on the wire.
func sizeFetches(budget int64, live int, wire, counted int64) fetchSizes {
	onWire := func(n int64) int64 {
		if wire <= 0 || counted <= 0 {
			return n
		}
		return int64(float64(n) * float64(wire) / float64(counted))
	}
	total := min(max(onWire(max(budget/4, 64<<10)), minFetchWireBytes), fetchMaxBytesCap)
	share := budget / 2 / int64(max(live, 1))
	part := min(max(onWire(max(share/2, minFetchPartitionBytes)), minFetchWireBytes), fetchMaxPartitionBytes, total)
	return fetchSizes{total: int32(total), partition: int32(part)}
}

// wireMeter counts the record batches the pool's clients read, as they
// came on the wire (a client hook, called on the clients' goroutines).
type wireMeter struct{ records, bytes atomic.Int64 }

func (m *wireMeter) OnFetchBatchRead(_ kgo.BrokerMetadata, _ string, _ int32, fm kgo.FetchBatchMetrics) {
	m.records.Add(int64(fm.NumRecords))
	m.bytes.Add(int64(fm.CompressedBytes + batchOverhead))
}

// resizeFetchesLocked gives the clients the fetch sizes for the budget, the
// partitions held and the records fetched so far. The clients take them
// with their next fetch request; an incremental fetch session sends a
// partition's new size with its next offset.
func (p *ReaderPool) resizeFetchesLocked() {
	if p.prefetch.fixedSizes != nil {
		return
	}
	wire, counted := p.wireRatioLocked()
	sz := sizeFetches(p.budget, len(p.live), wire, counted)
	p.sizedRatio = ratio(wire, counted)
	if sz == p.sizes {
		return
	}
	p.sizes = sz
	for _, f := range p.fetchers {
		if f != nil {
			f.cl.UpdateFetchMaxBytes(sz.total, sz.partition)
		}
	}
}

// wireRatioLocked is the bytes read on the wire and the bytes the budget
// counted for the same records, per record: both 0 until something was
// fetched.
func (p *ReaderPool) wireRatioLocked() (wire, counted int64) {
	records, bytes := p.wire.records.Load(), p.wire.bytes.Load()
	if records == 0 || p.fetchedRecords == 0 {
		return 0, 0
	}
	return bytes / records, p.fetchedCounted / p.fetchedRecords
}

// ratio is wire over counted in thousandths; 0 when unknown.
func ratio(wire, counted int64) int64 {
	if counted <= 0 {
		return 0
	}
	return wire * 1000 / counted
}

// withFetchSizes fixes the fetch sizes, so that tests can make a fetch
// smaller than the pool would.
func withFetchSizes(total, partition int32) Option {
	return poolOptionFunc(func(o *poolOptions) { o.fixedSizes = &fetchSizes{total: total, partition: partition} })
}

// withFetchSlabs has the pool's clients decode fetched batches into what p
// lends instead of slabs, so that tests can watch what comes back.
func withFetchSlabs(p kgo.Pool) Option {
	return poolOptionFunc(func(o *poolOptions) { o.slabs = p })
}

// retryBackoff is 5ms after the first failure, four times more after each
// next, at most 5s, with ±20% jitter so that clients do not retry in step.
func retryBackoff(fails int) time.Duration {
	d := 5 * time.Millisecond
	for i := 1; i < fails && d < 5*time.Second; i++ {
		d *= 4
	}
	d = min(d, 5*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// WithMaxPrefetchBytes bounds the records the pool holds fetched but not yet
// read, over all partitions, counting each record's key, value and headers
// plus about 200 bytes (ReaderPool only). Ranges being read may use all of
// it, prefetch for partitions not being read half. The pool may exceed it
// by one fetch response per client, and sizes fetch responses at a quarter
// of it and each partition's part at half its share (sizeFetches; brokers
// send at least one record batch).
// Default: 32 MiB, or 128 KiB per partition the pool holds when that is
// more (see Prefetch above); a budget given here stays fixed.
func WithMaxPrefetchBytes(n int64) Option {
	return poolOptionFunc(func(o *poolOptions) { o.maxPrefetchBytes, o.fixedBudget = n, true })
}

// scaledBudget is the default budget for a pool holding live partitions,
// perPartition bytes each.
func scaledBudget(live int, perPartition int64) int64 {
	return max(defaultMaxPrefetchBytes, int64(live)*perPartition)
}

// withPrefetchPerPartition sets what the default budget grows by per
// partition held, so that tests see it grow with a few partitions.
func withPrefetchPerPartition(n int64) Option {
	return poolOptionFunc(func(o *poolOptions) { o.perPartition = n })
}

// liveChangedLocked follows the default budget to the partitions held.
// Room that grows is looked at at once (paused partitions may fetch now);
// a budget that shrinks is made room for when a reader next waits.
// The fetch sizes follow both (resizeFetchesLocked).
func (p *ReaderPool) liveChangedLocked() {
	if b := scaledBudget(len(p.live), p.prefetch.perPartition); !p.prefetch.fixedBudget && b != p.budget {
		grew := b > p.budget
		p.budget = b
		if grew {
			p.lookAgainLocked()
		}
	}
	p.resizeFetchesLocked()
}

// poolOptions are the options only NewReaderPool reads. They live here, with
// the fetchers they tune, rather than in options: NewReaderPool picks them
// out of its options itself.
type poolOptions struct {
	maxPrefetchBytes int64
	fixedBudget      bool  // WithMaxPrefetchBytes was given
	perPartition     int64 // prefetchPerPartition; tests make it larger
	// fixedSizes, when set, are the fetch sizes whatever the budget
	// (tests).
	fixedSizes *fetchSizes
	// slabs lends the clients what fetched batches decode into:
	// slabs, or a test's (withFetchSlabs).
	slabs kgo.Pool
}

type poolOptionFunc func(*poolOptions)

func (poolOptionFunc) apply(*options) {} // not an options field: see poolOptions

func buildPoolOptions(opts []Option) (poolOptions, error) {
	o := poolOptions{maxPrefetchBytes: defaultMaxPrefetchBytes, perPartition: prefetchPerPartition, slabs: slabs}
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
	// end is the partition's end as last known, -1 before anything is: the
	// high watermark (with read_committed, the last stable offset) of the
	// last fetch that answered for it, or the until of a range opened on
	// it, whichever is larger. A slot fetched up to its end is not fetched
	// again until a range asks past it (see wantFetchLocked).
	end   int64
	buf   []*kgo.Record
	bytes int64 // recordSize of buf's records
	// pending: run has not told the client about next/fetched yet;
	// records for the partition are stale until it has. awaiting: it has,
	// and no fetch answered for the partition since. adding: counted in
	// fetcher.adding (awaiting in use, after an add).
	pending, awaiting, adding bool
	// err is a fetch error the client returned after buf's records; the
	// partition is paused until the slot moves or goes.
	err error
	// inUse: a rangeReader holds the slot. waiting: it waits in Read for
	// records. broken: it failed, so the slot goes when it is released.
	inUse, waiting, broken bool
	lastUsed               time.Time
	// scratch is the holding rangeReader's slice for the records of one
	// read (rangeReader.next), used without the lock: only the holder
	// touches it. It outlives the reader, because a task reads a range in
	// two or three reads: growing a fresh slice of pointers for each range
	// was 5% of a count-only executor's CPU (bench 1c profile).
	scratch []*kgo.Record
	// wake tells a reader waiting on the slot that something changed
	// (records, an error, the pool closing). One token is enough: the
	// reader looks at the slot again after each.
	wake chan struct{}
}

// caughtUp reports whether s was fetched up to the partition's end as last
// known.
func (s *slot) caughtUp() bool { return s.end >= 0 && s.fetched >= s.end }

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
	cl   *kgo.Client
	errs *brokerErrs

	ctx     context.Context // ends when the fetcher closes; run returns
	cancel  context.CancelFunc
	stopped chan struct{} // closed when run returns

	// Guarded by p.mu.
	slots map[topicPartition]*slot
	// added, assigned and paused are what the client was told and did,
	// per partition, whether a slot holds it or not: added, it was asked
	// to consume the partition (run adds and removes); assigned, a fetch
	// answered for it since, so the client consumes it and SetOffsets
	// alone moves it; paused, it was paused (a pause outlives removing
	// the partition, so run resumes what it removes).
	added, assigned, paused map[topicPartition]bool
	// parked holds partitions whose slot went for the capacity
	// (WithCacheCapacity), with when it was last used: the client keeps
	// them, paused, until the idle timeout, so that a range of one costs
	// an offset reset rather than the metadata round trip of adding a
	// partition (franz-go starts a partition it is asked to add only
	// after its next metadata update, at most one per 10ms).
	parked map[topicPartition]time.Time
	// purge lists topics to drop from the client entirely and add back:
	// a partition of it failed, so the client's idea of the topic may be
	// stale (a deleted and recreated topic keeps failing until purged).
	purge map[string]bool
	// gone lists partitions the client consumes that have neither a slot
	// nor a parking place any more: run removes them.
	gone map[topicPartition]bool
	// dirty lists the partitions whose slot changed since run last looked
	// (a position, records, a reader), so that run looks at those only;
	// full asks it to look at all of them (the pool crossed a budget
	// mark, the lane became urgent or stopped being). run also looks at
	// all of them every kickAfter, for shares that moved with the number
	// of slots.
	dirty    map[topicPartition]bool
	full     bool
	lastFull time.Time
	// adding counts slots in use that wait for their partition's first
	// fetch since run added it (a moved partition needs no such care:
	// SetOffsets ends the fetch in flight). While it is above zero the
	// lane is urgent: it fetches nothing nobody waits on (see First
	// fetches above).
	adding     int
	cancelPoll context.CancelFunc // ends the poll in progress; see wakeLocked
}

// urgent reports whether a range being read waits for a partition run
// added.
func (f *fetcher) urgent() bool { return f.adding > 0 }

// markLocked asks run to look at tp before its next poll.
func (f *fetcher) markLocked(tp topicPartition) { f.dirty[tp] = true }

// setAddingLocked counts s among the slots the lane is urgent for, or not.
func (f *fetcher) setAddingLocked(s *slot, adding bool) {
	if s.adding == adding {
		return
	}
	s.adding = adding
	was := f.urgent()
	if adding {
		f.adding++
	} else {
		f.adding--
	}
	if f.urgent() != was {
		f.full = true
		f.wakeLocked()
	}
}

// newFetcherLocked starts a lane's client and goroutine. The client does not
// reach the brokers until run adds a partition.
func (p *ReaderPool) newFetcherLocked() (*fetcher, error) {
	errs := &brokerErrs{}
	cl, err := kgo.NewClient(append(p.clientOpts[:len(p.clientOpts):len(p.clientOpts)], kgo.WithHooks(errs, &p.wire), kgo.WithPools(p.prefetch.slabs),
		kgo.FetchMaxBytes(p.sizes.total), kgo.FetchMaxPartitionBytes(p.sizes.partition))...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fetcher{
		p: p, cl: cl, errs: errs,
		ctx: ctx, cancel: cancel, stopped: make(chan struct{}),
		slots:    map[topicPartition]*slot{},
		added:    map[topicPartition]bool{},
		assigned: map[topicPartition]bool{},
		paused:   map[topicPartition]bool{},
		parked:   map[topicPartition]time.Time{},
		purge:    map[string]bool{},
		gone:     map[topicPartition]bool{},
		dirty:    map[topicPartition]bool{},
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
// poll in progress (which ends with records or after kickAfter).
func (f *fetcher) wakeLocked() {
	if f.cancelPoll != nil {
		f.cancelPoll()
	}
}

// addSlotLocked starts reading tp from offset from on this lane.
func (f *fetcher) addSlotLocked(id stream.PartitionID, tp topicPartition, from int64) *slot {
	s := &slot{f: f, id: id, tp: tp, next: from, fetched: from, end: -1, pending: true, wake: make(chan struct{}, 1)}
	delete(f.parked, tp)
	delete(f.gone, tp)
	f.slots[tp] = s
	f.p.live[s] = struct{}{}
	f.p.liveChangedLocked()
	f.markLocked(tp)
	f.wakeLocked()
	return s
}

// seekLocked moves s to offset from: what it buffered is dropped and the
// client fetches the partition from there.
func (f *fetcher) seekLocked(s *slot, from int64) {
	f.p.dropBufferLocked(s)
	s.next, s.fetched, s.pending, s.awaiting, s.err = from, from, true, false, nil
	f.setAddingLocked(s, false)
	f.markLocked(s.tp)
	f.wakeLocked()
}

// work is what run tells the client before a poll.
type work struct {
	purge         []string
	remove        map[string][]int32
	add           map[string]map[int32]kgo.Offset
	set           map[string]map[int32]kgo.EpochOffset
	pause, resume map[string][]int32
}

func (w *work) apply(cl *kgo.Client) {
	// Pause first: the session that set stops starts again fetching only
	// what is not paused. Purge and remove before adding: a topic purged
	// is added back.
	if len(w.pause) > 0 {
		cl.PauseFetchPartitions(w.pause)
	}
	if len(w.purge) > 0 {
		cl.PurgeTopicsFromConsuming(w.purge...)
	}
	if len(w.remove) > 0 {
		cl.RemoveConsumePartitions(w.remove)
	}
	if len(w.add) > 0 {
		// Also for a partition added but not started yet: the client
		// starts it at the offset given last.
		cl.AddConsumePartitions(w.add)
	}
	if len(w.set) > 0 {
		// Moves the partitions the client consumes (it skips those it
		// has not started), and in any case stops the fetch session, so
		// that the next fetch asks for them at once.
		cl.SetOffsets(w.set)
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
		fetches := f.cl.PollRecords(pollCtx, 0)
		if errors.Is(pollCtx.Err(), context.DeadlineExceeded) {
			f.kick()
		}
		f.distribute(fetches)
	}
}

// kick restarts the client's fetching when readers wait on partitions it
// should fetch and nothing arrived for kickAfter, longer than a fetch
// waits at the broker. franz-go (v1.22) can strand a broker's fetch loop
// when a fetch session stops and starts again quickly, as SetOffsets does:
// a loop of the old session, not yet registered as its worker when the
// session stops, exits after the new session asked it to go on, and
// nothing fetches until the next assignment or metadata refresh (5
// minutes). Resuming a partition that is not paused changes nothing but
// makes every broker's fetch loop start if it is not running.
func (f *fetcher) kick() {
	p := f.p
	var starved map[string][]int32
	p.mu.Lock()
	for tp, s := range f.slots {
		if (s.waiting || s.inUse && s.awaiting) && f.added[tp] && !f.paused[tp] && s.err == nil {
			starved = appendTP(starved, tp)
		}
	}
	if starved != nil {
		p.stats.kicks++
	}
	p.mu.Unlock()
	if starved != nil {
		f.cl.ResumeFetchPartitions(starved)
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
	// Before deciding what to pause: a poll (of any lane) may have
	// filled the budget since a reader started waiting.
	p.makeRoomLocked()
	if len(f.gone) > 0 {
		// Drop topics without a slot or a parked partition left
		// entirely, so that the client forgets them (no metadata
		// requests for a deleted topic); remove the other partitions.
		kept := map[string]bool{}
		for tp := range f.slots {
			kept[tp.topic] = true
		}
		for tp := range f.parked {
			kept[tp.topic] = true
		}
		for tp := range f.gone {
			if !kept[tp.topic] {
				f.purge[tp.topic] = true
			}
		}
	}
	if len(f.purge) > 0 {
		for t := range f.purge {
			w.purge = append(w.purge, t)
		}
		for tp := range f.added {
			if !f.purge[tp.topic] {
				continue
			}
			delete(f.added, tp)
			delete(f.assigned, tp)
			delete(f.parked, tp)
			delete(f.gone, tp)
			f.markLocked(tp)
			if s := f.slots[tp]; s != nil && !s.pending {
				// Back where its fetches stopped, its buffer kept.
				s.pending = true
			}
		}
		clear(f.purge)
	}
	for tp := range f.gone {
		w.remove = appendTP(w.remove, tp)
		delete(f.added, tp)
		delete(f.assigned, tp)
		f.markLocked(tp)
	}
	clear(f.gone)

	look := f.dirty
	if now := time.Now(); f.full || now.Sub(f.lastFull) >= kickAfter {
		look = make(map[topicPartition]bool, len(f.slots)+len(f.paused))
		for tp := range f.slots {
			look[tp] = true
		}
		for tp := range f.paused {
			look[tp] = true
		}
		f.full, f.lastFull = false, now
	}
	for tp := range look {
		s := f.slots[tp]
		if s != nil && s.pending {
			if !f.added[tp] || !f.assigned[tp] {
				w.add = putTP(w.add, tp, kgo.NewOffset().At(s.fetched))
				f.added[tp] = true
				f.setAddingLocked(s, s.inUse)
			}
			w.set = putTP(w.set, tp, kgo.EpochOffset{Epoch: -1, Offset: s.fetched})
			s.pending, s.awaiting = false, true
		}
	}
	if f.full {
		// The lane's urgency changed while positioning: look at all.
		for tp := range f.slots {
			look[tp] = true
		}
		f.full = false
	}
	for tp := range look {
		s := f.slots[tp]
		_, parked := f.parked[tp]
		var want bool
		switch {
		case s != nil:
			want = p.wantFetchLocked(s, f.paused[tp])
		case parked || !f.added[tp]:
			// Parked: paused until the idle timeout. Not consumed any
			// more: a pause left would outlive it.
			want = !parked
		}
		switch paused := f.paused[tp]; {
		case want && paused:
			w.resume = appendTP(w.resume, tp)
			delete(f.paused, tp)
		case !want && !paused && (s != nil || parked):
			w.pause = appendTP(w.pause, tp)
			f.paused[tp] = true
		}
	}
	clear(f.dirty)
	pollCtx, cancel := context.WithTimeout(f.ctx, kickAfter)
	f.cancelPoll = cancel
	return w, pollCtx, true
}

func putTP[V any](m map[string]map[int32]V, tp topicPartition, v V) map[string]map[int32]V {
	if m == nil {
		m = map[string]map[int32]V{}
	}
	if m[tp.topic] == nil {
		m[tp.topic] = map[int32]V{}
	}
	m[tp.topic][tp.partition] = v
	return m
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
	var added, records int64
	for _, fetch := range fetches {
		for _, ft := range fetch.Topics {
			for _, fp := range ft.Partitions {
				tp := topicPartition{topic: ft.Topic, partition: fp.Partition}
				if f.added[tp] {
					f.assigned[tp] = true
				}
				s := f.slots[tp]
				if s == nil || s.pending || s.err != nil {
					continue
				}
				s.awaiting = false
				f.setAddingLocked(s, false)
				n := 0
				for _, rec := range fp.Records {
					if rec.Offset < s.fetched {
						continue
					}
					size := recordSize(rec)
					s.buf = append(s.buf, rec)
					s.bytes += size
					added += size
					records++
					s.fetched = rec.Offset + 1
					n++
				}
				caughtUp := s.caughtUp()
				if fp.Err == nil {
					end := fp.HighWatermark
					if p.set.readCommitted() && fp.LastStableOffset >= 0 {
						// Nothing past an open transaction is fetched.
						end = fp.LastStableOffset
					}
					s.end = max(s.end, end)
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
					f.markLocked(tp)
				} else if s.caughtUp() != caughtUp {
					// No records, but the end moved past or up to what
					// was fetched: whether to fetch it changed.
					f.markLocked(tp)
				}
			}
		}
	}
	if added == 0 {
		return
	}
	// The fetch sizes convert to the wire at the ratio measured: resize
	// when it moved by more than a quarter since they were last set.
	p.fetchedRecords += records
	p.fetchedCounted += added
	if r := ratio(p.wireRatioLocked()); r*4 > p.sizedRatio*5 || r*4 < p.sizedRatio*3 {
		p.resizeFetchesLocked()
	}
	before := p.buffered
	p.buffered += added
	p.stats.peakBuffered = max(p.stats.peakBuffered, p.buffered)
	p.stats.largestPoll = max(p.stats.largestPoll, added)
	if crossed(before, p.buffered, p.budget/2) || crossed(before, p.buffered, p.budget) {
		// Every lane pauses what the mark stops before its next poll,
		// so that none polls again past the budget.
		p.lookAgainLocked()
	}
}

// crossed reports whether a total going from before to after passed mark,
// either way.
func crossed(before, after, mark int64) bool {
	return before < mark && after >= mark || before >= mark && after < mark
}

// lookAgainLocked makes every lane look at all its partitions now.
func (p *ReaderPool) lookAgainLocked() {
	for _, f := range p.fetchers {
		if f != nil {
			f.full = true
			f.wakeLocked()
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
//   - Nor is one fetched up to its end (slot.end), unless a reader waits
//     on it: its fetch would wait at the broker for new records
//     (fetchMaxWait), a partition resumed meanwhile for a reader would
//     wait for that fetch, and a pool whose partitions are all caught up
//     would send such fetches back to back. A range opened past the end
//     moves the end, so the partition is fetched again.
//   - While the lane is urgent, only the partitions readers wait on are.
//   - A partition being read is fetched while the pool holds less than the
//     budget: its reader takes what arrives right away.
//   - Idle partitions (prefetch for the next tasks) are fetched while the
//     pool holds less than half the budget, each up to its share of that
//     half (over the number of slots), so that ranges being read always
//     find room, and one busy partition cannot take what the next tasks'
//     partitions need.
func (p *ReaderPool) wantFetchLocked(s *slot, paused bool) bool {
	switch {
	case s.err != nil:
		return false
	case s.caughtUp() && !s.waiting:
		return false
	case s.f.urgent() && !s.waiting && !(s.inUse && s.awaiting):
		return false
	case s.inUse && (!paused || s.bytes == 0):
		return p.buffered < p.budget
	case s.inUse:
		return p.buffered <= p.budget-p.budget/4
	}
	idle := p.budget / 2
	share := idle / int64(max(1, len(p.live)))
	if !paused {
		return s.bytes < share && p.buffered < idle
	}
	return s.bytes <= share/2 && p.buffered <= idle-idle/4
}

// dropBufferLocked empties s's buffer and gives its bytes back to the
// budget.
func (p *ReaderPool) dropBufferLocked(s *slot) {
	clear(s.buf)
	s.buf = nil
	p.freedLocked(s.bytes)
	s.bytes = 0
}

// freedLocked gives n bytes back to the budget. When the pool falls below
// the budget, or well below half of it, the lanes look at their partitions
// at once: a reader may wait on a partition paused for the budget, and idle
// partitions resume.
func (p *ReaderPool) freedLocked(n int64) {
	if n == 0 {
		return
	}
	before := p.buffered
	p.buffered -= n
	idle := p.budget / 2
	if crossed(before, p.buffered, p.budget) || crossed(before, p.buffered, idle-idle/4+1) {
		p.lookAgainLocked()
	}
}

// makeRoomLocked sheds idle buffers while a reader waits on an empty buffer
// and the pool holds the budget: no lane fetches the reader's partition
// then, and nothing else would wake the reader before its stall check.
// That state arises not only when a reader starts waiting (take sheds
// then) but also while it waits: when a poll fills the budget, or when a
// range ends and its slot, with what was fetched past the range, turns
// idle. So every lane checks before each poll, and release at once.
func (p *ReaderPool) makeRoomLocked() {
	if p.buffered < p.budget {
		return
	}
	for s := range p.live {
		if s.waiting {
			p.shedLocked(s)
			return
		}
	}
}

// shedLocked makes room while waiting's reader waits for records no lane
// may fetch because the budget is spent. First it trims every idle slot
// holding more than its share of the idle half of the budget to that
// share (a slot released after its range keeps what was fetched past it,
// and a fetch made while few partitions were open may have brought more
// than today's share). Only if that is not enough does it drop the buffers
// of idle slots, the most recently used first: their next task is the
// furthest away. Dropped records are fetched again from after the last
// record kept.
func (p *ReaderPool) shedLocked(waiting *slot) {
	if p.buffered < p.budget {
		return
	}
	share := p.budget / 2 / int64(max(1, len(p.live)))
	for s := range p.live {
		if s != waiting && !s.inUse && s.bytes > share {
			s.f.trimLocked(s, share)
			p.stats.trimmed++
		}
	}
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

// trimLocked keeps the records at the head of s's buffer that fit in keep
// bytes and drops the rest; the client fetches the partition again from
// after the last record kept. Like a move, it makes the slot pending, so
// that records of the fetch in flight, fetched past what is kept, are
// dropped rather than appended after a gap.
func (f *fetcher) trimLocked(s *slot, keep int64) {
	var kept int64
	i := 0
	for ; i < len(s.buf); i++ {
		size := recordSize(s.buf[i])
		if kept+size > keep {
			break
		}
		kept += size
	}
	if i == len(s.buf) {
		return
	}
	from := s.next
	if i > 0 {
		from = max(from, s.buf[i-1].Offset+1)
	}
	clear(s.buf[i:])
	s.buf = s.buf[:i:i]
	if i == 0 {
		s.buf = nil
	}
	dropped := s.bytes - kept
	s.bytes = kept
	f.p.freedLocked(dropped)
	s.fetched, s.pending, s.awaiting, s.err = from, true, false, nil
	f.setAddingLocked(s, false)
	f.markLocked(s.tp)
	f.wakeLocked()
}
