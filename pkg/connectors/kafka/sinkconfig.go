package kafka

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/transform"
)

// SinkConfig is the Kafka sink's options, as the job spec's sink.kafka
// names them. Call Validate before use; NewSink does.
type SinkConfig struct {
	// BootstrapServers is a comma separated list of host:port seed
	// brokers. Required.
	BootstrapServers string
	// Topic receives every record. Exactly one of Topic and TopicExpr.
	Topic string
	// TopicExpr is a CEL expression giving each record's topic.
	TopicExpr string
	// Key is a CEL expression for the record key; empty: no key.
	Key string
	// Value is a CEL expression for the record value; empty: the row as a
	// JSON object.
	Value string
	// Headers maps header names to CEL expressions; a null result leaves
	// the header out.
	Headers map[string]string
	// Partition is a CEL expression giving the partition number; empty:
	// the key's murmur2 hash as Kafka's Java client computes it (records
	// without a key go to a sticky random partition).
	Partition string
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
	cfg        SinkConfig
	client     *settings // brokers and the shared client properties
	topicExpr  *transform.Expr
	key, value *transform.Expr
	headers    []headerExpr // sorted by name
	partition  *transform.Expr

	compression  []kgo.CompressionCodec
	linger       time.Duration
	txnTimeout   time.Duration
	commitsTopic string
	name         string
}

type headerExpr struct {
	name string
	expr *transform.Expr
}

// Validate reports the first problem with c as a *SinkConfigError. It
// compiles the expressions but touches neither the network nor files.
func (c SinkConfig) Validate() error {
	_, err := c.settings()
	return err
}

func (c SinkConfig) settings() (*sinkSettings, error) {
	s := &sinkSettings{cfg: c, txnTimeout: defaultTxnTimeout, commitsTopic: DefaultCommitsTopic, name: c.Name}
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

	switch {
	case c.Topic != "" && c.TopicExpr != "":
		return nil, sinkErr("topic", "set either topic or topicExpr, not both")
	case c.Topic != "":
		if err := validTopic(c.Topic); err != nil {
			return nil, sinkErr("topic", "%v", err)
		}
	case c.TopicExpr != "":
		if s.topicExpr, err = transform.CompileExpr(c.TopicExpr); err != nil {
			return nil, sinkErr("topicExpr", "%v", err)
		}
		if t := s.topicExpr.OutputType(); !mayBe(t, types.StringKind) {
			return nil, sinkErr("topicExpr", "gives %s, want a string", t)
		}
	default:
		return nil, sinkErr("topic", "required (or topicExpr)")
	}
	if c.Key != "" {
		if s.key, err = transform.CompileExpr(c.Key); err != nil {
			return nil, sinkErr("key", "%v", err)
		}
	}
	if c.Value != "" {
		if s.value, err = transform.CompileExpr(c.Value); err != nil {
			return nil, sinkErr("value", "%v", err)
		}
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
		e, err := transform.CompileExpr(c.Headers[n])
		if err != nil {
			return nil, sinkErr("headers."+n, "%v", err)
		}
		s.headers = append(s.headers, headerExpr{name: n, expr: e})
	}
	if c.Partition != "" {
		if s.partition, err = transform.CompileExpr(c.Partition); err != nil {
			return nil, sinkErr("partition", "%v", err)
		}
		if t := s.partition.OutputType(); !mayBe(t, types.IntKind, types.UintKind) {
			return nil, sinkErr("partition", "gives %s, want an int", t)
		}
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
