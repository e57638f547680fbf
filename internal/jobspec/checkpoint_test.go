package jobspec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/dynamodb"
	"github.com/sluicehq/sluice/pkg/checkpoint/s3"
)

func compileCheckpointYAML(t *testing.T, checkpointYAML string) (*Job, error) {
	t.Helper()
	spec, err := ParseYAML([]byte(good + checkpointYAML))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return Compile(spec)
}

func TestCompileCheckpoint(t *testing.T) {
	ignore := cmpopts.IgnoreFields(dynamodb.Config{}, "Logger")
	ignoreS3 := cmpopts.IgnoreFields(s3.Config{}, "Logger")
	for _, tc := range []struct {
		name   string
		yaml   string
		want   checkpointConfig
		retain int
	}{
		{"dynamodb defaults", "checkpoint: {dynamodb: {}}\n",
			dynamoCheckpoint{retain: 100}, 100},
		{"dynamodb", "checkpoint: {dynamodb: {table: ckpt, region: eu-west-1, endpoint: 'http://127.0.0.1:8000'}, minBatchesToRetain: 20}\n",
			dynamoCheckpoint{cfg: dynamodb.Config{Table: "ckpt", Region: "eu-west-1", Endpoint: "http://127.0.0.1:8000"}, retain: 20}, 20},
		{"s3 with static keys", "checkpoint: {s3: {bucket: ckpt, prefix: prod/, auth: {awsAccessKey: AKID, awsSecretKey: s}}}\n",
			s3Checkpoint{cfg: s3.Config{Bucket: "ckpt", Prefix: "prod/", Auth: awsauth.Options{AccessKey: "AKID", SecretKey: "s"}}, retain: 100}, 100},
		{"s3 with a role", "checkpoint: {s3: {bucket: ckpt, region: us-west-2, auth: {roleArn: 'arn:aws:iam::123456789012:role/ckpt', roleExternalId: x}}}\n",
			s3Checkpoint{cfg: s3.Config{Bucket: "ckpt", Region: "us-west-2",
				Auth: awsauth.Options{RoleARN: "arn:aws:iam::123456789012:role/ckpt", RoleExternalID: "x"}}, retain: 100}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := compileCheckpointYAML(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, j.checkpoint, cmp.AllowUnexported(dynamoCheckpoint{}, s3Checkpoint{}), ignore, ignoreS3); d != "" {
				t.Fatalf("checkpoint config (-want +got):\n%s", d)
			}
			if got := j.MinBatchesToRetain(); got != tc.retain {
				t.Fatalf("MinBatchesToRetain() = %d, want %d", got, tc.retain)
			}
		})
	}
}

func TestCompileWithoutCheckpoint(t *testing.T) {
	j, err := compileCheckpointYAML(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if j.MinBatchesToRetain() != 0 {
		t.Fatalf("MinBatchesToRetain() = %d without a checkpoint block, want 0 (the driver's)", j.MinBatchesToRetain())
	}
	if s, err := j.OpenCheckpoint(context.Background()); s != nil || err != nil {
		t.Fatalf("OpenCheckpoint() = %v, %v; want nil, nil", s, err)
	}
}

func TestCompileCheckpointRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, field, want string
	}{
		{"no store", "checkpoint: {minBatchesToRetain: 5}\n", "checkpoint", "one of dynamodb, s3"},
		{"negative retention", "checkpoint: {dynamodb: {}, minBatchesToRetain: -1}\n", "checkpoint.minBatchesToRetain", "at least 1"},
		{"s3 without bucket", "checkpoint: {s3: {prefix: x}}\n", "checkpoint.s3.bucket", "is required"},
		{"bad bucket", "checkpoint: {s3: {bucket: Bad_Bucket}}\n", "checkpoint.s3.bucket", "not a bucket name"},
		{"bad prefix", "checkpoint: {s3: {bucket: ckpt, prefix: 'a/../b'}}\n", "checkpoint.s3.prefix", "segments"},
		{"bad table", "checkpoint: {dynamodb: {table: 'a b'}}\n", "checkpoint.dynamodb.table", "must be 3-255"},
		{"bad endpoint", "checkpoint: {dynamodb: {endpoint: 'localhost:8000'}}\n", "checkpoint.dynamodb.endpoint", "must be a URL"},
		{"bad region", "checkpoint: {s3: {bucket: ckpt, region: 'EU West'}}\n", "checkpoint.s3.region", "region name"},
		{"secret without key", "checkpoint: {s3: {bucket: ckpt, auth: {awsSecretKey: s3cr3t}}}\n", "checkpoint.s3.auth.awsAccessKey", "is required"},
		{"external id without role", "checkpoint: {dynamodb: {auth: {roleExternalId: x}}}\n", "checkpoint.dynamodb.auth.roleArn", "is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileCheckpointYAML(t, tc.yaml)
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("Compile() = %v, want a *jobspec.Error", err)
			}
			for _, v := range je.List {
				if v.Field == tc.field && strings.Contains(v.Description, tc.want) {
					if strings.Contains(v.Description, "s3cr3t") {
						t.Fatalf("violation shows the secret: %+v", v)
					}
					return
				}
			}
			t.Fatalf("violations %+v, want %s containing %q", je.List, tc.field, tc.want)
		})
	}
}

// TestCompileCheckpointReportsEveryProblem: several bad fields, one error
// each, as the API answers them.
func TestCompileCheckpointReportsEveryProblem(t *testing.T) {
	_, err := compileCheckpointYAML(t, "checkpoint: {s3: {region: 'x y', endpoint: 'ftp://h'}, minBatchesToRetain: -3}\n")
	var je *Error
	if !errors.As(err, &je) {
		t.Fatalf("Compile() = %v", err)
	}
	var fields []string
	for _, v := range je.List {
		fields = append(fields, v.Field)
	}
	want := []string{"checkpoint.minBatchesToRetain", "checkpoint.s3.bucket", "checkpoint.s3.region", "checkpoint.s3.endpoint"}
	if d := cmp.Diff(want, fields); d != "" {
		t.Fatalf("fields (-want +got):\n%s", d)
	}
}

func TestRedactCheckpoint(t *testing.T) {
	for _, kind := range []string{"dynamodb: {", "s3: {bucket: ckpt, "} {
		spec, err := ParseYAML([]byte(good + "checkpoint: {" + kind + "auth: {awsAccessKey: AKID, awsSecretKey: s3cr3t, awsSessionToken: t0ken}}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		r := Redact(spec)
		a := r.GetCheckpoint().GetDynamodb().GetAuth()
		if a == nil {
			a = r.GetCheckpoint().GetS3().GetAuth()
		}
		if a.GetAwsSecretKey() != Redacted || a.GetAwsSessionToken() != Redacted || a.GetAwsAccessKey() != "AKID" {
			t.Fatalf("%s redacted auth: %v", kind, a)
		}
		if spec.GetCheckpoint().String() == r.GetCheckpoint().String() {
			t.Fatal("Redact changed the original")
		}
	}
}

// TestOpenCheckpoint opens the stores a spec describes against the real
// emulators, and writes and reads through them.
func TestOpenCheckpoint(t *testing.T) {
	d := testenv.StartDynalite(t)
	m := testenv.StartMinIO(t)
	makeCheckpointBucket(t, m, "job-ckpt")
	fence := checkpoint.Fence{Key: "/sluice/leader/1", Epoch: 7}
	for _, tc := range []struct{ name, yaml string }{
		{"dynamodb", fmt.Sprintf("checkpoint: {dynamodb: {table: jobckpt, region: %s, endpoint: '%s', auth: {awsAccessKey: %s, awsSecretKey: %s}}}\n",
			d.Region, d.Endpoint, d.AccessKey, d.SecretKey)},
		{"s3", fmt.Sprintf("checkpoint: {s3: {bucket: job-ckpt, prefix: treasury, region: %s, endpoint: '%s', auth: {awsAccessKey: %s, awsSecretKey: %s}}}\n",
			m.Region, m.Endpoint, m.AccessKey, m.SecretKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, err := compileCheckpointYAML(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := j.OpenCheckpoint(ctx)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			if err := s.PutCommit(ctx, fence, "treasury", checkpoint.Commit{Batch: 3}); err != nil {
				t.Fatal(err)
			}
			c, err := s.LatestCommit(ctx, "treasury")
			if err != nil || c.Batch != 3 {
				t.Fatalf("latest commit = %d, %v", c.Batch, err)
			}
		})
	}
}

func makeCheckpointBucket(t *testing.T, m testenv.MinIO, bucket string) {
	t.Helper()
	cfg, err := awsauth.Load(context.Background(), awsauth.Options{Region: m.Region, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	c := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		o.BaseEndpoint = aws.String(m.Endpoint)
		o.UsePathStyle = true
	})
	if _, err := c.CreateBucket(context.Background(), &awss3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
}
