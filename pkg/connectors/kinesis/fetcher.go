package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
)

// Shard names one shard of one stream.
type Shard struct {
	Stream  string
	ShardID string
}

func (s Shard) String() string { return s.Stream + "/" + s.ShardID }

// ShardFetcher reads one shard onwards from where it was created. The
// ReaderPool owns it: it is used by one task at a time and kept warm between
// a shard's tasks, so that a shard's next batch continues without a new
// iterator (or subscription).
//
// The polling fetcher (GetRecords) is the default; an enhanced fan-out
// fetcher (SubscribeToShard) plugs in through WithFetcherFactory.
type ShardFetcher interface {
	// Fetch returns the next records of the shard, in order, after the ones
	// it returned before; possibly none. It handles throttling and
	// transient errors itself (waiting, renewing iterators) and blocks no
	// longer than ctx allows. The reader cancels ctx when a task's time is
	// up, so when ctx ends Fetch returns ctx's error and the fetcher stays
	// usable: records it received but did not return come with a later
	// Fetch, never lost or repeated.
	// Errors: *connectors.DataLossError when the records at the starting
	// position are gone, an error wrapped with connectors.Permanent when
	// retrying cannot help, anything else after repeated transient
	// failures. After a result with ShardEnded, Fetch keeps returning an
	// empty, ended result.
	Fetch(ctx context.Context) (FetchResult, error)
	// Close releases the fetcher's resources (for EFO its subscription).
	Close() error
}

// FetchResult is one Fetch's outcome.
type FetchResult struct {
	// Records are Kinesis records as the service returns them (KPL
	// aggregates are split by the reader).
	Records []types.Record
	// MillisBehindLatest is how far the last record is behind the tip of
	// the shard; 0 means caught up, -1 unknown.
	MillisBehindLatest int64
	// ShardEnded says the shard is closed and every record was returned
	// (SHARD_END); ChildShards then names its children when known.
	ShardEnded  bool
	ChildShards []string
	// SkippedAhead says the records at the starting position were gone and,
	// because failOnDataLoss is false, the fetcher started over at the
	// shard's TRIM_HORIZON: Records do not follow the starting position.
	SkippedAhead bool
	// Restarted says the fetcher found a sequence number missing (its
	// records trimmed, or the stream deleted and recreated) and, because
	// failOnDataLoss is false, started over at TRIM_HORIZON since the last
	// result: with SkippedAhead, or, after records were already returned,
	// dropping those again. The reader then checks the stream's identity
	// before it delivers anything more.
	Restarted bool
}

// FetcherFactory creates shard fetchers. NewFetcher must not block on the
// service: the first Fetch does the I/O.
type FetcherFactory interface {
	NewFetcher(shard Shard, from StartingPosition) (ShardFetcher, error)
}

// pollingFactory creates GetRecords fetchers. It keeps one rate limiter per
// shard for the pool's lifetime, so that a shard's throttling state carries
// over from one task to the next.
type pollingFactory struct {
	client api
	set    *settings
	opts   options

	mu       sync.Mutex
	limiters map[Shard]*limiter
}

func newPollingFactory(client api, set *settings, opts options) *pollingFactory {
	return &pollingFactory{client: client, set: set, opts: opts, limiters: map[Shard]*limiter{}}
}

func (f *pollingFactory) limiter(s Shard) *limiter {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.limiters[s]
	if l == nil {
		l = newLimiter(f.set.maxFetchRate, f.set.minFetchPeriod, f.set.maxRecords)
		f.limiters[s] = l
	}
	return l
}

func (f *pollingFactory) NewFetcher(shard Shard, from StartingPosition) (ShardFetcher, error) {
	return &pollingFetcher{f: f, shard: shard, start: from, lim: f.limiter(shard)}, nil
}

// pollingFetcher reads a shard with GetShardIterator and GetRecords.
//
// Invariant: iter, when set, points just after last (or at start when last
// is empty); it only moves after a successful GetRecords, so a call that
// failed or was cancelled is simply made again.
type pollingFetcher struct {
	f     *pollingFactory
	shard Shard
	start StartingPosition
	lim   *limiter

	iter     *string
	last     string // sequence number of the last record returned
	ended    bool
	children []string
	skipped  bool   // renew skipped ahead; the next result says so
	restart  bool   // renew started over at TRIM_HORIZON; the next result says so
	floor    string // after a skip past records already returned: drop those up to here
}

func (p *pollingFetcher) Close() error { return nil }

func (p *pollingFetcher) Fetch(ctx context.Context) (FetchResult, error) {
	if p.ended {
		return FetchResult{ShardEnded: true, ChildShards: p.children}, nil
	}
	o := p.f.opts
	failures := 0
	for {
		if p.iter == nil {
			gone, err := p.renew(ctx)
			if err != nil {
				return FetchResult{}, err
			}
			if gone {
				p.ended = true
				return FetchResult{ShardEnded: true}, nil
			}
		}
		if err := p.lim.wait(ctx, o); err != nil {
			return FetchResult{}, fmt.Errorf("fetch %s: %w", p.shard, err)
		}
		out, err := p.f.client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: p.iter, Limit: aws.Int32(p.lim.limit())})
		now := o.now()
		if err == nil {
			n := 0
			for _, r := range out.Records {
				n += len(r.Data)
			}
			p.lim.fetched(now, n, o.logger, p.shard)
			recs := out.Records
			if p.floor != "" {
				// Started over after records already returned: drop those.
				for len(recs) > 0 && efo.CompareSequence(aws.ToString(recs[0].SequenceNumber), p.floor) <= 0 {
					recs = recs[1:]
				}
				if len(recs) > 0 {
					p.floor = ""
				}
			}
			res := FetchResult{Records: recs, MillisBehindLatest: -1, SkippedAhead: p.skipped, Restarted: p.restart}
			p.skipped, p.restart = false, false
			if out.MillisBehindLatest != nil {
				res.MillisBehindLatest = *out.MillisBehindLatest
			}
			if len(recs) > 0 {
				p.last = aws.ToString(recs[len(recs)-1].SequenceNumber)
			}
			// A closed shard's last page has no next iterator (kinesis-mock
			// reports EndingSequenceNumber 2^63-1, below real sequence
			// numbers, so that is no guide).
			if out.NextShardIterator == nil {
				p.ended, res.ShardEnded = true, true
				for _, c := range out.ChildShards {
					p.children = append(p.children, aws.ToString(c.ShardId))
				}
				res.ChildShards, res.MillisBehindLatest = p.children, 0
			}
			p.iter = out.NextShardIterator
			return res, nil
		}
		switch classify(ctx, err) {
		case errCanceled:
			return FetchResult{}, fmt.Errorf("fetch %s: %w", p.shard, ctx.Err())
		case errThrottled:
			// Not a failure: slow down (the limiter schedules the next call
			// after a back-off) and try again.
			p.lim.throttled(now, o, p.shard)
		case errExpired:
			p.iter = nil
		case errTransient:
			failures++
			if failures >= o.maxAttempts {
				return FetchResult{}, fmt.Errorf("fetch %s: GetRecords failed %d times: %w", p.shard, failures, err)
			}
			if failures >= 3 {
				p.iter = nil // in case the iterator itself is what the server chokes on
			}
			if err := o.sleep(ctx, backoff(o.backoffBase, o.backoffLimit, failures)); err != nil {
				return FetchResult{}, fmt.Errorf("fetch %s: %w", p.shard, err)
			}
		default:
			return FetchResult{}, fmt.Errorf("fetch %s: GetRecords: %w", p.shard, err)
		}
	}
}

// renew gets a shard iterator at the last record returned, or at the start.
// gone is true when the shard does not exist and failOnDataLoss is false:
// the shard is then treated as read to its end.
func (p *pollingFetcher) renew(ctx context.Context) (gone bool, err error) {
	o := p.f.opts
	failures := 0
	for {
		from := p.start
		if p.last != "" {
			from = StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: p.last}
		}
		in := &kinesis.GetShardIteratorInput{
			StreamName: aws.String(p.shard.Stream), ShardId: aws.String(p.shard.ShardID), ShardIteratorType: from.Type,
		}
		if from.SequenceNumber != "" {
			in.StartingSequenceNumber = aws.String(from.SequenceNumber)
		}
		if from.Type == types.ShardIteratorTypeAtTimestamp {
			in.Timestamp = aws.Time(from.Timestamp)
		}
		if err := p.lim.waitIterator(ctx, o); err != nil {
			return false, fmt.Errorf("get iterator for %s: %w", p.shard, err)
		}
		out, err := p.f.client.GetShardIterator(ctx, in)
		now := o.now()
		if err == nil {
			p.lim.iteratorCalled(now)
			if out.ShardIterator == nil {
				// Only a closed shard read to its end has no iterator.
				return true, nil
			}
			p.iter = out.ShardIterator
			return false, nil
		}
		var (
			nf  *types.ResourceNotFoundException
			inv *types.InvalidArgumentException
		)
		switch {
		case errors.As(err, &inv) && from.SequenceNumber != "":
			return false, connectors.Permanent(fmt.Errorf("get iterator for %s at %s: %w: the sequence number does not belong "+
				"to this shard; was the stream deleted and recreated? Its checkpoint cannot be used for the new stream: "+
				"submit the job under a new name (or delete its checkpoint) to read the new stream from initialPosition", p.shard, from, err))
		case errors.As(err, &nf):
			reason := "the shard no longer exists: it expired (retention) or the stream was deleted"
			if from.SequenceNumber != "" {
				reason = "the sequence number is not in the shard: its records were trimmed by retention, or the stream was deleted and recreated"
			}
			if p.f.set.failOnDataLoss {
				return false, &connectors.DataLossError{Partition: partitionID(p.shard.Stream, p.shard.ShardID),
					Requested: from.String(), Earliest: "unknown", Reason: reason}
			}
			if from.SequenceNumber == "" {
				o.logger.Warn("kinesis: shard gone; treating it as read (failOnDataLoss is false)",
					"shard", p.shard.String(), "requested", from.String(), "reason", reason)
				return true, nil
			}
			o.logger.Warn("kinesis: records lost, continuing at TRIM_HORIZON (failOnDataLoss is false)",
				"shard", p.shard.String(), "requested", from.String(), "reason", reason)
			if p.last == "" {
				p.skipped = true // nothing returned yet: the reader restarts its position
			} else {
				p.floor = p.last // keep the order: never return a record twice
			}
			p.start, p.last, p.restart = StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}, "", true
			continue
		}
		switch classify(ctx, err) {
		case errCanceled:
			return false, fmt.Errorf("get iterator for %s: %w", p.shard, ctx.Err())
		case errThrottled:
			p.lim.throttled(now, o, p.shard)
		case errTransient:
			failures++
			if failures >= o.maxAttempts {
				return false, fmt.Errorf("get iterator for %s: failed %d times: %w", p.shard, failures, err)
			}
			if err := o.sleep(ctx, backoff(o.backoffBase, o.backoffLimit, failures)); err != nil {
				return false, fmt.Errorf("get iterator for %s: %w", p.shard, err)
			}
		default:
			return false, fmt.Errorf("get iterator for %s at %s: %w", p.shard, from, err)
		}
	}
}

// limiter paces one shard's GetRecords calls on this executor: after a call
// that returned n bytes the next one waits max(minFetchPeriod, n/rate).
// On throttling the rate and the records per call are halved (down to
// 1/64 of the maximum) and the next call waits a jittered, growing
// back-off; each successful call then raises them by a quarter until they
// are back at the maximum. An episode is logged once when it starts and
// once when it ends, not per throttled call.
type limiter struct {
	mu        sync.Mutex
	maxRate   float64 // bytes per second
	rate      float64
	minPeriod time.Duration
	maxLimit  int32
	lim       int32
	next      time.Time // earliest next GetRecords
	nextIter  time.Time // earliest next GetShardIterator
	streak    int       // consecutive throttled calls
	episode   bool
	stats     limiterStats
}

// limiterStats are counters for tests and debugging.
type limiterStats struct {
	Waits     int           // calls that had to wait
	Waited    time.Duration // total wait
	Throttled int           // throttled calls
	Episodes  int
}

func newLimiter(maxRate float64, minPeriod time.Duration, maxLimit int32) *limiter {
	return &limiter{maxRate: maxRate, rate: maxRate, minPeriod: minPeriod, maxLimit: maxLimit, lim: maxLimit}
}

func (l *limiter) limit() int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lim
}

func (l *limiter) wait(ctx context.Context, o options) error {
	return l.waitUntil(ctx, o, func() time.Time { return l.next })
}

// waitIterator keeps GetShardIterator calls apart too (5 per second and
// shard), using the same throttling back-off.
func (l *limiter) waitIterator(ctx context.Context, o options) error {
	return l.waitUntil(ctx, o, func() time.Time {
		if l.nextIter.After(l.next) {
			return l.nextIter
		}
		return l.next
	})
}

func (l *limiter) waitUntil(ctx context.Context, o options, at func() time.Time) error {
	l.mu.Lock()
	d := at().Sub(o.now())
	if d > 0 {
		l.stats.Waits++
		l.stats.Waited += d
	}
	l.mu.Unlock()
	if d <= 0 {
		return ctx.Err()
	}
	return o.sleep(ctx, d)
}

func (l *limiter) iteratorCalled(now time.Time) {
	l.mu.Lock()
	l.nextIter = now.Add(MinMinFetchPeriod)
	l.mu.Unlock()
}

// fetched records a successful call that returned n bytes at now.
func (l *limiter) fetched(now time.Time, n int, log *slog.Logger, s Shard) {
	l.mu.Lock()
	gap := max(l.minPeriod, time.Duration(float64(n)/l.rate*float64(time.Second)))
	l.next = now.Add(gap)
	l.streak = 0
	recovered := false
	if l.rate < l.maxRate || l.lim < l.maxLimit {
		l.rate = min(l.maxRate, l.rate*1.25)
		l.lim = min(l.maxLimit, l.lim+l.lim/4+1)
	}
	if l.episode && l.rate == l.maxRate && l.lim == l.maxLimit {
		l.episode, recovered = false, true
	}
	l.mu.Unlock()
	if recovered {
		log.Info("kinesis: shard fetch rate recovered after throttling", "shard", s.String())
	}
}

// throttled records a throttled call at now and schedules the next one.
func (l *limiter) throttled(now time.Time, o options, s Shard) {
	l.mu.Lock()
	l.rate = max(l.rate/2, l.maxRate/64)
	l.lim = max(l.lim/2, 1)
	d := backoff(o.backoffBase, o.backoffLimit, l.streak)
	l.streak++
	l.next = now.Add(d)
	l.stats.Throttled++
	first := !l.episode
	if first {
		l.episode = true
		l.stats.Episodes++
	}
	rate, lim := l.rate, l.lim
	l.mu.Unlock()
	if first {
		o.logger.Warn("kinesis: shard throttled (ProvisionedThroughputExceeded); backing off and halving its fetch rate until it recovers: "+
			"if this recurs, lower maxFetchRate or raise minFetchPeriod, or add shards",
			"shard", s.String(), "rateBytesPerSec", int64(rate), "recordsPerCall", lim, "backoff", d)
	}
}

func (l *limiter) snapshot() limiterStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}
