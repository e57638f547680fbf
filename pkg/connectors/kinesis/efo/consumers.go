package efo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// ConsumerAPI is the part of *kinesis.Client that consumer management uses.
type ConsumerAPI interface {
	DescribeStreamSummary(ctx context.Context, in *kinesis.DescribeStreamSummaryInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error)
	RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error)
	DescribeStreamConsumer(ctx context.Context, in *kinesis.DescribeStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error)
	DeregisterStreamConsumer(ctx context.Context, in *kinesis.DeregisterStreamConsumerInput, optFns ...func(*kinesis.Options)) (*kinesis.DeregisterStreamConsumerOutput, error)
	ListStreamConsumers(ctx context.Context, in *kinesis.ListStreamConsumersInput, optFns ...func(*kinesis.Options)) (*kinesis.ListStreamConsumersOutput, error)
}

var _ ConsumerAPI = (*kinesis.Client)(nil)

// Consumer is a registered consumer as the service describes it.
type Consumer struct {
	Name      string
	ARN       string
	StreamARN string
	Status    types.ConsumerStatus
	Created   time.Time
}

// StreamARN returns the ARN of stream, which is a stream name or already an
// ARN; either way the stream must exist (DescribeStreamSummary).
func StreamARN(ctx context.Context, api ConsumerAPI, stream string) (string, error) {
	in := &kinesis.DescribeStreamSummaryInput{}
	if strings.HasPrefix(stream, "arn:") {
		in.StreamARN = aws.String(stream)
	} else {
		in.StreamName = aws.String(stream)
	}
	out, err := api.DescribeStreamSummary(ctx, in)
	if err != nil {
		return "", fmt.Errorf("describe stream %s: %w", stream, err)
	}
	if out.StreamDescriptionSummary == nil || aws.ToString(out.StreamDescriptionSummary.StreamARN) == "" {
		return "", fmt.Errorf("describe stream %s: the answer has no stream ARN", stream)
	}
	return aws.ToString(out.StreamDescriptionSummary.StreamARN), nil
}

// ListConsumers returns every consumer registered on the stream (all pages).
func ListConsumers(ctx context.Context, api ConsumerAPI, streamARN string) ([]Consumer, error) {
	var all []Consumer
	p := kinesis.NewListStreamConsumersPaginator(api, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(streamARN)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list consumers of %s: %w", streamARN, err)
		}
		for _, c := range out.Consumers {
			all = append(all, Consumer{
				Name: aws.ToString(c.ConsumerName), ARN: aws.ToString(c.ConsumerARN), StreamARN: streamARN,
				Status: c.ConsumerStatus, Created: aws.ToTime(c.ConsumerCreationTimestamp),
			})
		}
	}
	return all, nil
}

// DescribeConsumer describes the consumer called name on the stream. A
// consumer that is not registered is an error wrapping ErrConsumerNotFound.
func DescribeConsumer(ctx context.Context, api ConsumerAPI, streamARN, name string) (Consumer, error) {
	out, err := api.DescribeStreamConsumer(ctx, &kinesis.DescribeStreamConsumerInput{
		StreamARN: aws.String(streamARN), ConsumerName: aws.String(name),
	})
	if err != nil {
		if isNotFound(err) {
			return Consumer{}, fmt.Errorf("consumer %s on %s: %w", name, streamARN, ErrConsumerNotFound)
		}
		return Consumer{}, fmt.Errorf("describe consumer %s on %s: %w", name, streamARN, err)
	}
	d := out.ConsumerDescription
	if d == nil {
		return Consumer{}, fmt.Errorf("describe consumer %s on %s: the answer has no description", name, streamARN)
	}
	return Consumer{
		Name: aws.ToString(d.ConsumerName), ARN: aws.ToString(d.ConsumerARN), StreamARN: streamARN,
		Status: d.ConsumerStatus, Created: aws.ToTime(d.ConsumerCreationTimestamp),
	}, nil
}

// ActiveConsumerARN returns the ARN of the consumer called name if it is
// ACTIVE: what an executor needs before subscribing. A missing consumer wraps
// ErrConsumerNotFound, one in CREATING or DELETING wraps
// ErrConsumerNotActive; the driver's Manager is what waits those out.
func ActiveConsumerARN(ctx context.Context, api ConsumerAPI, streamARN, name string) (string, error) {
	c, err := DescribeConsumer(ctx, api, streamARN, name)
	if err != nil {
		return "", err
	}
	if c.Status != types.ConsumerStatusActive {
		return "", fmt.Errorf("consumer %s on %s is %s: %w", name, streamARN, c.Status, ErrConsumerNotActive)
	}
	return c.ARN, nil
}

// registerConsumer asks for a registration. It reports whether the service
// accepted it; a ResourceInUseException (the name exists, perhaps still
// DELETING, or another registration raced ours) is not an error: the caller
// describes the consumer again to see which.
func registerConsumer(ctx context.Context, api ConsumerAPI, streamARN, name string) (registered bool, err error) {
	_, err = api.RegisterStreamConsumer(ctx, &kinesis.RegisterStreamConsumerInput{
		StreamARN: aws.String(streamARN), ConsumerName: aws.String(name),
	})
	if err == nil {
		return true, nil
	}
	if isResourceInUse(err) {
		return false, nil
	}
	return false, fmt.Errorf("register consumer %s on %s: %w", name, streamARN, err)
}

// DeregisterConsumer deregisters the consumer called name. It returns once
// the service accepted the request (the consumer is then DELETING), or, with
// wait, once the consumer is gone, polling with back-off until ctx ends. A
// consumer that is not registered or already DELETING is not an error:
// deregistering is idempotent. One still CREATING is waited for first, since
// the service deregisters only ACTIVE consumers.
func DeregisterConsumer(ctx context.Context, api ConsumerAPI, streamARN, name string, wait bool) error {
	bo := backoff{min: 250 * time.Millisecond, max: 5 * time.Second}
	for attempt := 1; ; attempt++ {
		_, err := api.DeregisterStreamConsumer(ctx, &kinesis.DeregisterStreamConsumerInput{
			StreamARN: aws.String(streamARN), ConsumerName: aws.String(name),
		})
		if err == nil || isNotFound(err) {
			break
		}
		if !isResourceInUse(err) {
			return fmt.Errorf("deregister consumer %s on %s: %w", name, streamARN, err)
		}
		// The consumer is not ACTIVE: already DELETING (done), or still
		// CREATING (the service only deregisters ACTIVE consumers: wait).
		c, derr := DescribeConsumer(ctx, api, streamARN, name)
		if errors.Is(derr, ErrConsumerNotFound) || (derr == nil && c.Status == types.ConsumerStatusDeleting) {
			break
		}
		if serr := sleep(ctx, nil, bo.delay(attempt)); serr != nil {
			return fmt.Errorf("deregister consumer %s on %s: %w (last refusal: %w)", name, streamARN, serr, err)
		}
	}
	if !wait {
		return nil
	}
	for attempt := 1; ; attempt++ {
		_, err := DescribeConsumer(ctx, api, streamARN, name)
		if errors.Is(err, ErrConsumerNotFound) {
			return nil
		}
		if err := sleep(ctx, nil, bo.delay(attempt)); err != nil {
			return fmt.Errorf("wait for consumer %s on %s to be deleted: %w", name, streamARN, err)
		}
	}
}
