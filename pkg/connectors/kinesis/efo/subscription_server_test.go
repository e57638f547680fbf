package efo

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo/efotest"
)

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestSubscriptionReadsInOrderWithContinuation(t *testing.T) {
	recs := efotest.Records(7, base)
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, PerEvent: 3}))
	s := serverSubscription(t, srv, TrimHorizon())
	bs := readUntil(t, s, 7)
	if diff := cmp.Diff(seqs(recs), seqs(allRecords(bs))); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	for _, b := range bs {
		if n := len(b.Records); n > 0 && b.ContinuationSequenceNumber != aws.ToString(b.Records[n-1].SequenceNumber) {
			t.Errorf("continuation %s, want the last record's %s", b.ContinuationSequenceNumber, aws.ToString(b.Records[n-1].SequenceNumber))
		}
	}
	if last := bs[len(bs)-1]; last.MillisBehindLatest != 0 {
		t.Errorf("MillisBehindLatest of the last batch = %d, want 0 (caught up)", last.MillisBehindLatest)
	}
	if got, want := PositionString(s.Position()), PositionString(AfterSequence(efotest.Seq(6))); got != want {
		t.Errorf("Position = %s, want %s", got, want)
	}
	if n := len(srv.Calls()); n != 1 {
		t.Errorf("%d SubscribeToShard calls, want 1", n)
	}
}

// The service ends every subscription after five minutes; here the server
// ends each after two events. Every renewal must start just after the last
// record received: an older start would repeat records, a newer one lose
// them.
func TestSubscriptionRenewsFromLastPosition(t *testing.T) {
	recs := efotest.Records(9, base)
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, PerEvent: 2, EventsPerCall: 2}))
	s := serverSubscription(t, srv, TrimHorizon())
	got := allRecords(readUntil(t, s, 9))
	if diff := cmp.Diff(seqs(recs), seqs(got)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	calls := srv.Calls()
	if len(calls) < 3 {
		t.Fatalf("%d calls, want renewals after every 2 events", len(calls))
	}
	if calls[0].StartingPosition.Type != types.ShardIteratorTypeTrimHorizon {
		t.Errorf("first call from %s, want TRIM_HORIZON", PositionString(calls[0].StartingPosition))
	}
	// Each subscription delivers 2 events of 2 records: renewal k starts
	// after record 4k-1.
	for k, c := range calls[1:] {
		want := AfterSequence(efotest.Seq(4*(k+1) - 1))
		if k+1 >= 3 { // after record 8 everything was read: continuation stays at the last record
			want = AfterSequence(efotest.Seq(8))
		}
		if got := PositionString(c.StartingPosition); got != PositionString(want) {
			t.Errorf("renewal %d from %s, want %s", k+1, got, PositionString(want))
		}
	}
}

// A quiet shard still moves: the continuation number of an empty event is
// the position, and a renewal after it starts there, not at the start the
// subscription was created with (here LATEST, which would skip anything
// written in between).
func TestSubscriptionRenewalAfterEmptyEventsUsesContinuation(t *testing.T) {
	recs := efotest.Records(3, base)
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, EventsPerCall: 1}))
	s := serverSubscription(t, srv, Latest())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		b, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) != 0 || b.MillisBehindLatest != 0 || b.ContinuationSequenceNumber != efotest.Seq(2) {
			t.Fatalf("batch %+v, want empty, caught up, continuation %s", b, efotest.Seq(2))
		}
	}
	calls := srv.Calls()
	if len(calls) < 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	for _, c := range calls[1:] {
		if got, want := PositionString(c.StartingPosition), PositionString(AfterSequence(efotest.Seq(2))); got != want {
			t.Errorf("renewal from %s, want %s", got, want)
		}
	}
}

// A closed shard's last event carries ChildShards and no continuation
// number; Next returns it and then io.EOF, and never subscribes again (a
// re-subscription of an ended shard loops, FLINK-39540).
func TestSubscriptionShardEndWithChildShards(t *testing.T) {
	recs := efotest.Records(5, base)
	children := []types.ChildShard{
		{ShardId: aws.String("shardId-000000000001"), ParentShards: []string{"shardId-000000000000"},
			HashKeyRange: &types.HashKeyRange{StartingHashKey: aws.String("0"), EndingHashKey: aws.String("170141183460469231731687303715884105727")}},
		{ShardId: aws.String("shardId-000000000002"), ParentShards: []string{"shardId-000000000000"},
			HashKeyRange: &types.HashKeyRange{StartingHashKey: aws.String("170141183460469231731687303715884105728"), EndingHashKey: aws.String("340282366920938463463374607431768211455")}},
	}
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, PerEvent: 2, EventsPerCall: 2, Children: children}))
	s := serverSubscription(t, srv, AfterSequence(efotest.Seq(0)))
	bs := readUntil(t, s, 100)
	last := bs[len(bs)-1]
	if !last.ShardEnded() {
		t.Fatalf("last batch %+v has no child shards", last)
	}
	if diff := cmp.Diff([]string{"shardId-000000000001", "shardId-000000000002"}, []string{aws.ToString(last.ChildShards[0].ShardId), aws.ToString(last.ChildShards[1].ShardId)}); diff != "" {
		t.Errorf("children (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(seqs(recs[1:]), seqs(allRecords(bs))); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if got, want := PositionString(s.Position()), PositionString(AfterSequence(efotest.Seq(4))); got != want {
		t.Errorf("Position = %s, want %s", got, want)
	}
	calls := len(srv.Calls())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := s.Next(ctx); !errors.Is(err, io.EOF) {
			t.Fatalf("Next after the shard ended = %v, want io.EOF", err)
		}
	}
	time.Sleep(100 * time.Millisecond) // a wrong renewal would show in the calls
	if n := len(srv.Calls()); n != calls {
		t.Errorf("%d calls after the shard ended, want none", n-calls)
	}
}

// Unread lets a micro-batch stop inside an event and the next one continue
// on the same subscription, without a new SubscribeToShard call.
func TestSubscriptionUnreadKeepsStreamAcrossBatches(t *testing.T) {
	recs := efotest.Records(6, base)
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, PerEvent: 4}))
	s := serverSubscription(t, srv, TrimHorizon())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Records) != 4 {
		t.Fatalf("first batch has %d records, want 4", len(b.Records))
	}
	// Micro-batch 1 has a limit of 3 records: it consumes r0..r2.
	if err := s.Unread(1); err != nil {
		t.Fatal(err)
	}
	if got, want := PositionString(s.Position()), PositionString(AfterSequence(efotest.Seq(2))); got != want {
		t.Fatalf("Position after Unread = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		p    types.StartingPosition
		want bool
	}{
		{AfterSequence(efotest.Seq(2)), true}, // the next micro-batch planned after r2
		{AtSequence(efotest.Seq(3)), true},    // ... or at r3 (inside an aggregate)
		{AfterSequence(efotest.Seq(1)), false},
		{AtSequence(efotest.Seq(2)), false},
		{TrimHorizon(), false},
	} {
		if got := s.ContinuesFrom(tc.p); got != tc.want {
			t.Errorf("ContinuesFrom(%s) = %v, want %v", PositionString(tc.p), got, tc.want)
		}
	}
	if err := s.Unread(1); err == nil {
		t.Fatal("a second Unread of the same batch succeeded")
	}
	// Micro-batch 2 continues on the same subscription.
	b, err = s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if datas(b.Records) != "r3" || b.ContinuationSequenceNumber != efotest.Seq(3) {
		t.Fatalf("batch after Unread = %q (continuation %s), want r3 with the event's continuation", datas(b.Records), b.ContinuationSequenceNumber)
	}
	// Unread everything of the next event: the position goes back to before it.
	b, err = s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if datas(b.Records) != "r4,r5" {
		t.Fatalf("third batch %q, want r4,r5", datas(b.Records))
	}
	if err := s.Unread(2); err != nil {
		t.Fatal(err)
	}
	if got, want := PositionString(s.Position()), PositionString(AfterSequence(efotest.Seq(3))); got != want {
		t.Fatalf("Position after unreading a whole batch = %s, want %s", got, want)
	}
	b, err = s.Next(ctx)
	if err != nil || datas(b.Records) != "r4,r5" {
		t.Fatalf("batch = %q, %v; want r4,r5 again", datas(b.Records), err)
	}
	if n := len(srv.Calls()); n != 1 {
		t.Errorf("%d SubscribeToShard calls, want 1", n)
	}
}

// A Next that runs out of time (the task's fetch duration) loses nothing:
// the next Next on the same subscription continues.
func TestSubscriptionNextDeadlineLosesNothing(t *testing.T) {
	recs := efotest.Records(4, base)
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, PerEvent: 1, Interval: 300 * time.Millisecond}))
	s := serverSubscription(t, srv, TrimHorizon())
	var got []types.Record
	deadlines := 0
	for len(got) < 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		b, err := s.Next(ctx)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			deadlines++
			if deadlines > 2000 {
				t.Fatal("no progress")
			}
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, b.Records...)
		}
	}
	if diff := cmp.Diff(seqs(recs), seqs(got)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	if deadlines == 0 {
		t.Log("no Next ran out of time; the test proved less than it should")
	}
}

// ResourceInUseException (another subscription of this consumer to this
// shard is active, e.g. the previous attempt of the task) and throttling
// are waited out with back-off; a subscription taken over mid-stream is
// renewed from the last position.
func TestSubscriptionRetriesResourceInUseAndThrottling(t *testing.T) {
	recs := efotest.Records(6, base)
	sh := &efotest.Shard{Records: recs, PerEvent: 2,
		Refuse: func(c efotest.Call) *efotest.APIError {
			switch c.N {
			case 1:
				return &efotest.APIError{Type: "ResourceInUseException", Message: "another subscription is active"}
			case 2:
				return &efotest.APIError{Type: "LimitExceededException", Message: "rate exceeded"}
			case 3:
				return &efotest.APIError{Status: 500, Type: "InternalFailureException", Message: "oops"}
			}
			return nil
		},
		Interrupt: func(c efotest.Call, sent int) *efotest.APIError {
			if c.N == 4 && sent == 1 {
				return &efotest.APIError{Type: "ResourceInUseException", Message: "taken over by a newer subscription"}
			}
			return nil
		},
	}
	srv := efotest.NewServer(t, efotest.ShardHandler(sh))
	s := serverSubscription(t, srv, TrimHorizon())
	got := allRecords(readUntil(t, s, 6))
	if diff := cmp.Diff(seqs(recs), seqs(got)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}
	calls := srv.Calls()
	if len(calls) < 5 {
		t.Fatalf("%d calls, want at least 5", len(calls))
	}
	if got, want := PositionString(calls[4].StartingPosition), PositionString(AfterSequence(efotest.Seq(1))); got != want {
		t.Errorf("renewal after the take-over from %s, want %s", got, want)
	}
}

// A subscription that fails again and again must not look healthy while it
// reads nothing (the "zombie" reader of FLINK-38814): after the attempts run
// out, Next returns the error, and keeps returning it.
func TestSubscriptionGivesUpAfterMaxAttempts(t *testing.T) {
	srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{
		Refuse: func(efotest.Call) *efotest.APIError {
			return &efotest.APIError{Type: "ResourceInUseException", Message: "held by someone else"}
		},
	}))
	s := serverSubscription(t, srv, TrimHorizon(), WithMaxAttempts(3))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Next(ctx)
	var riu *types.ResourceInUseException
	if !errors.As(err, &riu) {
		t.Fatalf("Next = %v, want the ResourceInUseException", err)
	}
	if n := len(srv.Calls()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
	if _, err2 := s.Next(ctx); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second Next = %v, want the same error", err2)
	}
}

// Errors that retrying cannot fix end the subscription at once:
// ResourceNotFound (the consumer was deregistered, or the shard expired)
// keeps its type for the caller; access or argument errors are permanent.
func TestSubscriptionTerminalErrors(t *testing.T) {
	for _, tc := range []struct {
		typ       string
		permanent bool
		is        func(error) bool
	}{
		{"ResourceNotFoundException", false, func(err error) bool { var e *types.ResourceNotFoundException; return errors.As(err, &e) }},
		{"AccessDeniedException", true, func(err error) bool { var e *types.AccessDeniedException; return errors.As(err, &e) }},
		{"InvalidArgumentException", true, func(err error) bool { var e *types.InvalidArgumentException; return errors.As(err, &e) }},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{
				Refuse: func(efotest.Call) *efotest.APIError { return &efotest.APIError{Type: tc.typ, Message: "no"} },
			}))
			s := serverSubscription(t, srv, TrimHorizon())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := s.Next(ctx)
			if !tc.is(err) {
				t.Fatalf("Next = %v (%T), want a %s", err, err, tc.typ)
			}
			if connectors.IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent = %v, want %v", connectors.IsPermanent(err), tc.permanent)
			}
			if n := len(srv.Calls()); n != 1 {
				t.Errorf("%d calls, want 1 (no retry)", n)
			}
		})
	}
}

// Every starting position reaches the service as given.
func TestSubscriptionStartingPositions(t *testing.T) {
	recs := efotest.Records(5, base)
	for _, tc := range []struct {
		name  string
		start types.StartingPosition
		want  string
	}{
		{"trim horizon", TrimHorizon(), "r0,r1,r2,r3,r4"},
		{"at sequence", AtSequence(efotest.Seq(2)), "r2,r3,r4"},
		{"after sequence", AfterSequence(efotest.Seq(2)), "r3,r4"},
		{"at timestamp", AtTimestamp(base.Add(3 * time.Second)), "r3,r4"},
		{"latest", Latest(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := efotest.NewServer(t, efotest.ShardHandler(&efotest.Shard{Records: recs, PerEvent: 5}))
			s := serverSubscription(t, srv, tc.start)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			b, err := s.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := datas(b.Records); got != tc.want {
				t.Errorf("records %q, want %q", got, tc.want)
			}
			if got, want := PositionString(srv.Calls()[0].StartingPosition), PositionString(tc.start); got != want {
				t.Errorf("the server got %s, want %s", got, want)
			}
		})
	}
}

// Close from another goroutine ends a Next that is waiting for an event.
func TestSubscriptionCloseUnblocksNext(t *testing.T) {
	srv := efotest.NewServer(t, func(c efotest.Call, st *efotest.Stream) error {
		if err := st.Send(types.SubscribeToShardEvent{ContinuationSequenceNumber: aws.String(efotest.Seq(0)), MillisBehindLatest: aws.Int64(0)}); err != nil {
			return nil
		}
		<-st.Context().Done() // then silence
		return nil
	})
	s := serverSubscription(t, srv, TrimHorizon())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Next(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := s.Next(ctx)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
}
