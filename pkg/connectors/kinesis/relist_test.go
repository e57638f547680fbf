package kinesis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// scriptedStream answers DescribeStreamSummary from a list of descriptions,
// one per call (the last repeating), and ListShards with no shards: a
// stream caught between its deletion and its successor's creation.
type scriptedStream struct {
	api
	described []types.StreamDescriptionSummary
	calls     int
}

func (s *scriptedStream) DescribeStreamSummary(context.Context, *kinesis.DescribeStreamSummaryInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	d := s.described[min(s.calls, len(s.described)-1)]
	s.calls++
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &d}, nil
}

func (s *scriptedStream) ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	return &kinesis.ListShardsOutput{}, nil
}

// TestPlanRecreatedWhileListing pins a race the e2e suite met under load:
// the stream was described, then deleted and recreated before its shards
// were listed, so the committed shard was missing from the listing and the
// job failed with data loss ("expired"). A missing shard now makes the
// plan describe the stream again: a recreated stream is the "deleted and
// recreated" error, a stream still changing a plain error planned again,
// and only the same stream, still without the shard, is data loss.
func TestPlanRecreatedWhileListing(t *testing.T) {
	old := time.UnixMilli(1_000)
	desc := func(created time.Time, status types.StreamStatus) types.StreamDescriptionSummary {
		return types.StreamDescriptionSummary{StreamARN: aws.String("arn:aws:kinesis:us-east-1:1:stream/s"),
			StreamCreationTimestamp: aws.Time(created), StreamStatus: status}
	}
	committed := map[stream.PartitionID]stream.Position{
		partitionID("s", identitySuffix):         identityPos{ARN: "arn:aws:kinesis:us-east-1:1:stream/s", Created: old.UnixMilli()}.encode(),
		partitionID("s", "shardId-000000000000"): position{Seq: "42"}.encode(),
	}
	for _, tc := range []struct {
		name      string
		second    types.StreamDescriptionSummary
		permanent bool
		want      string
	}{
		{name: "recreated", second: desc(time.UnixMilli(2_000), types.StreamStatusActive), permanent: true, want: "deleted and recreated"},
		{name: "being created", second: desc(time.UnixMilli(2_000), types.StreamStatusCreating), permanent: true, want: "deleted and recreated"},
		{name: "being deleted", second: desc(old, types.StreamStatusDeleting), want: "changed while its shards were listed"},
		{name: "the same stream", second: desc(old, types.StreamStatusActive), permanent: true, want: "no longer listed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := NewSource(Config{StreamName: "s", Region: "us-east-1", AWSAccessKey: "k", AWSSecretKey: "s",
				InitialPosition: "trim_horizon", FailOnDataLoss: true})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			src.client = &scriptedStream{described: []types.StreamDescriptionSummary{desc(old, types.StreamStatusActive), tc.second}}
			_, err = src.Plan(context.Background(), connectors.PlanRequest{Batch: 7, Committed: committed})
			if err == nil || connectors.IsPermanent(err) != tc.permanent || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("plan: %v (permanent %v), want permanent %v containing %q", err, connectors.IsPermanent(err), tc.permanent, tc.want)
			}
		})
	}
}
