package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/s3"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The S3 sink (sink.s3, deadLetter.s3).

type s3Sink struct{ cfg s3.Config }

func (s s3Sink) newSink(io.Writer) (connectors.Sink, error) { return s3.New(s.cfg) }

// compileS3Sink validates an S3 sink. Its secrets are marked in
// secrets.Fields (AwsAuth).
func compileS3Sink(k *sluicev1.S3Sink, f fieldErrors, _ sinkRole) sinkConfig {
	cfg := S3SinkConfig(k)
	if !f.addConfig(cfg.Validate(), s3Option) {
		return nil
	}
	return s3Sink{cfg: cfg}
}

var s3Option = typedOption(func(e *s3.ConfigError) (string, string) { return e.Field, e.Reason })

// S3SinkConfig converts the proto options.
func S3SinkConfig(k *sluicev1.S3Sink) s3.Config {
	return s3.Config{
		Bucket:      k.GetBucket(),
		Prefix:      k.GetPrefix(),
		Region:      k.GetRegion(),
		Endpoint:    k.GetEndpoint(),
		Format:      k.GetFormat(),
		PartitionBy: k.GetPartitionBy(),
		Auth:        awsAuthOptions(k.GetAuth()),
	}
}

// awsAuthOptions converts an auth block (nil: the default chain) for the S3
// sink and the S3 and DynamoDB checkpoint stores. It leaves Region empty:
// each of them applies its own region option.
func awsAuthOptions(a *sluicev1.AwsAuth) awsauth.Options {
	return awsauth.Options{
		AccessKey:       a.GetAwsAccessKey(),
		SecretKey:       a.GetAwsSecretKey(),
		SessionToken:    a.GetAwsSessionToken(),
		RoleARN:         a.GetRoleArn(),
		RoleExternalID:  a.GetRoleExternalId(),
		RoleSessionName: a.GetRoleSessionName(),
		STSEndpoint:     a.GetStsEndpoint(),
	}
}
