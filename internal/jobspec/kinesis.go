package jobspec

// SCAFFOLD: the Kinesis helper replaces this file.

import sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"

func compileKinesisSource(k *sluicev1.KinesisSource, field string, e *Error) sourceConfig {
	e.add(field, "is not available yet")
	return nil
}

func compileKinesisSink(k *sluicev1.KinesisSink, field string, e *Error) sinkConfig {
	e.add(field, "is not available yet")
	return nil
}

func redactKinesisSource(k *sluicev1.KinesisSource) {
	redactString(&k.AwsSecretKey)
	redactString(&k.AwsSessionToken)
}

func redactKinesisSink(k *sluicev1.KinesisSink) {
	redactString(&k.AwsSecretKey)
	redactString(&k.AwsSessionToken)
}
