package testenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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
)

// Kinesis is a running kinesis-mock (the npm package kinesis-local, pinned
// in testdata/npm/package-lock.json).
//
// kinesis-mock namespaces streams by account: a request whose access key id
// is a 12-digit number is served from that account, any other key from
// DefaultAccount. KinesisAccountKeys gives credentials for a given account.
type Kinesis struct {
	// Endpoint serves plain HTTP/1.1: the polling APIs (ListShards,
	// GetRecords, PutRecords...).
	Endpoint string
	// TLSEndpoint serves HTTPS with HTTP/2 and a self-signed certificate:
	// SubscribeToShard needs it. KinesisTLSClient trusts the certificate.
	TLSEndpoint string
	Region      string
	// AccessKey and SecretKey select DefaultAccount.
	AccessKey string
	SecretKey string
}

// DefaultAccount is the account kinesis-mock serves for access keys that are
// not 12-digit numbers.
const DefaultAccount = "000000000000"

// KinesisOption tunes StartKinesis.
type KinesisOption func(env map[string]string)

// KinesisShardLimit sets the emulator's per-account shard limit (default
// here 100).
func KinesisShardLimit(n int) KinesisOption {
	return func(env map[string]string) { env["SHARD_LIMIT"] = strconv.Itoa(n) }
}

// KinesisEnv sets any other kinesis-mock variable (see the kinesis-local
// README), e.g. REGISTER_STREAM_CONSUMER_DURATION.
func KinesisEnv(name, value string) KinesisOption {
	return func(env map[string]string) { env[name] = value }
}

// StartKinesis starts kinesis-mock on free loopback ports (installing it
// with `npm ci` first if needed), waits until it answers ListStreams, and
// kills it when the test ends. Stream creation, deletion, resharding and
// consumer registration take 10ms instead of the emulator's default 500ms,
// so tests still see the CREATING/UPDATING states but do not wait long.
func StartKinesis(t testing.TB, opts ...KinesisOption) Kinesis {
	t.Helper()
	bin := NPMBin(t, "kinesis-local")
	plain, tlsPort := FreePort(t), FreePort(t)
	k := Kinesis{
		Endpoint:    "http://" + Addr(plain),
		TLSEndpoint: "https://" + Addr(tlsPort),
		Region:      "us-east-1",
		AccessKey:   "sluice-test-key",
		SecretKey:   "sluice-test-secret",
	}
	env := map[string]string{
		"KINESIS_MOCK_PLAIN_PORT": strconv.Itoa(plain),
		"KINESIS_MOCK_TLS_PORT":   strconv.Itoa(tlsPort),
		"AWS_REGION":              k.Region,
		"SHARD_LIMIT":             "100",
		"LOG_LEVEL":               "WARN",
		"ROOT_LOG_LEVEL":          "ERROR",
		"SHOULD_PERSIST_DATA":     "false",
		"LOAD_DATA_IF_EXISTS":     "false",
	}
	for _, v := range []string{"CREATE_STREAM_DURATION", "DELETE_STREAM_DURATION", "REGISTER_STREAM_CONSUMER_DURATION",
		"DEREGISTER_STREAM_CONSUMER_DURATION", "MERGE_SHARDS_DURATION", "SPLIT_SHARD_DURATION",
		"UPDATE_SHARD_COUNT_DURATION", "UPDATE_STREAM_MODE_DURATION", "START_STREAM_ENCRYPTION_DURATION",
		"STOP_STREAM_ENCRYPTION_DURATION"} {
		env[v] = "10ms"
	}
	main, err := filepath.EvalSymlinks(bin)
	if err != nil {
		t.Fatalf("kinesis-local: %v", err)
	}
	// The TLS port needs the package's self-signed certificate; the
	// emulator looks for it in its working directory unless told where.
	env["KINESIS_MOCK_CERT_PATH"] = filepath.Join(filepath.Dir(main), "server.json")
	for _, o := range opts {
		o(env)
	}
	cmd := exec.Command("node", main)
	cmd.Dir = t.TempDir() // anything it writes stays in the test's directory
	cmd.Env = cmd.Environ()
	for name, v := range env {
		cmd.Env = append(cmd.Env, name+"="+v)
	}
	client := k.Client(t, "")
	StartProcess(t, "kinesis-mock", cmd, 90*time.Second, func(ctx context.Context) error {
		_, err := client.ListStreams(ctx, &kinesis.ListStreamsInput{})
		return err
	})
	return k
}

// KinesisAccountKeys returns static credentials that kinesis-mock maps to
// account (a 12-digit id).
func KinesisAccountKeys(account string) (accessKey, secretKey string) {
	return account, "secret-of-" + account
}

// Client returns a Kinesis client for the plain endpoint, signed with the
// default account's keys, or with accessKey (and a dummy secret) when it is
// not empty. It does not retry throttling beyond the SDK's defaults.
func (k Kinesis) Client(t testing.TB, accessKey string) *kinesis.Client {
	t.Helper()
	ak, sk := k.AccessKey, k.SecretKey
	if accessKey != "" {
		ak, sk = accessKey, "secret-of-"+accessKey
	}
	return kinesis.New(kinesis.Options{
		Region:       k.Region,
		BaseEndpoint: aws.String(k.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(ak, sk, ""),
		HTTPClient:   HTTPClient(t),
	})
}

// HTTPClient returns a client with its own connection pool, closed when the
// test ends (so leak checks see no idle connection goroutines). The
// emulators are on loopback: a request hanging for a minute is a bug, not a
// slow network.
func HTTPClient(t testing.TB) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// KinesisTLSClient returns an HTTP client for TLSEndpoint: it trusts
// kinesis-mock's self-signed certificate and speaks HTTP/2 (which
// SubscribeToShard needs). Its connections are closed when the test ends.
// It has no overall timeout, since a subscription streams for minutes.
func KinesisTLSClient(t testing.TB) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, //nolint:gosec // the test emulator's self-signed certificate
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// CreateStream creates a stream with the given number of shards through
// client and waits until it is ACTIVE. It returns the stream's ARN.
func CreateStream(t testing.TB, client *kinesis.Client, name string, shards int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.CreateStream(ctx, &kinesis.CreateStreamInput{
		StreamName: aws.String(name), ShardCount: aws.Int32(int32(shards)),
	}); err != nil {
		t.Fatalf("create stream %s: %v", name, err)
	}
	return WaitStreamActive(t, client, name)
}

// WaitStreamActive waits until the stream is ACTIVE (after a create or a
// reshard) and returns its ARN.
func WaitStreamActive(t testing.TB, client *kinesis.Client, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		out, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err == nil && out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return aws.ToString(out.StreamDescriptionSummary.StreamARN)
		}
		var nf *types.ResourceNotFoundException
		if err != nil && !errors.As(err, &nf) {
			t.Fatalf("describe stream %s: %v", name, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream %s not ACTIVE: %v (last error %v)", name, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// DeleteStream deletes a stream and waits until it is gone.
func DeleteStream(t testing.TB, client *kinesis.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := client.DeleteStream(ctx, &kinesis.DeleteStreamInput{StreamName: aws.String(name)}); err != nil {
		t.Fatalf("delete stream %s: %v", name, err)
	}
	for {
		_, err := client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("stream %s not deleted: %v", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PutRecords writes one record per entry of data with the matching
// partition key, in calls of at most 500, failing the test on any error or
// failed entry (the emulator never throttles).
func PutRecords(t testing.TB, client *kinesis.Client, streamName string, keys []string, data [][]byte) {
	t.Helper()
	if len(keys) != len(data) {
		t.Fatalf("PutRecords: %d keys for %d records", len(keys), len(data))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < len(data); i += 500 {
		end := min(i+500, len(data))
		entries := make([]types.PutRecordsRequestEntry, 0, end-i)
		for j := i; j < end; j++ {
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(keys[j]), Data: data[j]})
		}
		out, err := client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(streamName), Records: entries})
		if err != nil {
			t.Fatalf("put records to %s: %v", streamName, err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n > 0 {
			t.Fatalf("put records to %s: %d entries failed", streamName, n)
		}
	}
}

// String describes the emulator for logs.
func (k Kinesis) String() string {
	return fmt.Sprintf("kinesis-mock at %s (TLS %s)", k.Endpoint, k.TLSEndpoint)
}
