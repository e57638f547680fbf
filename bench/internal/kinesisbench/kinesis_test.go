package kinesisbench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/bench/internal/baseline"
	"github.com/sluicehq/sluice/bench/internal/harness"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestKinesisPolling preloads a 4-shard stream with BENCH_KINESIS_N
// transactions, reads it with the raw loop (`sluicebench baseline kinesis`,
// a process of its own) and then with an availableNow Sluice job on a fresh
// cluster, and writes both sides' figures to SLUICEBENCH_KINESIS_OUT.
// secretKeyEnv carries kinesis-mock's secret key to the Sluice processes.
const secretKeyEnv = "SLUICEBENCH_KINESIS_SECRET_KEY"

func TestKinesisPolling(t *testing.T) {
	out := os.Getenv(EnvOut)
	if out == "" {
		t.Skipf("run by scenario 4 of make bench, which sets %s", EnvOut)
	}
	bins, self := os.Getenv(EnvBins), os.Getenv(EnvSelf)
	if bins == "" || self == "" {
		t.Fatalf("%s and %s must name the built binaries and sluicebench", EnvBins, EnvSelf)
	}
	cfg, err := harness.Load()
	if err != nil {
		t.Fatal(err)
	}
	// The harness stops this test with SIGTERM when it is interrupted: end
	// the work through ctx so that the cleanups stop the clusters and the
	// emulator.
	sigCtx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(sigCtx, cfg.Timeout)
	defer cancel()

	k := testenv.StartKinesis(t)
	client := k.Client(t, "")
	const stream = "sluicebench"
	testenv.CreateStream(t, client, stream, Shards)
	var res Result
	start := time.Now()
	res.Records, res.Bytes = preload(ctx, t, client, stream, cfg.KinesisN)
	res.Preload = time.Since(start)
	t.Logf("preloaded %d records (%d bytes) in %s", res.Records, res.Bytes, res.Preload)

	env := &harness.Env{
		Cfg:  cfg,
		Bins: harness.Binaries{Driver: filepath.Join(bins, "driver"), Executor: filepath.Join(bins, "executor"), Sluice: filepath.Join(bins, "sluice")},
		Self: self, Dir: t.TempDir(), Run: "kinesis",
	}
	p, stdout, err := env.Baseline(ctx, "baseline-kinesis",
		[]string{"AWS_ACCESS_KEY_ID=" + k.AccessKey, "AWS_SECRET_ACCESS_KEY=" + k.SecretKey},
		"kinesis", "--endpoint", k.Endpoint, "--region", k.Region, "--stream", stream,
		"--max-rate", strconv.FormatFloat(MaxFetchRate, 'f', -1, 64), "--min-period", "0s")
	if err != nil {
		t.Fatal(err)
	}
	var b baseline.Result
	if err := json.Unmarshal(stdout, &b); err != nil {
		t.Fatalf("baseline printed %q: %v", stdout, err)
	}
	if b.Records != res.Records || b.Bytes != res.Bytes {
		t.Fatalf("baseline read %d records (%d bytes), the stream holds %d (%d bytes)", b.Records, b.Bytes, res.Records, res.Bytes)
	}
	u, err := p.Usage()
	if err != nil {
		t.Fatal(err)
	}
	res.Baseline = Side{Elapsed: b.Elapsed, CPU: u.CPU, PeakRSS: u.PeakRSS}

	// The job names the secret key by reference: drivers refuse a secret in
	// clear without --secrets-key-file, and the driver and executor, which
	// inherit this process's environment, resolve it.
	t.Setenv(secretKeyEnv, k.SecretKey)
	c, err := env.StartCluster(ctx, "s4", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	procs := c.SluiceProcs()
	before := make([]harness.Usage, len(procs))
	for i, p := range procs {
		if before[i], err = p.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	spec := &sluicev1.JobSpec{
		Name: "kinesis-polling",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kinesis{Kinesis: &sluicev1.KinesisSource{
			StreamName: stream, Region: k.Region, Endpoint: k.Endpoint, InitialPosition: "trim_horizon",
			MaxFetchRate: MaxFetchRate, MinFetchPeriod: "0",
			AwsAccessKey: k.AccessKey, AwsSecretKey: "${env:" + secretKeyEnv + "}",
		}}},
		Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}},
	}
	d := c.Drivers[0]
	run, err := harness.RunJob(ctx, d, spec)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, _ := m.Value("sluice_input_rows_total", map[string]string{"job": spec.GetName()})
	batches, _ := m.Value("sluice_batches_total", map[string]string{"job": spec.GetName()})
	if int64(rows) != res.Records {
		t.Fatalf("Sluice read %d records, the stream holds %d", int64(rows), res.Records)
	}
	res.Batches = int(batches)
	res.Sluice.Elapsed = run.Elapsed
	for i, p := range procs {
		u, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		res.Sluice.CPU += u.CPU - before[i].CPU
		if p == d.Proc {
			res.Sluice.DriverRSS = u.PeakRSS
		} else {
			res.Sluice.PeakRSS = max(res.Sluice.PeakRSS, u.PeakRSS)
			res.Sluice.Executors++
		}
	}
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// preload writes n transactions with PutRecords, 500 a call from a few
// writers, retrying the entries the emulator reports as failed.
func preload(ctx context.Context, t *testing.T, client *kinesis.Client, stream string, n int) (records, bytes int64) {
	t.Helper()
	gen := harness.NewTransactions(4)
	const writers = 4
	batches := make(chan []types.PutRecordsRequestEntry)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for entries := range batches {
				if err := putAll(ctx, client, stream, entries); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i += 500 {
		entries := make([]types.PutRecordsRequestEntry, 0, 500)
		for j := i; j < min(i+500, n); j++ {
			v, _, _ := gen.Next(nil)
			entries = append(entries, types.PutRecordsRequestEntry{Data: v, PartitionKey: aws.String("k" + strconv.Itoa(j))})
			records++
			bytes += int64(len(v))
		}
		batches <- entries
	}
	close(batches)
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("preload %s: %v", stream, firstErr)
	}
	return records, bytes
}

func putAll(ctx context.Context, client *kinesis.Client, stream string, entries []types.PutRecordsRequestEntry) error {
	for attempt := 0; len(entries) > 0; attempt++ {
		if attempt == 10 {
			return fmt.Errorf("%d records still failing after %d attempts", len(entries), attempt)
		}
		out, err := client.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			return fmt.Errorf("put records: %w", err)
		}
		if aws.ToInt32(out.FailedRecordCount) == 0 {
			return nil
		}
		var retry []types.PutRecordsRequestEntry
		for i, r := range out.Records {
			if r.ErrorCode != nil {
				retry = append(retry, entries[i])
			}
		}
		entries = retry
		time.Sleep(time.Duration(attempt+1) * 50 * time.Millisecond)
	}
	return nil
}
