package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/awsstore"
)

// maxPrefix bounds Config.Prefix so that every key of the store stays
// within S3's 1024 bytes with room for job names.
const maxPrefix = 256

// Config selects the bucket and prefix and how to reach them. Validate
// (called by Open) checks it.
type Config struct {
	// Bucket must exist; the store does not create buckets. Required.
	Bucket string
	// Prefix is where the store's objects live in the bucket; "" for the
	// bucket's root. A leading "/" is dropped and a trailing one added.
	// Several driver groups may share a bucket under different prefixes.
	Prefix string
	// Region of the bucket; default: the SDK's (AWS_REGION, shared
	// config), else us-east-1.
	Region string
	// Endpoint overrides the S3 endpoint (MinIO, a VPC endpoint), e.g.
	// http://127.0.0.1:9000. Path-style addressing is used when it is set.
	Endpoint string
	// Auth holds the credentials; the zero value is the default chain. Its
	// Region is ignored: set Config.Region.
	Auth awsauth.Options
	// Logger is accepted for symmetry with the DynamoDB store's Config; the
	// S3 store has nothing to log (it creates nothing) and does not use it.
	Logger *slog.Logger
}

// ConfigError is one invalid setting. Field is the option's name as the job
// spec spells it under checkpoint.s3 ("bucket", "auth.awsSecretKey").
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Reason }

// S3's bucket naming rules (general purpose buckets).
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

var service = awsstore.Service{Scheme: "s3", Resource: "bucket", ExampleEndpoint: "http://127.0.0.1:9000"}

// Validate reports every invalid setting, each as a *ConfigError, joined
// with errors.Join. It does not call AWS.
func (c Config) Validate() error {
	var errs []error
	report := func(field, reason string) { errs = append(errs, &ConfigError{Field: field, Reason: reason}) }
	switch {
	case c.Bucket == "":
		report("bucket", "is required")
	case !bucketRE.MatchString(c.Bucket) || strings.Contains(c.Bucket, ".."):
		report("bucket", fmt.Sprintf("%q is not a bucket name: 3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit", c.Bucket))
	}
	if awsstore.CheckPrefix(report, c.Prefix, maxPrefix) && hasDotSegment(c.Prefix) {
		report("prefix", fmt.Sprintf("%q must not contain '.' or '..' path segments or '//'", c.Prefix))
	}
	service.CheckAccess(report, c.Region, c.Endpoint, c.Auth)
	return errors.Join(errs...)
}

// hasDotSegment reports prefixes that S3-compatible servers (MinIO)
// refuse or that would be ambiguous as paths.
func hasDotSegment(p string) bool {
	p = strings.Trim(p, "/")
	if p == "" {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// withDefaults fills defaults and normalises the prefix.
func (c Config) withDefaults() Config {
	c.Prefix = strings.TrimLeft(c.Prefix, "/")
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	c.Auth.Region = c.Region
	return c
}

// ParseURL reads a store URL, the driver's --store flag:
//
//	s3://<bucket>[/<prefix>][?region=<region>&endpoint=<url>]
//
// Credentials come from the default chain (environment, shared config, web
// identity, instance role); a URL carrying credentials is refused rather
// than echoed. The Config returned is valid.
func ParseURL(u *url.URL) (Config, error) {
	p, err := service.ParseURL(u)
	if err != nil {
		return Config{}, err
	}
	c := Config{Bucket: p.Name, Prefix: p.Prefix, Region: p.Region, Endpoint: p.Endpoint}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("s3 store URL: %w", err)
	}
	return c, nil
}
