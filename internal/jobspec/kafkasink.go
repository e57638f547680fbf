package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The Kafka sink (sink.kafka, deadLetter.kafka).

type kafkaSink struct{ cfg kafka.SinkConfig }

func (k kafkaSink) newSink(io.Writer) (connectors.Sink, error) { return kafka.NewSink(k.cfg) }

func compileKafkaSink(k *sluicev1.KafkaSink, f fieldErrors, role sinkRole) sinkConfig {
	cfg := KafkaSinkConfig(k, role.name)
	cfg.Schema = role.rows
	if !f.addConfig(cfg.Validate(), kafkaSinkOption) {
		return nil
	}
	return kafkaSink{cfg: cfg}
}

var kafkaSinkOption = typedOption(func(e *kafka.SinkConfigError) (string, string) { return e.Field, e.Reason })

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
