package jobspec

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

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

// compileKinesisSource validates the source of the job called job, whose
// name the enhanced fan-out consumer's name is derived from when
// consumerName is not set.
func compileKinesisSource(k *sluicev1.KinesisSource, field, job string, e *Error) sourceConfig {
	cfg := KinesisConfig(k)
	cfg.JobName = job
	ok := true
	if v := k.GetConsumerRefreshInterval(); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.add(field+".consumerRefreshInterval", "%q is not a duration like 30s or 5m", v)
			ok = false
		} else if d <= 0 {
			e.add(field+".consumerRefreshInterval", "must be positive (got %s)", v)
			ok = false
		} else {
			cfg.EFO.ConsumerRefreshInterval = d
		}
	}
	ok = addKinesisErrors(e, field, cfg.Validate()) && ok
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

func compileKinesisSink(k *sluicev1.KinesisSink, field string, e *Error) sinkConfig {
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
	}
	if !addKinesisErrors(e, field, cfg.Validate()) {
		return nil
	}
	return kinesisSink{cfg: cfg}
}

// addKinesisErrors adds each *kinesis.FieldError under its own field and
// reports whether err was nil.
func addKinesisErrors(e *Error, field string, err error) bool {
	if err == nil {
		return true
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, sub := range list {
		var fe *kinesis.FieldError
		if errors.As(sub, &fe) {
			e.add(field+"."+fe.Field, "%s", fe.Reason)
		} else {
			e.add(field, "%v", sub)
		}
	}
	return false
}
