package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
)

const (
	// maxKey is S3's limit on an object key, in bytes.
	maxKey = 1024
	// logSuffixRoom is what the longest key of a job adds after the job's
	// directory: "/<inc>/<batch>/commit-<id>.json".
	logSuffixRoom = 1 + 16 + 1 + 20 + 1 + len("commit-") + 20 + 1 + 12 + len(".json")
	// deleteMax is DeleteObjects' limit of keys per call.
	deleteMax = 1000
	// maxAttempts bounds the read-modify-write loop of a batch's task ends.
	maxAttempts = 64
)

// backend is casstore.Backend on a bucket and prefix.
type backend struct {
	client *s3.Client
	bucket string
	prefix string
}

var _ casstore.Backend = (*backend)(nil)

// escape makes a job name one safe path segment: every byte other than
// [A-Za-z0-9_-] becomes %XX. So '/' cannot reach into another job's
// directory, no name is "." or "..", which S3-compatible servers refuse,
// and no escaped name contains '.', which keeps "fence.json" and the
// probe objects apart from job directories.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// unescape reverses escape; ok is false for a name escape cannot produce
// (an object someone else put under the prefix).
func unescape(s string) (string, bool) {
	name, err := url.PathUnescape(s)
	if err != nil || escape(name) != s {
		return "", false
	}
	return name, true
}

func (b *backend) fenceKey() string { return b.prefix + "fence.json" }

func (b *backend) jobDir(job string) (string, error) {
	dir := b.prefix + escape(job) + "/"
	if len(dir)+logSuffixRoom > maxKey {
		return "", fmt.Errorf("job name %q is too long for S3 keys under prefix %q (escaped, the keys would exceed %d bytes)", job, b.prefix, maxKey)
	}
	return dir, nil
}

func (b *backend) headKey(job string) (string, error) {
	dir, err := b.jobDir(job)
	return dir + "head.json", err
}

func (b *backend) logDir(l casstore.LogRef) (string, error) {
	dir, err := b.jobDir(l.Job)
	return dir + l.Inc + "/", err
}

func batchDir(batch int64) string { return fmt.Sprintf("%020d/", batch) }

// get reads an object and its ETag; a missing one is casstore.ErrNotExist.
func (b *backend) get(ctx context.Context, key string) ([]byte, string, error) {
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, "", casstore.ErrNotExist
		}
		return nil, "", explain(err, b.bucket)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read s3://%s/%s: %w", b.bucket, key, err)
	}
	return data, aws.ToString(out.ETag), nil
}

// put writes an object conditionally: If-None-Match: * when version is ""
// (create only), else If-Match: version (replace only that version). A
// lost condition is casstore.ErrConflict.
func (b *backend) put(ctx context.Context, key string, value []byte, version string) (string, error) {
	in := &s3.PutObjectInput{
		Bucket: &b.bucket, Key: &key, Body: bytes.NewReader(value),
		ContentType: aws.String("application/json"),
	}
	if version == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(version)
	}
	out, err := b.client.PutObject(ctx, in)
	if isConflict(err) {
		return "", casstore.ErrConflict
	}
	if err != nil {
		return "", explain(err, b.bucket)
	}
	return aws.ToString(out.ETag), nil
}

// isConflict recognises a lost conditional write: 412 Precondition Failed,
// or 409 ConditionalRequestConflict, which S3 answers when another
// conditional write of the key is in progress.
func isConflict(err error) bool {
	if err == nil {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict":
			return true
		}
	}
	var re *smithyhttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 412
}

func (b *backend) GetFence(ctx context.Context) ([]byte, string, error) {
	return b.get(ctx, b.fenceKey())
}

func (b *backend) PutFence(ctx context.Context, value []byte, version string) error {
	_, err := b.put(ctx, b.fenceKey(), value, version)
	return err
}

func (b *backend) GetHead(ctx context.Context, job string) ([]byte, string, error) {
	key, err := b.headKey(job)
	if err != nil {
		return nil, "", err
	}
	return b.get(ctx, key)
}

func (b *backend) PutHead(ctx context.Context, job string, value []byte, version string) (string, error) {
	key, err := b.headKey(job)
	if err != nil {
		return "", err
	}
	return b.put(ctx, key, value, version)
}

// ListHeads lists the job directories under the prefix (a listing, which
// casstore uses only for the catalog). It returns names only: casstore
// reads each head.json with GetHead while it seals the heads, and leaves
// out a directory without one (logs of a job whose head is gone after a
// crash while deleting).
func (b *backend) ListHeads(ctx context.Context) ([]casstore.Head, error) {
	var heads []casstore.Head
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
		Bucket: &b.bucket, Prefix: &b.prefix, Delimiter: aws.String("/"),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, explain(err, b.bucket)
		}
		for _, cp := range page.CommonPrefixes {
			dir := strings.TrimSuffix(strings.TrimPrefix(aws.ToString(cp.Prefix), b.prefix), "/")
			if job, ok := unescape(dir); ok {
				heads = append(heads, casstore.Head{Job: job})
			}
		}
	}
	return heads, nil
}

func (b *backend) blobKey(r casstore.BlobRef) (string, error) {
	dir, err := b.logDir(r.LogRef)
	return dir + batchDir(r.Batch) + r.Kind + "-" + r.ID + ".json", err
}

func (b *backend) endsKey(l casstore.LogRef, batch int64) (string, error) {
	dir, err := b.logDir(l)
	return dir + batchDir(batch) + "ends.json", err
}

// PutBlob writes a blob with If-None-Match: *: blobs are write-once.
func (b *backend) PutBlob(ctx context.Context, r casstore.BlobRef, value []byte) error {
	key, err := b.blobKey(r)
	if err != nil {
		return err
	}
	_, err = b.put(ctx, key, value, "")
	if errors.Is(err, casstore.ErrConflict) {
		return fmt.Errorf("s3://%s/%s exists already: blob ids are unique, so another store wrote it", b.bucket, key)
	}
	return err
}

func (b *backend) GetBlob(ctx context.Context, r casstore.BlobRef) ([]byte, error) {
	key, err := b.blobKey(r)
	if err != nil {
		return nil, err
	}
	v, _, err := b.get(ctx, key)
	return v, err
}

// PutEnd records one task end in the batch's ends.json with a conditional
// read-modify-write: the object is replaced only if nobody changed it since
// it was read (If-Match), and the entry only if its stamp admits end's.
// One object per batch keeps TaskEnds a single GET, with no listing.
func (b *backend) PutEnd(ctx context.Context, l casstore.LogRef, batch int64, key string, end casstore.End) error {
	okey, err := b.endsKey(l, batch)
	if err != nil {
		return err
	}
	for range maxAttempts {
		ends := map[string]casstore.End{}
		data, ver, err := b.get(ctx, okey)
		switch {
		case errors.Is(err, casstore.ErrNotExist):
			ver = ""
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(data, &ends); err != nil {
				return fmt.Errorf("decode s3://%s/%s: %w", b.bucket, okey, err)
			}
		}
		if old, ok := ends[key]; ok && !casstore.Admits(old.Epoch, old.FenceKey, end.Epoch, end.FenceKey) {
			return casstore.ErrConflict
		}
		ends[key] = end
		v, err := json.Marshal(ends)
		if err != nil {
			return err
		}
		_, err = b.put(ctx, okey, v, ver)
		if errors.Is(err, casstore.ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("s3://%s/%s: still changing after %d attempts", b.bucket, okey, maxAttempts)
}

func (b *backend) Ends(ctx context.Context, l casstore.LogRef, batch int64) (map[string]casstore.End, error) {
	okey, err := b.endsKey(l, batch)
	if err != nil {
		return nil, err
	}
	ends := map[string]casstore.End{}
	data, _, err := b.get(ctx, okey)
	if errors.Is(err, casstore.ErrNotExist) {
		return ends, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &ends); err != nil {
		return nil, fmt.Errorf("decode s3://%s/%s: %w", b.bucket, okey, err)
	}
	return ends, nil
}

// DeleteLogs lists the incarnation's objects and deletes those of batches
// below before. Nothing points to them any more (casstore removed the
// pointers first), so a listing that misses a fresh object only leaves
// garbage, never a wrong answer.
func (b *backend) DeleteLogs(ctx context.Context, l casstore.LogRef, before int64) error {
	dir, err := b.logDir(l)
	if err != nil {
		return err
	}
	var doomed []types.ObjectIdentifier
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &dir})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list logs: %w", explain(err, b.bucket))
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			rest := strings.TrimPrefix(key, dir)
			if before != casstore.AllBatches {
				n, err := strconv.ParseInt(strings.SplitN(rest, "/", 2)[0], 10, 64)
				if err != nil || n >= before {
					continue
				}
			}
			doomed = append(doomed, types.ObjectIdentifier{Key: aws.String(key)})
		}
	}
	for len(doomed) > 0 {
		n := min(len(doomed), deleteMax)
		out, err := b.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &b.bucket,
			Delete: &types.Delete{Objects: doomed[:n], Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete logs: %w", explain(err, b.bucket))
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("delete logs: %d of %d objects not deleted, first %s: %s %s",
				len(out.Errors), n, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
		doomed = doomed[n:]
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
