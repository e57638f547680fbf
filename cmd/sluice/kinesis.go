package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sluicehq/sluice/internal/flagenv"
	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
)

const kinesisUsage = `sluice kinesis: manage Kinesis enhanced fan-out consumers

Usage:
  sluice kinesis consumers list       --stream S [flags]                  list the stream's registered consumers
  sluice kinesis consumers register   --stream S --consumer NAME [flags]  register (or reuse) a consumer and wait until it is ACTIVE
  sluice kinesis consumers deregister --stream S --consumer NAME [flags]  deregister a consumer (--wait: until it is gone)

A registered consumer is billed per consumer-shard-hour and per GB read, whether
or not a job uses it: deregister the ones you no longer need.

Credentials are the jobs' options: static keys (--aws-access-key and
--aws-secret-key, the secret best given as SLUICE_AWS_SECRET_KEY), otherwise the
SDK's default chain (AWS_* variables, shared config, instance or pod role);
--role-arn assumes a role through STS on top of either. Every flag can be set as
SLUICE_<FLAG> (e.g. SLUICE_REGION).

Flags:
`

// awsFlags are the credential and endpoint options every Kinesis job has,
// as command-line flags.
type awsFlags struct {
	region, endpoint                                 string
	accessKey, secretKey, sessionToken               string
	roleARN, roleExternalID, roleSessionName, stsURL string
}

func (a *awsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.region, "region", "", "AWS region (default: the SDK's, then us-east-1)")
	fs.StringVar(&a.endpoint, "endpoint", "", "Kinesis endpoint URL (a VPC endpoint, or kinesis-mock)")
	fs.StringVar(&a.accessKey, "aws-access-key", "", "static access key id (with --aws-secret-key)")
	fs.StringVar(&a.secretKey, "aws-secret-key", "", "static secret key; prefer $SLUICE_AWS_SECRET_KEY (never printed)")
	fs.StringVar(&a.sessionToken, "aws-session-token", "", "session token of temporary static credentials (never printed)")
	fs.StringVar(&a.roleARN, "role-arn", "", "role to assume through STS (cross-account)")
	fs.StringVar(&a.roleExternalID, "role-external-id", "", "external id for --role-arn")
	fs.StringVar(&a.roleSessionName, "role-session-name", "", "session name for --role-arn (default "+awsauth.DefaultSessionName+")")
	fs.StringVar(&a.stsURL, "sts-endpoint", "", "STS endpoint URL for --role-arn")
}

// validate reports inconsistent flags by their flag names (awsauth names
// the job spec's fields).
func (a *awsFlags) validate() error {
	switch {
	case a.accessKey != "" && a.secretKey == "":
		return errors.New("--aws-secret-key (or SLUICE_AWS_SECRET_KEY) is required with --aws-access-key")
	case a.accessKey == "" && a.secretKey != "":
		return errors.New("--aws-access-key is required with --aws-secret-key")
	case a.sessionToken != "" && a.accessKey == "":
		return errors.New("--aws-session-token needs --aws-access-key and --aws-secret-key")
	case a.roleARN == "" && (a.roleExternalID != "" || a.roleSessionName != "" || a.stsURL != ""):
		return errors.New("--role-arn is required with --role-external-id, --role-session-name or --sts-endpoint")
	}
	return nil
}

func (a *awsFlags) client(ctx context.Context) (*kinesis.Client, error) {
	if err := a.validate(); err != nil {
		return nil, err
	}
	cfg, err := awsauth.Load(ctx, awsauth.Options{
		Region: a.region, AccessKey: a.accessKey, SecretKey: a.secretKey, SessionToken: a.sessionToken,
		RoleARN: a.roleARN, RoleExternalID: a.roleExternalID, RoleSessionName: a.roleSessionName, STSEndpoint: a.stsURL,
	})
	if err != nil {
		return nil, err
	}
	return kinesis.NewFromConfig(cfg, func(o *kinesis.Options) {
		if a.endpoint != "" {
			o.BaseEndpoint = aws.String(a.endpoint)
		}
	}), nil
}

// runKinesis is `sluice kinesis consumers list|register|deregister`, the
// counterpart of Databricks' AWSKinesisConsumerManager: it talks to Kinesis
// directly, not to a driver.
func runKinesis(ctx context.Context, args []string, out io.Writer) error {
	if len(args) < 2 || args[0] != "consumers" {
		fmt.Fprint(os.Stderr, kinesisUsage)
		return errors.New("usage: sluice kinesis consumers list|register|deregister --stream S")
	}
	verb := args[1]
	switch verb {
	case "list", "register", "deregister":
	default:
		fmt.Fprint(os.Stderr, kinesisUsage)
		return fmt.Errorf("unknown consumers command %q: list, register or deregister", verb)
	}
	fs := flag.NewFlagSet("kinesis consumers "+verb, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, kinesisUsage)
		fs.PrintDefaults()
	}
	stream := fs.String("stream", "", "stream name or ARN (required)")
	consumer := fs.String("consumer", "", "consumer name (register, deregister)")
	wait := fs.Bool("wait", false, "deregister: wait until the consumer is gone, not only DELETING")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	var af awsFlags
	af.register(fs)
	if err := flagenv.Parse(fs, args[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags go after the command: sluice kinesis consumers %s --stream S)", fs.Arg(0), verb)
	}
	if *stream == "" {
		return errors.New("--stream is required (a stream name or ARN)")
	}
	if verb != "list" {
		if *consumer == "" {
			return fmt.Errorf("%s needs --consumer NAME", verb)
		}
		if err := efo.ValidateConsumerName(*consumer); err != nil {
			return fmt.Errorf("--consumer: %w", err)
		}
	}
	if *timeout <= 0 {
		return fmt.Errorf("--timeout (%s) must be positive", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client, err := af.client(ctx)
	if err != nil {
		return err
	}
	streamARN, err := efo.StreamARN(ctx, client, *stream)
	if err != nil {
		return err
	}

	switch verb {
	case "list":
		cs, err := efo.ListConsumers(ctx, client, streamARN)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			fmt.Fprintf(out, "no consumers registered on %s\n", streamARN)
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATUS\tCREATED\tARN")
		for _, c := range cs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Status, c.Created.Local().Format(time.DateTime), c.ARN)
		}
		return tw.Flush()
	case "register":
		c, err := efo.RegisterConsumer(ctx, client, streamARN, *consumer, func(s efo.Status) {
			fmt.Fprintln(out, s.Message)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "consumer %s on %s is ACTIVE\nARN: %s\n", c.Name, streamARN, c.ARN)
		fmt.Fprintln(out, "it is billed per shard-hour until deregistered: sluice kinesis consumers deregister --stream",
			*stream, "--consumer", c.Name)
		return nil
	default: // deregister
		if _, err := efo.DescribeConsumer(ctx, client, streamARN, *consumer); errors.Is(err, efo.ErrConsumerNotFound) {
			fmt.Fprintf(out, "consumer %s is not registered on %s; nothing to do\n", *consumer, streamARN)
			return nil
		}
		if err := efo.DeregisterConsumer(ctx, client, streamARN, *consumer, *wait); err != nil {
			return err
		}
		if *wait {
			fmt.Fprintf(out, "consumer %s on %s deregistered\n", *consumer, streamARN)
		} else {
			fmt.Fprintf(out, "consumer %s on %s is being deregistered (DELETING); --wait waits until it is gone\n", *consumer, streamARN)
		}
		return nil
	}
}
