package kinesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/sinkexpr"
	"github.com/sluicehq/sluice/pkg/stream"
)

// PutRecords limits of the service.
const (
	MaxRecordsPerRequest = 500
	MaxRequestBytes      = 5 << 20 // data and partition keys of one PutRecords call
	MaxRecordBytes       = 1 << 20 // data and partition key of one record
	maxPartitionKeyChars = 256
	DefaultSinkRetries   = 10
)

// SinkConfig is the Kinesis sink's options. Expressions are SQL over the
// rows the sink receives, in the dialect of the transforms (pkg/sqlengine);
// an expression that is one column name is read from the column.
type SinkConfig struct {
	StreamName string
	Region     string
	Endpoint   string
	// PartitionKey is a SQL expression giving each record's partition key
	// (a string of 1-256 characters; numbers and booleans are formatted).
	// Required.
	PartitionKey string
	// ExplicitHashKey is an optional SQL expression giving a decimal hash
	// key in [0, 2^128), a string or an integer, that overrides the
	// partition key's hash.
	ExplicitHashKey string
	// Data is an optional SQL expression giving the record's data: bytes as
	// they are, a string as UTF-8, anything else as JSON. Default: the whole
	// row as a JSON object.
	Data string
	// Schema is the columns of the rows the sink receives (the job's
	// output). The expressions are checked against it (Validate refuses an
	// unknown column), and Write converts rows to a batch of it to evaluate
	// them. Nil: Validate checks each expression's shape only, and NewSink
	// refuses an option that is more than a column name.
	Schema *arrow.Schema
	// MaxRecordsPerRequest caps the entries of one PutRecords call.
	// Default and maximum 500.
	MaxRecordsPerRequest int
	// MaxRetries is how many times entries that PutRecords reports as
	// failed (or a call that failed as a whole with a throttling or
	// transient error) are sent again, with back-off, before the task
	// fails. Default 10.
	MaxRetries int

	AWSAccessKey    string
	AWSSecretKey    string
	AWSSessionToken string
	RoleARN         string
	RoleExternalID  string
	RoleSessionName string
	STSEndpoint     string
}

type sinkSettings struct {
	stream     string
	endpoint   string
	maxRecords int
	maxRetries int
	// exprs are the per-record options; partitionKey, hash and data are
	// their indices in it, -1 when unset.
	exprs                    *sinkexpr.Set
	partitionKey, hash, data int
	auth                     awsauth.Options
}

// Validate reports every problem with c, joined as *FieldError values
// (Field is the option name, e.g. "partitionKey"). It compiles the
// expressions but does not touch the network.
func (c SinkConfig) Validate() error {
	_, err := c.settings()
	return err
}

func (c SinkConfig) settings() (*sinkSettings, error) {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }
	s := &sinkSettings{stream: c.StreamName, endpoint: c.Endpoint, partitionKey: -1, hash: -1, data: -1}
	switch {
	case c.StreamName == "":
		bad("streamName", "is required")
	case !streamNameRE.MatchString(c.StreamName):
		bad("streamName", "%q is not a stream name (1-128 letters, digits, '_', '.', '-')", c.StreamName)
	}
	if c.Endpoint != "" {
		if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("endpoint", "%q is not an http:// or https:// URL", c.Endpoint)
		}
	}
	switch n := c.MaxRecordsPerRequest; {
	case n == 0:
		s.maxRecords = MaxRecordsPerRequest
	case n < 0 || n > MaxRecordsPerRequest:
		bad("maxRecordsPerRequest", "must be between 1 and %d, the PutRecords limit (got %d)", MaxRecordsPerRequest, n)
	default:
		s.maxRecords = n
	}
	switch n := c.MaxRetries; {
	case n == 0:
		s.maxRetries = DefaultSinkRetries
	case n < 0:
		bad("maxRetries", "must not be negative (got %d)", n)
	default:
		s.maxRetries = n
	}

	var opts []sinkexpr.Option
	add := func(field, expr string, required bool, want func(arrow.DataType) error) int {
		if expr == "" {
			if required {
				bad(field, "is required (a SQL expression over the row, e.g. country or CAST(id AS STRING))")
			}
			return -1
		}
		opts = append(opts, sinkexpr.Option{Field: field, Text: expr, Want: want})
		return len(opts) - 1
	}
	s.partitionKey = add("partitionKey", c.PartitionKey, true, wantKey)
	s.hash = add("explicitHashKey", c.ExplicitHashKey, false, wantHashKey)
	s.data = add("data", c.Data, false, nil)
	if len(opts) > 0 {
		var err error
		if s.exprs, err = sinkexpr.New(opts, c.Schema); err != nil {
			errs = append(errs, exprErrs(err)...)
		}
	}

	s.auth = awsauth.Options{
		Region: c.Region, AccessKey: c.AWSAccessKey, SecretKey: c.AWSSecretKey, SessionToken: c.AWSSessionToken,
		RoleARN: c.RoleARN, RoleExternalID: c.RoleExternalID, RoleSessionName: c.RoleSessionName, STSEndpoint: c.STSEndpoint,
	}
	if err := s.auth.Validate(); err != nil {
		errs = append(errs, authFieldError(err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// exprErrs turns the expressions' errors (*sinkexpr.Error, joined) into
// the sink's.
func exprErrs(err error) []error {
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		var xe *sinkexpr.Error
		if errors.As(e, &xe) {
			out = append(out, fieldErr(xe.Field, "%s", xe.Reason))
		} else {
			out = append(out, e)
		}
	}
	return out
}

// wantKey: a partition key is a string; numbers and booleans are
// formatted.
func wantKey(t arrow.DataType) error {
	switch {
	case arrow.IsInteger(t.ID()), arrow.IsFloating(t.ID()):
		return nil
	}
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW, arrow.BOOL:
		return nil
	}
	return fmt.Errorf("gives %s, want a string (use CAST(... AS STRING))", t)
}

// wantHashKey: a hash key is a decimal string or an integer.
func wantHashKey(t arrow.DataType) error {
	switch {
	case arrow.IsInteger(t.ID()):
		return nil
	}
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return nil
	}
	return fmt.Errorf("gives %s, want a decimal string or an integer", t)
}

// Sink writes rows to a Kinesis stream with PutRecords. It is at-least-once:
// records are sent while the task writes (in calls of up to 500 records and
// 5 MiB) and a retried or speculative task sends its records again.
// Entries that PutRecords reports as failed are sent again, alone, with
// back-off; order per partition key holds only when no entry had to be
// retried. It is safe for concurrent use.
type Sink struct {
	set    *sinkSettings
	opts   options
	client api
	mem    memory.Allocator // the expressions' values
}

var _ connectors.Sink = (*Sink)(nil)

// NewSink validates cfg and returns a sink. It does not call AWS.
func NewSink(cfg SinkConfig, opts ...Option) (*Sink, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, fmt.Errorf("new kinesis sink: %w", err)
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("new kinesis sink: %w", err)
	}
	if cfg.Schema == nil && set.exprs.NeedsSQL() {
		// Rows are converted to a batch of the schema to evaluate them.
		return nil, fmt.Errorf("new kinesis sink: %w", fieldErr("schema", "is required when an option is an expression, not a column name"))
	}
	client, err := newClient(context.Background(), set.auth, set.endpoint, o, false)
	if err != nil {
		return nil, fmt.Errorf("new kinesis sink: %w", err)
	}
	return &Sink{set: set, opts: o, client: client, mem: o.mem}, nil
}

// Close does nothing: writers hold no shared resources.
func (s *Sink) Close() error { return nil }

// OpenWriter returns a writer for one task's output.
func (s *Sink) OpenWriter(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &sinkWriter{s: s, key: key}, nil
}

// sinkWriter buffers up to one request's worth of entries.
type sinkWriter struct {
	s       *Sink
	key     connectors.WriteKey
	entries []types.PutRecordsRequestEntry
	bytes   int
	done    bool
}

// Write evaluates the expressions and sends full requests as they fill.
// An expression that fails on a row, or a record over 1 MiB, is a
// connectors.Permanent error naming the option; a request that still fails
// after maxRetries is a plain error (the task is retried).
func (w *sinkWriter) Write(ctx context.Context, rows []stream.Row) error {
	if w.done {
		return errors.New("kinesis sink: write after commit or abort")
	}
	// Every row's expressions are evaluated, together, before any is sent.
	vals, err := w.s.set.exprs.EvalRows(ctx, w.s.mem, rows)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
	}
	defer vals.Release()
	return w.send(ctx, vals, func(i int) ([]byte, error) { return json.Marshal(map[string]any(rows[i])) })
}

// send builds the entries of vals' rows and adds them; wholeRow encodes
// row i as JSON, the default data.
func (w *sinkWriter) send(ctx context.Context, vals *sinkexpr.Values, wholeRow func(i int) ([]byte, error)) error {
	set := w.s.set
	type values struct{ pk, hash, data any }
	all := make([]values, vals.Len())
	for i := range all {
		v := &all[i]
		var err error
		if v.pk, err = option(vals, "partitionKey", set.partitionKey, i); err != nil {
			return err
		}
		if v.hash, err = option(vals, "explicitHashKey", set.hash, i); err != nil {
			return err
		}
		if v.data, err = option(vals, "data", set.data, i); err != nil {
			return err
		}
	}
	for i, v := range all {
		e, err := w.s.entryOf(v.pk, v.hash, v.data, func() ([]byte, error) { return wholeRow(i) })
		if err != nil {
			return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
		}
		if err := w.add(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// option reads option name's value (index k in the expressions, -1: the
// option is unset) in row i; its failure is permanent, naming the option.
func option(vals *sinkexpr.Values, name string, k, i int) (any, error) {
	if k < 0 {
		return nil, nil
	}
	v, err := vals.Value(k, i)
	if err != nil {
		return nil, connectors.Permanent(fmt.Errorf("kinesis sink: %s: %v", name, err))
	}
	return v, nil
}

// add appends e to the request being filled, sending that request first
// when e does not fit.
func (w *sinkWriter) add(ctx context.Context, e types.PutRecordsRequestEntry) error {
	size := len(e.Data) + len(aws.ToString(e.PartitionKey))
	if len(w.entries) == w.s.set.maxRecords || w.bytes+size > MaxRequestBytes {
		if err := w.flush(ctx); err != nil {
			return err
		}
	}
	w.entries = append(w.entries, e)
	w.bytes += size
	return nil
}

// entryOf builds one PutRecords entry from the expressions' values;
// wholeRow encodes the row as JSON, the default data.
func (s *Sink) entryOf(partitionKey, explicitHashKey, data any, wholeRow func() ([]byte, error)) (types.PutRecordsRequestEntry, error) {
	var e types.PutRecordsRequestEntry
	pk, err := keyString(partitionKey)
	if err != nil {
		return e, fmt.Errorf("partitionKey: %w", err)
	}
	if n := utf8.RuneCountInString(pk); n < 1 || n > maxPartitionKeyChars {
		return e, fmt.Errorf("partitionKey: must be 1-%d characters (got %d)", maxPartitionKeyChars, n)
	}
	e.PartitionKey = aws.String(pk)
	if s.set.hash >= 0 {
		h, err := hashKey(explicitHashKey)
		if err != nil {
			return e, fmt.Errorf("explicitHashKey: %w", err)
		}
		e.ExplicitHashKey = aws.String(h)
	}
	if s.set.data >= 0 {
		switch v := data.(type) {
		case []byte:
			e.Data = v
		case string:
			e.Data = []byte(v)
		case nil:
			return e, errors.New("data: the expression gave null")
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return e, fmt.Errorf("data: %w", err)
			}
			e.Data = b
		}
	} else {
		b, err := wholeRow()
		if err != nil {
			return e, fmt.Errorf("data: encode the row as JSON: %w", err)
		}
		e.Data = b
	}
	if n := len(e.Data) + len(pk); n > MaxRecordBytes {
		return e, fmt.Errorf("a record of %d bytes (data and partition key) is over the 1 MiB Kinesis limit", n)
	}
	return e, nil
}

func keyString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case nil:
		return "", errors.New("the expression gave null")
	}
	return "", fmt.Errorf("the expression gave a %T; want a string (use CAST(... AS STRING))", v)
}

var maxHashKey = new(big.Int).Lsh(big.NewInt(1), 128)

func hashKey(v any) (string, error) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case int64:
		s = strconv.FormatInt(x, 10)
	default:
		return "", fmt.Errorf("the expression gave %T; want a decimal string", v)
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || n.Sign() < 0 || n.Cmp(maxHashKey) >= 0 {
		return "", fmt.Errorf("%q is not a decimal number in [0, 2^128)", s)
	}
	return n.String(), nil
}

// Commit sends what is left.
func (w *sinkWriter) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("kinesis sink: commit after commit or abort")
	}
	err := w.flush(ctx)
	w.done = true
	return err
}

// Abort drops the entries not sent yet; those already sent stay in the
// stream (at-least-once).
func (w *sinkWriter) Abort() error {
	w.done, w.entries = true, nil
	return nil
}

func (w *sinkWriter) flush(ctx context.Context) error {
	if len(w.entries) == 0 {
		return nil
	}
	err := w.s.put(ctx, w.entries)
	w.entries, w.bytes = nil, 0
	if err != nil {
		return fmt.Errorf("kinesis sink: stream %q, batch %d, part %s: %w", w.s.set.stream, w.key.Batch, w.key.Part, err)
	}
	return nil
}

// put sends entries, then only the failed ones again, with back-off, up to
// maxRetries times.
func (s *Sink) put(ctx context.Context, entries []types.PutRecordsRequestEntry) error {
	o := s.opts
	pending := entries
	for retry := 0; ; retry++ {
		out, err := s.client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(s.set.stream), Records: pending})
		var why string
		switch {
		case err != nil:
			switch classify(ctx, err) {
			case errThrottled, errTransient:
				why = err.Error()
			case errCanceled:
				return ctx.Err()
			default:
				return fmt.Errorf("put records: %w", streamErr(s.set.stream, err))
			}
		default:
			var failed []types.PutRecordsRequestEntry
			for i, r := range out.Records {
				if r.ErrorCode != nil && i < len(pending) {
					failed = append(failed, pending[i])
					if why == "" {
						why = aws.ToString(r.ErrorCode) + ": " + aws.ToString(r.ErrorMessage)
					}
				}
			}
			if len(out.Records) != len(pending) {
				return fmt.Errorf("put records: %d results for %d entries", len(out.Records), len(pending))
			}
			if len(failed) == 0 {
				return nil
			}
			pending = failed
		}
		if retry >= s.set.maxRetries {
			return fmt.Errorf("put records: %d records still failing after %d retries (last: %s)", len(pending), retry, why)
		}
		if err := o.sleep(ctx, backoff(o.backoffBase, o.backoffLimit, retry)); err != nil {
			return err
		}
	}
}
