package dynamodb

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

// DefaultTable is the table used when Config.Table is empty.
const DefaultTable = "sluice_checkpoints"

// maxPrefix bounds Config.Prefix: it is part of every partition key, which
// DynamoDB limits to 2048 bytes.
const maxPrefix = 512

// Config selects the table and how to reach it. Validate (called by Open)
// checks it; the zero value is valid and means DefaultTable in the SDK's
// default region with the default credential chain.
type Config struct {
	// Table is the table name. Default "sluice_checkpoints". Created with
	// on-demand billing when it does not exist.
	Table string
	// Prefix lets several driver groups share one table: every key of the
	// store starts with it. Default "" (the table belongs to one group). A
	// missing trailing "/" is added.
	Prefix string
	// Region of the table; default: the SDK's (AWS_REGION, shared config),
	// else us-east-1.
	Region string
	// Endpoint overrides the service endpoint (dynalite, DynamoDB Local, a
	// VPC endpoint), e.g. http://127.0.0.1:8000.
	Endpoint string
	// Auth holds the credentials; the zero value is the default chain. Its
	// Region is ignored: set Config.Region.
	Auth awsauth.Options
	// Logger receives the few events worth a line (a table created).
	// Default slog.Default().
	Logger *slog.Logger
}

// ConfigError is one invalid setting. Field is the option's name as the job
// spec spells it under checkpoint.dynamodb ("table", "auth.awsSecretKey").
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Reason }

var tableRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)
var regionRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// Validate reports every invalid setting, each as a *ConfigError, joined
// with errors.Join. It does not call AWS.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if c.Table != "" && !tableRE.MatchString(c.Table) {
		add("table", "%q must be 3-255 letters, digits, '_', '-' or '.'", c.Table)
	}
	if len(c.Prefix) > maxPrefix {
		add("prefix", "is %d bytes, at most %d allowed", len(c.Prefix), maxPrefix)
	} else if !utf8.ValidString(c.Prefix) {
		add("prefix", "%q is not valid UTF-8", c.Prefix)
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

// checkEndpoint accepts an absolute http(s) URL without path.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q must be a URL like http://127.0.0.1:8000", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("%q must not have a path or query", s)
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
	if c.Table == "" {
		c.Table = DefaultTable
	}
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
//	dynamodb://<table>[/<prefix>][?region=<region>&endpoint=<url>]
//
// An empty table ("dynamodb://") means DefaultTable. Credentials come from
// the default chain (environment, shared config, web identity, instance
// role); a URL carrying credentials is refused rather than echoed. The
// Config returned is valid.
func ParseURL(u *url.URL) (Config, error) {
	var c Config
	if u == nil {
		return c, errors.New("dynamodb store URL is empty")
	}
	if u.Scheme != "dynamodb" {
		return c, fmt.Errorf("store URL scheme %q: want dynamodb://<table>[/<prefix>]?region=...", u.Scheme)
	}
	if u.Opaque != "" {
		return c, fmt.Errorf("store URL dynamodb:%s: want dynamodb://<table>[/<prefix>]", u.Opaque)
	}
	if u.User != nil {
		return c, errors.New("dynamodb store URL must not carry credentials: use the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) or an instance role")
	}
	if u.Port() != "" {
		return c, fmt.Errorf("dynamodb store URL: %q is not a table name (a port is not allowed; set the endpoint with ?endpoint=)", u.Host)
	}
	c.Table = u.Host
	c.Prefix = strings.TrimPrefix(u.Path, "/")
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "region":
			c.Region = v
		case "endpoint":
			c.Endpoint = v
		default:
			return Config{}, fmt.Errorf("dynamodb store URL: unknown parameter %q (known: region, endpoint)", k)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("dynamodb store URL: %w", err)
	}
	return c, nil
}
