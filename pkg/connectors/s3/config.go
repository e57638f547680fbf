package s3

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/pkg/awsauth"
)

// Formats.
const (
	FormatJSONL   = "jsonl"
	FormatParquet = "parquet"
)

// Config is the S3 sink's options, as the job spec's sink.s3 names them.
// Call Validate before use; New does.
type Config struct {
	// Bucket receives the objects. Required.
	Bucket string
	// Prefix is prepended to every key (no leading '/'; a trailing one is
	// implied). Default: the bucket's root.
	Prefix string
	// Region is the bucket's region; default from the AWS configuration
	// (AWS_REGION, ~/.aws/config), else us-east-1.
	Region string
	// Endpoint overrides the S3 endpoint (MinIO, a VPC endpoint); with it,
	// requests use path-style addressing (http://host/bucket/key).
	Endpoint string
	// Format is "jsonl" (the default) or "parquet".
	Format string
	// PartitionBy names a field whose value splits each task's output into
	// <field>=<value>/ folders (Hive style), e.g. a date.
	PartitionBy string
	// Auth holds the credentials: static keys, the default chain, or an
	// assumed role. Auth.Region is ignored; Region applies.
	Auth awsauth.Options
}

// ConfigError is a bad option: Field is its path below sink.s3 (e.g.
// "auth.awsSecretKey"), Reason says what is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "sink.s3." + e.Field + ": " + e.Reason }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// bucketRE is S3's rule for new buckets: 3-63 lowercase letters, digits,
// dots and hyphens, beginning and ending with a letter or digit.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Validate reports the first problem with c as a *ConfigError. It touches
// neither the network nor the credential files.
func (c Config) Validate() error {
	switch {
	case c.Bucket == "":
		return configErr("bucket", "required")
	case !bucketRE.MatchString(c.Bucket) || strings.Contains(c.Bucket, ".."):
		return configErr("bucket", "%q is not a bucket name (3-63 lowercase letters, digits, '.' and '-')", c.Bucket)
	case strings.HasPrefix(c.Prefix, "/"):
		return configErr("prefix", "%q must not start with '/' (keys would begin with an empty folder)", c.Prefix)
	case strings.Contains(strings.TrimSuffix(c.Prefix, "/"), "//"):
		return configErr("prefix", "%q holds an empty folder ('//')", c.Prefix)
	}
	switch c.Format {
	case "", FormatJSONL, FormatParquet:
	default:
		return configErr("format", "%q is not jsonl or parquet", c.Format)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return configErr("endpoint", "%q is not an http:// or https:// URL", c.Endpoint)
		}
	}
	if strings.TrimSpace(c.PartitionBy) != c.PartitionBy {
		return configErr("partitionBy", "%q has leading or trailing spaces", c.PartitionBy)
	}
	if err := c.Auth.Validate(); err != nil {
		// awsauth names the option first: "awsSecretKey: is required ...".
		field, reason, ok := strings.Cut(err.Error(), ": ")
		if !ok {
			return configErr("auth", "%v", err)
		}
		return configErr("auth."+field, "%s", reason)
	}
	return nil
}

func (c Config) format() string {
	if c.Format == "" {
		return FormatJSONL
	}
	return c.Format
}

// prefix is the key prefix with exactly one trailing '/', or "".
func (c Config) prefix() string {
	p := strings.TrimSuffix(c.Prefix, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}
