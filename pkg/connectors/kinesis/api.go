package kinesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/awsauth"
)

// api is the part of the Kinesis API this package calls; *kinesis.Client
// implements it.
type api interface {
	ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	DescribeStreamSummary(context.Context, *kinesis.DescribeStreamSummaryInput, ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
	PutRecords(context.Context, *kinesis.PutRecordsInput, ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

var _ api = (*kinesis.Client)(nil)

// prepare is what NewSource and NewReaderPool start with: the validated
// settings, the options, and the AWS configuration that every client of the
// constructor shares.
func prepare(cfg Config, opts []Option) (*settings, options, aws.Config, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, options{}, aws.Config{}, err
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, options{}, aws.Config{}, err
	}
	// No caller's context to pass: loading reads the environment and the
	// shared config files but does not call AWS.
	awsCfg, err := awsConfig(context.Background(), set.auth, o)
	if err != nil {
		return nil, options{}, aws.Config{}, err
	}
	return set, o, awsCfg, nil
}

// awsConfig loads the AWS configuration for the credential options, with
// WithHTTPClient's client. It does not call AWS: credentials are resolved
// (and a role assumed) on first use and cached in the configuration, so
// clients built from one configuration share them.
func awsConfig(ctx context.Context, auth awsauth.Options, o options) (aws.Config, error) {
	cfg, err := awsauth.Load(ctx, auth)
	if err != nil {
		return aws.Config{}, err
	}
	if o.httpClient != nil {
		cfg.HTTPClient = o.httpClient
	}
	return cfg, nil
}

// kinesisClient builds a Kinesis client on cfg. With sdkRetries false the
// SDK makes one attempt per call: the reader and the sink retry themselves,
// because throttling must slow a shard down rather than be retried blindly.
func kinesisClient(cfg aws.Config, endpoint string, sdkRetries bool) *kinesis.Client {
	return kinesis.NewFromConfig(cfg, func(ko *kinesis.Options) {
		if endpoint != "" {
			ko.BaseEndpoint = aws.String(endpoint)
		}
		if !sdkRetries {
			ko.Retryer = aws.NopRetryer{}
		}
	})
}

// newClient is awsConfig and kinesisClient, for a constructor that needs a
// single client (NewSink). It does not call AWS.
func newClient(ctx context.Context, auth awsauth.Options, endpoint string, o options, sdkRetries bool) (*kinesis.Client, error) {
	cfg, err := awsConfig(ctx, auth, o)
	if err != nil {
		return nil, err
	}
	return kinesisClient(cfg, endpoint, sdkRetries), nil
}

// errKind classifies an error from a Kinesis call. This is the one place
// that decides what is worth retrying.
type errKind int

const (
	// errFatal: retrying the same call cannot help (access denied, bad
	// request, a stream or shard that does not exist).
	errFatal errKind = iota
	// errThrottled: the shard's or account's limits were exceeded; slow down.
	errThrottled
	// errExpired: the shard iterator is older than 5 minutes; get a new one
	// from the last position.
	errExpired
	// errTransient: network trouble or a server error; try again after a
	// pause.
	errTransient
	// errCanceled: the caller's context ended.
	errCanceled
)

var (
	throttleChecks = retry.IsErrorThrottles(retry.DefaultThrottles)
	retryChecks    = retry.IsErrorRetryables(retry.DefaultRetryables)
)

func classify(ctx context.Context, err error) errKind {
	var (
		expired *types.ExpiredIteratorException
		kmsThr  *types.KMSThrottlingException
		intern  *types.InternalFailureException
	)
	switch {
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return errCanceled
	case errors.As(err, &expired):
		return errExpired
	case errors.As(err, &kmsThr), throttleChecks.IsErrorThrottle(err) == aws.TrueTernary:
		return errThrottled
	case errors.As(err, &intern), retryChecks.IsErrorRetryable(err) == aws.TrueTernary:
		// Includes connection errors and HTTP 5xx: kinesis-mock answers a
		// malformed iterator with an empty 500, which a fresh iterator fixes.
		return errTransient
	}
	return errFatal
}

// backoff is full jitter over base·2^attempt, capped at limit.
func backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base << min(attempt, 20)
	if d <= 0 || d > limit {
		d = limit
	}
	return time.Duration(rand.Int64N(int64(d)) + 1)
}

// streamErr explains an error from a call about a whole stream.
func streamErr(streamName string, err error) error {
	var nf *types.ResourceNotFoundException
	var denied *types.AccessDeniedException
	switch {
	case errors.As(err, &nf):
		return fmt.Errorf("stream %q not found: is streamName right, and are region and credentials those of its account? (%w)", streamName, err)
	case errors.As(err, &denied):
		return fmt.Errorf("stream %q: access denied: the credentials need kinesis:ListShards, kinesis:DescribeStreamSummary, kinesis:GetShardIterator and kinesis:GetRecords (%w)", streamName, err)
	}
	return fmt.Errorf("stream %q: %w", streamName, err)
}
