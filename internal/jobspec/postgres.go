package jobspec

// SCAFFOLD: the sinks helper replaces this file.

import sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"

func compilePostgresSink(k *sluicev1.PostgresSink, field string, e *Error) sinkConfig {
	e.add(field, "is not available yet")
	return nil
}

func redactPostgresSink(k *sluicev1.PostgresSink) {}
