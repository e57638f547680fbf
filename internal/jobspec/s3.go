package jobspec

// SCAFFOLD: the sinks helper replaces this file.

import sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"

func compileS3Sink(k *sluicev1.S3Sink, field string, e *Error) sinkConfig {
	e.add(field, "is not available yet")
	return nil
}
