// Package e2e runs the built binaries (bin/driver, bin/executor, bin/sluice)
// as separate processes against an embedded etcd and an in-process Kafka
// (kfake), kills them with SIGKILL, and counts rows in the sink.
package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

var binDir string

// secretsKeyFile is the drivers' --secrets-key-file, written in TestMain.
var secretsKeyFile string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(0)
	}
	bins, err := testenv.BuildBinaries("sluice-e2e-bin-", map[string]string{
		"driver": "../../cmd/driver", "executor": "../../cmd/executor", "sluice": "../../cmd/sluice",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, secretsKeyFile = bins.Dir, bins.SecretsKeyFile
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// proc is a binary running as its own process; its output goes to a log
// file that is printed when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("---- %s output ----\n%s", name, tail(b, 4000))
		}
	})
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDriver starts a driver process on etcd with short lease and heartbeat
// settings, so failures are noticed within seconds.
func startDriver(t *testing.T, name string, etcd []string, extra ...string) (*proc, string) {
	addr := freeAddr(t)
	args := append([]string{"--listen", addr, "--advertise", addr, "--http", "", "--etcd", strings.Join(etcd, ","),
		"--lease-ttl", "2s", "--heartbeat-interval", "300ms", "--heartbeat-timeout", "1500ms", "--shutdown-timeout", "2s",
		"--secrets-key-file", secretsKeyFile}, extra...)
	p := start(t, name, "driver", args...)
	return p, addr
}

func startExecutor(t *testing.T, name string, drivers ...string) *proc {
	return start(t, name, "executor", "--driver", strings.Join(drivers, ","), "--slots", "2", "--id", name, "--drain-timeout", "2s")
}

func startKafka(t *testing.T, partitions int, topic string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// produce writes records {"id": from..to-1, "amount": id%7} spread over
// partitions by key.
func produce(t *testing.T, brokers []string, topic string, from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := from; i < to; i++ {
		v, _ := json.Marshal(map[string]any{"id": i, "amount": i % 7})
		wg.Add(1)
		cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: v}, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
}

// client talks to one driver address.
func client(t *testing.T, addr string) sluicev1.DriverServiceClient {
	t.Helper()
	conn, err := rpc.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return sluicev1.NewDriverServiceClient(conn)
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still not true after %s: %v", what, timeout, err)
}

// countOutput reads the file sink of job and returns how many rows it holds
// and how many distinct ids.
func countOutput(t *testing.T, dir, job string) (rows int, distinct map[int64]int) {
	t.Helper()
	all, err := file.ReadAll(dir, job)
	if err != nil {
		return 0, nil
	}
	distinct = map[int64]int{}
	for _, r := range all {
		distinct[toInt(r["id"])]++
	}
	return len(all), distinct
}

func passThroughSpec(name string, brokers []string, topic, out string, maxPerTrigger int64) *sluicev1.JobSpec {
	return &sluicev1.JobSpec{
		Name: name,
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(brokers, ","), Subscribe: []string{topic}, StartingOffsets: "earliest",
			MaxOffsetsPerTrigger: maxPerTrigger,
		}}},
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}},
			{Kind: &sluicev1.Transform_Select{Select: &sluicev1.Select{Fields: []*sluicev1.SelectField{
				{Name: "id"}, {Name: "amount"}, {Name: "partition"}, {Name: "offset"}}}}},
		},
		Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_File{File: &sluicev1.FileSink{Path: out}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "100ms"}},
	}
}

// exactlyOnce waits until the sink holds ids [0, n) and then checks that
// each appears exactly once.
func exactlyOnce(t *testing.T, dir, job string, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("sink holds all %d ids", n), func() error {
		_, distinct := countOutput(t, dir, job)
		if len(distinct) < n {
			return fmt.Errorf("%d of %d ids so far", len(distinct), n)
		}
		return nil
	})
	rows, distinct := countOutput(t, dir, job)
	var dups []string
	for id, c := range distinct {
		if c > 1 && len(dups) < 10 {
			dups = append(dups, fmt.Sprintf("id %d ×%d", id, c))
		}
		if id < 0 || id >= int64(n) {
			t.Errorf("unexpected id %d in output", id)
		}
	}
	if rows != n || len(dups) > 0 {
		t.Fatalf("sink holds %d rows for %d records (duplicates: %s)", rows, n, strings.Join(dups, ", "))
	}
}

func lastBatch(ctx context.Context, c sluicev1.DriverServiceClient, job string) (int64, sluicev1.JobState, error) {
	j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: job})
	if err != nil {
		return -1, 0, err
	}
	if j.GetLastProgress() == nil {
		return -1, j.GetState(), nil
	}
	return j.GetLastProgress().GetBatchId(), j.GetState(), nil
}

func fileRows(dir, job string) ([]map[string]any, error) { return file.ReadAll(dir, job) }

func toInt(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case int64:
		return n
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}
