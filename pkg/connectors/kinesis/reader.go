package kinesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/kpl"
	"github.com/sluicehq/sluice/pkg/stream"
)

// MetricMillisBehindLatest is the reader's figure (connectors.ReaderMetrics):
// the shard's MillisBehindLatest after the task's last fetch.
const MetricMillisBehindLatest = "millisBehindLatest"

// ReaderPool is the executor half of the Kinesis source. A range starts at
// its from position and either ends where the driver recorded a previous
// attempt's end (until set: a replay reads exactly to it) or where this
// attempt stops: at maxFetchDuration, after fetchBufferSize bytes, as soon
// as the shard is caught up (MillisBehindLatest 0 after at least one
// fetch), or at SHARD_END.
//
// Per shard the pool keeps the last reader warm between tasks: its fetcher
// (iterator or subscription) and the user records fetched beyond the last
// task's end, so that a shard's next range continues without new calls.
type ReaderPool struct {
	set     *settings
	opts    options
	factory FetcherFactory
	polling *pollingFactory // nil when WithFetcherFactory replaced it
	// describer checks a stream's identity when reads fail.
	describer api

	mu     sync.Mutex // guards the fields below; never held while blocking
	idle   map[stream.PartitionID]*shardReader
	live   map[*shardReader]struct{}
	closed bool

	stop    chan struct{} // closed by Close: the janitor stops
	stopped chan struct{} // closed by the janitor when it returns
}

var _ connectors.ReaderPool = (*ReaderPool)(nil)

// NewReaderPool validates cfg and returns a pool. It does not call AWS. It
// starts one goroutine that drops idle readers (WithIdleTimeout); Close
// stops it.
func NewReaderPool(cfg Config, opts ...Option) (*ReaderPool, error) {
	set, o, awsCfg, err := prepare(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("new kinesis reader pool: %w", err)
	}
	describer := kinesisClient(awsCfg, set.endpoint, true)
	p := &ReaderPool{
		set: set, opts: o, factory: o.fetchers, describer: describer,
		idle: map[stream.PartitionID]*shardReader{}, live: map[*shardReader]struct{}{},
		stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	switch {
	case p.factory != nil: // WithFetcherFactory
	case set.efo:
		if err := checkSubscribeHTTPClient(o.httpClient); err != nil {
			return nil, fmt.Errorf("new kinesis reader pool: %w", err)
		}
		// The SDK's retries would repeat a refused SubscribeToShard behind
		// efo.Subscription's own back-off; lookups keep them.
		p.factory = newEFOFactory(describer, kinesisClient(awsCfg, set.endpoint, false), set.consumerName, o)
	default:
		p.polling = newPollingFactory(kinesisClient(awsCfg, set.endpoint, false), set, o)
		p.factory = p.polling
	}
	go p.janitor()
	return p, nil
}

// shardReader is one shard's fetcher and what it fetched but no reader
// returned yet. Owned by the pool while idle and by one rangeReader while in
// use.
//
// Invariant: pending holds, in order, the user records that follow pos and
// that the fetcher returned; the fetcher continues after the last of them.
type shardReader struct {
	id       stream.PartitionID
	shard    Shard
	f        ShardFetcher
	pending  []userRecord
	pos      position // after the last record handed out
	ended    bool     // the fetcher reached SHARD_END
	behind   int64    // MillisBehindLatest of the last fetch, -1 unknown
	lastUsed time.Time
	broken   bool // the fetcher failed; never reuse it
}

// userRecord is one record as delivered: a plain Kinesis record, or one
// user record of a KPL aggregate.
type userRecord struct {
	seq     string
	sub     int64
	last    bool // the last user record of its Kinesis record
	key     string
	data    []byte
	arrival time.Time
	err     error // a corrupt KPL aggregate: delivered with stream.Record.Err
}

func (u userRecord) after() position {
	if u.last {
		return position{Seq: u.seq}
	}
	sub := u.sub
	return position{Seq: u.seq, Sub: &sub}
}

// beyond reports whether u comes after the point p.
func (u userRecord) beyond(p position) bool {
	if p.Seq == "" {
		return true
	}
	switch c := efo.CompareSequence(u.seq, p.Seq); {
	case c != 0:
		return c > 0
	case p.Sub == nil:
		return false // p is after the whole record Seq, u included
	default:
		return u.sub > *p.Sub
	}
}

// Open returns a reader for r. It reuses the shard's warm reader when that
// stopped exactly at r.From, and does not block on the service.
func (p *ReaderPool) Open(ctx context.Context, r stream.Range) (connectors.Reader, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", r.Key(), err)
	}
	streamName, shardID, err := splitPartitionID(r.Partition)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("open %s: %w", r.Key(), err))
	}
	from, err := decodePosition(r.From)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("open %s: from: %w", r.Key(), err))
	}
	var until *position
	if r.Until != nil {
		u, err := decodePosition(r.Until)
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("open %s: until: %w", r.Key(), err))
		}
		until = &u
	}
	cut, created := from.Cut, from.Created
	from = from.point()
	switch {
	case from.End:
		end := from.encode()
		if r.Until != nil {
			end = r.Until
		}
		return &emptyReader{end: end}, nil
	case until != nil && until.point().at(from):
		return &emptyReader{end: r.Until}, nil
	}

	now := p.opts.now()
	var discard *shardReader
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("open %s: reader pool closed", r.Key())
	}
	sr := p.idle[r.Partition]
	if sr != nil {
		delete(p.idle, r.Partition)
		if !sr.pos.at(from) {
			discard, sr = sr, nil // it stopped elsewhere: of no use
			delete(p.live, discard)
		}
	}
	if sr == nil {
		shard := Shard{Stream: streamName, ShardID: shardID}
		f, err := p.factory.NewFetcher(shard, from.starting())
		if err != nil {
			p.mu.Unlock()
			closeReader(discard)
			return nil, fmt.Errorf("open %s: %w", r.Key(), err)
		}
		sr = &shardReader{id: r.Partition, shard: shard, f: f, pos: from, behind: -1}
		p.live[sr] = struct{}{}
	}
	p.mu.Unlock()
	closeReader(discard)
	return &rangeReader{
		pool: p, sr: sr, key: r.Key(), until: until, untilRaw: r.Until, cut: cut, created: created,
		deadline: now.Add(p.set.maxFetchDuration),
	}, nil
}

func closeReader(sr *shardReader) {
	if sr != nil {
		_ = sr.f.Close()
	}
}

// release takes a shard reader back: idle and warm if healthy, closed
// otherwise. A shard has one idle reader at most (the newest).
func (p *ReaderPool) release(sr *shardReader) {
	var discard *shardReader
	p.mu.Lock()
	if p.closed || sr.broken {
		delete(p.live, sr)
		p.mu.Unlock()
		closeReader(sr)
		return
	}
	sr.lastUsed = p.opts.now()
	if old := p.idle[sr.id]; old != nil {
		discard = old
		delete(p.live, old)
	}
	p.idle[sr.id] = sr
	p.mu.Unlock()
	closeReader(discard)
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

// evictIdle drops readers idle for longer than the idle timeout.
func (p *ReaderPool) evictIdle() {
	var discard []*shardReader
	p.mu.Lock()
	cutoff := p.opts.now().Add(-p.opts.idleTimeout)
	for id, sr := range p.idle {
		if sr.lastUsed.Before(cutoff) {
			delete(p.idle, id)
			delete(p.live, sr)
			discard = append(discard, sr)
		}
	}
	p.mu.Unlock()
	for _, sr := range discard {
		closeReader(sr)
	}
}

// Close stops the janitor and closes every fetcher, including those of
// readers still open (their next Read fails). It waits for the janitor.
func (p *ReaderPool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	all := make([]*shardReader, 0, len(p.live))
	for sr := range p.live {
		all = append(all, sr)
	}
	p.live, p.idle = map[*shardReader]struct{}{}, map[stream.PartitionID]*shardReader{}
	p.mu.Unlock()
	close(p.stop)
	<-p.stopped
	for _, sr := range all {
		closeReader(sr)
	}
	return nil
}

// checkRecreated runs when a read failed in a way a recreated stream
// explains (records or shards not found, a sequence number that does not
// belong): if the stream's creation time is not the one the range was
// planned for, it returns the permanent "deleted and recreated" error; else
// nil, and the caller reports the original error.
//
// A recreated stream is seen this way because its predecessor's sequence
// numbers are ones it never issued: AWS refuses them (InvalidArgument, "did
// not come from this stream"), kinesis-mock does not find them
// (ResourceNotFound). A successful read proves nothing either way and is
// not checked: that would cost a DescribeStreamSummary (20 per second per
// account) per task; the next plan compares the identity anyway.
func (p *ReaderPool) checkRecreated(ctx context.Context, streamName string, created int64, err error) error {
	var (
		nf  *types.ResourceNotFoundException
		inv *types.InvalidArgumentException
	)
	if !(errors.Is(err, connectors.ErrDataLoss) || errors.As(err, &nf) || errors.As(err, &inv)) {
		return nil
	}
	return p.recreatedSince(ctx, streamName, created)
}

// recreatedSince returns the permanent "deleted and recreated" error when
// the live stream's creation time is not created (the creation time the
// range was planned for; 0, from an older plan, is not checked). It returns
// nil when it cannot tell.
func (p *ReaderPool) recreatedSince(ctx context.Context, streamName string, created int64) error {
	if created == 0 || ctx.Err() != nil {
		return nil
	}
	out, derr := p.describer.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(streamName)})
	if derr != nil {
		return nil // cannot tell (or the stream is gone): the original error stands
	}
	if now := aws.ToTime(out.StreamDescriptionSummary.StreamCreationTimestamp).UnixMilli(); now != created {
		return recreatedErr(streamName, created, now)
	}
	return nil
}

// limiterStats returns the polling limiter's counters for a shard (tests).
func (p *ReaderPool) limiterStats(s Shard) limiterStats {
	if p.polling == nil {
		return limiterStats{}
	}
	return p.polling.limiter(s).snapshot()
}

// emptyReader is a range with nothing to read.
type emptyReader struct{ end stream.Position }

func (r *emptyReader) Read(context.Context) ([]stream.Record, error) { return nil, io.EOF }
func (r *emptyReader) End() stream.Position                          { return r.end }
func (r *emptyReader) Close() error                                  { return nil }

func (r *emptyReader) ReadKinesisArrow(context.Context, *columnar.KinesisBuilder) (int, int64, []stream.Record, error) {
	return 0, 0, nil, io.EOF
}

// rangeReader reads one range through a shardReader it holds until Close.
// Read, End, Metrics and Close must not be called concurrently.
type rangeReader struct {
	pool     *ReaderPool
	sr       *shardReader // nil after Close
	key      string
	until    *position       // a replay's recorded end
	untilRaw stream.Position // as recorded, returned verbatim as End
	cut      int64           // availableNow: stop before records that arrived after this (ms)
	created  int64           // creation time of the stream the range was planned for (ms)
	deadline time.Time       // maxFetchDuration (not for replays)

	bytes   int64
	fetched bool // at least one fetch in this range
	cutDone bool
	done    bool
	closed  bool
	endPos  position // kept at Close for End
	behind  int64
}

var (
	_ connectors.Reader             = (*rangeReader)(nil)
	_ connectors.ReaderMetrics      = (*rangeReader)(nil)
	_ connectors.KinesisArrowReader = (*rangeReader)(nil)
	_ connectors.KinesisArrowReader = (*emptyReader)(nil)
)

// Read returns the next records of the range, at most WithMaxRecordsPerRead
// at a time, then io.EOF. It blocks while fetching (rate limits included)
// until ctx ends. Errors come from the fetcher (see ShardFetcher.Fetch).
func (r *rangeReader) Read(ctx context.Context) ([]stream.Record, error) {
	var out []stream.Record
	n, err := r.next(ctx, func(u userRecord) { out = append(out, r.record(u)) })
	if n == 0 {
		return nil, err
	}
	return out, nil
}

// ReadKinesisArrow is Read appending to b (connectors.KinesisArrowReader):
// the same records, positions, blocking and errors, with the columns of
// Read's rows that b has. A record that could not be unpacked (a corrupt
// KPL aggregate) is not appended but returned in bad, as Read returns it.
func (r *rangeReader) ReadKinesisArrow(ctx context.Context, b *columnar.KinesisBuilder) (records int, bytes int64, bad []stream.Record, err error) {
	var shard Shard
	if r.sr != nil {
		shard = r.sr.shard
	}
	records, err = r.next(ctx, func(u userRecord) {
		bytes += int64(len(u.data))
		if u.err != nil {
			bad = append(bad, r.record(u))
			return
		}
		b.Append(u.key, u.data, shard.Stream, shard.ShardID, u.seq, u.arrival.UnixMilli(), u.sub)
	})
	return records, bytes, bad, err
}

// next is Read and ReadKinesisArrow without the conversion: it hands the
// next records of the range to emit, at most WithMaxRecordsPerRead, and
// returns how many; with none, the error (io.EOF at the end).
func (r *rangeReader) next(ctx context.Context, emit func(userRecord)) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("read %s: reader closed", r.key)
	}
	sr := r.sr
	n := 0
	for !r.done {
		n += r.deliver(emit)
		if r.done || n > 0 {
			break
		}
		if sr.ended {
			// Every fetched record was handed out and the shard is closed.
			if r.until != nil && !r.until.End {
				return 0, fmt.Errorf("read %s: the shard ended at %s before the recorded end %s of an earlier attempt",
					r.key, sr.pos.encode(), r.untilRaw)
			}
			sr.pos.End, r.done = true, true
			break
		}
		now := r.pool.opts.now()
		if r.until == nil && (r.fetched && sr.behind == 0 || !now.Before(r.deadline)) {
			r.done = true // caught up, or out of time
			break
		}
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if r.until == nil {
			fctx, cancel = context.WithTimeout(ctx, r.deadline.Sub(now))
		}
		res, err := sr.f.Fetch(fctx)
		timedOut := ctx.Err() == nil && errors.Is(fctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil {
			if r.until == nil && timedOut {
				r.done = true // out of time while waiting on the rate limit or the call
				break
			}
			if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
				sr.broken = true
			}
			if rerr := r.pool.checkRecreated(ctx, sr.shard.Stream, r.created, err); rerr != nil {
				return 0, fmt.Errorf("read %s: %w", r.key, rerr)
			}
			return 0, fmt.Errorf("read %s after %s: %w", r.key, sr.pos.encode(), err)
		}
		if res.Restarted {
			// A sequence number was not found and, failOnDataLoss being
			// false, the fetcher started over at TRIM_HORIZON. Lost records
			// are one explanation; a recreated stream, whose records must
			// not be mixed into this checkpoint, is the other.
			if rerr := r.pool.recreatedSince(ctx, sr.shard.Stream, r.created); rerr != nil {
				sr.broken = true
				return 0, fmt.Errorf("read %s: %w", r.key, rerr)
			}
		}
		r.fetched = true
		sr.behind, r.behind = res.MillisBehindLatest, res.MillisBehindLatest
		if res.SkippedAhead {
			// Records at the start were lost (failOnDataLoss false); what
			// follows does not order after the old position. Nothing was
			// fetched before, so nothing is pending.
			sr.pos = position{Start: startTrimHorizon}
		}
		r.pool.appendRecords(sr, res.Records)
		if res.ShardEnded {
			sr.ended = true
		}
		if r.cut > 0 && res.MillisBehindLatest == 0 && len(res.Records) == 0 {
			// At the tip at a time after the plan fixed the cut: everything
			// that arrived before it has been fetched. (MillisBehindLatest 0
			// alone is not enough: records put in one call share their
			// arrival time, and a page may stop among them.)
			r.cutDone = true
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, io.EOF
}

// deliver hands pending records to emit until a limit is reached, and
// returns how many.
func (r *rangeReader) deliver(emit func(userRecord)) int {
	sr := r.sr
	limit := r.pool.opts.maxRead
	n := 0
	for len(sr.pending) > 0 && n < limit {
		u := sr.pending[0]
		if r.until != nil {
			if u.beyond(*r.until) {
				r.done = true
				return n
			}
		} else if r.cut > 0 && u.arrival.UnixMilli() > r.cut {
			r.cutDone, r.done = true, true
			return n
		}
		sr.pending[0] = userRecord{}
		sr.pending = sr.pending[1:]
		emit(u)
		n++
		sr.pos = u.after()
		r.bytes += int64(len(u.data))
		if r.until != nil {
			if !r.until.End && sr.pos.at(r.until.point()) {
				r.done = true
				return n
			}
		} else if r.bytes >= r.pool.set.fetchBufferSize {
			r.done = true
			return n
		}
	}
	if len(sr.pending) == 0 {
		sr.pending = nil // let the fetched pages be collected
	}
	return n
}

func (r *rangeReader) record(u userRecord) stream.Record {
	return stream.Record{Fields: stream.Row{
		"data":                        u.data,
		"stream":                      r.sr.shard.Stream,
		"shardId":                     r.sr.shard.ShardID,
		"sequenceNumber":              u.seq,
		"subSequenceNumber":           u.sub,
		"partitionKey":                u.key,
		"approximateArrivalTimestamp": u.arrival,
	}, Size: len(u.data), Err: u.err}
}

// appendRecords splits KPL aggregates and appends the user records that
// follow the shard reader's position (a partly read aggregate is fetched
// again from its start).
func (p *ReaderPool) appendRecords(sr *shardReader, recs []types.Record) {
	for _, rec := range recs {
		seq := aws.ToString(rec.SequenceNumber)
		if sr.pos.Seq != "" {
			if c := efo.CompareSequence(seq, sr.pos.Seq); c < 0 || (c == 0 && sr.pos.Sub == nil) {
				continue
			}
		}
		key := aws.ToString(rec.PartitionKey)
		arrival := aws.ToTime(rec.ApproximateArrivalTimestamp).UTC()
		users, err := kpl.Deaggregate(rec.Data)
		if err != nil {
			u := userRecord{seq: seq, last: true, key: key, data: rec.Data, arrival: arrival}
			if !errors.Is(err, kpl.ErrNotAggregated) {
				// A corrupt aggregate is one record that cannot be
				// unpacked: it is delivered whole, with Err set, so that
				// the job's onError policy (fail, skip, deadLetter) decides
				// its fate, with its raw bytes and position kept.
				u.err = fmt.Errorf("kinesis: corrupt KPL aggregate at %s sequence number %s: %w", sr.shard, seq, err)
				p.opts.logger.Warn("kinesis: corrupt KPL aggregate; delivered as one record with an error for onError",
					"shard", sr.shard.String(), "sequenceNumber", seq, "err", err)
			}
			sr.pending = append(sr.pending, u)
			continue
		}
		for i, u := range users {
			if seq == sr.pos.Seq && sr.pos.Sub != nil && int64(i) <= *sr.pos.Sub {
				continue
			}
			sr.pending = append(sr.pending, userRecord{
				seq: seq, sub: int64(i), last: i == len(users)-1, key: u.PartitionKey, data: u.Data, arrival: arrival,
			})
		}
	}
}

// End is the position after the last record returned; a replay's recorded
// end once it is done.
func (r *rangeReader) End() stream.Position {
	if r.until != nil && r.done {
		return r.untilRaw
	}
	p := r.endPos
	if r.sr != nil {
		p = r.sr.pos
	}
	if r.cutDone {
		p.CutDone = r.cut
	}
	return p.encode()
}

// Metrics reports the shard's MillisBehindLatest after this range's last
// fetch; nothing when the range fetched nothing.
func (r *rangeReader) Metrics() map[string]float64 {
	if !r.fetched || r.behind < 0 {
		return nil
	}
	return map[string]float64{MetricMillisBehindLatest: float64(r.behind)}
}

// Close returns the shard reader to the pool, warm, unless it failed.
func (r *rangeReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.endPos = r.sr.pos
	sr := r.sr
	r.sr = nil
	r.pool.release(sr)
	return nil
}
