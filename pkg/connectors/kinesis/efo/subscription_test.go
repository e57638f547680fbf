package efo

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo/efotest"
)

// fakeStream is an event stream fed by the test.
type fakeStream struct {
	ch     chan types.SubscribeToShardEventStream
	once   sync.Once
	closed chan struct{}
	mu     sync.Mutex
	err    error
}

func newFakeStream() *fakeStream {
	return &fakeStream{ch: make(chan types.SubscribeToShardEventStream), closed: make(chan struct{})}
}

func (f *fakeStream) Events() <-chan types.SubscribeToShardEventStream { return f.ch }
func (f *fakeStream) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}
func (f *fakeStream) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// send delivers an event unless the reader closed the stream.
func (f *fakeStream) send(ev types.SubscribeToShardEvent) bool {
	select {
	case f.ch <- &types.SubscribeToShardEventStreamMemberSubscribeToShardEvent{Value: ev}:
		return true
	case <-f.closed:
		return false
	}
}

// end finishes the stream, with err (nil: the service ended it normally).
func (f *fakeStream) end(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	close(f.ch)
}

type openCall struct {
	at  time.Time
	pos types.StartingPosition
}

// fakeOpener answers each open with the next scripted function's result.
type fakeOpener struct {
	mu     sync.Mutex
	calls  []openCall
	script []func(pos types.StartingPosition) (eventStream, error)
}

func (o *fakeOpener) open(_ context.Context, pos types.StartingPosition) (eventStream, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, openCall{at: time.Now(), pos: pos})
	if len(o.script) == 0 {
		return nil, errors.New("fake: no more scripted subscriptions")
	}
	f := o.script[0]
	o.script = o.script[1:]
	return f(pos)
}

func (o *fakeOpener) opens() []openCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]openCall(nil), o.calls...)
}

func event(cont string, recs ...types.Record) types.SubscribeToShardEvent {
	return types.SubscribeToShardEvent{Records: recs, ContinuationSequenceNumber: aws.String(cont), MillisBehindLatest: aws.Int64(0)}
}

// ResourceInUse means another subscription holds the shard; the service
// lets a new one take over only 5s after the last, so the wait is at least
// that long even though the back-off would be shorter.
func TestSubscriptionResourceInUseWaitsFiveSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := efotest.Records(1, base)
		st := newFakeStream()
		o := &fakeOpener{script: []func(types.StartingPosition) (eventStream, error){
			func(types.StartingPosition) (eventStream, error) {
				return nil, &types.ResourceInUseException{Message: aws.String("held")}
			},
			func(types.StartingPosition) (eventStream, error) { return st, nil },
		}}
		s, err := newSubscription(o.open, testConsumerARN, "shardId-000000000000", TrimHorizon(),
			WithRetryBackoff(100*time.Millisecond, time.Minute), WithSubscriptionLogger(testLog(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go st.send(event(efotest.Seq(0), recs...))
		if _, err := s.Next(t.Context()); err != nil {
			t.Fatal(err)
		}
		calls := o.opens()
		if len(calls) != 2 {
			t.Fatalf("%d opens, want 2", len(calls))
		}
		if gap := calls[1].at.Sub(calls[0].at); gap < 5*time.Second {
			t.Errorf("retried ResourceInUse after %s, want at least 5s", gap)
		}
	})
}

// A subscription that goes silent (a half-open connection) is renewed after
// the idle timeout, from the last position.
func TestSubscriptionIdleTimeoutRenews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := efotest.Records(2, base)
		silent, second := newFakeStream(), newFakeStream()
		o := &fakeOpener{script: []func(types.StartingPosition) (eventStream, error){
			func(types.StartingPosition) (eventStream, error) { return silent, nil },
			func(types.StartingPosition) (eventStream, error) { return second, nil },
		}}
		s, err := newSubscription(o.open, testConsumerARN, "shardId-000000000000", AfterSequence(efotest.Seq(0)),
			WithIdleTimeout(30*time.Second), WithRetryBackoff(time.Second, 2*time.Second), WithSubscriptionLogger(testLog(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go silent.send(event(efotest.Seq(0))) // one empty event, then nothing
		if _, err := s.Next(t.Context()); err != nil {
			t.Fatal(err)
		}
		go second.send(event(efotest.Seq(1), recs[1]))
		start := time.Now()
		b, err := s.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if datas(b.Records) != "r1" {
			t.Fatalf("records %q, want r1", datas(b.Records))
		}
		if waited := time.Since(start); waited < 30*time.Second {
			t.Errorf("renewed after %s, want the 30s idle timeout", waited)
		}
		select {
		case <-silent.closed:
		default:
			t.Error("the silent stream was not closed")
		}
		calls := o.opens()
		if got, want := PositionString(calls[1].pos), PositionString(AfterSequence(efotest.Seq(0))); got != want {
			t.Errorf("renewal from %s, want %s", got, want)
		}
	})
}

// A stream that ends normally before sending anything is not renewed in a
// tight loop: it counts as a failed attempt.
func TestSubscriptionEmptyStreamBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var script []func(types.StartingPosition) (eventStream, error)
		for range 3 {
			script = append(script, func(types.StartingPosition) (eventStream, error) {
				st := newFakeStream()
				st.end(nil)
				return st, nil
			})
		}
		o := &fakeOpener{script: script}
		s, err := newSubscription(o.open, testConsumerARN, "shardId-000000000000", TrimHorizon(),
			WithRetryBackoff(time.Second, 4*time.Second), WithMaxAttempts(3), WithSubscriptionLogger(testLog(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Next(t.Context())
		if err == nil || !strings.Contains(err.Error(), "ended before its first event") {
			t.Fatalf("Next = %v, want the give-up error", err)
		}
		calls := o.opens()
		if len(calls) != 3 {
			t.Fatalf("%d opens, want 3", len(calls))
		}
		for i := 1; i < len(calls); i++ {
			if gap := calls[i].at.Sub(calls[i-1].at); gap < 500*time.Millisecond {
				t.Errorf("attempt %d after %s, want a back-off", i+1, gap)
			}
		}
	})
}

// An emulator (or a bug) that repeats records across a renewal must not
// make them appear twice.
func TestSubscriptionDropsRepeatedRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recs := efotest.Records(4, base)
		first, second := newFakeStream(), newFakeStream()
		o := &fakeOpener{script: []func(types.StartingPosition) (eventStream, error){
			func(types.StartingPosition) (eventStream, error) { return first, nil },
			func(types.StartingPosition) (eventStream, error) { return second, nil },
		}}
		s, err := newSubscription(o.open, testConsumerARN, "shardId-000000000000", TrimHorizon(), WithSubscriptionLogger(testLog(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		go func() {
			first.send(event(efotest.Seq(2), recs[:3]...))
			first.end(nil)
			second.send(event(efotest.Seq(3), recs[1:]...)) // r1, r2 again, then r3
		}()
		var got []types.Record
		for len(got) < 4 {
			b, err := s.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, b.Records...)
		}
		if diff := cmp.Diff("r0,r1,r2,r3", datas(got)); diff != "" {
			t.Fatalf("records (-want +got):\n%s", diff)
		}
		if got, want := PositionString(o.opens()[1].pos), PositionString(AfterSequence(efotest.Seq(2))); got != want {
			t.Errorf("renewal from %s, want %s", got, want)
		}
	})
}

func TestNewSubscriptionValidates(t *testing.T) {
	for _, tc := range []struct {
		name        string
		arn, shard  string
		start       types.StartingPosition
		wantErrPart string
	}{
		{"no consumer", "", "s", TrimHorizon(), "consumer ARN"},
		{"no shard", testConsumerARN, "", TrimHorizon(), "shard id"},
		{"after without sequence", testConsumerARN, "s", types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber}, "needs a sequence number"},
		{"bad sequence", testConsumerARN, "s", AfterSequence("12x"), "needs a sequence number"},
		{"timestamp missing", testConsumerARN, "s", types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp}, "needs a timestamp"},
		{"unknown type", testConsumerARN, "s", types.StartingPosition{Type: "SOMETIME"}, "not one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSubscription(nil, tc.arn, tc.shard, tc.start)
			if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErrPart)
			}
		})
	}
}

func TestCompareSequence(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1", "2", -1},
		{"10", "9", 1},
		{"007", "7", 0},
		{"49680430130952422283275288641166887563253280213808709634", "49680430130952422283275288641162051859974821697109884930", 1},
		{"99", "100", -1},
		{"9", "10", -1},
		{"123", "123", 0},
		{"49680430124529807666098469176398556071632477648542760962", "9223372036854775807", 1},
	} {
		if got := CompareSequence(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareSequence(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestSamePosition(t *testing.T) {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		a, b types.StartingPosition
		want bool
	}{
		{AfterSequence("0042"), AfterSequence("42"), true},
		{AfterSequence("42"), AtSequence("42"), false},
		{AfterSequence("42"), AfterSequence("43"), false},
		{TrimHorizon(), TrimHorizon(), true},
		{Latest(), TrimHorizon(), false},
		{AtTimestamp(ts), AtTimestamp(ts.In(time.FixedZone("x", 3600))), true},
		{AtTimestamp(ts), AtTimestamp(ts.Add(time.Millisecond)), false},
	} {
		if got := SamePosition(tc.a, tc.b); got != tc.want {
			t.Errorf("SamePosition(%s, %s) = %v, want %v", PositionString(tc.a), PositionString(tc.b), got, tc.want)
		}
	}
}
