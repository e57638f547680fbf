package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// fieldPrefix is how the user knows these options in a job spec.
const fieldPrefix = "source.kafka."

// Config is the Kafka source's options, named as Spark's Kafka source names
// them so that a Spark user's options carry over. The zero value is not
// valid: BootstrapServers and one of Subscribe, SubscribePattern or Assign
// are required. Call Validate before use; NewSource and NewReaderPool do.
type Config struct {
	// BootstrapServers is Spark's kafka.bootstrap.servers: a comma separated
	// list of host:port seed brokers. Required.
	BootstrapServers string

	// Subscribe is Spark's subscribe: the topics to read. Exactly one of
	// Subscribe, SubscribePattern and Assign must be set.
	Subscribe []string
	// SubscribePattern is Spark's subscribePattern: every non-internal topic
	// whose whole name matches is read, re-evaluated at every batch so that
	// new topics are picked up. It is a Go regexp (RE2), not a Java regex:
	// there are no lookarounds or backreferences, and the pattern must match
	// the whole topic name, as Java's Matcher.matches does (it is anchored
	// for you).
	SubscribePattern string
	// Assign is Spark's assign: a JSON object of topic to partition list,
	// e.g. {"topicA":[0,1],"topicB":[2,4]}. Only these partitions are read.
	Assign string

	// StartingOffsets is Spark's startingOffsets: "earliest", "latest" (the
	// default when empty), or a JSON object of topic to partition to offset,
	// e.g. {"topicA":{"0":23,"1":-2}}, where -2 means earliest and -1 latest.
	// With JSON every partition must be listed, as in Spark. It applies only
	// to a job without a checkpoint; a partition added later starts at
	// earliest.
	StartingOffsets string
	// StartingTimestamp is Spark's startingTimestamp in epoch milliseconds;
	// 0 means unset. When set it beats StartingOffsets: each partition starts
	// at its first offset whose timestamp is at least this; partitions
	// without such a record start at latest.
	StartingTimestamp int64

	// MaxOffsetsPerTrigger is Spark's maxOffsetsPerTrigger: at most this many
	// offsets per batch across all partitions, split in proportion to each
	// partition's lag. 0 means no limit.
	MaxOffsetsPerTrigger int64
	// MaxRatePerPartition caps each partition at this many records per
	// second of the trigger interval (as Spark's
	// spark.streaming.kafka.maxRatePerPartition). 0 means no limit.
	MaxRatePerPartition int64
	// MaxRecordsPerPartition is Spark's maxRecordsPerPartition: a partition
	// range longer than this is split into several contiguous tasks. 0
	// means never split.
	MaxRecordsPerPartition int64

	// FailOnDataLoss is Spark's failOnDataLoss: when planned or committed
	// records are gone (retention, deleted topic), fail the job instead of
	// logging a warning and skipping ahead. Spark's default is true; the Go
	// zero value is false, so callers that build a Config must set the
	// default themselves.
	FailOnDataLoss bool
	// IncludeHeaders is Spark's includeHeaders: add the "headers" column.
	IncludeHeaders bool

	// Properties are client properties, Spark's kafka.* options without the
	// "kafka." prefix (the prefix is accepted too). Supported:
	//
	//	security.protocol                      PLAINTEXT (default), SSL, SASL_PLAINTEXT, SASL_SSL
	//	sasl.mechanism                         PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	//	sasl.username, sasl.password           SASL credentials (the password is a secret)
	//	ssl.ca.location                        PEM file of CAs to trust (default: the system pool)
	//	ssl.certificate.location               PEM client certificate, with ssl.key.location
	//	ssl.key.location                       PEM private key of the client certificate
	//	ssl.endpoint.identification.algorithm  "https" (default) checks the broker's host name; "" does not
	//	client.id                              client id sent to brokers (default "sluice")
	//	request.timeout.ms                     how long a request may wait for its response
	//	isolation.level                        read_uncommitted (default, as Spark) or read_committed
	//
	// Any other key is refused, so a misspelt option is never silently
	// ignored.
	Properties map[string]string

	// CommitOffsetsToGroup, when set, names a consumer group to which the
	// source commits each committed batch's end offsets, so that lag tools
	// (kafka-consumer-groups.sh, Burrow, kminion) see the job. The group is
	// never joined (it has no members) and never read: the checkpoint alone
	// says where the job reads. A failed commit is logged and reported to
	// the driver, never fatal; the next batch's commit supersedes it. At
	// most 255 characters. Empty (the default): off.
	CommitOffsetsToGroup string
}

// Property names Config.Properties accepts.
const (
	propSecurityProtocol   = "security.protocol"
	propSASLMechanism      = "sasl.mechanism"
	propSASLUsername       = "sasl.username"
	propSASLPassword       = "sasl.password"
	propSSLCALocation      = "ssl.ca.location"
	propSSLCertLocation    = "ssl.certificate.location"
	propSSLKeyLocation     = "ssl.key.location"
	propSSLEndpointIDAlgo  = "ssl.endpoint.identification.algorithm"
	propClientID           = "client.id"
	propRequestTimeoutMS   = "request.timeout.ms"
	propIsolationLevel     = "isolation.level"
	sparkPropertyPrefix    = "kafka."
	redactedValue          = "[redacted]"
	defaultClientID        = "sluice"
	isolationReadCommitted = "read_committed"
)

var knownProperties = []string{
	propSecurityProtocol, propSASLMechanism, propSASLUsername, propSASLPassword,
	propSSLCALocation, propSSLCertLocation, propSSLKeyLocation, propSSLEndpointIDAlgo,
	propClientID, propRequestTimeoutMS, propIsolationLevel,
}

// IsSecretProperty reports whether a Properties key holds a secret that must
// never be shown, logged or echoed back. It errs on the side of secrecy: any
// password, JAAS configuration or secret is one.
func IsSecretProperty(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "password") || strings.Contains(k, "jaas") ||
		strings.Contains(k, "secret") || strings.Contains(k, "token")
}

// Redacted returns a copy of c whose secret properties read "[redacted]", for
// showing a job's configuration.
func (c Config) Redacted() Config {
	out := c
	out.Subscribe = slices.Clone(c.Subscribe)
	if c.Properties != nil {
		out.Properties = make(map[string]string, len(c.Properties))
		for k, v := range c.Properties {
			if IsSecretProperty(k) {
				v = redactedValue
			}
			out.Properties[k] = v
		}
	}
	return out
}

// settings is a validated Config in the form the source and readers use.
type settings struct {
	brokers   []string
	subscribe []string
	pattern   *regexp.Regexp
	assign    map[string][]int32
	// starting: "earliest", "latest" or "json" (then startJSON holds it).
	starting  string
	startJSON map[string]map[int32]int64
	props     map[string]string // normalised keys (no "kafka." prefix)

	includeHeaders bool
	// failOnDataLoss: readers fail on records deleted after planning
	// instead of reading what remains.
	failOnDataLoss bool
	// group is commitOffsetsToGroup; "" when off.
	group string
}

// Validate reports the first problem with c, naming the option as the user
// knows it (source.kafka.<option>). It does not touch the network or files.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf(fieldPrefix+field+": "+format, args...)
}

func (c Config) settings() (*settings, error) {
	s := &settings{includeHeaders: c.IncludeHeaders, failOnDataLoss: c.FailOnDataLoss}
	if strings.TrimSpace(c.BootstrapServers) == "" {
		return nil, fieldErr("bootstrapServers", "required (a comma separated list of host:port)")
	}
	for _, b := range strings.Split(c.BootstrapServers, ",") {
		b = strings.TrimSpace(b)
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return nil, fieldErr("bootstrapServers", "%q is not host:port", b)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return nil, fieldErr("bootstrapServers", "%q has an invalid port", b)
		}
		s.brokers = append(s.brokers, b)
	}

	n := 0
	if len(c.Subscribe) > 0 {
		n++
	}
	if c.SubscribePattern != "" {
		n++
	}
	if c.Assign != "" {
		n++
	}
	if n != 1 {
		return nil, fieldErr("subscribe", "set exactly one of subscribe, subscribePattern and assign (got %d)", n)
	}
	switch {
	case len(c.Subscribe) > 0:
		seen := map[string]bool{}
		for _, t := range c.Subscribe {
			if err := validTopic(t); err != nil {
				return nil, fieldErr("subscribe", "%w", err)
			}
			if seen[t] {
				return nil, fieldErr("subscribe", "topic %q is listed twice", t)
			}
			seen[t] = true
			s.subscribe = append(s.subscribe, t)
		}
		sort.Strings(s.subscribe)
	case c.SubscribePattern != "":
		re, err := regexp.Compile("^(?:" + c.SubscribePattern + ")$")
		if err != nil {
			return nil, fieldErr("subscribePattern", "not a valid Go regexp (RE2 syntax, not Java's): %w", err)
		}
		s.pattern = re
	default:
		a, err := parseAssign(c.Assign)
		if err != nil {
			return nil, fieldErr("assign", "%w", err)
		}
		s.assign = a
	}

	switch c.StartingOffsets {
	case "", "latest":
		s.starting = "latest"
	case "earliest":
		s.starting = "earliest"
	default:
		m, err := parseStartingOffsets(c.StartingOffsets)
		if err != nil {
			return nil, fieldErr("startingOffsets", "%w", err)
		}
		for t, ps := range m {
			switch {
			case s.subscribe != nil && !slices.Contains(s.subscribe, t):
				return nil, fieldErr("startingOffsets", "topic %q is not in subscribe", t)
			case s.pattern != nil && !s.pattern.MatchString(t):
				return nil, fieldErr("startingOffsets", "topic %q does not match subscribePattern", t)
			case s.assign != nil:
				for p := range ps {
					if !slices.Contains(s.assign[t], p) {
						return nil, fieldErr("startingOffsets", "partition %s is not in assign", partitionName(t, p))
					}
				}
			}
		}
		s.starting, s.startJSON = "json", m
	}
	if c.StartingTimestamp < 0 {
		return nil, fieldErr("startingTimestamp", "must not be negative (got %d)", c.StartingTimestamp)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"maxOffsetsPerTrigger", c.MaxOffsetsPerTrigger},
		{"maxRatePerPartition", c.MaxRatePerPartition},
		{"maxRecordsPerPartition", c.MaxRecordsPerPartition},
	} {
		if f.v < 0 {
			return nil, fieldErr(f.name, "must not be negative (got %d)", f.v)
		}
	}

	props, err := validateProperties(c.Properties)
	if err != nil {
		return nil, err
	}
	s.props = props

	if err := validGroup(c.CommitOffsetsToGroup); err != nil {
		return nil, fieldErr("commitOffsetsToGroup", "%w", err)
	}
	s.group = c.CommitOffsetsToGroup
	return s, nil
}

// validGroup accepts "" (off) or a group id that shows plainly in the lag
// tools: not blank, at most 255 characters, no control characters.
func validGroup(g string) error {
	switch {
	case g == "":
		return nil
	case strings.TrimSpace(g) == "":
		return errors.New("must not be blank (leave it empty to commit to no group)")
	case utf8.RuneCountInString(g) > 255:
		return fmt.Errorf("group id is %d characters long; at most 255", utf8.RuneCountInString(g))
	case strings.IndexFunc(g, unicode.IsControl) >= 0:
		return fmt.Errorf("group id %q holds a control character", g)
	}
	return nil
}

// validTopic applies Kafka's topic name rules, so that a typo fails at submit
// rather than as a metadata error at every batch.
func validTopic(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("%q is not a valid topic name", t)
	}
	if len(t) > 249 {
		return fmt.Errorf("topic %q is longer than 249 characters", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic %q may only contain letters, digits, '.', '_' and '-'", t)
		}
	}
	return nil
}

func parseAssign(js string) (map[string][]int32, error) {
	var raw map[string][]int32
	if err := json.Unmarshal([]byte(js), &raw); err != nil {
		return nil, fmt.Errorf(`want JSON like {"topicA":[0,1]}: %w`, err)
	}
	if len(raw) == 0 {
		return nil, errors.New("names no partitions")
	}
	for t, ps := range raw {
		if err := validTopic(t); err != nil {
			return nil, err
		}
		if len(ps) == 0 {
			return nil, fmt.Errorf("topic %q has no partitions", t)
		}
		seen := map[int32]bool{}
		for _, p := range ps {
			if p < 0 {
				return nil, fmt.Errorf("topic %q: partition %d is negative", t, p)
			}
			if seen[p] {
				return nil, fmt.Errorf("topic %q: partition %d is listed twice", t, p)
			}
			seen[p] = true
		}
		slices.Sort(ps)
	}
	return raw, nil
}

func parseStartingOffsets(js string) (map[string]map[int32]int64, error) {
	var raw map[string]map[string]int64
	if err := json.Unmarshal([]byte(js), &raw); err != nil {
		return nil, fmt.Errorf(`want "earliest", "latest" or JSON like {"topic":{"0":23,"1":-2}}: %w`, err)
	}
	if len(raw) == 0 {
		return nil, errors.New("names no partitions")
	}
	out := make(map[string]map[int32]int64, len(raw))
	for t, ps := range raw {
		if err := validTopic(t); err != nil {
			return nil, err
		}
		out[t] = make(map[int32]int64, len(ps))
		for k, off := range ps {
			p, err := strconv.ParseInt(k, 10, 32)
			if err != nil || p < 0 {
				return nil, fmt.Errorf("topic %q: %q is not a partition number", t, k)
			}
			if off < offsetEarliest {
				return nil, fmt.Errorf("topic %q partition %d: offset %d is invalid (use -2 for earliest, -1 for latest)", t, p, off)
			}
			out[t][int32(p)] = off
		}
	}
	return out, nil
}

// Offsets in startingOffsets JSON that stand for a position, as in Spark.
const (
	offsetLatest   = -1
	offsetEarliest = -2
)

func validateProperties(in map[string]string) (map[string]string, error) {
	props := make(map[string]string, len(in))
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the same problem first every time
	for _, k := range keys {
		nk := strings.TrimPrefix(k, sparkPropertyPrefix)
		if !slices.Contains(knownProperties, nk) {
			return nil, fieldErr("properties", "unknown property %q (supported: %s)", k, strings.Join(knownProperties, ", "))
		}
		if _, dup := props[nk]; dup {
			return nil, fieldErr("properties", "%q is set both with and without the %q prefix", nk, sparkPropertyPrefix)
		}
		props[nk] = in[k]
	}
	field := func(k string) string { return "properties." + k }

	proto := strings.ToUpper(props[propSecurityProtocol])
	if proto == "" {
		proto = "PLAINTEXT"
	}
	switch proto {
	case "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL":
	default:
		return nil, fieldErr(field(propSecurityProtocol), "%q is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL", props[propSecurityProtocol])
	}
	props[propSecurityProtocol] = proto
	isSASL := strings.HasPrefix(proto, "SASL_")
	isTLS := strings.HasSuffix(proto, "SSL")

	if isSASL {
		switch strings.ToUpper(props[propSASLMechanism]) {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
			props[propSASLMechanism] = strings.ToUpper(props[propSASLMechanism])
		case "":
			return nil, fieldErr(field(propSASLMechanism), "required with security.protocol %s (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", proto)
		default:
			return nil, fieldErr(field(propSASLMechanism), "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", props[propSASLMechanism])
		}
		if props[propSASLUsername] == "" {
			return nil, fieldErr(field(propSASLUsername), "required with security.protocol %s", proto)
		}
		if props[propSASLPassword] == "" {
			return nil, fieldErr(field(propSASLPassword), "required with security.protocol %s", proto)
		}
	} else {
		for _, k := range []string{propSASLMechanism, propSASLUsername, propSASLPassword} {
			if _, ok := props[k]; ok {
				return nil, fieldErr(field(k), "set but security.protocol is %s; use SASL_PLAINTEXT or SASL_SSL", proto)
			}
		}
	}
	if !isTLS {
		for _, k := range []string{propSSLCALocation, propSSLCertLocation, propSSLKeyLocation, propSSLEndpointIDAlgo} {
			if _, ok := props[k]; ok {
				return nil, fieldErr(field(k), "set but security.protocol is %s; use SSL or SASL_SSL", proto)
			}
		}
	}
	if (props[propSSLCertLocation] == "") != (props[propSSLKeyLocation] == "") {
		return nil, fieldErr(field(propSSLCertLocation), "ssl.certificate.location and ssl.key.location go together")
	}
	if v, ok := props[propSSLEndpointIDAlgo]; ok && v != "" && !strings.EqualFold(v, "https") {
		return nil, fieldErr(field(propSSLEndpointIDAlgo), `%q is not "https" or ""`, v)
	}
	if v, ok := props[propClientID]; ok && strings.TrimSpace(v) == "" {
		return nil, fieldErr(field(propClientID), "must not be empty")
	}
	if v, ok := props[propRequestTimeoutMS]; ok {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 {
			return nil, fieldErr(field(propRequestTimeoutMS), "want a positive number of milliseconds (got %q)", v)
		}
	}
	if v, ok := props[propIsolationLevel]; ok && v != "read_uncommitted" && v != isolationReadCommitted {
		return nil, fieldErr(field(propIsolationLevel), "%q is not read_uncommitted or read_committed", v)
	}
	return props, nil
}

func (s *settings) readCommitted() bool { return s.props[propIsolationLevel] == isolationReadCommitted }

// clientOpts turns the properties into franz-go options. It reads the TLS
// files, so it may fail where Validate did not.
func (s *settings) clientOpts() ([]kgo.Opt, error) {
	id := s.props[propClientID]
	if id == "" {
		id = defaultClientID
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.brokers...),
		kgo.ClientID(id),
		// KIP-714 metrics pushes cost CPU on every client and tell the
		// brokers' operators nothing Sluice's own metrics do not.
		kgo.DisableClientMetrics(),
	}
	if v, ok := s.props[propRequestTimeoutMS]; ok {
		ms, _ := strconv.ParseInt(v, 10, 64) // validated
		d := time.Duration(ms) * time.Millisecond
		opts = append(opts, kgo.RequestTimeoutOverhead(d), kgo.RetryTimeout(d))
	}
	proto := s.props[propSecurityProtocol]
	if strings.HasSuffix(proto, "SSL") {
		tc, err := s.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if strings.HasPrefix(proto, "SASL_") {
		user, pass := s.props[propSASLUsername], s.props[propSASLPassword]
		switch s.props[propSASLMechanism] {
		case "PLAIN":
			opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
		case "SCRAM-SHA-256":
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
		case "SCRAM-SHA-512":
			opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
		}
	}
	return opts, nil
}

func (s *settings) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := s.props[propSSLCALocation]; ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fieldErr("properties."+propSSLCALocation, "%w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fieldErr("properties."+propSSLCALocation, "%s holds no PEM certificate", ca)
		}
		tc.RootCAs = pool
	}
	if cert := s.props[propSSLCertLocation]; cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, s.props[propSSLKeyLocation])
		if err != nil {
			return nil, fieldErr("properties."+propSSLCertLocation, "load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if v, ok := s.props[propSSLEndpointIDAlgo]; ok && v == "" {
		// Kafka's "" keeps verifying the chain but not the host name (brokers
		// behind addresses their certificates do not name). Go has no such
		// switch, so skip Go's check and verify the chain ourselves.
		roots := tc.RootCAs
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("broker sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return tc, nil
}

// identity is a stable description of what the source reads.
// Identity describes what cfg reads: its sorted brokers and subscription. It
// is what Source.Identity returns, computed without creating a client, so
// the driver can compare a resubmitted job's source with its checkpoint's.
func (c Config) Identity() (string, error) {
	set, err := c.settings()
	if err != nil {
		return "", err
	}
	return set.identity(), nil
}

// prepare validates cfg and opts and returns the parsed settings, the
// options and the franz-go options every client of this config starts from.
func prepare(cfg Config, opts []Option) (*settings, options, []kgo.Opt, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, options{}, nil, err
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, options{}, nil, err
	}
	copts, err := set.clientOpts()
	if err != nil {
		return nil, options{}, nil, err
	}
	return set, o, copts, nil
}

func (s *settings) identity() string {
	brokers := slices.Clone(s.brokers)
	sort.Strings(brokers)
	var b strings.Builder
	b.WriteString("kafka:bootstrapServers=")
	b.WriteString(strings.Join(brokers, ","))
	switch {
	case s.subscribe != nil:
		b.WriteString(";subscribe=")
		b.WriteString(strings.Join(s.subscribe, ","))
	case s.pattern != nil:
		b.WriteString(";subscribePattern=")
		b.WriteString(strings.TrimSuffix(strings.TrimPrefix(s.pattern.String(), "^(?:"), ")$"))
	default:
		topics := make([]string, 0, len(s.assign))
		for t := range s.assign {
			topics = append(topics, t)
		}
		sort.Strings(topics)
		b.WriteString(";assign=")
		for i, t := range topics {
			if i > 0 {
				b.WriteString(",")
			}
			for j, p := range s.assign[t] {
				if j > 0 {
					b.WriteString(",")
				}
				b.WriteString(partitionName(t, p))
			}
		}
	}
	return b.String()
}
