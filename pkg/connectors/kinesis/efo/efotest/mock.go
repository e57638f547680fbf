package efotest

import (
	"context"
	"crypto/tls"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/internal/testenv"
)

// Mock is a kinesis-mock (npm kinesis-local, pinned in
// internal/testenv/testdata/npm) started for one test.
type Mock struct {
	// Endpoint is the plain HTTP port (every API but SubscribeToShard).
	Endpoint string
	// TLSEndpoint is the HTTPS port with HTTP/2 and a self-signed
	// certificate; SubscribeToShard works only here.
	TLSEndpoint string
	Region      string
	AccessKey   string
	SecretKey   string
}

// MockOption sets a kinesis-mock environment variable (see its README), e.g.
// MockEnv("REGISTER_STREAM_CONSUMER_DURATION", "3s").
type MockOption func(env map[string]string)

// MockEnv sets one kinesis-mock environment variable.
func MockEnv(name, value string) MockOption {
	return func(env map[string]string) { env[name] = value }
}

// StartMock starts kinesis-mock on free loopback ports, waits until it
// answers, and kills it when the test ends. Stream and consumer state changes
// take 50ms unless an option says otherwise, so tests still see CREATING and
// DELETING without waiting long.
func StartMock(t testing.TB, opts ...MockOption) Mock {
	t.Helper()
	bin := testenv.NPMBin(t, "kinesis-local")
	main, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatalf("kinesis-local: %v", err)
	}
	plain, tlsPort := testenv.FreePort(t), testenv.FreePort(t)
	m := Mock{
		Endpoint:    "http://" + testenv.Addr(plain),
		TLSEndpoint: "https://" + testenv.Addr(tlsPort),
		Region:      "us-east-1",
		AccessKey:   "efo-test-key",
		SecretKey:   "efo-test-secret",
	}
	env := map[string]string{
		"KINESIS_MOCK_PLAIN_PORT": strconv.Itoa(plain),
		"KINESIS_MOCK_TLS_PORT":   strconv.Itoa(tlsPort),
		// The TLS port needs the package's self-signed certificate, which
		// the emulator otherwise looks for in its working directory.
		"KINESIS_MOCK_CERT_PATH": filepath.Join(filepath.Dir(main), "server.json"),
		"AWS_REGION":             m.Region,
		"LOG_LEVEL":              "WARN",
		"ROOT_LOG_LEVEL":         "ERROR",
		"SHOULD_PERSIST_DATA":    "false",
		"LOAD_DATA_IF_EXISTS":    "false",
	}
	for _, v := range []string{"CREATE_STREAM_DURATION", "DELETE_STREAM_DURATION", "REGISTER_STREAM_CONSUMER_DURATION",
		"DEREGISTER_STREAM_CONSUMER_DURATION", "MERGE_SHARDS_DURATION", "SPLIT_SHARD_DURATION", "UPDATE_SHARD_COUNT_DURATION"} {
		env[v] = "50ms"
	}
	for _, o := range opts {
		o(env)
	}
	cmd := exec.Command("node", main)
	cmd.Dir = t.TempDir()
	cmd.Env = cmd.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	client := m.PlainClient(t)
	testenv.StartProcess(t, "kinesis-mock", cmd, 90*time.Second, func(ctx context.Context) error {
		_, err := client.ListStreams(ctx, &kinesis.ListStreamsInput{})
		return err
	})
	return m
}

// PlainClient is a Kinesis client of the plain HTTP endpoint. Its idle
// connections are closed when the test ends.
func (m Mock) PlainClient(t testing.TB) *kinesis.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return kinesis.New(kinesis.Options{
		Region:       m.Region,
		BaseEndpoint: aws.String(m.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		HTTPClient:   &http.Client{Transport: tr, Timeout: 60 * time.Second},
	})
}

// EFOClient is a Kinesis client of the TLS endpoint that trusts the mock's
// self-signed certificate, speaks HTTP/2 and goes through
// InitialResponseShim, so SubscribeToShard works with the SDK. It has no
// overall timeout: a subscription's response lasts minutes. Its idle
// connections are closed when the test ends.
func (m Mock) EFOClient(t testing.TB) *kinesis.Client {
	tr := InsecureTransport()
	t.Cleanup(tr.CloseIdleConnections)
	return kinesis.New(kinesis.Options{
		Region:       m.Region,
		BaseEndpoint: aws.String(m.TLSEndpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		HTTPClient:   &http.Client{Transport: InitialResponseShim(tr)},
	})
}

// InsecureTransport is an HTTP/2-capable transport that accepts any server
// certificate: for the mock's and the test server's self-signed ones only.
func InsecureTransport() *http.Transport {
	return &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // test emulator's self-signed certificate
		ForceAttemptHTTP2: true,
	}
}

// CreateStream creates a stream with shards shards through client, waits
// until it is ACTIVE and returns its ARN.
func CreateStream(t testing.TB, client *kinesis.Client, name string, shards int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(shards))}); err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	for {
		out, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return aws.ToString(out.StreamDescriptionSummary.StreamARN)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream %s not ACTIVE: %v (last error %v)", name, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
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
