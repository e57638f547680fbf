package e2e

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/awsauth"
)

// setAWSEnv gives the processes the test starts AWS credentials through the
// default chain, as a pod would get them.
func setAWSEnv(t *testing.T, key, secret, region string) {
	t.Setenv("AWS_ACCESS_KEY_ID", key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	t.Setenv("AWS_REGION", region)
}

func createBucket(t *testing.T, m testenv.MinIO, bucket string) {
	t.Helper()
	ctx := context.Background()
	cfg, err := awsauth.Load(ctx, awsauth.Options{Region: m.Region, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(m.Endpoint)
		o.UsePathStyle = true
	})
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
}
