package dynamodb

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluicehq/sluice/pkg/awsauth"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Config
		err  string
	}{
		{url: "dynamodb://sluice_checkpoints?region=eu-west-1",
			want: Config{Table: "sluice_checkpoints", Region: "eu-west-1"}},
		{url: "dynamodb://ckpt?region=us-east-1&endpoint=http://127.0.0.1:8000",
			want: Config{Table: "ckpt", Region: "us-east-1", Endpoint: "http://127.0.0.1:8000"}},
		{url: "dynamodb://My.Table-1/group-a", want: Config{Table: "My.Table-1", Prefix: "group-a"}},
		{url: "dynamodb://", want: Config{}},
		{url: "s3://bucket", err: `scheme "s3"`},
		{url: "dynamodb:ckpt", err: "want dynamodb://<table>"},
		{url: "dynamodb://ckpt?regoin=eu-west-1", err: `unknown parameter "regoin"`},
		{url: "dynamodb://ab", err: `table: "ab" must be 3-255`},
		{url: "dynamodb://ckpt:8000", err: "a port is not allowed"},
		{url: "dynamodb://ckpt?endpoint=127.0.0.1:8000", err: "endpoint:"},
		{url: "dynamodb://AKID:s3cr3t@ckpt", err: "must not carry credentials"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseURL(u)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %+v, %v; want an error containing %q", got, err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cr3t") {
					t.Fatalf("error shows the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Config{}, "Logger")); d != "" {
				t.Fatalf("config (-want +got):\n%s", d)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	err := Config{
		Table: "x", Region: "Mars 1", Endpoint: "ftp://host",
		Auth: awsauth.Options{RoleExternalID: "ext"},
	}.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *ConfigError", e)
		}
		fields = append(fields, ce.Field)
	}
	want := []string{"table", "region", "endpoint", "auth.roleArn"}
	if d := cmp.Diff(want, fields); d != "" {
		t.Fatalf("fields (-want +got):\n%s", d)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Prefix: "group-a", Region: "eu-west-1"}.withDefaults()
	if c.Table != DefaultTable || c.Prefix != "group-a/" || c.Auth.Region != "eu-west-1" || c.Logger == nil {
		t.Fatalf("defaults: %+v", c)
	}
}
