package s3

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
		{url: "s3://checkpoints/prod/sluice?region=eu-west-1",
			want: Config{Bucket: "checkpoints", Prefix: "prod/sluice", Region: "eu-west-1"}},
		{url: "s3://ckpt?endpoint=http://127.0.0.1:9000&region=us-east-1",
			want: Config{Bucket: "ckpt", Region: "us-east-1", Endpoint: "http://127.0.0.1:9000"}},
		{url: "s3://ckpt/", want: Config{Bucket: "ckpt"}},
		{url: "s3:///prefix", err: "bucket: is required"},
		{url: "dynamodb://t", err: `scheme "dynamodb"`},
		{url: "s3:ckpt", err: "want s3://<bucket>"},
		{url: "s3://ckpt?endpiont=http://x", err: `unknown parameter "endpiont"`},
		{url: "s3://Ckpt", err: `bucket: "Ckpt" is not a bucket name`},
		{url: "s3://ckpt:9000", err: "a port is not allowed"},
		{url: "s3://ckpt/a/../b", err: "prefix:"},
		{url: "s3://AKID:s3cr3t@ckpt", err: "must not carry credentials"},
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
		Prefix: "a//b", Region: "Mars 1", Endpoint: "http://host/path",
		Auth: awsauth.Options{SessionToken: "tok"},
	}.Validate()
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("%v is not a *ConfigError", e)
		}
		fields = append(fields, ce.Field)
	}
	want := []string{"bucket", "prefix", "region", "endpoint", "auth.awsSessionToken"}
	if d := cmp.Diff(want, fields); d != "" {
		t.Fatalf("fields (-want +got):\n%s", d)
	}
}

func TestDefaults(t *testing.T) {
	for in, want := range map[string]string{"": "", "/": "", "a": "a/", "/a/b/": "a/b/"} {
		if got := (Config{Prefix: in}).withDefaults().Prefix; got != want {
			t.Errorf("prefix %q normalised to %q, want %q", in, got, want)
		}
	}
}
