// Package awsauth builds an aws.Config from the credential options every AWS
// connector and store shares: static keys, the SDK's default chain, or an STS
// AssumeRole on top of either (cross-account), with the option names of the
// Databricks Kinesis connector.
package awsauth

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Options are the credential options. The zero value means the default chain
// (environment, shared config, web identity / IRSA, instance role).
type Options struct {
	Region string
	// AccessKey and SecretKey (with an optional SessionToken) are static
	// credentials; both or neither.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// RoleARN, when set, is assumed through STS with the credentials above
	// (or the default chain).
	RoleARN         string
	RoleExternalID  string
	RoleSessionName string
	// STSEndpoint overrides the STS endpoint (a regional or VPC endpoint, or
	// an emulator).
	STSEndpoint string
}

// DefaultSessionName is used for AssumeRole when RoleSessionName is empty.
const DefaultSessionName = "sluice"

// Validate reports the first inconsistent option, naming it with the job
// spec's field name.
func (o Options) Validate() error {
	switch {
	case o.AccessKey != "" && o.SecretKey == "":
		return errors.New("awsSecretKey: is required with awsAccessKey")
	case o.AccessKey == "" && o.SecretKey != "":
		return errors.New("awsAccessKey: is required with awsSecretKey")
	case o.SessionToken != "" && o.AccessKey == "":
		return errors.New("awsSessionToken: needs awsAccessKey and awsSecretKey")
	case o.RoleARN == "" && (o.RoleExternalID != "" || o.RoleSessionName != "" || o.STSEndpoint != ""):
		return errors.New("roleArn: is required with roleExternalId, roleSessionName or stsEndpoint")
	}
	return nil
}

// Load returns the aws.Config for o. It does not call AWS: credentials are
// resolved (and roles assumed) on first use, and cached by the SDK.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if err := o.Validate(); err != nil {
		return aws.Config{}, err
	}
	var opts []func(*config.LoadOptions) error
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	if o.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, o.SessionToken)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		// Emulators and most services need some region to sign requests.
		cfg.Region = "us-east-1"
	}
	if o.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(so *sts.Options) {
			if o.STSEndpoint != "" {
				so.BaseEndpoint = aws.String(o.STSEndpoint)
			}
		})
		name := o.RoleSessionName
		if name == "" {
			name = DefaultSessionName
		}
		provider := stscreds.NewAssumeRoleProvider(stsClient, o.RoleARN, func(ao *stscreds.AssumeRoleOptions) {
			ao.RoleSessionName = name
			if o.RoleExternalID != "" {
				ao.ExternalID = aws.String(o.RoleExternalID)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(provider)
	}
	return cfg, nil
}
