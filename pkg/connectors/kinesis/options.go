package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
)

// Option tunes NewSource, NewReaderPool or NewSink. Options that do not
// concern a constructor are ignored by it.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger       *slog.Logger
	mem          memory.Allocator
	httpClient   aws.HTTPClient
	fetchers     FetcherFactory
	idleTimeout  time.Duration
	maxRead      int
	maxAttempts  int
	now          func() time.Time
	sleep        func(ctx context.Context, d time.Duration) error
	backoffBase  time.Duration
	backoffLimit time.Duration
	// consumerWait bounds how long Plan waits for an enhanced fan-out
	// consumer to become ACTIVE before it reports the wait as an error. It
	// bounds the wait only: the manager's calls go on in the background.
	consumerWait       time.Duration
	consumerBackoffMin time.Duration // efo.Manager's wait back-off; 0: its default
	consumerBackoffMax time.Duration
}

func defaultOptions() options {
	return options{
		logger:       slog.Default(),
		mem:          memory.DefaultAllocator,
		idleTimeout:  10 * time.Minute,
		maxRead:      10000,
		maxAttempts:  10,
		now:          time.Now,
		sleep:        sleepCtx,
		backoffBase:  250 * time.Millisecond,
		backoffLimit: 5 * time.Second,
		consumerWait: 5 * time.Second,
	}
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	switch {
	case o.logger == nil:
		return o, errors.New("kinesis: WithLogger: logger must not be nil")
	case o.mem == nil:
		return o, errors.New("kinesis: WithAllocator: allocator must not be nil")
	case o.idleTimeout <= 0:
		return o, fmt.Errorf("kinesis: WithIdleTimeout: must be positive (got %s)", o.idleTimeout)
	case o.maxRead <= 0:
		return o, fmt.Errorf("kinesis: WithMaxRecordsPerRead: must be positive (got %d)", o.maxRead)
	case o.maxAttempts <= 0:
		return o, fmt.Errorf("kinesis: WithMaxAttempts: must be positive (got %d)", o.maxAttempts)
	}
	return o, nil
}

// WithLogger sets where warnings go (throttling episodes, data skipped with
// failOnDataLoss false). Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithAllocator sets where the sink allocates the Arrow memory of its
// expressions' values (and of the batches it makes of rows to evaluate
// them) (NewSink only). Default memory.DefaultAllocator.
func WithAllocator(mem memory.Allocator) Option {
	return optionFunc(func(o *options) { o.mem = mem })
}

// WithHTTPClient sets the HTTP client of every Kinesis call (the SDK's own
// otherwise). STS calls for roleArn keep the SDK's client: awsauth builds
// that client before this one is applied.
func WithHTTPClient(c aws.HTTPClient) Option {
	return optionFunc(func(o *options) { o.httpClient = c })
}

// WithFetcherFactory replaces the polling (GetRecords) shard fetcher of
// NewReaderPool, e.g. with an enhanced fan-out one. Default: polling.
func WithFetcherFactory(f FetcherFactory) Option {
	return optionFunc(func(o *options) { o.fetchers = f })
}

// WithIdleTimeout drops a shard's warm reader (its iterator and buffered
// records) after it was not used for d (ReaderPool only). Default 10m.
func WithIdleTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.idleTimeout = d })
}

// WithMaxRecordsPerRead bounds how many records one Reader.Read returns
// (ReaderPool only). Default 10000.
func WithMaxRecordsPerRead(n int) Option { return optionFunc(func(o *options) { o.maxRead = n }) }

// WithMaxAttempts bounds the consecutive attempts of a call that fails
// transiently (network errors, 5xx) before the error reaches the task,
// which the driver then retries; throttling is not counted, it slows down
// instead. For PutRecords it is overridden by the sink's maxRetries.
// Default 10.
func WithMaxAttempts(n int) Option { return optionFunc(func(o *options) { o.maxAttempts = n }) }

// withClock makes time injectable: now for the rate limiter and deadlines,
// sleep for waits and back-off.
func withClock(now func() time.Time, sleep func(context.Context, time.Duration) error) Option {
	return optionFunc(func(o *options) { o.now, o.sleep = now, sleep })
}

// withBackoff sets the back-off of throttled and failed calls: full jitter
// over base·2^n, capped at limit; for tests.
func withBackoff(base, limit time.Duration) Option {
	return optionFunc(func(o *options) { o.backoffBase, o.backoffLimit = base, limit })
}

// withConsumerWait sets how long Plan waits for the enhanced fan-out
// consumer per call, and the manager's back-off while it waits; for tests.
func withConsumerWait(wait, backoffMin, backoffMax time.Duration) Option {
	return optionFunc(func(o *options) {
		o.consumerWait, o.consumerBackoffMin, o.consumerBackoffMax = wait, backoffMin, backoffMax
	})
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
