// Package awsstore is what the checkpoint stores on AWS services (DynamoDB,
// S3) share besides casstore's protocol: the store URL, the checks of the
// settings every such store has (prefix, region, endpoint, credentials),
// the AWS configuration with an HTTP transport the store owns, and advice
// added to errors a user can fix. Each store keeps what differs: its
// resource (a table, a bucket), its Config and ConfigError, its backend.
package awsstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/pkg/awsauth"
)

// Service names a store in URLs and messages.
type Service struct {
	// Scheme is the store URL's scheme, and the word that names the store in
	// messages: "dynamodb", "s3".
	Scheme string
	// Resource is what the URL's host names: "table", "bucket".
	Resource string
	// ExampleEndpoint is shown when an endpoint is not a URL:
	// "http://127.0.0.1:8000".
	ExampleEndpoint string
}

// URL is a parsed store URL: <scheme>://<name>[/<prefix>][?region=<region>&endpoint=<url>].
type URL struct {
	Name     string // the host: a table or bucket name
	Prefix   string // the path without its leading "/"
	Region   string
	Endpoint string
}

// ParseURL splits a store URL, the driver's --store flag. It refuses
// another scheme, an opaque URL, a port and unknown parameters, and a URL
// carrying credentials rather than echoing them. It does not check the
// values: the store validates them as its Config.
func (s Service) ParseURL(u *url.URL) (URL, error) {
	form := fmt.Sprintf("%s://<%s>[/<prefix>]", s.Scheme, s.Resource)
	switch {
	case u == nil:
		return URL{}, fmt.Errorf("%s store URL is empty", s.Scheme)
	case u.Scheme != s.Scheme:
		return URL{}, fmt.Errorf("store URL scheme %q: want %s[?region=<region>&endpoint=<url>]", u.Scheme, form)
	case u.Opaque != "":
		return URL{}, fmt.Errorf("store URL %s:%s: want %s", s.Scheme, u.Opaque, form)
	case u.User != nil:
		return URL{}, fmt.Errorf("%s store URL must not carry credentials: use the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...) or an instance role", s.Scheme)
	case u.Port() != "":
		return URL{}, fmt.Errorf("%s store URL: %q is not a %s name (a port is not allowed; set the endpoint with ?endpoint=)", s.Scheme, u.Host, s.Resource)
	}
	p := URL{Name: u.Host, Prefix: strings.TrimPrefix(u.Path, "/")}
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "region":
			p.Region = v
		case "endpoint":
			p.Endpoint = v
		default:
			return URL{}, fmt.Errorf("%s store URL: unknown parameter %q (known: region, endpoint)", s.Scheme, k)
		}
	}
	return p, nil
}

// Report receives one invalid setting: its field as the job spec spells it
// ("prefix", "auth.awsSecretKey") and what is wrong with it. A store's
// Validate turns it into its ConfigError.
type Report func(field, reason string)

// CheckPrefix reports a prefix longer than max bytes or not valid UTF-8,
// and returns whether it found it fine.
func CheckPrefix(report Report, prefix string, max int) bool {
	switch {
	case len(prefix) > max:
		report("prefix", fmt.Sprintf("is %d bytes, at most %d allowed", len(prefix), max))
	case !utf8.ValidString(prefix):
		report("prefix", fmt.Sprintf("%q is not valid UTF-8", prefix))
	default:
		return true
	}
	return false
}

var regionRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// CheckAccess reports, in this order, an invalid region, endpoint (an
// absolute http(s) URL without path or query) and credentials. It does not
// call AWS.
func (s Service) CheckAccess(report Report, region, endpoint string, auth awsauth.Options) {
	if region != "" && !regionRE.MatchString(region) {
		report("region", fmt.Sprintf("%q is not a region name like eu-west-1", region))
	}
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			report("endpoint", fmt.Sprintf("%q must be a URL like %s", endpoint, s.ExampleEndpoint))
		case (u.Path != "" && u.Path != "/") || u.RawQuery != "":
			report("endpoint", fmt.Sprintf("%q must not have a path or query (the %s is set apart)", endpoint, s.Resource))
		}
	}
	if err := auth.Validate(); err != nil {
		// awsauth's errors name the job spec field first: "field: reason".
		if field, reason, ok := strings.Cut(err.Error(), ": "); ok {
			report("auth."+field, reason)
		} else {
			report("auth", err.Error())
		}
	}
}

// Load resolves the credentials (see awsauth.Load) and gives the AWS
// configuration an HTTP transport of its own, which the store's Close
// releases with CloseIdleConnections.
func Load(ctx context.Context, auth awsauth.Options) (aws.Config, *http.Transport, error) {
	cfg, err := awsauth.Load(ctx, auth)
	if err != nil {
		return aws.Config{}, nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg.HTTPClient = &http.Client{Transport: tr}
	return cfg, tr, nil
}

// CredentialsRefused is the advice for the error codes a service answers
// to unknown or expired credentials.
const CredentialsRefused = "the AWS credentials were refused; check the access key, secret key, session token or role"

// Explain adds what to do to errors a user can fix: advice(code) for an AWS
// error code ("" for none), and a question about the endpoint for a network
// error. AWS error messages do not carry secrets; advice must not either.
func Explain(err error, advice func(code string) string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if a := advice(ae.ErrorCode()); a != "" {
			return fmt.Errorf("%w: %s", err, a)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: is the endpoint right and reachable?", err)
	}
	return err
}
