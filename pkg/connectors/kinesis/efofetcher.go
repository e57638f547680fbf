package kinesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
)

// efoFactory creates enhanced fan-out fetchers: one efo.Subscription per
// shard reader. The ReaderPool keeps a shard's reader (and so its
// subscription) warm between tasks and reuses it when the next range starts
// where it stopped; otherwise it closes it and asks for a new fetcher from
// the planned start. The Subscription renews itself when the service ends it
// (every five minutes) from the last position received.
//
// The consumer is the driver's (efo.Manager registers it and waits for it);
// executors only look its ARN up, once per stream (shards opening together
// wait for one lookup rather than each making their own: DescribeStreamConsumer
// allows 20 calls per second per stream), and look again after a subscription
// found it gone (a job-managed consumer registered again gets a new ARN).
type efoFactory struct {
	sub efo.SubscribeAPI
	// arnOf looks up the ACTIVE consumer's ARN of a stream; efo.StreamARN
	// and efo.ActiveConsumerARN by default, replaced by tests.
	arnOf    func(ctx context.Context, stream string) (string, error)
	subOpts  []efo.SubscriptionOption
	consumer string

	// lookup admits one arnOf call at a time; a slot, not a mutex, so that
	// a fetcher waiting for it still honours its context.
	lookup chan struct{}
	mu     sync.Mutex
	arns   map[string]string // stream name → consumer ARN
}

func newEFOFactory(lookup efo.ConsumerAPI, sub efo.SubscribeAPI, consumer string, o options) *efoFactory {
	f := &efoFactory{sub: sub, consumer: consumer, lookup: make(chan struct{}, 1), arns: map[string]string{},
		subOpts: []efo.SubscriptionOption{efo.WithSubscriptionLogger(o.logger), efo.WithMaxAttempts(o.maxAttempts)}}
	f.arnOf = func(ctx context.Context, stream string) (string, error) {
		streamARN, err := efo.StreamARN(ctx, lookup, stream)
		if err != nil {
			return "", streamErr(stream, err)
		}
		arn, err := efo.ActiveConsumerARN(ctx, lookup, streamARN, consumer)
		if errors.Is(err, efo.ErrConsumerNotFound) || errors.Is(err, efo.ErrConsumerNotActive) {
			// The driver registers the consumer (or waits for it) before it
			// plans; this task ran while it was replaced. Retrying the task
			// after the driver's next check helps.
			return "", fmt.Errorf("enhanced fan-out consumer %s is not usable yet (the driver waits for it): %w", consumer, err)
		}
		return arn, err
	}
	return f
}

// checkSubscribeHTTPClient refuses an HTTP client with an overall timeout:
// it would cut every subscription (a response that lasts five minutes).
func checkSubscribeHTTPClient(c aws.HTTPClient) error {
	if hc, ok := c.(*http.Client); ok && hc.Timeout > 0 {
		return fmt.Errorf("kinesis: WithHTTPClient: consumerMode efo needs an HTTP client without Timeout "+
			"(a SubscribeToShard response lasts up to five minutes); got Timeout %s", hc.Timeout)
	}
	return nil
}

func (f *efoFactory) consumerARN(ctx context.Context, stream string) (string, error) {
	if arn := f.cachedARN(stream); arn != "" {
		return arn, nil
	}
	select {
	case f.lookup <- struct{}{}:
		defer func() { <-f.lookup }()
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if arn := f.cachedARN(stream); arn != "" {
		return arn, nil // found by the lookup this one waited for
	}
	arn, err := f.arnOf(ctx, stream)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.arns[stream] = arn
	f.mu.Unlock()
	return arn, nil
}

func (f *efoFactory) cachedARN(stream string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.arns[stream]
}

// forget drops a stream's cached consumer ARN if it is still arn.
func (f *efoFactory) forget(stream, arn string) {
	f.mu.Lock()
	if f.arns[stream] == arn {
		delete(f.arns, stream)
	}
	f.mu.Unlock()
}

func (f *efoFactory) NewFetcher(shard Shard, from StartingPosition) (ShardFetcher, error) {
	start, err := efoStart(from)
	if err != nil {
		return nil, fmt.Errorf("enhanced fan-out fetcher for %s: %w", shard, err)
	}
	return &efoFetcher{f: f, shard: shard, start: start}, nil
}

// efoStart converts a planned start into SubscribeToShard's form.
func efoStart(p StartingPosition) (types.StartingPosition, error) {
	switch p.Type {
	case types.ShardIteratorTypeAfterSequenceNumber:
		return efo.AfterSequence(p.SequenceNumber), nil
	case types.ShardIteratorTypeAtSequenceNumber:
		return efo.AtSequence(p.SequenceNumber), nil
	case types.ShardIteratorTypeAtTimestamp:
		return efo.AtTimestamp(p.Timestamp), nil
	case types.ShardIteratorTypeTrimHorizon:
		return efo.TrimHorizon(), nil
	case types.ShardIteratorTypeLatest:
		return efo.Latest(), nil
	}
	return types.StartingPosition{}, fmt.Errorf("unknown starting position %s", p)
}

// efoFetcher reads one shard through one subscription, opened by the first
// Fetch. Fetch and Close are the ReaderPool's (one task at a time).
type efoFetcher struct {
	f     *efoFactory
	shard Shard
	start types.StartingPosition

	sub      *efo.Subscription
	arn      string
	ended    bool
	children []string
}

func (e *efoFetcher) Close() error {
	if e.sub != nil {
		return e.sub.Close()
	}
	return nil
}

// Fetch returns the records of the next event (possibly none: a quiet
// shard's events carry MillisBehindLatest only). The event with ChildShards
// is the closed shard's last: it ends the shard. When ctx ends, the
// subscription stays open and nothing received is lost (efo.Subscription
// keeps it for the next Next).
func (e *efoFetcher) Fetch(ctx context.Context) (FetchResult, error) {
	if e.ended {
		return FetchResult{ShardEnded: true, ChildShards: e.children}, nil
	}
	if e.sub == nil {
		arn, err := e.f.consumerARN(ctx, e.shard.Stream)
		if err != nil {
			return FetchResult{}, fmt.Errorf("fetch %s: %w", e.shard, err)
		}
		sub, err := efo.NewSubscription(e.f.sub, arn, e.shard.ShardID, e.start, e.f.subOpts...)
		if err != nil {
			return FetchResult{}, fmt.Errorf("fetch %s: %w", e.shard, err)
		}
		e.sub, e.arn = sub, arn
	}
	b, err := e.sub.Next(ctx)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		// Only after the ChildShards event, which already ended the shard;
		// kept in case a subscription ends without one.
		e.ended = true
		return FetchResult{ShardEnded: true, ChildShards: e.children}, nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return FetchResult{}, fmt.Errorf("fetch %s: %w", e.shard, err)
	default:
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			// The consumer may have been registered again under a new ARN
			// (or the shard expired): look it up again on the next attempt.
			e.f.forget(e.shard.Stream, e.arn)
		}
		return FetchResult{}, fmt.Errorf("fetch %s: %w", e.shard, err)
	}
	res := FetchResult{Records: b.Records, MillisBehindLatest: b.MillisBehindLatest}
	if b.ShardEnded() {
		e.ended = true
		for _, c := range b.ChildShards {
			e.children = append(e.children, aws.ToString(c.ShardId))
		}
		res.ShardEnded, res.ChildShards, res.MillisBehindLatest = true, e.children, 0
	}
	return res, nil
}
