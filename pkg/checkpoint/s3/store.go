package s3

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/awsstore"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
)

// ErrNoConditionalWrites means the endpoint accepted a write that its
// precondition should have refused: it ignores If-None-Match or If-Match
// (s3rver and some older S3-compatible servers do), so the store could not
// fence a deposed driver and refuses to run on it.
var ErrNoConditionalWrites = errors.New("the S3 endpoint ignores conditional writes (If-None-Match / If-Match)")

// Store is a checkpoint.Store in an S3 bucket, and a checkpoint.Claimer: a
// newly elected driver calls Claim before it reads checkpoints (see the
// package doc). Its methods are casstore's, which implements the records,
// fencing and reading rules over the bucket. It is safe for concurrent use.
type Store struct {
	*core
	transport *http.Transport
}

// core is embedded under an unexported name, so that its methods are
// Store's without exposing the internal type.
type core = casstore.Store

var (
	_ checkpoint.Store   = (*Store)(nil)
	_ checkpoint.Claimer = (*Store)(nil)
)

// Open validates cfg, checks that the bucket exists and can be read, and
// that the endpoint honours conditional writes (it writes, overwrites
// conditionally and deletes one small probe object under the prefix). Any
// of these failing is an error saying what to fix; ErrNoConditionalWrites
// for an endpoint without conditional writes. Open creates nothing else.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, casstore.Options{})
}

func open(ctx context.Context, cfg Config, o casstore.Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("s3 checkpoint store: %w", err)
	}
	cfg = cfg.withDefaults()
	awsCfg, tr, err := awsstore.Load(ctx, cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("s3 checkpoint store: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
		}
	})
	b := &backend{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix}
	if err := checkBucket(ctx, b, cfg); err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("s3 checkpoint store: %w", err)
	}
	return &Store{core: casstore.New(b, o), transport: tr}, nil
}

// checkBucket turns the usual set-up mistakes into errors that say what to
// do, before any checkpoint is written.
func checkBucket(ctx context.Context, b *backend, cfg Config) error {
	where := fmt.Sprintf("bucket %q", cfg.Bucket)
	if cfg.Endpoint != "" {
		where += " at " + cfg.Endpoint
	}
	_, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &cfg.Bucket})
	if err != nil {
		var nf *types.NotFound
		var re *smithyhttp.ResponseError
		switch {
		case errors.As(err, &nf):
			return fmt.Errorf("%s does not exist: create it first (the store does not create buckets)", where)
		case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden:
			// A HEAD answer has no body, so wrong keys and missing
			// permissions look alike; a GET's error code tells them
			// apart.
			_, lerr := b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &cfg.Bucket, MaxKeys: aws.Int32(1)})
			var ae smithy.APIError
			if errors.As(lerr, &ae) && ae.ErrorCode() != "AccessDenied" {
				return fmt.Errorf("%s: %w", where, explain(lerr, cfg.Bucket))
			}
			return fmt.Errorf("%s: access refused (HTTP 403): the credentials lack s3:ListBucket on the bucket, or are wrong", where)
		case errors.As(err, &re) && re.HTTPStatusCode() == http.StatusMovedPermanently:
			return fmt.Errorf("%s is in another region than %q: set region", where, cfg.Region)
		}
		return fmt.Errorf("%s: %w", where, explain(err, cfg.Bucket))
	}
	return probeConditionalWrites(ctx, b, where)
}

// probeCleanup bounds the removal of the probe object.
const probeCleanup = 10 * time.Second

// probeConditionalWrites checks that the endpoint refuses a create over an
// existing object (If-None-Match: *) and a replace of a version that is not
// the current one (If-Match). The probe's name contains a '.', which no
// escaped job name does, so it cannot collide with a job.
func probeConditionalWrites(ctx context.Context, b *backend, where string) error {
	key := b.prefix + "probe-" + randomHex(8) + ".json"
	defer func() {
		// Best effort, also when ctx has ended, but bounded: the probe is
		// tiny and never read, and Open must not hang on an endpoint that
		// stops answering.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeCleanup)
		defer cancel()
		_, _ = b.client.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key})
	}()
	if _, err := b.put(ctx, key, []byte(`{"probe":1}`), ""); err != nil {
		return fmt.Errorf("%s: write probe object %s: %w", where, key, err)
	}
	switch _, err := b.put(ctx, key, []byte(`{"probe":2}`), ""); {
	case err == nil:
		return fmt.Errorf("%s: %w: a second create with If-None-Match: * succeeded", where, ErrNoConditionalWrites)
	case !errors.Is(err, casstore.ErrConflict):
		return fmt.Errorf("%s: probe If-None-Match: %w", where, err)
	}
	switch _, err := b.put(ctx, key, []byte(`{"probe":3}`), `"00000000000000000000000000000000"`); {
	case err == nil:
		return fmt.Errorf("%s: %w: a replace with a stale If-Match succeeded", where, ErrNoConditionalWrites)
	case !errors.Is(err, casstore.ErrConflict):
		return fmt.Errorf("%s: probe If-Match: %w", where, err)
	}
	return nil
}

// explain adds what to do to errors users can fix: credentials and
// permissions, a missing bucket, an unreachable endpoint.
func explain(err error, bucket string) error {
	return awsstore.Explain(err, func(code string) string {
		switch code {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
			return awsstore.CredentialsRefused
		case "AccessDenied":
			return fmt.Sprintf("the credentials lack an S3 permission the store needs on bucket %q (see docs/checkpoints.md: s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject)", bucket)
		case "NoSuchBucket":
			return fmt.Sprintf("bucket %q does not exist; create it first", bucket)
		}
		return ""
	})
}

// Close releases the store's idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
