package statestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sluicehq/sluice/pkg/awsauth"
)

// S3API is the part of *s3.Client an S3 Location uses (so tests can fake it).
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

var _ S3API = (*s3.Client)(nil)

// S3Config says how OpenLocation reaches S3. The zero value is the SDK's
// default region (AWS_REGION, shared config; else us-east-1) and credential
// chain (environment, shared config, web identity, instance role).
type S3Config struct {
	// Endpoint overrides the S3 endpoint (MinIO, a VPC endpoint), e.g.
	// http://127.0.0.1:9000; path-style addressing is used when it is set.
	Endpoint string
	// Options are the region and credentials, as every AWS client of
	// Sluice takes them (static keys, an assumed role, or the default chain).
	awsauth.Options
}

// String shows the settings without the secrets, so that a logged config
// does not leak them.
func (c S3Config) String() string {
	return fmt.Sprintf("{Region:%s Endpoint:%s AccessKey:%s SecretKey:%s SessionToken:%s RoleARN:%s}",
		c.Region, c.Endpoint, c.AccessKey, redact(c.SecretKey), redact(c.SessionToken), c.RoleARN)
}

// GoString is String, for %#v.
func (c S3Config) GoString() string { return "statestore.S3Config" + c.String() }

// LogValue is String's content for slog.
func (c S3Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("region", c.Region), slog.String("endpoint", c.Endpoint),
		slog.String("accessKey", c.AccessKey), slog.String("secretKey", redact(c.SecretKey)),
		slog.String("sessionToken", redact(c.SessionToken)), slog.String("roleArn", c.RoleARN))
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// NewS3Client builds the S3 client OpenLocation uses for cfg. It does not
// call AWS.
func NewS3Client(ctx context.Context, cfg S3Config) (*s3.Client, error) {
	awsCfg, err := awsauth.Load(ctx, cfg.Options)
	if err != nil {
		// awsauth's errors name options, never their values.
		return nil, fmt.Errorf("statestore: s3: %w", err)
	}
	return s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
		}
	}), nil
}

func openS3(ctx context.Context, bucket, prefix string, cfg S3Config) (Location, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	if _, err := s3Root(prefix); err != nil {
		return nil, err
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return nil, errors.New("statestore: S3 endpoint must be an http:// or https:// URL, e.g. http://127.0.0.1:9000")
		case u.User != nil:
			// Errors would repeat the endpoint, and with it the secret.
			return nil, errors.New("statestore: S3 endpoint must not hold credentials")
		}
	}
	client, err := NewS3Client(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return S3(client, bucket, prefix)
}

// s3Location is a Location on the objects under a prefix of a bucket.
type s3Location struct {
	client S3API
	bucket string
	root   string // "" or the prefix with a trailing "/"
}

// S3's bucket naming rules (general purpose buckets).
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func checkBucket(bucket string) error {
	if !bucketRE.MatchString(bucket) || strings.Contains(bucket, "..") {
		return fmt.Errorf("statestore: %q is not an S3 bucket name: 3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit", bucket)
	}
	return nil
}

// s3Root normalises a prefix: leading and trailing slashes dropped, and a
// trailing one added back unless it is the bucket's root.
func s3Root(prefix string) (string, error) {
	p := strings.Trim(prefix, "/")
	if p == "" {
		return "", nil
	}
	if err := checkName(p); err != nil {
		return "", fmt.Errorf("statestore: S3 prefix %q must not contain '.' or '..' elements or '//'", prefix)
	}
	return p + "/", nil
}

// S3 returns a Location on the objects under prefix ("" for the whole
// bucket; leading and trailing slashes are ignored) in bucket, which must
// exist. Names map to keys prefix/name, so the same files in a directory
// and under a prefix are the same Location content; List hides what Dir
// hides (a name whose last element starts with ".tmp-") and keys that are
// no valid name (folder markers ending in "/", "a//b").
//
// Put is one PutObject, which S3 applies atomically. The bucket needs
// s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket.
func S3(client S3API, bucket, prefix string) (Location, error) {
	if client == nil {
		return nil, errors.New("statestore: S3: client: required")
	}
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	root, err := s3Root(prefix)
	if err != nil {
		return nil, err
	}
	return &s3Location{client: client, bucket: bucket, root: root}, nil
}

func (l *s3Location) key(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return l.root + name, nil
}

// url names an object in errors.
func (l *s3Location) url(key string) string { return "s3://" + l.bucket + "/" + key }

func (l *s3Location) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := l.key(name)
	if err != nil {
		return err
	}
	_, err = l.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &l.bucket, Key: &key, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("statestore: put %s: %w", l.url(key), l.explain(err))
	}
	return nil
}

func (l *s3Location) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := l.key(name)
	if err != nil {
		return nil, err
	}
	out, err := l.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &l.bucket, Key: &key})
	if isNotFound(err) {
		return nil, fmt.Errorf("statestore: get %s: %w", l.url(key), ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("statestore: get %s: %w", l.url(key), l.explain(err))
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("statestore: get %s: read: %w", l.url(key), err)
	}
	return data, nil
}

// List lists the keys under prefix+"/" (or the whole root). Like Dir, a
// prefix that names a file rather than a "directory" lists that file; that
// takes a second, one-key listing, done only when the first found nothing.
func (l *s3Location) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := l.root
	if prefix != "" {
		if err := checkName(prefix); err != nil {
			return nil, err
		}
		start = l.root + prefix + "/"
	}
	var names []string
	p := s3.NewListObjectsV2Paginator(l.client, &s3.ListObjectsV2Input{Bucket: &l.bucket, Prefix: &start})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("statestore: list %s: %w", l.url(start), l.explain(err))
		}
		for _, o := range page.Contents {
			if name, ok := l.name(aws.ToString(o.Key)); ok {
				names = append(names, name)
			}
		}
	}
	if len(names) == 0 && prefix != "" {
		key := l.root + prefix
		out, err := l.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &l.bucket, Prefix: &key, MaxKeys: aws.Int32(1)})
		if err != nil {
			return nil, fmt.Errorf("statestore: list %s: %w", l.url(key), l.explain(err))
		}
		// The key itself sorts before every longer key with its prefix.
		if len(out.Contents) > 0 && aws.ToString(out.Contents[0].Key) == key {
			if name, ok := l.name(key); ok {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// name maps a listed key to its name, or !ok for a key List hides.
func (l *s3Location) name(key string) (string, bool) {
	name, ok := strings.CutPrefix(key, l.root)
	if !ok || checkName(name) != nil || hidden(name) {
		return "", false
	}
	return name, true
}

func (l *s3Location) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := l.key(name)
	if err != nil {
		return err
	}
	// S3 answers 204 for an absent key; some compatible servers say
	// NoSuchKey or 404.
	_, err = l.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &l.bucket, Key: &key})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("statestore: delete %s: %w", l.url(key), l.explain(err))
	}
	return nil
}

// isNotFound recognises an absent object: NoSuchKey, or a bare 404 (a HEAD,
// or a server that sends no error code). NoSuchBucket is not one: a missing
// bucket must not read as an empty state.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var nf *types.NotFound
	if errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		case "":
		default:
			return false
		}
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// explain adds what to do to the errors a user can fix. AWS error messages
// carry no secrets, and neither does the advice.
func (l *s3Location) explain(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
			return fmt.Errorf("%w: the AWS credentials were refused; check the access key, secret key, session token or role", err)
		case "AccessDenied":
			return fmt.Errorf("%w: the credentials lack an S3 permission the state store needs on bucket %q (s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject)", err, l.bucket)
		case "NoSuchBucket":
			return fmt.Errorf("%w: bucket %q does not exist; create it first", err, l.bucket)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: is the endpoint right and reachable?", err)
	}
	return err
}
