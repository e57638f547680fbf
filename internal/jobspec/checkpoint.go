package jobspec

import (
	"context"
	"errors"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/dynamodb"
	"github.com/sluicehq/sluice/pkg/checkpoint/s3"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// DefaultMinBatchesToRetain is the retention of a job's own checkpoint
// store when the spec does not set minBatchesToRetain (Spark's default for
// spark.sql.streaming.minBatchesToRetain).
const DefaultMinBatchesToRetain = 100

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

type s3Checkpoint struct {
	cfg    s3.Config
	retain int
}

func (c s3Checkpoint) open(ctx context.Context) (checkpoint.Store, error) {
	s, err := s3.Open(ctx, c.cfg)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

func (c s3Checkpoint) minBatchesToRetain() int { return c.retain }

// compileCheckpoint validates the job's own checkpoint store (field is
// "checkpoint"): exactly one of dynamodb and s3, and minBatchesToRetain.
// Nothing is contacted here; the store is opened by Job.OpenCheckpoint.
func compileCheckpoint(c *sluicev1.Checkpoint, field string, e *Error) checkpointConfig {
	retain := DefaultMinBatchesToRetain
	switch n := c.GetMinBatchesToRetain(); {
	case n < 0:
		e.add(field+".minBatchesToRetain", "must be at least 1 (got %d)", n)
	case n > 0:
		retain = int(n)
	}
	switch k := c.GetKind().(type) {
	case *sluicev1.Checkpoint_Dynamodb:
		f := field + ".dynamodb"
		cfg := dynamoDBCheckpointConfig(k.Dynamodb)
		if !checkpointValid(cfg.Validate(), f, e) {
			return nil
		}
		return dynamoCheckpoint{cfg: cfg, retain: retain}
	case *sluicev1.Checkpoint_S3:
		f := field + ".s3"
		cfg := s3CheckpointConfig(k.S3)
		if !checkpointValid(cfg.Validate(), f, e) {
			return nil
		}
		return s3Checkpoint{cfg: cfg, retain: retain}
	default:
		e.add(field, "needs a store: one of dynamodb, s3 (leave checkpoint out to keep the job's checkpoints in the driver's store)")
		return nil
	}
}

// checkpointValid adds each *ConfigError in err under field and reports
// whether err was nil.
func checkpointValid(err error, field string, e *Error) bool {
	if err == nil {
		return true
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, err := range errs {
		var de *dynamodb.ConfigError
		var se *s3.ConfigError
		switch {
		case errors.As(err, &de):
			e.add(field+"."+de.Field, "%s", de.Reason)
		case errors.As(err, &se):
			e.add(field+"."+se.Field, "%s", se.Reason)
		default:
			e.add(field, "%v", err)
		}
	}
	return false
}

// dynamoDBCheckpointConfig converts checkpoint.dynamodb.
func dynamoDBCheckpointConfig(d *sluicev1.DynamoDBCheckpoint) dynamodb.Config {
	return dynamodb.Config{
		Table:    d.GetTable(),
		Region:   d.GetRegion(),
		Endpoint: d.GetEndpoint(),
		Auth:     awsAuthOptions(d.GetAuth()),
	}
}

// s3CheckpointConfig converts checkpoint.s3.
func s3CheckpointConfig(c *sluicev1.S3Checkpoint) s3.Config {
	return s3.Config{
		Bucket:   c.GetBucket(),
		Prefix:   c.GetPrefix(),
		Region:   c.GetRegion(),
		Endpoint: c.GetEndpoint(),
		Auth:     awsAuthOptions(c.GetAuth()),
	}
}
