// Command treasury is `make demo`: it starts an embedded Kafka (franz-go's
// kfake) with the "transaction" topic of the treasury example, produces random
// {"branch","currency","amount"} transactions, runs `sluice local`, submits
// treasury.yaml (a Spark SQL query), and checks that the per-batch sums
// the console sink prints add up to what was produced. It exits 0 only when
// they do.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

type key struct{ branch, currency string }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	sluice := flag.String("sluice", "bin/sluice", "path of the sluice binary")
	produceFor := flag.Duration("produce-for", 12*time.Second, "how long the generator produces")
	rate := flag.Int("rate", 500, "transactions per second")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "transaction"))
	if err != nil {
		return fmt.Errorf("start embedded Kafka: %w", err)
	}
	defer kafka.Close()
	brokers := kafka.ListenAddrs()
	fmt.Printf("demo: embedded Kafka at %s, topic transaction with 3 partitions\n", strings.Join(brokers, ","))

	dir, err := os.MkdirTemp("", "sluice-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	local := exec.CommandContext(ctx, *sluice, "local", "--executors", "2", "--slots", "2",
		"--listen", grpcAddr, "--http", httpAddr, "--dir", filepath.Join(dir, "local"))
	local.Stderr = os.Stderr
	stdout, err := local.StdoutPipe()
	if err != nil {
		return err
	}
	if err := local.Start(); err != nil {
		return fmt.Errorf("start sluice local: %w", err)
	}
	defer func() {
		local.Process.Signal(syscall.SIGTERM)
		local.Wait()
	}()
	tables := newTableReader()
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		tables.read(io.TeeReader(stdout, os.Stdout))
	}()

	// Produce in the background while the job runs.
	produced := map[key]int64{}
	var producedN int64
	var pmu sync.Mutex
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transaction"))
	if err != nil {
		return err
	}
	defer producer.Close()
	prodDone := make(chan error, 1)
	go func() {
		branches := []string{"Kazan", "SPB", "Novosibirsk", "Surgut"}
		currencies := []string{"RUB", "USD", "EUR", "GBP"}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(*produceFor)
		for time.Now().Before(end) {
			<-tick.C
			for range *rate / 10 {
				t := map[string]any{"branch": branches[rand.IntN(4)], "currency": currencies[rand.IntN(4)], "amount": rand.IntN(201) - 100}
				v, _ := json.Marshal(t)
				if err := producer.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr(); err != nil {
					prodDone <- err
					return
				}
				pmu.Lock()
				produced[key{t["branch"].(string), t["currency"].(string)}] += int64(t["amount"].(int))
				producedN++
				pmu.Unlock()
			}
		}
		prodDone <- nil
	}()

	// Submit the job file as a user would, with the CLI, pointed at the
	// embedded Kafka.
	job, err := writeJob(dir, brokers)
	if err != nil {
		return err
	}
	if err := retry(ctx, func() error {
		out, err := exec.CommandContext(ctx, *sluice, "--driver", grpcAddr, "submit", job).CombinedOutput()
		if err != nil {
			return fmt.Errorf("sluice submit: %w: %s", err, out)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("submit treasury job: %w", err)
	}
	// The job's progress, through the driver's public gRPC API (sluice
	// local serves it in plaintext on loopback).
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	api := sluicev1.NewDriverServiceClient(conn)
	fmt.Printf("demo: submitted job treasury to %s; producing %d transactions/s for %s\n", grpcAddr, *rate, *produceFor)

	if err := <-prodDone; err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	pmu.Lock()
	wantN := producedN
	pmu.Unlock()
	// Wait until the job has read every transaction and printed the
	// batches that did: its batches' input rows add up to what was produced.
	var readN int64
	var lastBatch int64
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("timed out waiting for the job to catch up (read %d of %d): %w", readN, wantN, err)
		}
		p, err := api.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "treasury"})
		if err != nil {
			return fmt.Errorf("job progress: %w", err)
		}
		readN = 0
		for _, b := range p.GetProgress() {
			readN += b.GetNumInputRows()
			lastBatch = max(lastBatch, b.GetBatchId())
		}
		if readN >= wantN && tables.seen(int(lastBatch)) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := api.StopJob(ctx, &sluicev1.StopJobRequest{Name: "treasury"}); err != nil {
		return fmt.Errorf("stop job: %w", err)
	}
	local.Process.Signal(syscall.SIGTERM)
	readers.Wait()
	local.Wait()

	got, batches := tables.totals()
	fmt.Printf("\ncheck: %d transactions produced; the job read %d, summed in %d batches\n", wantN, readN, batches)
	ok := readN == wantN
	for k, want := range produced {
		if got[k] != want {
			fmt.Printf("check: %s/%s: produced sum %d, batches add up to %d  MISMATCH\n", k.branch, k.currency, want, got[k])
			ok = false
		}
	}
	for k := range got {
		if _, seen := produced[k]; !seen {
			fmt.Printf("check: %s/%s appears in output but was never produced  MISMATCH\n", k.branch, k.currency)
			ok = false
		}
	}
	if !ok {
		return errors.New("per-batch sums do not add up to what was produced")
	}
	fmt.Printf("check: per-batch sums of all %d branch/currency groups add up to what was produced: OK\n", len(produced))
	return nil
}

// writeJob writes treasury.yaml with bootstrapServers set to brokers into
// dir and returns its path.
func writeJob(dir string, brokers []string) (string, error) {
	data, err := os.ReadFile(filepath.Join("examples", "treasury", "treasury.yaml"))
	if err != nil {
		return "", err
	}
	const placeholder = `bootstrapServers: "127.0.0.1:9092"`
	if !strings.Contains(string(data), placeholder) {
		return "", fmt.Errorf("treasury.yaml: no %s to point at the embedded Kafka", placeholder)
	}
	data = []byte(strings.Replace(string(data), placeholder, fmt.Sprintf("bootstrapServers: %q", strings.Join(brokers, ",")), 1))
	path := filepath.Join(dir, "treasury.yaml")
	return path, os.WriteFile(path, data, 0o600)
}

func retry(ctx context.Context, f func() error) error {
	var err error
	for range 50 {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// tableReader parses the console sink's tables (Spark's format) from the
// local cluster's output: a "Batch: N" line, a header row, then data rows.
type tableReader struct {
	mu      sync.Mutex
	sums    map[key]int64
	batches map[int]bool
}

func newTableReader() *tableReader {
	return &tableReader{sums: map[key]int64{}, batches: map[int]bool{}}
}

var batchLine = regexp.MustCompile(`^Batch: (\d+)$`)

func (t *tableReader) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	var cols []string
	batch := -1
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := batchLine.FindStringSubmatch(line); m != nil {
			batch, _ = strconv.Atoi(m[1])
			cols = nil
			continue
		}
		if batch < 0 || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if cols == nil {
			cols = cells
			continue
		}
		row := map[string]string{}
		for i, c := range cols {
			if i < len(cells) {
				row[c] = cells[i]
			}
		}
		sum, err := strconv.ParseInt(row["batch_value"], 10, 64)
		if err != nil {
			continue
		}
		t.mu.Lock()
		t.sums[key{row["branch_name"], row["currency_code"]}] += sum
		t.batches[batch] = true
		t.mu.Unlock()
	}
}

// seen reports whether the table of batch b was printed.
func (t *tableReader) seen(b int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.batches[b]
}

func (t *tableReader) totals() (map[key]int64, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sums, len(t.batches)
}
