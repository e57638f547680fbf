package jobspec

import (
	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The Kafka source (source.kafka).

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

func (k kafkaSource) schema() *arrow.Schema { return columnar.KafkaSchema(k.cfg.IncludeHeaders) }

func compileKafkaSource(k *sluicev1.KafkaSource, f fieldErrors, _ string) sourceConfig {
	cfg := KafkaConfig(k)
	if !f.addConfig(cfg.Validate(), kafkaSourceOption) {
		return nil
	}
	return kafkaSource{cfg: cfg}
}

// kafkaSourceOption reads the option kafka.Config.Validate names: it
// returns no typed error but writes the option at the start of its message
// ("source.kafka.subscribe: set exactly one of ...").
var kafkaSourceOption = prefixedOption("source.kafka.")

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
