package kinesis

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
)

// Config is the Kinesis source's options, named as the Databricks Kinesis
// connector names them (and the AWS Spark connector where Databricks has
// none), so that a Spark user's options carry over. Durations and sizes are
// strings as a user writes them ("400ms", "64mb"); empty or zero means the
// default. Call Validate before use; NewSource and NewReaderPool do.
type Config struct {
	// StreamName is one stream name or a comma-separated list; every stream
	// is read by the same job. Required.
	StreamName string
	// Region is the streams' region; default: the SDK's (AWS_REGION, shared
	// config), else us-east-1.
	Region string
	// Endpoint overrides the Kinesis endpoint (a VPC endpoint, kinesis-mock).
	Endpoint string

	// InitialPosition is where a job without a checkpoint starts: "latest"
	// (default), "trim_horizon", "earliest" (alias of trim_horizon),
	// "at_timestamp" (with AtTimestamp), or Databricks' JSON form
	// {"at_timestamp": "06/25/2020 10:23:45 PDT", "format": "MM/dd/yyyy HH:mm:ss z"}.
	// Upper-case AWS names (TRIM_HORIZON...) are accepted too.
	InitialPosition string
	// AtTimestamp is the time for at_timestamp: RFC 3339, or as
	// TimestampFormat says.
	AtTimestamp string
	// TimestampFormat is a Java date pattern (as Databricks takes) for
	// AtTimestamp, e.g. "MM/dd/yyyy HH:mm:ss z".
	TimestampFormat string

	// MaxRecordsPerFetch is the Limit of one GetRecords call. Default and
	// maximum 10000.
	MaxRecordsPerFetch int
	// MaxFetchRate is the most a reader fetches from one shard, in MB/s
	// (1 MB = 2^20 bytes). Default 1.0, at most 2.0 (the shard's read limit).
	MaxFetchRate float64
	// MinFetchPeriod is the least time between two GetRecords calls on one
	// shard. Default 400ms, at least 200ms (Kinesis allows 5 calls/s).
	MinFetchPeriod string
	// MaxFetchDuration bounds how long a task reads one shard in a batch.
	// Default 10s.
	MaxFetchDuration string
	// FetchBufferSize is how many bytes a task reads from one shard in a
	// batch before it stops (a stop condition, not a strict bound: the
	// record that crosses it is kept), e.g. "64mb". Default 20gb.
	FetchBufferSize string
	// ShardsPerTask is how many shard tasks share one executor slot (their
	// reads mostly wait on the service). Default 5.
	ShardsPerTask int
	// MaxShardsPerDescribe is the page size of ListShards. Default 100, at
	// most 10000.
	MaxShardsPerDescribe int
	// ShardFetchInterval is the least time between two shard listings
	// (ListShards and DescribeStreamSummary) of a stream. Default 1s.
	// DescribeShardInterval is the AWS connector's name for it; set one.
	ShardFetchInterval    string
	DescribeShardInterval string

	// FailOnDataLoss fails the job when records that should be read are
	// gone: a shard expired before it was read to its end, a checkpointed
	// sequence number was trimmed. When false the source logs a warning and
	// skips ahead. Databricks' default is true; the Go zero value is false,
	// so callers that build a Config must set the default themselves.
	FailOnDataLoss bool

	// ConsumerMode is how shards are read: "polling" (GetRecords, the
	// default) or "efo" (enhanced fan-out: SubscribeToShard through a
	// registered consumer, see EFO). Both keep the same positions, so a job
	// can switch between them and continue from its checkpoint.
	ConsumerMode string
	// EFO is the enhanced fan-out consumer's options (consumerName,
	// consumerNamePrefix, consumerRefreshInterval,
	// requireConsumerDeregistration, consumerLifecycle); only with
	// ConsumerMode efo.
	EFO efo.Config
	// JobName derives the consumer name when EFO.ConsumerName is empty
	// (see efo.Config.ConsumerNameFor). The job spec layer sets it.
	JobName string

	// Credentials: static keys, the default chain when empty, and an
	// optional role to assume (cross-account).
	AWSAccessKey    string
	AWSSecretKey    string
	AWSSessionToken string
	RoleARN         string
	RoleExternalID  string
	RoleSessionName string
	STSEndpoint     string
}

// Defaults of the options, as in Databricks.
const (
	DefaultMaxRecordsPerFetch   = 10000
	DefaultMaxFetchRate         = 1.0
	MaxMaxFetchRate             = 2.0
	DefaultMinFetchPeriod       = 400 * time.Millisecond
	MinMinFetchPeriod           = 200 * time.Millisecond
	DefaultMaxFetchDuration     = 10 * time.Second
	DefaultFetchBufferSize      = 20 << 30
	DefaultShardsPerTask        = 5
	DefaultMaxShardsPerDescribe = 100
	DefaultShardFetchInterval   = time.Second
)

// FieldError is one invalid option. Field is the option's name as a job
// spec spells it ("maxFetchRate"); the job spec layer prefixes its path.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Initial positions.
const (
	initialLatest      = "latest"
	initialTrimHorizon = "trim_horizon"
	initialAtTimestamp = "at_timestamp"
)

// settings is a validated Config in the form the source and readers use.
type settings struct {
	streams  []string // sorted, distinct
	region   string
	endpoint string
	initial  string    // latest, trim_horizon or at_timestamp
	at       time.Time // at_timestamp

	maxRecords       int32
	maxFetchRate     float64 // bytes per second
	minFetchPeriod   time.Duration
	maxFetchDuration time.Duration
	fetchBufferSize  int64
	shardsPerTask    int
	pageSize         int32
	listInterval     time.Duration
	failOnDataLoss   bool
	auth             awsauth.Options

	efo          bool       // ConsumerMode efo
	efoConfig    efo.Config // with defaults
	jobName      string
	consumerName string // efo: the registered consumer's name
}

// Consumer modes.
const (
	ConsumerModePolling = "polling"
	ConsumerModeEFO     = "efo"
)

var streamNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,128}$`)

// Validate reports every problem with c; the error joins *FieldError
// values, one per option (errors.As finds the first; iterate with
// Unwrap() []error for all). It does not touch the network.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func (c Config) settings() (*settings, error) {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, fieldErr(field, format, args...)) }
	s := &settings{region: c.Region, failOnDataLoss: c.FailOnDataLoss}

	if strings.TrimSpace(c.StreamName) == "" {
		bad("streamName", "is required (a stream name or a comma-separated list)")
	}
	seen := map[string]bool{}
	for _, n := range strings.Split(c.StreamName, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			if strings.TrimSpace(c.StreamName) != "" {
				bad("streamName", "%q has an empty name in its list", c.StreamName)
			}
			continue
		}
		switch {
		case !streamNameRE.MatchString(n):
			bad("streamName", "%q is not a stream name (1-128 letters, digits, '_', '.', '-')", n)
		case seen[n]:
			bad("streamName", "stream %q is listed twice", n)
		}
		seen[n] = true
		s.streams = append(s.streams, n)
	}
	sort.Strings(s.streams)

	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("endpoint", "%q is not an http:// or https:// URL", c.Endpoint)
		}
		s.endpoint = c.Endpoint
	}

	initial, at, err := parseInitial(c.InitialPosition, c.AtTimestamp, c.TimestampFormat)
	if err != nil {
		errs = append(errs, err)
	}
	s.initial, s.at = initial, at

	s.maxRecords = int32(intOpt(&errs, "maxRecordsPerFetch", c.MaxRecordsPerFetch, DefaultMaxRecordsPerFetch, 10000))

	rate := c.MaxFetchRate
	switch {
	case rate == 0:
		rate = DefaultMaxFetchRate
	case math.IsNaN(rate) || rate < 0 || rate > MaxMaxFetchRate:
		bad("maxFetchRate", "must be between 0 and %.1f MB/s (got %v)", MaxMaxFetchRate, rate)
	}
	s.maxFetchRate = rate * (1 << 20)

	s.minFetchPeriod = durationOpt(&errs, "minFetchPeriod", c.MinFetchPeriod, DefaultMinFetchPeriod)
	if s.minFetchPeriod > 0 && s.minFetchPeriod < MinMinFetchPeriod {
		bad("minFetchPeriod", "must be at least 200ms: Kinesis allows 5 GetRecords calls per second and shard (got %s)", c.MinFetchPeriod)
	}
	s.maxFetchDuration = durationOpt(&errs, "maxFetchDuration", c.MaxFetchDuration, DefaultMaxFetchDuration)
	if s.maxFetchDuration == 0 && c.MaxFetchDuration != "" {
		bad("maxFetchDuration", "must be positive (got %s)", c.MaxFetchDuration)
	}

	s.fetchBufferSize = DefaultFetchBufferSize
	if c.FetchBufferSize != "" {
		n, err := ParseByteSize(c.FetchBufferSize)
		switch {
		case err != nil:
			bad("fetchBufferSize", "%v", err)
		case n <= 0:
			bad("fetchBufferSize", "must be positive (got %s)", c.FetchBufferSize)
		default:
			s.fetchBufferSize = n
		}
	}

	s.shardsPerTask = intOpt(&errs, "shardsPerTask", c.ShardsPerTask, DefaultShardsPerTask, 0)
	s.pageSize = int32(intOpt(&errs, "maxShardsPerDescribe", c.MaxShardsPerDescribe, DefaultMaxShardsPerDescribe, 10000))

	interval, field := c.ShardFetchInterval, "shardFetchInterval"
	if c.DescribeShardInterval != "" {
		if interval != "" && interval != c.DescribeShardInterval {
			bad("describeShardInterval", "is an alias of shardFetchInterval; set one of them (got %s and %s)", interval, c.DescribeShardInterval)
		}
		interval, field = c.DescribeShardInterval, "describeShardInterval"
	}
	s.listInterval = durationOpt(&errs, field, interval, DefaultShardFetchInterval)

	s.auth = awsauth.Options{
		Region: c.Region, AccessKey: c.AWSAccessKey, SecretKey: c.AWSSecretKey, SessionToken: c.AWSSessionToken,
		RoleARN: c.RoleARN, RoleExternalID: c.RoleExternalID, RoleSessionName: c.RoleSessionName, STSEndpoint: c.STSEndpoint,
	}
	if err := s.auth.Validate(); err != nil {
		errs = append(errs, authFieldError(err))
	}
	if c.STSEndpoint != "" {
		if u, err := url.Parse(c.STSEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("stsEndpoint", "%q is not an http:// or https:// URL", c.STSEndpoint)
		}
	}
	errs = append(errs, s.consumerMode(c)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// consumerMode validates ConsumerMode and, in efo mode, the consumer
// options; in polling mode those must be unset, so that a forgotten
// consumerMode is not mistaken for an enhanced fan-out job.
func (s *settings) consumerMode(c Config) []error {
	switch strings.ToLower(strings.TrimSpace(c.ConsumerMode)) {
	case "", ConsumerModePolling:
		if c.EFO != (efo.Config{}) {
			return []error{fieldErr(efoFieldSet(c.EFO), "only applies with consumerMode efo (consumerMode is polling)")}
		}
		return nil
	case ConsumerModeEFO:
	default:
		return []error{fieldErr("consumerMode", "%q is not one of polling, efo", c.ConsumerMode)}
	}
	s.efo, s.jobName = true, c.JobName
	if err := c.EFO.Validate(); err != nil {
		return []error{efoFieldError(err)}
	}
	if c.EFO.ConsumerName == "" && c.JobName == "" {
		return []error{fieldErr("consumerName", "is required with consumerMode efo when there is no job name to derive it from")}
	}
	s.efoConfig = c.EFO.WithDefaults()
	s.consumerName = c.EFO.ConsumerNameFor(c.JobName)
	return nil
}

// efoFieldSet names the first efo option set in c.
func efoFieldSet(c efo.Config) string {
	switch {
	case c.ConsumerName != "":
		return "consumerName"
	case c.ConsumerNamePrefix != "":
		return "consumerNamePrefix"
	case c.ConsumerRefreshInterval != 0:
		return "consumerRefreshInterval"
	case c.RequireConsumerDeregistration:
		return "requireConsumerDeregistration"
	}
	return "consumerLifecycle"
}

// efoFieldError turns efo.Config.Validate's "source.kinesis.<field>: reason"
// into a *FieldError, whose path the job spec layer adds.
func efoFieldError(err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "source.kinesis.")
	field, reason, ok := strings.Cut(msg, ": ")
	if !ok {
		return &FieldError{Field: "consumerMode", Reason: msg}
	}
	return &FieldError{Field: field, Reason: reason}
}

// authFieldError splits awsauth's "field: reason" message.
func authFieldError(err error) *FieldError {
	field, reason, ok := strings.Cut(err.Error(), ": ")
	if !ok {
		return &FieldError{Field: "awsAccessKey", Reason: err.Error()}
	}
	return &FieldError{Field: field, Reason: reason}
}

// intOpt reads an integer option: 0 is def; a value below 1, or above hi
// when hi is not 0, is reported (and def returned).
func intOpt(errs *[]error, field string, n, def, hi int) int {
	switch {
	case n == 0:
		return def
	case hi > 0 && (n < 0 || n > hi):
		*errs = append(*errs, fieldErr(field, "must be between 1 and %d (got %d)", hi, n))
	case n < 0:
		*errs = append(*errs, fieldErr(field, "must be positive (got %d)", n))
	default:
		return n
	}
	return def
}

// durationOpt parses a duration option; "" is def, "0" is zero.
func durationOpt(errs *[]error, field, v string, def time.Duration) time.Duration {
	if v == "" {
		return def
	}
	if v == "0" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*errs = append(*errs, fieldErr(field, "%q is not a duration like 400ms or 10s", v))
		return def
	}
	if d < 0 {
		*errs = append(*errs, fieldErr(field, "must not be negative (got %s)", v))
		return def
	}
	return d
}

// ParseByteSize reads a size as Spark writes it: a number of bytes, or a
// number with a binary unit b, k/kb, m/mb, g/gb, t/tb (case-insensitive;
// "64mb" is 64 MiB).
func ParseByteSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size like 64mb or 2gb", s)
	}
	mult := map[string]float64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "t": 1 << 40, "tb": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q has an unknown unit %q (use b, kb, mb, gb or tb)", s, unit)
	}
	n := v * mult
	if n > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// parseInitial validates initialPosition, atTimestamp and timestampFormat
// together.
func parseInitial(pos, at, format string) (string, time.Time, error) {
	p := strings.TrimSpace(pos)
	if strings.HasPrefix(p, "{") {
		// Databricks: {"at_timestamp": "06/25/2020 10:23:45 PDT", "format": "..."}
		var js struct {
			AtTimestamp *string `json:"at_timestamp"`
			Format      string  `json:"format"`
		}
		if err := decodeStrict(p, &js); err != nil || js.AtTimestamp == nil {
			return "", time.Time{}, fieldErr("initialPosition", `JSON form must be {"at_timestamp": "<time>", "format": "<Java pattern>"} (got %s)`, p)
		}
		if at != "" || format != "" {
			return "", time.Time{}, fieldErr("atTimestamp", "set either the JSON initialPosition or atTimestamp/timestampFormat, not both")
		}
		t, err := parseTimestamp(*js.AtTimestamp, js.Format)
		if err != nil {
			return "", time.Time{}, fieldErr("initialPosition", "%v", err)
		}
		return initialAtTimestamp, t, nil
	}
	var initial string
	switch strings.ToLower(p) {
	case "", initialLatest:
		initial = initialLatest
	case initialTrimHorizon, "earliest":
		initial = initialTrimHorizon
	case initialAtTimestamp:
		initial = initialAtTimestamp
	default:
		return "", time.Time{}, fieldErr("initialPosition", "%q is not one of latest, trim_horizon, earliest, at_timestamp", pos)
	}
	if initial != initialAtTimestamp {
		if at != "" {
			return "", time.Time{}, fieldErr("atTimestamp", "is set but initialPosition is %s; use initialPosition: at_timestamp", initial)
		}
		if format != "" {
			return "", time.Time{}, fieldErr("timestampFormat", "is set but initialPosition is %s", initial)
		}
		return initial, time.Time{}, nil
	}
	if at == "" {
		return "", time.Time{}, fieldErr("atTimestamp", "is required with initialPosition at_timestamp")
	}
	t, err := parseTimestamp(at, format)
	if err != nil {
		field := "atTimestamp"
		if format != "" && errors.Is(err, errBadPattern) {
			field = "timestampFormat"
		}
		return "", time.Time{}, fieldErr(field, "%v", err)
	}
	return initial, t, nil
}

// defaultJavaFormat is the format Databricks documents for at_timestamp.
const defaultJavaFormat = "MM/dd/yyyy HH:mm:ss z"

// parseTimestamp reads v with a Java pattern, or without one as RFC 3339 or
// Databricks' default "MM/dd/yyyy HH:mm:ss z".
func parseTimestamp(v, javaPattern string) (time.Time, error) {
	if javaPattern != "" {
		return parseJava(v, javaPattern)
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := parseJava(v, defaultJavaFormat); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2020-06-25T10:23:45-07:00) nor %q; set timestampFormat", v, defaultJavaFormat)
}

var errBadPattern = errors.New("unsupported date pattern")

// parseJava parses v with a Java (SimpleDateFormat / DateTimeFormatter)
// pattern. Zone abbreviations (z) are looked up in a fixed table rather
// than the machine's time zone database, which would silently read an
// unknown one as UTC.
func parseJava(v, pattern string) (time.Time, error) {
	layout, abbrev, err := javaLayout(pattern)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.ParseInLocation(layout, v, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q does not match timestampFormat %q", v, pattern)
	}
	if abbrev {
		name, _ := t.Zone()
		off, ok := zoneAbbrevs[strings.ToUpper(name)]
		if !ok {
			return time.Time{}, fmt.Errorf("%q: unknown time zone abbreviation %q; use a numeric offset (pattern Z or XXX)", v, name)
		}
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.FixedZone(name, off))
	}
	return t, nil
}

// zoneAbbrevs are the abbreviations accepted for pattern letter z, as
// offsets in seconds east of UTC. Ambiguous ones (IST, BST outside the UK)
// resolve as Java resolves them.
var zoneAbbrevs = map[string]int{
	"UTC": 0, "GMT": 0, "Z": 0, "UT": 0,
	"EST": -5 * 3600, "EDT": -4 * 3600, "CST": -6 * 3600, "CDT": -5 * 3600,
	"MST": -7 * 3600, "MDT": -6 * 3600, "PST": -8 * 3600, "PDT": -7 * 3600,
	"AKST": -9 * 3600, "AKDT": -8 * 3600, "HST": -10 * 3600,
	"WET": 0, "WEST": 3600, "BST": 3600, "CET": 3600, "CEST": 2 * 3600, "EET": 2 * 3600, "EEST": 3 * 3600,
	"MSK": 3 * 3600, "IST": 5*3600 + 1800, "SGT": 8 * 3600, "HKT": 8 * 3600, "JST": 9 * 3600, "KST": 9 * 3600,
	"AWST": 8 * 3600, "ACST": 9*3600 + 1800, "AEST": 10 * 3600, "AEDT": 11 * 3600, "NZST": 12 * 3600, "NZDT": 13 * 3600,
}

// javaLayout converts a Java date pattern to a Go layout. abbrev reports a
// zone abbreviation field.
func javaLayout(p string) (layout string, abbrev bool, err error) {
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\'' {
			j := strings.IndexByte(p[i+1:], '\'')
			if j < 0 {
				return "", false, fmt.Errorf("%w: %q has an unterminated quote", errBadPattern, p)
			}
			lit := p[i+1 : i+1+j]
			if lit == "" {
				lit = "'"
			}
			if strings.ContainsAny(lit, "0123456789") || containsGoToken(lit) {
				return "", false, fmt.Errorf("%w: literal %q in %q would be read as a date field", errBadPattern, lit, p)
			}
			b.WriteString(lit)
			i += j + 2
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			if c >= '0' && c <= '9' {
				return "", false, fmt.Errorf("%w: digit %q in %q; quote literals", errBadPattern, c, p)
			}
			b.WriteByte(c)
			i++
			continue
		}
		n := 1
		for i+n < len(p) && p[i+n] == c {
			n++
		}
		var tok string
		switch {
		case c == 'y' || c == 'u':
			tok = map[bool]string{true: "06", false: "2006"}[n == 2]
		case c == 'M' || c == 'L':
			tok = [...]string{"1", "01", "Jan", "January"}[min(n, 4)-1]
		case c == 'd':
			tok = map[bool]string{true: "2", false: "02"}[n == 1]
		case c == 'H':
			tok = "15"
		case c == 'h':
			tok = map[bool]string{true: "3", false: "03"}[n == 1]
		case c == 'm':
			tok = map[bool]string{true: "4", false: "04"}[n == 1]
		case c == 's':
			tok = map[bool]string{true: "5", false: "05"}[n == 1]
		case c == 'S':
			if i == 0 || (p[i-1] != '.' && p[i-1] != ',') {
				return "", false, fmt.Errorf("%w: fraction S in %q must follow '.' or ','", errBadPattern, p)
			}
			tok = strings.Repeat("0", n)
		case c == 'a':
			tok = "PM"
		case c == 'E':
			tok = map[bool]string{true: "Monday", false: "Mon"}[n >= 4]
		case c == 'z' && n <= 3:
			tok, abbrev = "MST", true
		case c == 'Z' && n <= 3:
			tok = "-0700"
		case c == 'X':
			tok = [...]string{"Z07", "Z0700", "Z07:00"}[min(n, 3)-1]
		case c == 'x':
			tok = [...]string{"-07", "-0700", "-07:00"}[min(n, 3)-1]
		default:
			return "", false, fmt.Errorf("%w: pattern letter %q in %q is not supported", errBadPattern, strings.Repeat(string(c), n), p)
		}
		b.WriteString(tok)
		i += n
	}
	return b.String(), abbrev, nil
}

func containsGoToken(s string) bool {
	for _, t := range []string{"Jan", "Mon", "MST", "PM", "pm"} {
		if strings.Contains(s, t) {
			return true
		}
	}
	return false
}

// Identity describes what c reads without calling AWS: the region, the
// endpoint, the role and the sorted stream names. The live stream identity
// (ARN and creation time) is checked by Plan against the checkpoint.
func (c Config) Identity() (string, error) {
	s, err := c.settings()
	if err != nil {
		return "", err
	}
	return s.identity(), nil
}

func (s *settings) identity() string {
	region := s.region
	if region == "" {
		region = "default"
	}
	var b strings.Builder
	b.WriteString("kinesis:region=" + region)
	if s.endpoint != "" {
		b.WriteString(";endpoint=" + s.endpoint)
	}
	if s.auth.RoleARN != "" {
		b.WriteString(";roleArn=" + s.auth.RoleARN)
	}
	b.WriteString(";streamName=" + strings.Join(slices.Clone(s.streams), ","))
	return b.String()
}
