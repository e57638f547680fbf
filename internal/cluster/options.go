package cluster

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

const (
	// DefaultPrefix is the election prefix used when WithPrefix is not given.
	DefaultPrefix = "/sluice/leader"
	// DefaultLeaseTTL is the session lease TTL used when WithLeaseTTL is not
	// given.
	DefaultLeaseTTL = 10 * time.Second
	// MinLeaseTTL is the shortest lease TTL accepted. etcd refreshes a lease
	// every TTL/3; below two seconds one slow refresh loses leadership.
	MinLeaseTTL = 2 * time.Second
)

// Option configures an Election. Options are validated by New before anything
// starts; an invalid one makes New fail.
type Option func(*options)

type options struct {
	prefix   string
	leaseTTL time.Duration
	logger   *slog.Logger
}

func defaultOptions() options {
	return options{prefix: DefaultPrefix, leaseTTL: DefaultLeaseTTL, logger: slog.Default()}
}

// WithPrefix sets the etcd key prefix the candidates of one driver group
// share. Default "/sluice/leader". A trailing slash is ignored; candidate keys
// are "<prefix>/<lease id>".
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// WithLeaseTTL sets how long a leader that stops refreshing its lease (crash,
// partition) keeps leadership before a follower takes over. Default 10s;
// at least 2s, in whole seconds because etcd leases count seconds.
func WithLeaseTTL(ttl time.Duration) Option {
	return func(o *options) { o.leaseTTL = ttl }
}

// WithLogger sets where election events (term won, lost, retries) are
// logged. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

func (o *options) validate() error {
	o.prefix = strings.TrimRight(o.prefix, "/")
	if o.prefix == "" {
		return fmt.Errorf("election prefix must not be empty or \"/\": candidates of different groups would collide")
	}
	if o.leaseTTL < MinLeaseTTL {
		return fmt.Errorf("election lease TTL (%s) must be at least %s", o.leaseTTL, MinLeaseTTL)
	}
	if o.leaseTTL%time.Second != 0 {
		return fmt.Errorf("election lease TTL (%s) must be a whole number of seconds: etcd leases count seconds", o.leaseTTL)
	}
	if o.logger == nil {
		return fmt.Errorf("election logger must not be nil: use slog.New(slog.DiscardHandler) to discard")
	}
	return nil
}
