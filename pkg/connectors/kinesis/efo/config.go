package efo

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// fieldPrefix is how the user knows these options in a job spec.
const fieldPrefix = "source.kinesis."

// Lifecycle says who owns the registered consumer.
type Lifecycle string

const (
	// JobManaged (the default): Sluice registers the consumer when the job
	// starts (or reuses one already registered under the name), waits until
	// it is ACTIVE, registers it again if it disappears, and deregisters it
	// on a clean stop only when RequireConsumerDeregistration is set.
	JobManaged Lifecycle = "job-managed"
	// SelfManaged: the user registered the consumer; Sluice only uses it.
	// It never registers or deregisters it, and a missing consumer is an
	// error that says so.
	SelfManaged Lifecycle = "self-managed"
)

// Defaults.
const (
	// DefaultConsumerNamePrefix is put before the job name when the consumer
	// name is derived (Databricks uses "databricks_").
	DefaultConsumerNamePrefix = "sluice_"
	// DefaultConsumerRefreshInterval is how often a running job checks that
	// its consumer is still ACTIVE.
	DefaultConsumerRefreshInterval = time.Minute
	// MinConsumerRefreshInterval and MaxConsumerRefreshInterval bound
	// ConsumerRefreshInterval: DescribeStreamConsumer allows 20 calls per
	// second per stream, shared by every job and tool on the stream, and a
	// check less often than hourly would leave a vanished consumer (and a
	// stuck job) unnoticed too long. The upper bound is Databricks'.
	MinConsumerRefreshInterval = time.Second
	MaxConsumerRefreshInterval = time.Hour

	// maxConsumerNameLen is the service's limit.
	maxConsumerNameLen = 128
)

// consumerNameRE is the service's pattern for consumer names.
var consumerNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)

// Config is the enhanced fan-out part of the Kinesis source's options, named
// as the Databricks connector names them (consumerLifecycle is Flink's
// switch). The zero value is valid: a job-managed consumer named
// "sluice_<job>", checked every minute, never deregistered.
type Config struct {
	// ConsumerName is the registered consumer's name. When set it is used as
	// given (after ConsumerNamePrefix, if that is set too); when empty it is
	// derived from the job: ConsumerNamePrefix (default "sluice_") + job
	// name. Names are 1-128 characters of letters, digits, '_', '.' and '-'.
	ConsumerName string
	// ConsumerNamePrefix is put before the consumer name. Default
	// "sluice_" for a derived name; for an explicit ConsumerName it applies
	// only when set, so that an existing consumer can be named exactly.
	ConsumerNamePrefix string
	// ConsumerRefreshInterval is how often the driver checks that the
	// consumer is still ACTIVE (and registers it again, job-managed, if it
	// vanished). Default 1m; 1s to 1h.
	ConsumerRefreshInterval time.Duration
	// RequireConsumerDeregistration deregisters the consumer when the job is
	// stopped cleanly (stopped or deleted by the user, or finished). Never on
	// a failure, a failover or a driver shutdown: the job will run again and
	// reuse it. Default false, as in Databricks. Job-managed only.
	RequireConsumerDeregistration bool
	// ConsumerLifecycle is JobManaged (default) or SelfManaged. Flink's
	// spellings JOB_MANAGED and SELF_MANAGED are accepted.
	ConsumerLifecycle Lifecycle
}

// WithDefaults returns c with every unset option at its default. It does not
// validate.
func (c Config) WithDefaults() Config {
	if c.ConsumerRefreshInterval == 0 {
		c.ConsumerRefreshInterval = DefaultConsumerRefreshInterval
	}
	if l, ok := parseLifecycle(c.ConsumerLifecycle); ok {
		c.ConsumerLifecycle = l
	}
	return c
}

func parseLifecycle(l Lifecycle) (Lifecycle, bool) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(string(l))), "_", "-") {
	case "", string(JobManaged):
		return JobManaged, true
	case string(SelfManaged):
		return SelfManaged, true
	}
	return l, false
}

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf(fieldPrefix+field+": "+format, args...)
}

// Validate reports the first problem with c, naming the option as the user
// knows it (source.kinesis.<option>). It does not touch the network.
func (c Config) Validate() error {
	lc, ok := parseLifecycle(c.ConsumerLifecycle)
	if !ok {
		return fieldErr("consumerLifecycle", "%q is not job-managed or self-managed", c.ConsumerLifecycle)
	}
	if c.ConsumerNamePrefix != "" {
		if len(c.ConsumerNamePrefix) >= maxConsumerNameLen {
			return fieldErr("consumerNamePrefix", "is %d characters; it must leave room for a name within the service's %d",
				len(c.ConsumerNamePrefix), maxConsumerNameLen)
		}
		if !consumerNameRE.MatchString(c.ConsumerNamePrefix) {
			return fieldErr("consumerNamePrefix", "%q may only hold letters, digits, '_', '.' and '-'", c.ConsumerNamePrefix)
		}
	}
	if c.ConsumerName != "" {
		if !consumerNameRE.MatchString(c.ConsumerName) {
			return fieldErr("consumerName", "%q may only hold letters, digits, '_', '.' and '-'", c.ConsumerName)
		}
		if n := len(c.ConsumerNamePrefix) + len(c.ConsumerName); n > maxConsumerNameLen {
			return fieldErr("consumerName", "consumerNamePrefix + consumerName is %d characters, more than the service's %d",
				n, maxConsumerNameLen)
		}
	}
	switch d := c.ConsumerRefreshInterval; {
	case d == 0:
	case d < MinConsumerRefreshInterval || d > MaxConsumerRefreshInterval:
		return fieldErr("consumerRefreshInterval", "%s is outside %s to %s", d, MinConsumerRefreshInterval, MaxConsumerRefreshInterval)
	}
	if lc == SelfManaged {
		if c.ConsumerName == "" {
			return fieldErr("consumerName", "is required with consumerLifecycle self-managed: name the consumer you registered")
		}
		if c.RequireConsumerDeregistration {
			return fieldErr("requireConsumerDeregistration",
				"cannot be true with consumerLifecycle self-managed: Sluice never deregisters a consumer it does not manage")
		}
	}
	return nil
}

// ValidateConsumerName reports a name the service would refuse: consumer
// names are 1 to 128 letters, digits, '_', '.' and '-'.
func ValidateConsumerName(name string) error {
	if !consumerNameRE.MatchString(name) || len(name) > maxConsumerNameLen {
		return fmt.Errorf("consumer name %q: 1 to %d letters, digits, '_', '.' and '-'", name, maxConsumerNameLen)
	}
	return nil
}

// ConsumerNameFor returns the consumer name a job uses: the prefix (when
// set, or the default one for a derived name) followed by ConsumerName, or
// by the job name when ConsumerName is empty. A derived name that would
// exceed the service's 128 characters is shortened and given a hash of the
// full name, so two long job names never share a consumer; characters the
// service refuses become '-'.
func (c Config) ConsumerNameFor(job string) string {
	if c.ConsumerName != "" {
		return c.ConsumerNamePrefix + c.ConsumerName
	}
	prefix := c.ConsumerNamePrefix
	if prefix == "" {
		prefix = DefaultConsumerNamePrefix
	}
	var b strings.Builder
	b.WriteString(prefix)
	for _, r := range job {
		if r < 0x80 && consumerNameRE.MatchString(string(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := b.String()
	if len(name) > maxConsumerNameLen {
		sum := sha256.Sum256([]byte(name))
		suffix := "-" + hex.EncodeToString(sum[:])[:12]
		name = name[:maxConsumerNameLen-len(suffix)] + suffix
	}
	return name
}
