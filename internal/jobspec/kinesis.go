package jobspec

import (
	"io"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The Kinesis source (source.kinesis) and sink (sink.kinesis,
// deadLetter.kinesis).

// kinesisSourceAdapter: speculation is refused because a Kinesis range
// ends where its reader stops on the first run, so two attempts of one
// range would read different records, and the loser's output could not be
// told apart from the winner's.
var kinesisSourceAdapter = sourceAdapter{
	compile:       sourceOf(compileKinesisSource).compile,
	noSpeculation: "a Kinesis source's ranges end where the reader stops",
}

type kinesisSource struct{ cfg kinesis.Config }

func (k kinesisSource) newSource() (connectors.Source, error) { return kinesis.NewSource(k.cfg) }
func (k kinesisSource) newReaderPool() (connectors.ReaderPool, error) {
	return kinesis.NewReaderPool(k.cfg)
}

func (k kinesisSource) identity() string {
	// Compile validated the config, so this cannot fail.
	id, _ := k.cfg.Identity()
	return id
}

func (k kinesisSource) schema() *arrow.Schema { return columnar.KinesisSchema() }

// compileKinesisSource validates the source of the job called job, whose
// name the enhanced fan-out consumer's name is derived from when
// consumerName is not set.
func compileKinesisSource(k *sluicev1.KinesisSource, f fieldErrors, job string) sourceConfig {
	cfg := KinesisConfig(k)
	cfg.JobName = job
	ok := true
	if v := k.GetConsumerRefreshInterval(); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.add("consumerRefreshInterval", "%q is not a duration like 30s or 5m", v)
			ok = false
		} else if d <= 0 {
			f.add("consumerRefreshInterval", "must be positive (got %s)", v)
			ok = false
		} else {
			cfg.EFO.ConsumerRefreshInterval = d
		}
	}
	ok = f.addConfig(cfg.Validate(), kinesisOption) && ok
	if !ok {
		return nil
	}
	return kinesisSource{cfg: cfg}
}

// KinesisConfig converts the proto options; failOnDataLoss defaults to true
// as in Databricks.
func KinesisConfig(k *sluicev1.KinesisSource) kinesis.Config {
	fail := true
	if k.FailOnDataLoss != nil {
		fail = k.GetFailOnDataLoss()
	}
	return kinesis.Config{
		StreamName:            k.GetStreamName(),
		Region:                k.GetRegion(),
		Endpoint:              k.GetEndpoint(),
		InitialPosition:       k.GetInitialPosition(),
		AtTimestamp:           k.GetAtTimestamp(),
		TimestampFormat:       k.GetTimestampFormat(),
		MaxRecordsPerFetch:    int(k.GetMaxRecordsPerFetch()),
		MaxFetchRate:          k.GetMaxFetchRate(),
		MinFetchPeriod:        k.GetMinFetchPeriod(),
		MaxFetchDuration:      k.GetMaxFetchDuration(),
		FetchBufferSize:       k.GetFetchBufferSize(),
		ShardsPerTask:         int(k.GetShardsPerTask()),
		MaxShardsPerDescribe:  int(k.GetMaxShardsPerDescribe()),
		ShardFetchInterval:    k.GetShardFetchInterval(),
		DescribeShardInterval: k.GetDescribeShardInterval(),
		FailOnDataLoss:        fail,
		AWSAccessKey:          k.GetAwsAccessKey(),
		AWSSecretKey:          k.GetAwsSecretKey(),
		AWSSessionToken:       k.GetAwsSessionToken(),
		RoleARN:               k.GetRoleArn(),
		RoleExternalID:        k.GetRoleExternalId(),
		RoleSessionName:       k.GetRoleSessionName(),
		STSEndpoint:           k.GetStsEndpoint(),
		ConsumerMode:          strings.ToLower(strings.TrimSpace(k.GetConsumerMode())),
		EFO: efo.Config{
			ConsumerName:                  k.GetConsumerName(),
			ConsumerNamePrefix:            k.GetConsumerNamePrefix(),
			RequireConsumerDeregistration: k.GetRequireConsumerDeregistration(),
			ConsumerLifecycle:             efo.Lifecycle(k.GetConsumerLifecycle()),
		},
	}
}

type kinesisSink struct{ cfg kinesis.SinkConfig }

func (k kinesisSink) newSink(io.Writer) (connectors.Sink, error) { return kinesis.NewSink(k.cfg) }

func compileKinesisSink(k *sluicev1.KinesisSink, f fieldErrors, role sinkRole) sinkConfig {
	cfg := kinesis.SinkConfig{
		StreamName:           k.GetStreamName(),
		Region:               k.GetRegion(),
		Endpoint:             k.GetEndpoint(),
		PartitionKey:         k.GetPartitionKey(),
		ExplicitHashKey:      k.GetExplicitHashKey(),
		Data:                 k.GetData(),
		MaxRecordsPerRequest: int(k.GetMaxRecordsPerRequest()),
		MaxRetries:           int(k.GetMaxRetries()),
		AWSAccessKey:         k.GetAwsAccessKey(),
		AWSSecretKey:         k.GetAwsSecretKey(),
		AWSSessionToken:      k.GetAwsSessionToken(),
		RoleARN:              k.GetRoleArn(),
		RoleExternalID:       k.GetRoleExternalId(),
		RoleSessionName:      k.GetRoleSessionName(),
		STSEndpoint:          k.GetStsEndpoint(),
		Schema:               role.rows,
	}
	if !f.addConfig(cfg.Validate(), kinesisOption) {
		return nil
	}
	return kinesisSink{cfg: cfg}
}

var kinesisOption = typedOption(func(e *kinesis.FieldError) (string, string) { return e.Field, e.Reason })
