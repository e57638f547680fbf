//go:build duckdb_arrow

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestJobCallsGoFunctions runs sluice-fn's driver and executor (in this
// process) and a job whose query calls the example's Go functions, from a
// Kafka topic to files: the functions are there at submit and at run.
func TestJobCallsGoFunctions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "payments"))
	if err != nil {
		t.Fatal(err)
	}
	defer kafka.Close()
	producer, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.DefaultProduceTopic("payments"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for _, p := range []string{
		`{"iban": "PT50000201231234567890154", "currency": "USD", "amount": 500}`,
		`{"iban": "GB29NWBK60161331926819", "currency": "GBP", "amount": 300}`,
	} {
		if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte(p)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	done := make(chan error, 2)
	go func() {
		done <- run(ctx, []string{"driver", "--listen", addr, "--advertise", addr, "--http", "", "--checkpoint", t.TempDir()})
	}()
	go func() {
		done <- run(ctx, []string{"executor", "--driver", addr, "--slots", "1", "--id", "fn-1", "--drain-timeout", "1s"})
	}()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("stopping: %v", err)
			}
		}
	}()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := sluicev1.NewDriverServiceClient(conn)
	out := t.TempDir()
	spec := &sluicev1.JobSpec{
		Name: "masked",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(kafka.ListenAddrs(), ","), Subscribe: []string{"payments"}, StartingOffsets: "earliest"}}},
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "iban STRING, currency STRING, amount BIGINT"}}},
			{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{View: "payments",
				Query: "select mask_iban(iban) as account, round(to_eur(amount, currency), 2) as eur from payments"}}},
		},
		Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_File{File: &sluicev1.FileSink{Path: out}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}},
	}
	eventually(t, "the job is submitted", func() error {
		_, err := client.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec})
		return err
	})
	eventually(t, "the job finishes", func() error {
		j, err := client.GetJob(ctx, &sluicev1.GetJobRequest{Name: "masked"})
		if err != nil {
			return err
		}
		if j.GetState() != sluicev1.JobState_JOB_STATE_FINISHED {
			return fmt.Errorf("state %s, error %q", j.GetState(), j.GetLastError())
		}
		return nil
	})
	rows, err := file.ReadAll(out, "masked")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		b, _ := json.Marshal(r)
		got = append(got, string(b))
	}
	sort.Strings(got)
	want := []string{`{"account":"GB29 **** 6819","eur":351}`, `{"account":"PT50 **** 0154","eur":460}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
