package dynamodb

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

var service = awsstore.Service{Scheme: "dynamodb", Resource: "table", ExampleEndpoint: "http://127.0.0.1:8000"}

// Validate reports every invalid setting, each as a *ConfigError, joined
// with errors.Join. It does not call AWS.
func (c Config) Validate() error {
	var errs []error
	report := func(field, reason string) { errs = append(errs, &ConfigError{Field: field, Reason: reason}) }
	if c.Table != "" && !tableRE.MatchString(c.Table) {
		report("table", fmt.Sprintf("%q must be 3-255 letters, digits, '_', '-' or '.'", c.Table))
	}
	awsstore.CheckPrefix(report, c.Prefix, maxPrefix)
	service.CheckAccess(report, c.Region, c.Endpoint, c.Auth)
	return errors.Join(errs...)
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
	p, err := service.ParseURL(u)
	if err != nil {
		return Config{}, err
	}
	c := Config{Table: p.Name, Prefix: p.Prefix, Region: p.Region, Endpoint: p.Endpoint}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("dynamodb store URL: %w", err)
	}
	return c, nil
}
