package baseline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// KinesisOptions configure the raw GetRecords loop.
type KinesisOptions struct {
	Endpoint, Region, Stream string
	// AccessKey and SecretKey are static credentials (the emulator's).
	AccessKey, SecretKey string
	// MaxRate caps bytes per second per shard and MinPeriod spaces the
	// calls on one shard, as Sluice's maxFetchRate and minFetchPeriod do;
	// zero disables either.
	MaxRate   float64
	MinPeriod time.Duration
	// Limit is the records per GetRecords call (the service maximum is
	// 10000).
	Limit int32
}

// Kinesis reads every shard of the stream from TRIM_HORIZON, one goroutine
// per shard calling GetRecords back to back (paced only by MaxRate and
// MinPeriod), until each shard is caught up: a page with no records and
// MillisBehindLatest 0, or the shard's end. That is the end condition
// Sluice's reader uses too.
func Kinesis(ctx context.Context, o KinesisOptions) (Result, error) {
	var res Result
	if o.Limit <= 0 {
		o.Limit = 10000
	}
	client := kinesis.New(kinesis.Options{
		Region:       o.Region,
		BaseEndpoint: aws.String(o.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, ""),
	})
	began := time.Now()
	var shards []types.Shard
	var next *string
	for {
		in := &kinesis.ListShardsInput{NextToken: next}
		if next == nil {
			in.StreamName = aws.String(o.Stream)
		}
		out, err := client.ListShards(ctx, in)
		if err != nil {
			return res, fmt.Errorf("list shards of %s: %w", o.Stream, err)
		}
		shards = append(shards, out.Shards...)
		if next = out.NextToken; next == nil {
			break
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(shards))
	for i, s := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, b, err := readShard(ctx, client, o, aws.ToString(s.ShardId))
			mu.Lock()
			res.Records += n
			res.Bytes += b
			mu.Unlock()
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(began)
	return res, nil
}

func readShard(ctx context.Context, client *kinesis.Client, o KinesisOptions, shard string) (records, bytes int64, err error) {
	it, err := client.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(o.Stream), ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		return 0, 0, fmt.Errorf("shard iterator of %s: %w", shard, err)
	}
	iter := it.ShardIterator
	for iter != nil {
		start := time.Now()
		out, err := client.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(o.Limit)})
		if err != nil {
			return records, bytes, fmt.Errorf("get records of %s: %w", shard, err)
		}
		var b int64
		for _, r := range out.Records {
			b += int64(len(r.Data))
		}
		records += int64(len(out.Records))
		bytes += b
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			return records, bytes, nil
		}
		iter = out.NextShardIterator
		wait := o.MinPeriod
		if o.MaxRate > 0 {
			wait = max(wait, time.Duration(float64(b)/o.MaxRate*float64(time.Second)))
		}
		if d := time.Until(start.Add(wait)); d > 0 {
			select {
			case <-ctx.Done():
				return records, bytes, ctx.Err()
			case <-time.After(d):
			}
		}
	}
	return records, bytes, nil
}
