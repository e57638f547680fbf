package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Option tunes NewSource or NewReaderPool. Options that do not concern a
// constructor are ignored by it.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger        *slog.Logger
	idleTimeout   time.Duration
	cacheCapacity int
	maxRecords    int
	stallCheck    time.Duration
	now           func() time.Time
}

func defaultOptions() options {
	return options{
		logger:        slog.Default(),
		idleTimeout:   5 * time.Minute,
		cacheCapacity: 4096,
		maxRecords:    10000,
		stallCheck:    10 * time.Second,
		now:           time.Now,
	}
}

func buildOptions(opts []Option) (options, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	switch {
	case o.logger == nil:
		return o, errors.New("kafka: WithLogger: logger must not be nil")
	case o.idleTimeout <= 0:
		return o, fmt.Errorf("kafka: WithIdleTimeout: must be positive (got %s)", o.idleTimeout)
	case o.cacheCapacity <= 0:
		return o, fmt.Errorf("kafka: WithCacheCapacity: must be positive (got %d)", o.cacheCapacity)
	case o.maxRecords <= 0:
		return o, fmt.Errorf("kafka: WithMaxRecordsPerRead: must be positive (got %d)", o.maxRecords)
	}
	return o, nil
}

// WithLogger sets where warnings (skipped data with failOnDataLoss false)
// go. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithIdleTimeout closes a cached partition reader that has not been used
// for d (ReaderPool only). Default 5m, as Spark's consumer cache.
func WithIdleTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.idleTimeout = d })
}

// WithCacheCapacity bounds how many partitions the pool keeps warm between
// ranges: their position in the pool's one franz-go client and what was
// prefetched for them. Beyond it the least recently used idle partition is
// parked (its buffer dropped, its fetch paused) (ReaderPool only). Ranges
// being read are never parked, so the pool may exceed the bound while more
// ranges than that run at once. Default 4096: every partition an executor
// reads stays warm (one client for all of them, so a warm partition costs a
// position and its share of WithMaxPrefetchBytes, not a connection), and a
// 1,024-partition batch does not re-seek. Spark's
// spark.kafka.consumer.cache.capacity (64) bounds consumers, one per
// partition, which Sluice does not have.
func WithCacheCapacity(n int) Option { return optionFunc(func(o *options) { o.cacheCapacity = n }) }

// WithMaxRecordsPerRead bounds how many records one Reader.Read returns
// (ReaderPool only). Default 10000.
func WithMaxRecordsPerRead(n int) Option { return optionFunc(func(o *options) { o.maxRecords = n }) }

// withStallCheck sets how long a reader waits for records before checking
// whether its topic or records still exist; for tests.
func withStallCheck(d time.Duration) Option { return optionFunc(func(o *options) { o.stallCheck = d }) }

// withClock makes time injectable for the idle eviction tests.
func withClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }
