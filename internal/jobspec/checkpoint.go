package jobspec

// SCAFFOLD: the stores helper replaces this file.

import sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"

func compileCheckpoint(c *sluicev1.Checkpoint, field string, e *Error) checkpointConfig {
	e.add(field, "is not available yet")
	return nil
}

func redactCheckpoint(c *sluicev1.Checkpoint) {
	redactAWSAuth(c.GetDynamodb().GetAuth())
	redactAWSAuth(c.GetS3().GetAuth())
}
