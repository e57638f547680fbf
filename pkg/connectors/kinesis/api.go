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

// newClient builds a Kinesis client for the credential options. It does not
// call AWS. With sdkRetries false the SDK makes one attempt per call: the
// reader and the sink retry themselves, because throttling must slow a
// shard down rather than be retried blindly.
func newClient(ctx context.Context, auth awsauth.Options, endpoint string, o options, sdkRetries bool) (*kinesis.Client, error) {
	cfg, err := awsauth.Load(ctx, auth)
	if err != nil {
		return nil, err
	}
	if o.httpClient != nil {
		cfg.HTTPClient = o.httpClient
	}
	return kinesis.NewFromConfig(cfg, func(ko *kinesis.Options) {
		if endpoint != "" {
			ko.BaseEndpoint = aws.String(endpoint)
		}
		if !sdkRetries {
			ko.Retryer = aws.NopRetryer{}
		}
	}), nil
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
