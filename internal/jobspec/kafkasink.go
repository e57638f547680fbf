package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

type kafkaSink struct{ cfg kafka.SinkConfig }

func (k kafkaSink) newSink(io.Writer) (connectors.Sink, error) { return kafka.NewSink(k.cfg) }

// compileKafkaSink validates sink.kafka (or deadLetter.kafka).
func compileKafkaSink(k *sluicev1.KafkaSink, field string, e *Error) sinkConfig {
	cfg := KafkaSinkConfig(k, sinkRole(field))
	if err := cfg.Validate(); err != nil {
		addConfigError(e, field, err)
		return nil
	}
	return kafkaSink{cfg: cfg}
}

// KafkaSinkConfig converts the proto options. role is "sink" or
// "deadLetter": it keeps the two sinks' transactional ids and commit
// markers apart.
func KafkaSinkConfig(k *sluicev1.KafkaSink, role string) kafka.SinkConfig {
	return kafka.SinkConfig{
		BootstrapServers: k.GetBootstrapServers(),
		Topic:            k.GetTopic(),
		TopicExpr:        k.GetTopicExpr(),
		Key:              k.GetKey(),
		Value:            k.GetValue(),
		Headers:          k.GetHeaders(),
		Partition:        k.GetPartition(),
		Transactional:    k.GetTransactional(),
		Properties:       k.GetProperties(),
		Name:             role,
	}
}
