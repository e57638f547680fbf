package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pkg/awsauth"
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
	// Logger receives the few events worth a line. Default slog.Default().
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
var regionRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Validate reports every invalid setting, each as a *ConfigError, joined
// with errors.Join. It does not call AWS.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case c.Bucket == "":
		add("bucket", "is required")
	case !bucketRE.MatchString(c.Bucket) || strings.Contains(c.Bucket, ".."):
		add("bucket", "%q is not a bucket name: 3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit", c.Bucket)
	}
	switch {
	case len(c.Prefix) > maxPrefix:
		add("prefix", "is %d bytes, at most %d allowed", len(c.Prefix), maxPrefix)
	case !utf8.ValidString(c.Prefix):
		add("prefix", "%q is not valid UTF-8", c.Prefix)
	case hasDotSegment(c.Prefix):
		add("prefix", "%q must not contain '.' or '..' path segments or '//'", c.Prefix)
	}
	if c.Region != "" && !regionRE.MatchString(c.Region) {
		add("region", "%q is not a region name like eu-west-1", c.Region)
	}
	if c.Endpoint != "" {
		if err := checkEndpoint(c.Endpoint); err != nil {
			add("endpoint", "%v", err)
		}
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, authError(err))
	}
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

// checkEndpoint accepts an absolute http(s) URL without path.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be a URL like http://127.0.0.1:9000", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("%q must not have a path or query (the bucket is set apart)", s)
	}
	return nil
}

// authError turns awsauth's "field: reason" (its errors name the job spec
// field first) into a ConfigError under auth.
func authError(err error) error {
	field, reason, ok := strings.Cut(err.Error(), ": ")
	if !ok {
		return &ConfigError{Field: "auth", Reason: err.Error()}
	}
	return &ConfigError{Field: "auth." + field, Reason: reason}
}

// withDefaults fills defaults and normalises the prefix.
func (c Config) withDefaults() Config {
	c.Prefix = strings.TrimLeft(c.Prefix, "/")
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
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
	var c Config
	if u == nil {
		return c, errors.New("s3 store URL is empty")
	}
	if u.Scheme != "s3" {
		return c, fmt.Errorf("store URL scheme %q: want s3://<bucket>[/<prefix>]?region=...", u.Scheme)
	}
	if u.Opaque != "" {
		return c, fmt.Errorf("store URL s3:%s: want s3://<bucket>[/<prefix>]", u.Opaque)
	}
	if u.User != nil {
		return c, errors.New("s3 store URL must not carry credentials: use the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) or an instance role")
	}
	if u.Port() != "" {
		return c, fmt.Errorf("s3 store URL: %q is not a bucket name (a port is not allowed; set the endpoint with ?endpoint=)", u.Host)
	}
	c.Bucket = u.Host
	c.Prefix = strings.TrimPrefix(u.Path, "/")
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "region":
			c.Region = v
		case "endpoint":
			c.Endpoint = v
		default:
			return Config{}, fmt.Errorf("s3 store URL: unknown parameter %q (known: region, endpoint)", k)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("s3 store URL: %w", err)
	}
	return c, nil
}
