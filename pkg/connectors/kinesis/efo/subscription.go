package efo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/schemas"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"github.com/sluicehq/sluice/pkg/connectors"
)

// SubscribeAPI is the part of *kinesis.Client a Subscription uses. The
// client's HTTP client must not have an overall timeout (http.Client.Timeout):
// a subscription's response lasts up to five minutes.
type SubscribeAPI interface {
	SubscribeToShard(ctx context.Context, in *kinesis.SubscribeToShardInput, optFns ...func(*kinesis.Options)) (*kinesis.SubscribeToShardOutput, error)
}

var _ SubscribeAPI = (*kinesis.Client)(nil)

// Batch is the content of one SubscribeToShardEvent (or, after Unread, the
// part of it the caller has not consumed yet).
type Batch struct {
	// Records in sequence order, as the service sent them: aggregated (KPL)
	// records are not split, that is the caller's job. Records at or before
	// a position already delivered are dropped, so a renewal never repeats a
	// record.
	Records []types.Record
	// ContinuationSequenceNumber is the event's: once every record of the
	// batch is consumed, AFTER_SEQUENCE_NUMBER of it is the shard position,
	// even when the batch is empty (a quiet shard still moves on). Empty in
	// the last event of a closed shard.
	ContinuationSequenceNumber string
	// MillisBehindLatest is how far the event's records are behind the tip
	// of the shard; 0 means caught up.
	MillisBehindLatest int64
	// ChildShards is non-empty only in the last event of a closed shard (a
	// split or merge): the shard has ended and its children take over. The
	// next Next returns io.EOF.
	ChildShards []types.ChildShard

	// posAfter is the position once this whole batch is consumed.
	posAfter types.StartingPosition
}

// ShardEnded reports whether this is the last batch of a closed shard.
func (b Batch) ShardEnded() bool { return len(b.ChildShards) > 0 }

// SubscriptionOption tunes a Subscription.
type SubscriptionOption func(*subOptions)

type subOptions struct {
	log         *slog.Logger
	bo          backoff
	maxAttempts int
	idleTimeout time.Duration
}

// WithSubscriptionLogger sets the logger (default slog.Default()).
func WithSubscriptionLogger(l *slog.Logger) SubscriptionOption {
	return func(o *subOptions) { o.log = l }
}

// WithRetryBackoff sets the back-off between failed SubscribeToShard
// attempts: about min after the first failure, doubling up to max. Default
// 1s to 30s. A ResourceInUseException waits at least 5s (capped at max):
// the service refuses a second subscription within 5 seconds of the last.
func WithRetryBackoff(min, max time.Duration) SubscriptionOption {
	return func(o *subOptions) { o.bo = backoff{min: min, max: max} }
}

// WithMaxAttempts sets how many failed attempts in a row (no event received
// in between) Next makes before it gives up and returns the last error.
// Default 10. This is what keeps a subscription that is refused or taken
// over again and again from looking healthy while it reads nothing.
func WithMaxAttempts(n int) SubscriptionOption {
	return func(o *subOptions) { o.maxAttempts = n }
}

// WithIdleTimeout sets how long Next waits for an event (or for
// SubscribeToShard to answer) before it treats the subscription as dead and
// renews it. Default 60s; the service sends an event every few seconds even
// when the shard is quiet.
func WithIdleTimeout(d time.Duration) SubscriptionOption {
	return func(o *subOptions) { o.idleTimeout = d }
}

// errIdle marks a subscription that went quiet for longer than the idle
// timeout.
var errIdle = errors.New("no event within the idle timeout")

// eventStream is what a Subscription reads; *kinesis.SubscribeToShardEventStream
// is one, and tests use fakes.
type eventStream interface {
	Events() <-chan types.SubscribeToShardEventStream
	Close() error
	Err() error
}

type openFunc func(ctx context.Context, pos types.StartingPosition) (eventStream, error)

// Subscription reads one shard through one enhanced fan-out consumer,
// batch by batch, for as long as its owner keeps it: across micro-batches on
// the same executor, and across the service's five-minute subscription
// renewals, which it does by itself from the last position it received
// (never from an older one).
//
// Lifecycle: NewSubscription (no network) → Next... (the first Next
// subscribes) → Close. Next must not be called concurrently; Close may be
// called from any goroutine and makes a blocked Next return ErrClosed.
//
// Position, renewal and limits:
//
//	delivered ... record r | event continuation c
//	renewal starts at AFTER_SEQUENCE_NUMBER max(r, c)
//	Unread(n): the last n records of the last batch come again first, and
//	Position moves back before them (no new subscription needed)
//
// Goroutines: the SDK's event-stream readers of the current subscription
// only; Close (or a renewal) closes them.
type Subscription struct {
	consumerARN, shardID string
	opts                 subOptions
	open                 openFunc
	log                  *slog.Logger

	life   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // guards stream and closed against Close
	stream eventStream
	closed bool

	// The rest belongs to the goroutine calling Next.
	streamPos    types.StartingPosition // where a renewal starts: after all received
	lastSeq      string                 // records at or before it are dropped
	pos          types.StartingPosition // after all handed out and not unread
	lastOut      *handedOut
	pending      *Batch
	ended        bool // a ChildShards event was received
	streamEvents int  // events received on the current stream
	failures     int  // failed attempts in a row
	lastErr      error
	retryAt      time.Time
	err          error // terminal
}

type handedOut struct {
	b         Batch
	posBefore types.StartingPosition
}

// NewSubscription returns a subscription of consumerARN to shardID from
// start (see AfterSequence, AtSequence, TrimHorizon, Latest, AtTimestamp).
// It does not call the service: the first Next does.
func NewSubscription(api SubscribeAPI, consumerARN, shardID string, start types.StartingPosition, opts ...SubscriptionOption) (*Subscription, error) {
	if api == nil {
		return nil, errors.New("efo: NewSubscription needs a Kinesis client")
	}
	s, err := newSubscription(nil, consumerARN, shardID, start, opts...)
	if err != nil {
		return nil, err
	}
	s.open = func(ctx context.Context, pos types.StartingPosition) (eventStream, error) {
		return s.openAPI(ctx, api, pos)
	}
	return s, nil
}

func newSubscription(open openFunc, consumerARN, shardID string, start types.StartingPosition, opts ...SubscriptionOption) (*Subscription, error) {
	if consumerARN == "" {
		return nil, errors.New("efo: subscription needs a consumer ARN")
	}
	if shardID == "" {
		return nil, errors.New("efo: subscription needs a shard id")
	}
	if err := validStart(start); err != nil {
		return nil, fmt.Errorf("efo: subscribe to %s: %w", shardID, err)
	}
	o := subOptions{log: slog.Default(), bo: backoff{min: time.Second, max: 30 * time.Second}, maxAttempts: 10, idleTimeout: time.Minute}
	for _, f := range opts {
		f(&o)
	}
	if o.maxAttempts < 1 {
		o.maxAttempts = 1
	}
	if o.idleTimeout <= 0 {
		o.idleTimeout = time.Minute
	}
	s := &Subscription{
		consumerARN: consumerARN, shardID: shardID, opts: o, open: open,
		log:       o.log.With("shard", shardID, "consumer", consumerARN),
		streamPos: start, pos: start,
	}
	if start.Type == types.ShardIteratorTypeAfterSequenceNumber {
		s.lastSeq = aws.ToString(start.SequenceNumber)
	}
	s.life, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// ShardID is the shard read.
func (s *Subscription) ShardID() string { return s.shardID }

// ConsumerARN is the consumer subscribed with.
func (s *Subscription) ConsumerARN() string { return s.consumerARN }

// Position is where this subscription continues: the start it was created
// with until something was consumed, then AFTER_SEQUENCE_NUMBER of the last
// record (or event continuation) handed out and not unread. A reader pool
// keeps a subscription for the next micro-batch when the planned start is
// this position, and closes it for a new one otherwise.
// Like Next, it must not be called concurrently with Next.
func (s *Subscription) Position() types.StartingPosition { return s.pos }

// ContinuesFrom reports whether the next record this subscription hands out
// is the first one a read from p would get: p is Position, or, after an
// Unread, p is AT_SEQUENCE_NUMBER of the first record put back (how a
// checkpoint inside an aggregated record is resumed). A reader pool keeps
// the subscription for a range starting at p when this is true, and
// replaces it otherwise. Like Next, it must not be called concurrently
// with Next.
func (s *Subscription) ContinuesFrom(p types.StartingPosition) bool {
	if SamePosition(p, s.pos) {
		return true
	}
	if s.pending != nil && len(s.pending.Records) > 0 && p.Type == types.ShardIteratorTypeAtSequenceNumber {
		return CompareSequence(aws.ToString(p.SequenceNumber), aws.ToString(s.pending.Records[0].SequenceNumber)) == 0
	}
	return false
}

// Next returns the next batch: the records Unread put back, or the next
// event of the subscription. It subscribes on first use and renews the
// subscription when the service ends it (every five minutes) or it fails,
// with back-off for errors, from the last position received.
//
// Empty batches are returned too: they carry MillisBehindLatest (0 = caught
// up) and move the position on a quiet shard.
//
// Errors: ctx's error if ctx ends first, and then nothing is lost and Next
// may be called again; io.EOF after the batch with ChildShards (the shard
// ended); ErrClosed after Close; otherwise a terminal error (the service
// refused the subscription in a way retrying cannot fix, e.g. the consumer
// or the shard does not exist, a *types.ResourceNotFoundException, or the
// attempts in a row ran out), which every later Next returns again.
func (s *Subscription) Next(ctx context.Context) (Batch, error) {
	if s.isClosed() {
		return Batch{}, ErrClosed
	}
	if s.err != nil {
		return Batch{}, s.err
	}
	if p := s.pending; p != nil {
		s.pending = nil
		s.handOut(*p)
		return *p, nil
	}
	if s.ended {
		return Batch{}, io.EOF
	}
	for {
		st, err := s.connected(ctx)
		if err != nil {
			return Batch{}, err
		}
		idle := time.NewTimer(s.opts.idleTimeout)
		select {
		case ev, ok := <-st.Events():
			idle.Stop()
			if !ok {
				s.streamDone(st)
				switch {
				case s.err != nil:
					return Batch{}, s.err
				case s.ended:
					return Batch{}, io.EOF
				}
				continue
			}
			e, isEvent := ev.(*types.SubscribeToShardEventStreamMemberSubscribeToShardEvent)
			if !isEvent {
				s.log.Debug("ignoring an unknown event-stream event", "type", fmt.Sprintf("%T", ev))
				continue
			}
			s.streamEvents++
			s.failures, s.lastErr = 0, nil
			b := s.accept(e.Value)
			s.handOut(b)
			return b, nil
		case <-idle.C:
			s.log.Warn("enhanced fan-out subscription silent; renewing it", "idle", s.opts.idleTimeout)
			s.failed(st, fmt.Errorf("subscription of %s: %w (%s)", s.shardID, errIdle, s.opts.idleTimeout))
		case <-ctx.Done():
			idle.Stop()
			return Batch{}, ctx.Err()
		case <-s.life.Done():
			idle.Stop()
			return Batch{}, ErrClosed
		}
	}
}

// Unread puts the last n records of the batch the last Next returned back:
// the next Next returns them again, with that event's continuation,
// MillisBehindLatest and ChildShards, and Position moves back to just after
// the last record kept. Use it when a micro-batch limit falls inside a
// batch (or inside an aggregated record: unread that record and skip its
// consumed user records when it comes again). It needs no new subscription.
// n must be between 0 and the batch's length, and only the batch last
// returned by Next can be unread, once.
func (s *Subscription) Unread(n int) error {
	lo := s.lastOut
	if lo == nil {
		return errors.New("efo: Unread without a batch from Next")
	}
	if n < 0 || n > len(lo.b.Records) {
		return fmt.Errorf("efo: Unread(%d) of a batch of %d records", n, len(lo.b.Records))
	}
	if n == 0 {
		return nil
	}
	keep := len(lo.b.Records) - n
	rest := lo.b
	rest.Records = lo.b.Records[keep:]
	s.pending = &rest
	s.lastOut = nil
	if keep == 0 {
		s.pos = lo.posBefore
	} else {
		s.pos = AfterSequence(aws.ToString(lo.b.Records[keep-1].SequenceNumber))
	}
	return nil
}

// Close ends the subscription: it closes the current event stream (the
// HTTP/2 stream and the SDK's reader goroutines) and makes a blocked Next
// return ErrClosed. It does not wait for anything else and is safe to call
// more than once.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	st := s.stream
	s.stream = nil
	s.mu.Unlock()
	s.cancel()
	if st != nil {
		_ = st.Close() // its error is the stream's last error, which nobody reads any more
	}
	return nil
}

func (s *Subscription) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Subscription) handOut(b Batch) {
	s.lastOut = &handedOut{b: b, posBefore: s.pos}
	s.pos = b.posAfter
}

// accept turns an event into a batch: it drops records already delivered
// (defence against a service or emulator that repeats an event across a
// renewal) and moves the renewal position past everything received.
func (s *Subscription) accept(ev types.SubscribeToShardEvent) Batch {
	recs := ev.Records
	if s.lastSeq != "" {
		kept := recs[:0:0]
		for _, r := range recs {
			if CompareSequence(aws.ToString(r.SequenceNumber), s.lastSeq) > 0 {
				kept = append(kept, r)
			}
		}
		if len(kept) != len(recs) {
			s.log.Debug("dropped records already delivered", "dropped", len(recs)-len(kept))
		}
		recs = kept
	}
	after := s.lastSeq
	if n := len(recs); n > 0 {
		after = aws.ToString(recs[n-1].SequenceNumber)
	}
	cont := aws.ToString(ev.ContinuationSequenceNumber)
	if cont != "" && (after == "" || CompareSequence(cont, after) > 0) {
		after = cont
	}
	if after != "" {
		s.lastSeq = after
		s.streamPos = AfterSequence(after)
	}
	if len(ev.ChildShards) > 0 {
		s.ended = true
	}
	pos := s.pos
	if after != "" {
		pos = AfterSequence(after)
	}
	return Batch{
		Records: recs, ContinuationSequenceNumber: cont, MillisBehindLatest: aws.ToInt64(ev.MillisBehindLatest),
		ChildShards: ev.ChildShards, posAfter: pos,
	}
}

// connected returns the current event stream, subscribing (again) first
// when there is none, after the back-off that earlier failures earned.
func (s *Subscription) connected(ctx context.Context) (eventStream, error) {
	for {
		s.mu.Lock()
		st, closed := s.stream, s.closed
		s.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case st != nil:
			return st, nil
		case s.failures >= s.opts.maxAttempts:
			s.err = fmt.Errorf("subscribe to shard %s with consumer %s: giving up after %d failed attempts in a row: %w",
				s.shardID, s.consumerARN, s.failures, s.lastErr)
			return nil, s.err
		}
		if wait := time.Until(s.retryAt); wait > 0 {
			if err := sleep(ctx, s.life.Done(), wait); err != nil {
				return nil, err
			}
		}
		pos := s.streamPos
		st, err := s.open(ctx, pos)
		if err != nil {
			switch {
			case s.isClosed():
				return nil, ErrClosed
			case ctx.Err() != nil:
				return nil, ctx.Err()
			}
			if terr := s.classify(err); terr != nil {
				return nil, terr
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = st.Close()
			return nil, ErrClosed
		}
		s.stream = st
		s.mu.Unlock()
		s.streamEvents = 0
		s.log.Debug("subscribed", "from", PositionString(pos))
	}
}

// streamDone handles the end of an event stream: the service ending the
// subscription (after five minutes, or after a closed shard's last event),
// or an error.
func (s *Subscription) streamDone(st eventStream) {
	err := st.Err()
	s.dropStream(st)
	if s.isClosed() {
		return
	}
	switch {
	case err == nil && s.ended:
		// The closed shard's last event was received; Next returns it (it
		// already did) and io.EOF after it. Nothing to renew.
	case err == nil && s.streamEvents > 0:
		s.log.Debug("subscription ended by the service; renewing", "from", PositionString(s.streamPos))
	case err == nil:
		// Ended before its first event: renewing at once could spin.
		s.failed(nil, fmt.Errorf("subscription of %s ended before its first event", s.shardID))
	default:
		_ = s.classify(err)
	}
}

// classify records a failed attempt. Errors retrying cannot fix become the
// terminal error, which it returns; the others earn a back-off.
func (s *Subscription) classify(err error) error {
	err = fmt.Errorf("subscribe to shard %s with consumer %s from %s: %w", s.shardID, s.consumerARN, PositionString(s.streamPos), err)
	switch {
	case isNotFound(err):
		// The consumer or the shard is gone; the same call will not find
		// them. The reader's owner looks the consumer up again (the driver
		// re-registers a job-managed one) or handles the expired shard.
		s.err = err
		return err
	case isPermanentAPIError(err):
		s.err = connectors.Permanent(err)
		return s.err
	}
	s.failed(nil, err)
	return nil
}

// failed counts a failed attempt and schedules the next one.
func (s *Subscription) failed(st eventStream, err error) {
	if st != nil {
		s.dropStream(st)
	}
	s.failures++
	s.lastErr = err
	d := s.opts.bo.delay(s.failures)
	if isResourceInUse(err) {
		// Another subscription to this shard through this consumer is
		// active (a previous attempt, or a speculative copy of the task);
		// the service lets a new one take over only 5s after the last.
		d = max(d, min(5*time.Second, s.opts.bo.max))
	}
	s.retryAt = time.Now().Add(d)
	if s.failures == 1 {
		s.log.Warn("enhanced fan-out subscription failed; retrying", "err", err, "retry_in", d)
	} else {
		s.log.Debug("enhanced fan-out subscription failed again", "attempt", s.failures, "err", err, "retry_in", d)
	}
}

func (s *Subscription) dropStream(st eventStream) {
	s.mu.Lock()
	if s.stream == st {
		s.stream = nil
	}
	s.mu.Unlock()
	_ = st.Close()
}

// openAPI calls SubscribeToShard. The event stream lives as long as the
// context of the call, so that context is the subscription's own (cancelled
// by Close), not the caller's: the caller's ctx and the idle timeout only
// abort the call while it waits for the answer.
func (s *Subscription) openAPI(ctx context.Context, api SubscribeAPI, pos types.StartingPosition) (eventStream, error) {
	sctx, cancel := context.WithCancel(s.life)
	stopCaller := context.AfterFunc(ctx, cancel)
	timer := time.AfterFunc(s.opts.idleTimeout, cancel)
	out, err := api.SubscribeToShard(sctx, &kinesis.SubscribeToShardInput{
		ConsumerARN: aws.String(s.consumerARN), ShardId: aws.String(s.shardID), StartingPosition: &pos,
	}, ownProtocol)
	timedOut := !timer.Stop()
	callerGone := !stopCaller()
	if err == nil && (timedOut || callerGone) {
		// Answered, but the call was aborted at the same moment: the
		// stream is already cancelled.
		_ = out.GetStream().Close()
		err = context.Canceled
	}
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if timedOut {
			return nil, fmt.Errorf("SubscribeToShard did not answer: %w (%s)", errIdle, s.opts.idleTimeout)
		}
		return nil, err
	}
	return &sdkStream{SubscribeToShardEventStream: out.GetStream(), cancel: cancel}, nil
}

// ownProtocol gives each SubscribeToShard call its own protocol instance.
// The SDK keeps one protocol (and in it one event-stream codec with
// unsynchronised scratch state) per client, shared by every open event
// stream: two subscriptions on one client race, which -race reports and
// which can corrupt a re-encoded unknown event (aws/smithy-go#714, open as
// of smithy-go v1.28.8). A codec per call shares nothing. Remove once the
// SDK's codec keeps its state per call.
func ownProtocol(o *kinesis.Options) {
	o.Protocol = awsjson.New11(schemas.Kinesis_20131202)
}

// sdkStream also cancels the call's context on Close, which releases the
// HTTP/2 stream even if the SDK's reader is blocked.
type sdkStream struct {
	*kinesis.SubscribeToShardEventStream
	cancel context.CancelFunc
}

func (s *sdkStream) Close() error {
	err := s.SubscribeToShardEventStream.Close()
	s.cancel()
	return err
}
