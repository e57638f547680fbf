package jobspec

import (
	"context"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/s3"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The S3 checkpoint store (checkpoint.s3).

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

func compileS3Checkpoint(c *sluicev1.S3Checkpoint, f fieldErrors, retain int) checkpointConfig {
	cfg := s3CheckpointConfig(c)
	if !f.addConfig(cfg.Validate(), s3CheckpointOption) {
		return nil
	}
	return s3Checkpoint{cfg: cfg, retain: retain}
}

var s3CheckpointOption = typedOption(func(e *s3.ConfigError) (string, string) { return e.Field, e.Reason })

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
