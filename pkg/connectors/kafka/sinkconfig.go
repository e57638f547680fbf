package kafka

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors/internal/sinkexpr"
)

// SinkConfig is the Kafka sink's options, as the job spec's sink.kafka
// names them. Call Validate before use; NewSink does.
type SinkConfig struct {
	// BootstrapServers is a comma separated list of host:port seed
	// brokers. Required.
	BootstrapServers string
	// Topic receives every record. Exactly one of Topic and TopicExpr.
	Topic string
	// TopicExpr is a SQL expression giving each record's topic, a string.
	TopicExpr string
	// Key is a SQL expression for the record key; empty: no key.
	Key string
	// Value is a SQL expression for the record value; empty: the row as a
	// JSON object.
	Value string
	// Headers maps header names to SQL expressions; a NULL result leaves
	// the header out.
	Headers map[string]string
	// Partition is a SQL expression giving the partition number, an
	// integer; empty: the key's murmur2 hash as Kafka's Java client
	// computes it (records without a key go to a sticky random partition).
	Partition string
	// Schema is the columns of the rows the sink receives (the job's
	// output). The expressions are checked against it (Validate refuses an
	// unknown column), and Write converts rows to a batch of it to evaluate
	// them. Nil: Validate checks each expression's shape only, and NewSink
	// refuses an option that is more than a column name.
	Schema *arrow.Schema
	// Transactional writes each task's output in one Kafka transaction
	// together with a commit marker; see the package documentation of
	// NewSink for what that guarantees.
	Transactional bool
	// Properties are client properties. Those of the source apply
	// (security.protocol, sasl.*, ssl.*, client.id, request.timeout.ms),
	// isolation.level excepted, plus:
	//
	//	compression.type        none, gzip, snappy, lz4 or zstd (default: snappy, none if the broker refuses it)
	//	linger.ms               how long a partition's batch waits for more records (default 0)
	//	transaction.timeout.ms  how long a task's transaction may stay open (default 60000)
	//	sluice.commits.topic    the compacted topic of commit markers (default __sluice_sink_commits)
	Properties map[string]string
	// Name tells the job's sinks apart in transactional ids and commit
	// markers: "sink" (the default) for the main sink, "deadLetter" for the
	// dead-letter sink.
	Name string
}

// Sink-only properties and defaults.
const (
	propCompressionType    = "compression.type"
	propLingerMS           = "linger.ms"
	propTransactionTimeout = "transaction.timeout.ms"
	propCommitsTopic       = "sluice.commits.topic"

	// DefaultCommitsTopic holds the transactional sink's commit markers.
	DefaultCommitsTopic = "__sluice_sink_commits"
	// commitsTopicPartitions is how many partitions the sink gives the
	// commits topic when it creates it; markers are spread over them by
	// key hash, so the count must not change afterwards.
	commitsTopicPartitions = 8
	defaultTxnTimeout      = time.Minute
	defaultSinkName        = "sink"
)

var sinkProperties = []string{propCompressionType, propLingerMS, propTransactionTimeout, propCommitsTopic}

// SinkConfigError is a bad option: Field is its path below sink.kafka (e.g.
// "headers.trace"), Reason says what is wrong.
type SinkConfigError struct {
	Field  string
	Reason string
}

func (e *SinkConfigError) Error() string { return "sink.kafka." + e.Field + ": " + e.Reason }

func sinkErr(field, format string, args ...any) error {
	return &SinkConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// sinkSettings is a validated SinkConfig.
type sinkSettings struct {
	cfg    SinkConfig
	client *settings // brokers and the shared client properties
	// exprs are the per-record options; topicExpr, key, value and
	// partition are their indices in it, -1 when unset.
	exprs                            *sinkexpr.Set
	topicExpr, key, value, partition int
	headers                          []headerExpr // sorted by name

	compression  []kgo.CompressionCodec
	linger       time.Duration
	txnTimeout   time.Duration
	commitsTopic string
	name         string
}

type headerExpr struct {
	name string
	expr int // index in exprs
}

// Validate reports the first problem with c as a *SinkConfigError (the
// expressions' problems, one per option, joined). It compiles the
// expressions (on the process's SQL engine, sqltransform.SharedEngine) but
// touches neither the network nor files.
func (c SinkConfig) Validate() error {
	_, err := c.settings()
	return err
}

func (c SinkConfig) settings() (*sinkSettings, error) {
	s := &sinkSettings{cfg: c, txnTimeout: defaultTxnTimeout, commitsTopic: DefaultCommitsTopic, name: c.Name,
		topicExpr: -1, key: -1, value: -1, partition: -1}
	if s.name == "" {
		s.name = defaultSinkName
	}

	// The client properties are the source's; validate them with the
	// source's rules, keeping the sink's own out of the way.
	shared := map[string]string{}
	own := map[string]string{}
	keys := make([]string, 0, len(c.Properties))
	for k := range c.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same problem first every time
	for _, k := range keys {
		v := c.Properties[k]
		nk := strings.TrimPrefix(k, sparkPropertyPrefix)
		switch {
		case nk == propIsolationLevel:
			return nil, sinkErr("properties."+k, "is a consumer property; the sink's read_committed consumers set it themselves")
		case containsString(sinkProperties, nk):
			own[nk] = v
		case containsString(knownProperties, nk):
			shared[k] = v
		default:
			return nil, sinkErr("properties", "unknown property %q (supported: %s)", k, strings.Join(sinkSupported(), ", "))
		}
	}
	src := Config{BootstrapServers: c.BootstrapServers, Subscribe: []string{"sink"}, Properties: shared}
	set, err := src.settings()
	if err != nil {
		return nil, asSinkErr(err)
	}
	s.client = set

	var opts []sinkexpr.Option
	add := func(field, text string, want func(arrow.DataType) error) int {
		opts = append(opts, sinkexpr.Option{Field: field, Text: text, Want: want})
		return len(opts) - 1
	}
	switch {
	case c.Topic != "" && c.TopicExpr != "":
		return nil, sinkErr("topic", "set either topic or topicExpr, not both")
	case c.Topic != "":
		if err := validTopic(c.Topic); err != nil {
			return nil, sinkErr("topic", "%v", err)
		}
	case c.TopicExpr != "":
		s.topicExpr = add("topicExpr", c.TopicExpr, wantString)
	default:
		return nil, sinkErr("topic", "required (or topicExpr)")
	}
	if c.Key != "" {
		s.key = add("key", c.Key, nil)
	}
	if c.Value != "" {
		s.value = add("value", c.Value, nil)
	}
	names := make([]string, 0, len(c.Headers))
	for n := range c.Headers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == "" {
			return nil, sinkErr("headers", "a header name is empty")
		}
		if c.Headers[n] == "" {
			return nil, sinkErr("headers."+n, "empty expression")
		}
		s.headers = append(s.headers, headerExpr{name: n, expr: add("headers."+n, c.Headers[n], nil)})
	}
	if c.Partition != "" {
		s.partition = add("partition", c.Partition, wantInteger)
	}
	if s.exprs, err = sinkexpr.New(opts, c.Schema); err != nil {
		return nil, asSinkExprErr(err)
	}

	if v, ok := own[propCompressionType]; ok {
		switch strings.ToLower(v) {
		case "none":
			s.compression = []kgo.CompressionCodec{kgo.NoCompression()}
		case "gzip":
			s.compression = []kgo.CompressionCodec{kgo.GzipCompression()}
		case "snappy":
			s.compression = []kgo.CompressionCodec{kgo.SnappyCompression()}
		case "lz4":
			s.compression = []kgo.CompressionCodec{kgo.Lz4Compression()}
		case "zstd":
			s.compression = []kgo.CompressionCodec{kgo.ZstdCompression()}
		default:
			return nil, sinkErr("properties."+propCompressionType, "%q is not one of none, gzip, snappy, lz4, zstd", v)
		}
	}
	if v, ok := own[propLingerMS]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return nil, sinkErr("properties."+propLingerMS, "want a number of milliseconds, 0 or more (got %q)", v)
		}
		s.linger = time.Duration(ms) * time.Millisecond
	}
	if v, ok := own[propTransactionTimeout]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 || ms > 1<<31-1 {
			return nil, sinkErr("properties."+propTransactionTimeout, "want a positive number of milliseconds (got %q)", v)
		}
		s.txnTimeout = time.Duration(ms) * time.Millisecond
	}
	if v, ok := own[propCommitsTopic]; ok {
		if err := validTopic(v); err != nil {
			return nil, sinkErr("properties."+propCommitsTopic, "%v", err)
		}
		s.commitsTopic = v
	}
	if !c.Transactional {
		for _, k := range []string{propTransactionTimeout, propCommitsTopic} {
			if _, ok := own[k]; ok {
				return nil, sinkErr("properties."+k, "only applies with transactional: true")
			}
		}
	}
	if c.Topic != "" && c.Topic == s.commitsTopic {
		return nil, sinkErr("topic", "%q is the commits topic", c.Topic)
	}
	return s, nil
}

// asSinkExprErr turns the expressions' errors (*sinkexpr.Error, joined)
// into the sink's.
func asSinkExprErr(err error) error {
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	out := make([]error, 0, len(list))
	for _, e := range list {
		var xe *sinkexpr.Error
		if errors.As(e, &xe) {
			out = append(out, sinkErr(xe.Field, "%s", xe.Reason))
		} else {
			out = append(out, fmt.Errorf("kafka sink: %w", e))
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return errors.Join(out...)
}

func wantString(t arrow.DataType) error {
	switch t.ID() {
	case arrow.STRING, arrow.LARGE_STRING, arrow.STRING_VIEW:
		return nil
	}
	return fmt.Errorf("gives %s, want a string (a topic name)", t)
}

func wantInteger(t arrow.DataType) error {
	if arrow.IsInteger(t.ID()) {
		return nil
	}
	return fmt.Errorf("gives %s, want an integer (a partition number)", t)
}

// asSinkErr turns an error of the source's option validation, which names
// the field as source.kafka.<field>, into the sink's.
func asSinkErr(err error) error {
	msg := strings.TrimPrefix(err.Error(), fieldPrefix)
	field, reason, ok := strings.Cut(msg, ": ")
	if !ok {
		return sinkErr("properties", "%s", msg)
	}
	return sinkErr(field, "%s", reason)
}

// sinkSupported lists the properties the sink accepts.
func sinkSupported() []string {
	var out []string
	for _, k := range knownProperties {
		if k != propIsolationLevel {
			out = append(out, k)
		}
	}
	return append(out, sinkProperties...)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
