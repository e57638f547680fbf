package efo

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
)

var (
	// ErrConsumerNotFound: the consumer is not registered on the stream. For
	// a self-managed consumer the error is also marked permanent
	// (connectors.IsPermanent), since Sluice will not register it.
	ErrConsumerNotFound = errors.New("consumer not registered")
	// ErrConsumerNotActive: the consumer exists but is CREATING or DELETING,
	// so it cannot be subscribed with yet.
	ErrConsumerNotActive = errors.New("consumer not ACTIVE")
	// ErrClosed is returned by a Subscription or Manager used after Close or
	// Stop.
	ErrClosed = errors.New("closed")
)

// isNotFound reports a ResourceNotFoundException: a missing stream, consumer
// or shard, depending on the call.
func isNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

func isResourceInUse(err error) bool {
	var e *types.ResourceInUseException
	return errors.As(err, &e)
}

func isLimitExceeded(err error) bool {
	var e *types.LimitExceededException
	return errors.As(err, &e)
}

// isPermanentAPIError reports errors that retrying the same call cannot fix:
// refused credentials or permissions, an invalid request, a KMS key that is
// gone or unusable. Everything else (throttling, ResourceInUse, internal
// failures, broken connections, unknown errors) is retried with back-off, so
// an unexpected error costs a few attempts instead of the job.
// ResourceNotFound is not here: whether it is permanent depends on what was
// looked up, so callers decide.
func isPermanentAPIError(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		ad  *types.AccessDeniedException
		ia  *types.InvalidArgumentException
		va  *types.ValidationException
		kad *types.KMSAccessDeniedException
		kd  *types.KMSDisabledException
		kis *types.KMSInvalidStateException
		knf *types.KMSNotFoundException
		kor *types.KMSOptInRequired
	)
	if errors.As(err, &ad) || errors.As(err, &ia) || errors.As(err, &va) || errors.As(err, &kad) ||
		errors.As(err, &kd) || errors.As(err, &kis) || errors.As(err, &knf) || errors.As(err, &kor) {
		return true
	}
	// Signature and credential problems come back as generic API errors.
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature",
			"MissingAuthenticationToken", "AccessDeniedException", "ExpiredTokenException":
			return true
		}
	}
	return false
}

// backoff is capped exponential back-off with jitter: attempt 1 waits about
// min, each further attempt twice as long, up to max. Half of each delay is
// random, so that many readers failing together (a stream-wide outage) do
// not retry in lockstep.
type backoff struct {
	min, max time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.min
	for i := 1; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(half+1)
}

// sleep waits d. It returns ctx's error if ctx ends first, and ErrClosed
// if closed (nil for none: a Subscription passes its lifecycle's Done) is
// closed first.
func sleep(ctx context.Context, closed <-chan struct{}, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closed:
		return ErrClosed
	}
}
