package s3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/stream"
)

// SuccessMarker is the name of the per-batch commit marker.
const SuccessMarker = "_SUCCESS"

// DefaultPartition is the folder value of rows whose partitionBy field is
// missing, null or empty, as Hive names it.
const DefaultPartition = "__HIVE_DEFAULT_PARTITION__"

// Option tunes New.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger  *slog.Logger
	tempDir string
}

// WithLogger sets where the sink logs. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithTempDir sets where JSON-lines output is spooled before upload.
// Default os.TempDir().
func WithTempDir(dir string) Option { return optionFunc(func(o *options) { o.tempDir = dir }) }

// Sink writes task outputs as S3 objects. It is safe for concurrent use.
type Sink struct {
	cfg       Config
	client    *s3.Client
	transport *http.Transport
	log       *slog.Logger
	tempDir   string
}

var (
	_ connectors.Sink           = (*Sink)(nil)
	_ connectors.BatchCommitter = (*Sink)(nil)
)

// New validates cfg and builds the S3 client. It does not call AWS:
// credentials are resolved (and roles assumed) on the first request.
func New(cfg Config, opts ...Option) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{logger: slog.Default(), tempDir: os.TempDir()}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.logger == nil {
		return nil, errors.New("s3 sink: WithLogger: logger must not be nil")
	}
	auth := cfg.Auth
	auth.Region = cfg.Region
	awsCfg, err := awsauth.Load(context.Background(), auth)
	if err != nil {
		return nil, fmt.Errorf("s3 sink: %w", err)
	}
	// An own transport, so that Close can drop its idle connections.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	client := s3.NewFromConfig(awsCfg, func(so *s3.Options) {
		so.HTTPClient = &http.Client{Transport: transport}
		if cfg.Endpoint != "" {
			so.BaseEndpoint = aws.String(cfg.Endpoint)
			so.UsePathStyle = true
		}
	})
	return &Sink{cfg: cfg, client: client, transport: transport, log: o.logger, tempDir: o.tempDir}, nil
}

// Close drops idle connections. Writers are independent of it.
func (s *Sink) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}

// batchPrefix is prefix/<job>/batch=<N>/.
func (s *Sink) batchPrefix(job stream.JobID, batch stream.BatchID) string {
	return s.cfg.prefix() + file.PartName(string(job)) + "/batch=" + strconv.FormatInt(int64(batch), 10) + "/"
}

// ObjectKey is the key of a part's object: prefix/<job>/batch=<N>/[<field>=<value>/]part-<part>.<ext>,
// with value "" when the sink has no partitionBy. Parts and the job are
// made safe for keys as the file sink names its files (file.PartName);
// values as by PartitionValue.
func (s *Sink) ObjectKey(job stream.JobID, batch stream.BatchID, value, part string) string {
	k := s.batchPrefix(job, batch)
	if s.cfg.PartitionBy != "" {
		k += escapeKey(s.cfg.PartitionBy) + "=" + value + "/"
	}
	return k + "part-" + file.PartName(part) + "." + s.cfg.format()
}

// PartitionValue renders a partitionBy value as its folder name: strings
// as they are, numbers and booleans as text, timestamps in RFC 3339 (UTC),
// with every byte but letters, digits, '.', '_' and '-' escaped as %XX (as
// Hive escapes partition values); missing, null or empty values are
// DefaultPartition.
func PartitionValue(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return DefaultPartition
	case string:
		s = x
	case time.Time:
		s = x.UTC().Format(time.RFC3339Nano)
	case []byte:
		s = string(x)
	default:
		s = textOf(v)
	}
	if s == "" {
		return DefaultPartition
	}
	return escapeKey(s)
}

func escapeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	out := b.String()
	if out == "." || out == ".." {
		out = strings.ReplaceAll(out, ".", "%2E")
	}
	return out
}

// OpenWriter returns a writer for key; it does no I/O until rows arrive.
func (s *Sink) OpenWriter(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if key.Job == "" {
		return nil, errors.New("s3 sink: empty job")
	}
	return &writer{s: s, key: key, groups: map[string]*group{}}, nil
}

// manifest is the _SUCCESS object's content.
type manifest struct {
	Job       string           `json:"job"`
	Batch     int64            `json:"batch"`
	Committed time.Time        `json:"committed"`
	Objects   []manifestObject `json:"objects"`
}

type manifestObject struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// CommitBatch writes prefix/<job>/batch=<N>/_SUCCESS once every task of the
// batch committed: a JSON manifest listing the batch's objects and sizes.
// Readers that see the marker see the batch's complete output; a batch
// without it is still being written or will be replaced by its replay.
func (s *Sink) CommitBatch(ctx context.Context, job stream.JobID, batch stream.BatchID) error {
	prefix := s.batchPrefix(job, batch)
	m := manifest{Job: string(job), Batch: int64(batch), Committed: time.Now().UTC(), Objects: []manifestObject{}}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return s.wrap("list "+prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if path.Base(k) == SuccessMarker {
				continue
			}
			m.Objects = append(m.Objects, manifestObject{Key: k, Size: aws.ToInt64(o.Size)})
		}
	}
	slices.SortFunc(m.Objects, func(a, b manifestObject) int { return strings.Compare(a.Key, b.Key) })
	body, _ := json.MarshalIndent(m, "", "  ")
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(prefix + SuccessMarker),
		Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("application/json"),
	}); err != nil {
		return s.wrap("write "+prefix+SuccessMarker, err)
	}
	return nil
}

// wrap says what to check for the errors a user can act on, and marks as
// permanent what retrying cannot fix.
func (s *Sink) wrap(op string, err error) error {
	err = fmt.Errorf("s3 sink: %s: %w", op, err)
	var api smithy.APIError
	var netErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &api):
		switch api.ErrorCode() {
		case "NoSuchBucket":
			return connectors.Permanent(fmt.Errorf("%w: bucket %q does not exist", err, s.cfg.Bucket))
		case "InvalidAccessKeyId", "SignatureDoesNotMatch":
			return connectors.Permanent(fmt.Errorf("%w: check auth.awsAccessKey and auth.awsSecretKey", err))
		case "AccessDenied", "Forbidden":
			return connectors.Permanent(fmt.Errorf("%w: the credentials lack s3:PutObject, s3:DeleteObject or s3:ListBucket on bucket %q", err, s.cfg.Bucket))
		case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException":
			return connectors.Permanent(fmt.Errorf("%w: is region right for bucket %q?", err, s.cfg.Bucket))
		}
	case errors.As(err, &dnsErr), errors.As(err, &netErr):
		where := s.cfg.Endpoint
		if where == "" {
			where = "the S3 endpoint of region " + s.cfg.Region
		}
		return fmt.Errorf("%w: is %s right and reachable?", err, where)
	}
	return err
}

// group is one output object of a writer: one partitionBy value.
type group struct {
	value string
	rows  []stream.Row  // parquet: kept for schema inference
	parts []arrowPart   // parquet from WriteArrow: retained batches, instead of rows
	f     *os.File      // jsonl: spooled lines
	buf   *bufio.Writer // jsonl
	n     int64
}

// writer is one task attempt's output. Its methods are called by one
// goroutine. Nothing is uploaded before Commit, so Abort only drops local
// data and a failed attempt leaves no objects behind (a crash during Commit
// may leave some of its objects; the retry overwrites them, and the batch
// has no _SUCCESS until every task committed).
type writer struct {
	s      *Sink
	key    connectors.WriteKey
	groups map[string]*group
	line   []byte
	done   bool
}

func (w *writer) Write(ctx context.Context, rows []stream.Row) error {
	if w.done {
		return errors.New("s3 sink: write after commit or abort")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range rows {
		value := ""
		if w.s.cfg.PartitionBy != "" {
			value = PartitionValue(r[w.s.cfg.PartitionBy])
		}
		g, err := w.group(value)
		if err != nil {
			return err
		}
		g.n++
		if g.f == nil {
			if len(g.parts) > 0 {
				// WriteArrow gave this object batches already: from now
				// on it holds rows.
				if err := g.releaseParts(true); err != nil {
					return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
				}
			}
			g.rows = append(g.rows, r)
			continue
		}
		if w.line, err = rowjson.Append(w.line[:0], r, w.key.Columns); err != nil {
			return connectors.Permanent(fmt.Errorf("s3 sink: %w", err))
		}
		w.line = append(w.line, '\n')
		if _, err := g.buf.Write(w.line); err != nil {
			return fmt.Errorf("s3 sink: spool: %w", err)
		}
	}
	return nil
}

// Commit uploads one object per partitionBy value, replacing what an
// earlier attempt of the same key uploaded, and deletes the earlier
// attempt's objects this one has no rows for. A task without rows uploads
// nothing.
func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("s3 sink: commit after commit or abort")
	}
	defer w.cleanup()
	values := make([]string, 0, len(w.groups))
	for v := range w.groups {
		values = append(values, v)
	}
	slices.Sort(values)
	uploaded := map[string]bool{}
	for _, v := range values {
		key, err := w.upload(ctx, w.groups[v])
		if err != nil {
			return err
		}
		uploaded[key] = true
	}
	if err := w.key.StillCurrent(ctx); err != nil {
		return fmt.Errorf("s3 sink: remove stale objects: %w", err)
	}
	return w.removeStale(ctx, uploaded)
}

// removeStale deletes objects of this (job, batch, part) that an earlier
// attempt uploaded and this one did not: with partitionBy, folders of values
// this attempt has no rows for; without, the object of a task that now has
// no rows. An attempt replays the same records as the one before when the
// source recorded the range (Kafka), and then there is nothing to delete;
// this keeps the output exact when a replay's range differs (a Kinesis
// range whose end was never recorded).
func (w *writer) removeStale(ctx context.Context, uploaded map[string]bool) error {
	s := w.s
	var stale []string
	if s.cfg.PartitionBy == "" {
		if key := s.ObjectKey(w.key.Job, w.key.Batch, "", w.key.Part); !uploaded[key] {
			stale = append(stale, key) // deleting a missing key succeeds
		}
	} else {
		prefix := s.batchPrefix(w.key.Job, w.key.Batch) + escapeKey(s.cfg.PartitionBy) + "="
		suffix := "/part-" + file.PartName(w.key.Part) + "." + s.cfg.format()
		p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return s.wrap("list "+prefix, err)
			}
			for _, o := range page.Contents {
				k := aws.ToString(o.Key)
				if strings.HasSuffix(k, suffix) && !uploaded[k] {
					stale = append(stale, k)
				}
			}
		}
	}
	for _, k := range stale {
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(k)}); err != nil {
			return s.wrap("delete stale "+k, err)
		}
	}
	return nil
}

// upload puts g's object and returns its key.
func (w *writer) upload(ctx context.Context, g *group) (string, error) {
	key := w.s.ObjectKey(w.key.Job, w.key.Batch, g.value, w.key.Part)
	var body io.ReadSeeker
	var size int64
	contentType := "application/x-ndjson"
	if g.f != nil {
		if err := g.buf.Flush(); err != nil {
			return "", fmt.Errorf("s3 sink: spool: %w", err)
		}
		fi, err := g.f.Stat()
		if err != nil {
			return "", fmt.Errorf("s3 sink: spool: %w", err)
		}
		if _, err := g.f.Seek(0, io.SeekStart); err != nil {
			return "", fmt.Errorf("s3 sink: spool: %w", err)
		}
		body, size = g.f, fi.Size()
	} else {
		var b bytes.Buffer
		write := func() error { return writeParquet(&b, g.rows) }
		if len(g.parts) > 0 {
			write = func() error { return writeParquetArrow(&b, g.parts) }
		}
		if err := write(); err != nil {
			return "", connectors.Permanent(fmt.Errorf("s3 sink: encode %s: %w", key, err))
		}
		body, size = bytes.NewReader(b.Bytes()), int64(b.Len())
		contentType = "application/vnd.apache.parquet"
	}
	// A PUT replaces an earlier attempt's object: only an attempt that is
	// still current may do it (its executor still hears the driver).
	if err := w.key.StillCurrent(ctx); err != nil {
		return "", fmt.Errorf("s3 sink: upload %s: %w", key, err)
	}
	_, err := w.s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(w.s.cfg.Bucket), Key: aws.String(key), Body: body,
		ContentLength: aws.Int64(size), ContentType: aws.String(contentType),
		Metadata: map[string]string{"sluice-rows": strconv.FormatInt(g.n, 10)},
	})
	if err != nil {
		return "", w.s.wrap("upload "+key, err)
	}
	return key, nil
}

// Abort drops the spooled output. It is safe after Commit.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.cleanup()
	return nil
}

func (w *writer) cleanup() {
	w.done = true
	for _, g := range w.groups {
		if g.f != nil {
			_ = g.f.Close()
			_ = os.Remove(g.f.Name())
		}
		g.rows = nil
		_ = g.releaseParts(false)
	}
}
