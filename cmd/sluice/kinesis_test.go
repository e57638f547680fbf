package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
)

// sluiceKinesis runs the CLI in process and returns its output.
func sluiceKinesis(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, append([]string{"kinesis", "consumers"}, args...), &out)
	return out.String(), err
}

// TestKinesisConsumersCLI registers, lists, reuses and deregisters a
// consumer on kinesis-mock through `sluice kinesis consumers`, with the
// secret key given through the environment as documented.
func TestKinesisConsumersCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kinesis-mock")
	}
	mock := testenv.StartKinesis(t, testenv.KinesisEnv("REGISTER_STREAM_CONSUMER_DURATION", "1s"))
	testenv.CreateStream(t, mock.Client(t, ""), "clicks", 1)
	const secret = "s3cr3t-never-shown"
	t.Setenv("SLUICE_AWS_SECRET_KEY", secret)
	creds := []string{"--stream", "clicks", "--endpoint", mock.Endpoint, "--region", mock.Region, "--aws-access-key", "cli-test-key"}

	out, err := sluiceKinesis(t, append([]string{"list"}, creds...)...)
	if err != nil || !strings.Contains(out, "no consumers registered on arn:aws:kinesis:us-east-1:000000000000:stream/clicks") {
		t.Fatalf("list on a new stream: %v\n%s", err, out)
	}

	out, err = sluiceKinesis(t, append([]string{"register", "--consumer", "analytics"}, creds...)...)
	if err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	if !strings.Contains(out, "is CREATING") || !strings.Contains(out, "consumer analytics on arn:aws:kinesis:us-east-1:000000000000:stream/clicks is ACTIVE") {
		t.Errorf("register output does not show the wait and the result:\n%s", out)
	}
	arn := arnLine(t, out)

	out, err = sluiceKinesis(t, append([]string{"list"}, creds...)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "analytics  ACTIVE") || !strings.Contains(out, arn) {
		t.Errorf("list does not show the ACTIVE consumer %s:\n%s", arn, out)
	}

	// Registering again reuses the consumer: same ARN.
	out, err = sluiceKinesis(t, append([]string{"register", "--consumer", "analytics"}, creds...)...)
	if err != nil {
		t.Fatal(err)
	}
	if got := arnLine(t, out); got != arn {
		t.Errorf("second register gave %s, want the existing %s", got, arn)
	}

	out, err = sluiceKinesis(t, append([]string{"deregister", "--consumer", "analytics", "--wait"}, creds...)...)
	if err != nil || !strings.Contains(out, "consumer analytics on arn:aws:kinesis:us-east-1:000000000000:stream/clicks deregistered") {
		t.Fatalf("deregister: %v\n%s", err, out)
	}
	out, err = sluiceKinesis(t, append([]string{"list"}, creds...)...)
	if err != nil || !strings.Contains(out, "no consumers registered") {
		t.Fatalf("list after deregister: %v\n%s", err, out)
	}
	out, err = sluiceKinesis(t, append([]string{"deregister", "--consumer", "analytics"}, creds...)...)
	if err != nil || !strings.Contains(out, "is not registered") {
		t.Fatalf("deregister of a missing consumer: %v\n%s", err, out)
	}

	// A stream that does not exist: the service's answer, and never the
	// secret.
	out, err = sluiceKinesis(t, "list", "--stream", "nope", "--endpoint", mock.Endpoint, "--aws-access-key", "cli-test-key")
	if err == nil || !strings.Contains(err.Error(), "ResourceNotFoundException") {
		t.Fatalf("list of a missing stream: %v\n%s", err, out)
	}
	if strings.Contains(out+err.Error(), secret) {
		t.Fatalf("the secret key was shown: %v\n%s", err, out)
	}
}

func arnLine(t *testing.T, out string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if arn, ok := strings.CutPrefix(l, "ARN: "); ok {
			return arn
		}
	}
	t.Fatalf("no ARN line in:\n%s", out)
	return ""
}

func TestKinesisConsumersCLIFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no subcommand", []string{}, "usage: sluice kinesis consumers"},
		{"unknown verb", []string{"delete", "--stream", "s"}, `unknown consumers command "delete"`},
		{"no stream", []string{"list"}, "--stream is required"},
		{"register without name", []string{"register", "--stream", "s"}, "register needs --consumer NAME"},
		{"stray argument", []string{"list", "--stream", "s", "extra"}, `unexpected argument "extra"`},
		{"secret without key", []string{"list", "--stream", "s", "--aws-secret-key", "x"}, "--aws-access-key is required with --aws-secret-key"},
		{"key without secret", []string{"list", "--stream", "s", "--aws-access-key", "x"}, "--aws-secret-key (or SLUICE_AWS_SECRET_KEY) is required"},
		{"token without keys", []string{"list", "--stream", "s", "--aws-session-token", "x"}, "--aws-session-token needs"},
		{"external id without role", []string{"list", "--stream", "s", "--role-external-id", "x"}, "--role-arn is required with"},
		{"bad timeout", []string{"list", "--stream", "s", "--timeout", "0s"}, "--timeout (0s) must be positive"},
		{"bad consumer name", []string{"register", "--stream", "s", "--consumer", "a b"}, `--consumer: consumer name "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SLUICE_AWS_SECRET_KEY", "")
			args := tc.args
			if len(args) == 0 {
				var out bytes.Buffer
				err := run(context.Background(), []string{"kinesis"}, &out)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			_, err := sluiceKinesis(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
	// RegisterConsumer refuses a name the service would refuse, before any
	// call.
	if _, err := efo.RegisterConsumer(context.Background(), nil, "arn", "a b", nil); err == nil || !strings.Contains(err.Error(), `consumer name "a b"`) {
		t.Errorf("RegisterConsumer with a bad name = %v", err)
	}
}
