package awsauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // substring of the error; "" = valid
	}{
		{"default chain", Options{}, ""},
		{"static", Options{AccessKey: "AKIA", SecretKey: "s"}, ""},
		{"role on default chain", Options{RoleARN: "arn:aws:iam::123456789012:role/r"}, ""},
		{"secret without key", Options{SecretKey: "s"}, "awsAccessKey: is required"},
		{"key without secret", Options{AccessKey: "AKIA"}, "awsSecretKey: is required"},
		{"token alone", Options{SessionToken: "t"}, "awsSessionToken"},
		{"external id without role", Options{RoleExternalID: "x"}, "roleArn: is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadStatic(t *testing.T) {
	cfg, err := Load(context.Background(), Options{AccessKey: "AKIDSTATIC", SecretKey: "static-secret", SessionToken: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "AKIDSTATIC" || creds.SecretAccessKey != "static-secret" || creds.SessionToken != "tok" {
		t.Fatalf("credentials = %+v", creds)
	}
	if cfg.Region == "" {
		t.Fatal("region is empty; emulators need one to sign")
	}
}

// TestAssumeRole runs AssumeRole against an STS endpoint served by the test
// and checks that the role, external ID and session name are sent and the
// returned credentials are used.
func TestAssumeRole(t *testing.T) {
	var got url.Values
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse STS form: %v", err)
		}
		got = r.PostForm
		w.Header().Set("Content-Type", "text/xml")
		_, _ = w.Write([]byte(`<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<AssumeRoleResult><Credentials><AccessKeyId>AKIDASSUMED</AccessKeyId><SecretAccessKey>assumed-secret</SecretAccessKey>
<SessionToken>assumed-token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>
<AssumedRoleUser><Arn>arn:aws:sts::210987654321:assumed-role/reader/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser>
</AssumeRoleResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></AssumeRoleResponse>`))
	}))
	defer sts.Close()

	cfg, err := Load(context.Background(), Options{
		Region: "eu-west-1", AccessKey: "AKIDCALLER", SecretKey: "caller-secret",
		RoleARN: "arn:aws:iam::210987654321:role/reader", RoleExternalID: "ext-42", STSEndpoint: sts.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "AKIDASSUMED" || creds.SessionToken != "assumed-token" {
		t.Fatalf("credentials = %+v, want the assumed role's", creds)
	}
	for k, want := range map[string]string{
		"Action": "AssumeRole", "RoleArn": "arn:aws:iam::210987654321:role/reader",
		"ExternalId": "ext-42", "RoleSessionName": DefaultSessionName,
	} {
		if got.Get(k) != want {
			t.Errorf("STS %s = %q, want %q", k, got.Get(k), want)
		}
	}
}
