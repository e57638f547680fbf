package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
)

// hint adds what to check to errors a user can act on. The classification
// lives here, in one place, so the source and the readers say the same thing.
func hint(err error, bootstrap []string) error {
	if err == nil {
		return nil
	}
	var (
		opErr *net.OpError
		dnsEr *net.DNSError
	)
	switch {
	case errors.As(err, &dnsEr), errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Errorf("%w: are bootstrapServers (%s) right and reachable?", err, strings.Join(bootstrap, ","))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		// A broker that closes the connection on the first request usually
		// expects TLS or SASL the client is not speaking, or (some brokers)
		// refused the SASL credentials.
		return fmt.Errorf("%w: the broker closed the connection: check security.protocol (TLS, SASL) and, with SASL, sasl.mechanism, sasl.username and sasl.password", err)
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.IllegalSaslState),
		errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("%w: check sasl.mechanism, sasl.username and sasl.password", err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
		return fmt.Errorf("%w: the principal lacks ACLs to describe and read the topics", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: no answer from the brokers in time: are bootstrapServers (%s) right and reachable?", err, strings.Join(bootstrap, ","))
	}
	return err
}

// dataLoss describes records that are gone.
func dataLoss(tp topicPartition, requested, earliest, reason string) *connectors.DataLossError {
	return &connectors.DataLossError{
		Partition: tp.id(),
		Requested: requested,
		Earliest:  earliest,
		Reason:    reason,
	}
}

// brokerErrs remembers the last connection or request error a client saw.
// franz-go retries those internally until the caller's context ends; the
// caller then only has "context deadline exceeded", and this says why.
type brokerErrs struct {
	mu  sync.Mutex
	err error
	at  time.Time
}

var (
	_ kgo.HookBrokerConnect = (*brokerErrs)(nil)
	_ kgo.HookBrokerE2E     = (*brokerErrs)(nil)
)

func (b *brokerErrs) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	b.record(err)
}

func (b *brokerErrs) OnBrokerE2E(_ kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	b.record(e2e.Err())
}

func (b *brokerErrs) record(err error) {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err, b.at = err, time.Now()
}

// explain adds the last broker error since start to err, when err is only
// its context ending.
func (b *brokerErrs) explain(ctx context.Context, err error, start time.Time) error {
	if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
		return err
	}
	b.mu.Lock()
	last, at := b.err, b.at
	b.mu.Unlock()
	if last == nil || at.Before(start) {
		return err
	}
	return fmt.Errorf("%w; last broker error: %w", err, last)
}
