package jobspec

import (
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

type kafkaSource struct{ cfg kafka.Config }

func (k kafkaSource) newSource() (connectors.Source, error) { return kafka.NewSource(k.cfg) }
func (k kafkaSource) newReaderPool() (connectors.ReaderPool, error) {
	return kafka.NewReaderPool(k.cfg)
}

func (k kafkaSource) identity() string {
	// Compile validated the config, so this cannot fail.
	id, _ := k.cfg.Identity()
	return id
}

func compileKafkaSource(k *sluicev1.KafkaSource, field string, e *Error) sourceConfig {
	cfg := KafkaConfig(k)
	if err := cfg.Validate(); err != nil {
		e.add(field, "%v", err)
		return nil
	}
	return kafkaSource{cfg: cfg}
}

// KafkaConfig converts the proto options; failOnDataLoss defaults to true as
// in Spark.
func KafkaConfig(k *sluicev1.KafkaSource) kafka.Config {
	fail := true
	if k.FailOnDataLoss != nil {
		fail = k.GetFailOnDataLoss()
	}
	return kafka.Config{
		BootstrapServers:       k.GetBootstrapServers(),
		Subscribe:              k.GetSubscribe(),
		SubscribePattern:       k.GetSubscribePattern(),
		Assign:                 k.GetAssign(),
		StartingOffsets:        k.GetStartingOffsets(),
		StartingTimestamp:      k.GetStartingTimestamp(),
		MaxOffsetsPerTrigger:   k.GetMaxOffsetsPerTrigger(),
		MaxRatePerPartition:    k.GetMaxRatePerPartition(),
		FailOnDataLoss:         fail,
		IncludeHeaders:         k.GetIncludeHeaders(),
		MaxRecordsPerPartition: k.GetMaxRecordsPerPartition(),
		Properties:             k.GetProperties(),
		CommitOffsetsToGroup:   k.GetCommitOffsetsToGroup(),
	}
}
