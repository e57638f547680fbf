package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
	"github.com/sluicehq/sluice/pkg/stream"
)

// ErrNoConditionalWrites means the endpoint accepted a write that its
// precondition should have refused: it ignores If-None-Match or If-Match
// (s3rver and some older S3-compatible servers do), so the store could not
// fence a deposed driver and refuses to run on it.
var ErrNoConditionalWrites = errors.New("the S3 endpoint ignores conditional writes (If-None-Match / If-Match)")

// Store is a checkpoint.Store in an S3 bucket. It is safe for concurrent
// use.
type Store struct {
	core      *casstore.Store
	transport *http.Transport
}

var _ checkpoint.Store = (*Store)(nil)

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
	awsCfg, err := awsauth.Load(ctx, cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("s3 checkpoint store: %w", err)
	}
	// An own transport, so Close can release its connections.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	awsCfg.HTTPClient = &http.Client{Transport: tr}
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

// probeConditionalWrites checks that the endpoint refuses a create over an
// existing object (If-None-Match: *) and a replace of a version that is not
// the current one (If-Match). The probe's name contains a '.', which no
// escaped job name does, so it cannot collide with a job.
func probeConditionalWrites(ctx context.Context, b *backend, where string) error {
	key := b.prefix + "probe-" + randomHex(8) + ".json"
	defer func() {
		// Best effort: the probe is tiny and never read.
		_, _ = b.client.DeleteObject(context.WithoutCancel(ctx), &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key})
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
// permissions, a missing bucket, an unreachable endpoint. AWS error
// messages do not carry secrets; neither does anything added here.
func explain(err error, bucket string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
			return fmt.Errorf("%w: the AWS credentials were refused; check the access key, secret key, session token or role", err)
		case "AccessDenied":
			return fmt.Errorf("%w: the credentials lack an S3 permission the store needs on bucket %q (see README: s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject)", err, bucket)
		case "NoSuchBucket":
			return fmt.Errorf("%w: bucket %q does not exist; create it first", err, bucket)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: is the endpoint right and reachable?", err)
	}
	return err
}

// Claim raises the store's fence to f. A newly elected driver calls it
// before it reads checkpoints, so that nothing an older leader still has in
// flight can change what it reads; see the package doc. It fails with
// checkpoint.ErrFenced when a newer leader claimed the store already.
func (s *Store) Claim(ctx context.Context, f checkpoint.Fence) error {
	return s.core.Claim(ctx, f)
}

// PutJob writes the job's catalog entry (fenced).
func (s *Store) PutJob(ctx context.Context, f checkpoint.Fence, job checkpoint.JobRecord) error {
	return s.core.PutJob(ctx, f, job)
}

// GetJob reads a catalog entry; an unknown job is checkpoint.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (checkpoint.JobRecord, error) {
	return s.core.GetJob(ctx, name)
}

// ListJobs returns every catalog entry, sorted by name. It lists the
// prefix, so on a store whose listings lag, a job created a moment ago may
// be missing.
func (s *Store) ListJobs(ctx context.Context) ([]checkpoint.JobRecord, error) {
	return s.core.ListJobs(ctx)
}

// DeleteJob removes the catalog entry and every log of the job (fenced).
// Deleting an unknown job succeeds.
func (s *Store) DeleteJob(ctx context.Context, f checkpoint.Fence, name string) error {
	return s.core.DeleteJob(ctx, f, name)
}

// PutPlan writes the offset log entry of plan.Batch (fenced).
func (s *Store) PutPlan(ctx context.Context, f checkpoint.Fence, job string, plan checkpoint.BatchPlan) error {
	return s.core.PutPlan(ctx, f, job, plan)
}

// LatestPlan returns the plan of the highest batch, or checkpoint.ErrNotFound.
// It reads the job's head and the plan it points to; it does not list.
func (s *Store) LatestPlan(ctx context.Context, job string) (checkpoint.BatchPlan, error) {
	return s.core.LatestPlan(ctx, job)
}

// PutTaskEnd records where the task key of batch stopped (fenced).
func (s *Store) PutTaskEnd(ctx context.Context, f checkpoint.Fence, job string, batch stream.BatchID, key string, end stream.Position) error {
	return s.core.PutTaskEnd(ctx, f, job, batch, key, end)
}

// TaskEnds returns the task ends recorded for batch's current plan (one
// GET, no listing).
func (s *Store) TaskEnds(ctx context.Context, job string, batch stream.BatchID) (map[string]stream.Position, error) {
	return s.core.TaskEnds(ctx, job, batch)
}

// PutCommit writes the commit log entry of c.Batch (fenced).
func (s *Store) PutCommit(ctx context.Context, f checkpoint.Fence, job string, c checkpoint.Commit) error {
	return s.core.PutCommit(ctx, f, job, c)
}

// LatestCommit returns the commit of the highest batch, or
// checkpoint.ErrNotFound. It reads the job's head and the commit it points
// to; it does not list.
func (s *Store) LatestCommit(ctx context.Context, job string) (checkpoint.Commit, error) {
	return s.core.LatestCommit(ctx, job)
}

// Purge deletes plans, task ends and commits of batches below before
// (fenced). The driver calls it with its latest batch minus
// minBatchesToRetain.
func (s *Store) Purge(ctx context.Context, f checkpoint.Fence, job string, before stream.BatchID) error {
	return s.core.Purge(ctx, f, job, before)
}

// Close releases the store's idle connections.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
