package jobspec

import (
	"context"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/dynamodb"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The DynamoDB checkpoint store (checkpoint.dynamodb).

type dynamoCheckpoint struct {
	cfg    dynamodb.Config
	retain int
}

func (d dynamoCheckpoint) open(ctx context.Context) (checkpoint.Store, error) {
	s, err := dynamodb.Open(ctx, d.cfg)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

func (d dynamoCheckpoint) minBatchesToRetain() int { return d.retain }

func compileDynamoDBCheckpoint(d *sluicev1.DynamoDBCheckpoint, f fieldErrors, retain int) checkpointConfig {
	cfg := dynamoDBCheckpointConfig(d)
	if !f.addConfig(cfg.Validate(), dynamoDBOption) {
		return nil
	}
	return dynamoCheckpoint{cfg: cfg, retain: retain}
}

var dynamoDBOption = typedOption(func(e *dynamodb.ConfigError) (string, string) { return e.Field, e.Reason })

// dynamoDBCheckpointConfig converts checkpoint.dynamodb.
func dynamoDBCheckpointConfig(d *sluicev1.DynamoDBCheckpoint) dynamodb.Config {
	return dynamodb.Config{
		Table:    d.GetTable(),
		Region:   d.GetRegion(),
		Endpoint: d.GetEndpoint(),
		Auth:     awsAuthOptions(d.GetAuth()),
	}
}
