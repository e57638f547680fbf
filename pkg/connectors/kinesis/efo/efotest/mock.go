package efotest

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sluicehq/sluice/internal/testenv"
)

// HTTPClient is testenv.KinesisTLSClient (HTTP/2, trusting kinesis-mock's
// self-signed certificate, no overall timeout since a subscription streams
// for minutes) going through InitialResponseShim, so that SubscribeToShard
// works with the SDK. Its idle connections are closed when the test ends.
func HTTPClient(t testing.TB) *http.Client {
	c := testenv.KinesisTLSClient(t)
	c.Transport = InitialResponseShim(c.Transport)
	return c
}

// EFOClient is a Kinesis client of k's TLS endpoint through HTTPClient,
// signed with the default account's keys: the client for SubscribeToShard
// (every other call works on k.Client's plain endpoint too).
func EFOClient(t testing.TB, k testenv.Kinesis) *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:       k.Region,
		BaseEndpoint: aws.String(k.TLSEndpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(k.AccessKey, k.SecretKey, ""),
		HTTPClient:   HTTPClient(t),
	})
}

// ShardIDs lists the stream's shard ids in order.
func ShardIDs(t testing.TB, client *kinesis.Client, stream string) []string {
	t.Helper()
	out, err := client.ListShards(context.Background(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("list shards of %s: %v", stream, err)
	}
	var ids []string
	for _, s := range out.Shards {
		ids = append(ids, aws.ToString(s.ShardId))
	}
	return ids
}

// Put writes data to one shard of the stream (through an explicit hash key
// at the start of the shard's range), one PutRecord call per record so
// that their order is the order given, and returns their sequence numbers.
func Put(t testing.TB, client *kinesis.Client, stream, shardID string, data ...string) []string {
	t.Helper()
	ctx := context.Background()
	out, err := client.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("list shards of %s: %v", stream, err)
	}
	hashKey := ""
	for _, s := range out.Shards {
		if aws.ToString(s.ShardId) == shardID {
			hashKey = aws.ToString(s.HashKeyRange.StartingHashKey)
		}
	}
	if hashKey == "" {
		t.Fatalf("no shard %s in %s", shardID, stream)
	}
	var seqs []string
	for _, d := range data {
		r, err := client.PutRecord(ctx, &kinesis.PutRecordInput{
			StreamName: aws.String(stream), PartitionKey: aws.String("k"), ExplicitHashKey: aws.String(hashKey), Data: []byte(d),
		})
		if err != nil {
			t.Fatalf("put record to %s: %v", stream, err)
		}
		if got := aws.ToString(r.ShardId); got != shardID {
			t.Fatalf("record went to %s, not %s", got, shardID)
		}
		seqs = append(seqs, aws.ToString(r.SequenceNumber))
	}
	return seqs
}
