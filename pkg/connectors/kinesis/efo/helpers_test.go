package efo

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo/efotest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConsumerARN looks like a real consumer ARN: the SDK's endpoint rules
// parse it.
const testConsumerARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1700000000"

// testLog shows the package's logs in verbose test output only.
func testLog(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// fastRetries keeps tests against servers quick: back-off of milliseconds
// instead of seconds.
func fastRetries(t testing.TB) []SubscriptionOption {
	return []SubscriptionOption{WithRetryBackoff(10*time.Millisecond, 50*time.Millisecond), WithSubscriptionLogger(testLog(t))}
}

// serverSubscription subscribes to shardId-000000000000 at srv from start,
// with fastRetries and extra options; it is closed when the test ends.
func serverSubscription(t *testing.T, srv *efotest.Server, start types.StartingPosition, extra ...SubscriptionOption) *Subscription {
	t.Helper()
	s, err := NewSubscription(srv.Client(), testConsumerARN, "shardId-000000000000", start, append(fastRetries(t), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func seqs(recs []types.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = aws.ToString(r.SequenceNumber)
	}
	return out
}

func datas(recs []types.Record) string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Data))
	}
	return strings.Join(out, ",")
}

// readUntil calls Next until n records arrived (or the shard ended), with a
// generous overall timeout, and returns the batches.
func readUntil(t *testing.T, s *Subscription, n int) []Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []Batch
	got := 0
	for got < n {
		b, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d records: %v", got, n, err)
		}
		out = append(out, b)
		got += len(b.Records)
		if b.ShardEnded() {
			break
		}
	}
	return out
}

func allRecords(bs []Batch) []types.Record {
	var out []types.Record
	for _, b := range bs {
		out = append(out, b.Records...)
	}
	return out
}
