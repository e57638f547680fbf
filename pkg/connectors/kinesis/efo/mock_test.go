package efo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo/efotest"
)

// TestKinesisMock runs the consumer lifecycle and subscriptions against
// kinesis-mock (one instance for all subtests: it takes seconds to start).
// Consumer registration and deregistration take 2s there, so CREATING and
// DELETING are really waited for.
func TestKinesisMock(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kinesis-mock")
	}
	mock := testenv.StartKinesis(t,
		testenv.KinesisEnv("REGISTER_STREAM_CONSUMER_DURATION", "2s"),
		testenv.KinesisEnv("DEREGISTER_STREAM_CONSUMER_DURATION", "2s"))
	streamARN := testenv.CreateStream(t, mock.Client(t, ""), "orders", 2)

	t.Run("lifecycle", func(t *testing.T) { testMockLifecycle(t, mock, streamARN) })
	t.Run("subscription", func(t *testing.T) { testMockSubscription(t, mock, streamARN) })
}

func mockManager(t *testing.T, mock testenv.Kinesis, job string, cfg Config, log *statusLog) *Manager {
	t.Helper()
	m, err := NewManager(mock.Client(t, ""), "orders", job, cfg, WithLogger(testLog(t)), WithStatusFunc(log.add),
		WithWaitBackoff(200*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testMockLifecycle(t *testing.T, mock testenv.Kinesis, streamARN string) {
	api := mock.Client(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := Config{RequireConsumerDeregistration: true, ConsumerRefreshInterval: time.Second}

	// 1. Registration: CREATING is waited out.
	logA := &statusLog{}
	a := mockManager(t, mock, "job1", cfg, logA)
	arnA, err := a.Start(ctx)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logA.messages())
	}
	if !strings.Contains(logA.messages(), "is CREATING") {
		t.Errorf("the CREATING wait was not reported:\n%s", logA.messages())
	}
	cs, err := ListConsumers(ctx, api, streamARN)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Name != "sluice_job1" || cs[0].Status != types.ConsumerStatusActive || cs[0].ARN != arnA {
		t.Fatalf("consumers %+v, want sluice_job1 ACTIVE with %s", cs, arnA)
	}

	// 2. A failure keeps the consumer, even with requireConsumerDeregistration.
	if err := a.Stop(ctx, StopFailed); err != nil {
		t.Fatal(err)
	}
	if c, err := DescribeConsumer(ctx, api, streamARN, "sluice_job1"); err != nil || c.Status != types.ConsumerStatusActive {
		t.Fatalf("after a failed stop: %+v, %v; want it ACTIVE", c, err)
	}

	// 3. The restarted job reuses it: same ARN (a new registration would
	// carry a new creation time in its ARN).
	logB := &statusLog{}
	b := mockManager(t, mock, "job1", cfg, logB)
	arnB, err := b.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if arnB != arnA {
		t.Fatalf("restart got %s, want the existing %s", arnB, arnA)
	}

	// 4. A clean stop deregisters it, and 5. a quick restart lands on the
	// DELETING consumer, waits until it is gone and registers it again.
	// (kinesis-mock keeps a consumer DELETING for about 0.6s whatever its
	// settings, so the restart follows at once; the fake-API test
	// TestManagerWaitsOutDeletingThenRegisters pins the wait itself.)
	if err := b.Stop(ctx, StopClean); err != nil {
		t.Fatal(err)
	}
	logC := &statusLog{}
	c := mockManager(t, mock, "job1", cfg, logC)
	arnC, err := c.Start(ctx)
	if err != nil {
		t.Fatalf("restart after a clean stop: %v\n%s", err, logC.messages())
	}
	if arnC == arnA {
		t.Errorf("the restarted job got the deregistered consumer's ARN\n%s", logC.messages())
	}
	if msgs := logC.messages(); !strings.Contains(msgs, "registered consumer sluice_job1") {
		t.Errorf("statuses do not show the new registration:\n%s", msgs)
	} else if !strings.Contains(msgs, "is DELETING") {
		t.Logf("the restart did not see the consumer DELETING (it was gone already):\n%s", msgs)
	}

	// 6. Deregistered behind the job's back: the refresh registers it again.
	if err := DeregisterConsumer(ctx, api, streamARN, "sluice_job1", true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for c.ConsumerARN() == arnC || c.Status().Phase != PhaseActive {
		if time.Now().After(deadline) {
			t.Fatalf("the refresh did not register the consumer again:\n%s", logC.messages())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := ActiveConsumerARN(ctx, api, streamARN, "sluice_job1"); err != nil || got != c.ConsumerARN() {
		t.Fatalf("ActiveConsumerARN = %s, %v; want %s", got, err, c.ConsumerARN())
	}
	if err := c.Stop(ctx, StopClean); err != nil {
		t.Fatal(err)
	}
	if err := DeregisterConsumer(ctx, api, streamARN, "sluice_job1", true); err != nil {
		t.Fatal(err)
	}

	// 7. Self-managed: a missing consumer is a clear, permanent error.
	d := mockManager(t, mock, "job2", Config{ConsumerLifecycle: SelfManaged, ConsumerName: "not-there"}, &statusLog{})
	if _, err := d.Start(ctx); !errors.Is(err, ErrConsumerNotFound) || !connectors.IsPermanent(err) {
		t.Fatalf("self-managed start = %v, want a permanent ErrConsumerNotFound", err)
	}
	_ = d.Stop(ctx, StopClean)
}

func testMockSubscription(t *testing.T, mock testenv.Kinesis, streamARN string) {
	plain := mock.Client(t, "")
	efoClient := efotest.EFOClient(t, mock)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	consumer, err := RegisterConsumer(ctx, plain, streamARN, "reader", nil)
	if err != nil {
		t.Fatal(err)
	}
	shards := efotest.ShardIDs(t, plain, "orders")
	var data0, data1 []string
	for i := range 5 {
		data0 = append(data0, fmt.Sprintf("a%d", i))
	}
	for i := range 3 {
		data1 = append(data1, fmt.Sprintf("b%d", i))
	}
	seqs0 := efotest.Put(t, plain, "orders", shards[0], data0...)
	seqs1 := efotest.Put(t, plain, "orders", shards[1], data1...)

	// Why the shim exists: without it the SDK refuses kinesis-mock's
	// answer, which starts without an initial-response event.
	noShim := kinesis.New(kinesis.Options{
		Region: mock.Region, BaseEndpoint: aws.String(mock.TLSEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider(mock.AccessKey, mock.SecretKey, ""),
		HTTPClient:  testenv.KinesisTLSClient(t),
	})
	raw, err := NewSubscription(noShim, consumer.ARN, shards[1], TrimHorizon(), WithSubscriptionLogger(testLog(t)), WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Next(ctx); err == nil || !strings.Contains(err.Error(), "expected initial-response") {
		t.Errorf("without the shim: %v; want the SDK's \"expected initial-response\" (has kinesis-mock changed?)", err)
	}
	raw.Close()

	// subscribe opens a subscription that is closed when the test ends.
	subscribe := func(consumerARN, shard string, start types.StartingPosition) *Subscription {
		t.Helper()
		s, err := NewSubscription(efoClient, consumerARN, shard, start, WithSubscriptionLogger(testLog(t)), WithRetryBackoff(200*time.Millisecond, time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	// Each shard from TRIM_HORIZON: every record, in order, continuation
	// numbers at the last record of each event.
	subs := map[string]*Subscription{}
	for i, shard := range shards {
		s := subscribe(consumer.ARN, shard, TrimHorizon())
		subs[shard] = s
		want := []string{strings.Join(data0, ","), strings.Join(data1, ",")}[i]
		wantSeqs := [][]string{seqs0, seqs1}[i]
		bs := readUntil(t, s, len(wantSeqs))
		if got := datas(allRecords(bs)); got != want {
			t.Fatalf("%s: records %q, want %q", shard, got, want)
		}
		if diff := cmp.Diff(wantSeqs, seqs(allRecords(bs))); diff != "" {
			t.Fatalf("%s: sequence numbers (-want +got):\n%s", shard, diff)
		}
		for _, b := range bs {
			if n := len(b.Records); n > 0 && b.ContinuationSequenceNumber != aws.ToString(b.Records[n-1].SequenceNumber) {
				t.Errorf("%s: continuation %s, want the last record's", shard, b.ContinuationSequenceNumber)
			}
		}
	}

	// The subscription stays open across "micro-batches": records written
	// later arrive on it, and a batch can stop inside an event.
	s0 := subs[shards[0]]
	more := efotest.Put(t, plain, "orders", shards[0], "a5", "a6", "a7")
	var got []types.Record
	for len(got) < 1 {
		b, err := s0.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b.Records...)
		if len(b.Records) > 1 {
			// The micro-batch's limit is one record: put the rest back.
			if err := s0.Unread(len(b.Records) - 1); err != nil {
				t.Fatal(err)
			}
			got = got[:len(got)-(len(b.Records)-1)]
		}
	}
	if datas(got) != "a5" {
		t.Fatalf("first record after the new writes %q, want a5", datas(got))
	}
	if want := AfterSequence(more[0]); PositionString(s0.Position()) != PositionString(want) {
		t.Fatalf("Position %s, want %s", PositionString(s0.Position()), PositionString(want))
	}
	got = allRecords(readUntil(t, s0, 2))
	if datas(got) != "a6,a7" {
		t.Fatalf("next micro-batch %q, want a6,a7", datas(got))
	}

	// A new subscription from the old one's position (another executor, or
	// after a restart) continues exactly there: nothing repeated, nothing
	// lost.
	pos := s0.Position()
	s0.Close()
	efotest.Put(t, plain, "orders", shards[0], "a8")
	s0b := subscribe(consumer.ARN, shards[0], pos)
	if got := datas(allRecords(readUntil(t, s0b, 1))); got != "a8" {
		t.Fatalf("after re-subscribing from %s: %q, want a8", PositionString(pos), got)
	}

	// AT_SEQUENCE_NUMBER and AT_TIMESTAMP. kinesis-mock refuses a second
	// subscription to a shard while one is open (ResourceInUseException), so
	// the first one is closed.
	subs[shards[1]].Close()
	at := subscribe(consumer.ARN, shards[1], AtSequence(seqs1[1]))
	if got := datas(allRecords(readUntil(t, at, 2))); got != "b1,b2" {
		t.Fatalf("AT_SEQUENCE_NUMBER %s: %q, want b1,b2", seqs1[1], got)
	}
	at.Close()
	ts := subscribe(consumer.ARN, shards[1], AtTimestamp(time.Now().Add(-time.Hour)))
	if got := datas(allRecords(readUntil(t, ts, 3))); got != "b0,b1,b2" {
		t.Fatalf("AT_TIMESTAMP an hour ago: %q, want b0,b1,b2", got)
	}
	ts.Close()

	// A subscription of a consumer that does not exist ends with the
	// service's ResourceNotFoundException, not a retry loop.
	bad := subscribe(consumer.ARN+"0", shards[1], TrimHorizon())
	_, err = bad.Next(ctx)
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("subscription with an unknown consumer: %v, want a ResourceNotFoundException", err)
	}
}
