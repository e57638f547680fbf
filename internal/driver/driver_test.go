package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/executor"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// cluster is a standalone driver and one executor in this process, talking
// gRPC over loopback.
type testCluster struct {
	d      *Driver
	api    sluicev1.DriverServiceClient
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ckpt   string
}

func startCluster(t *testing.T, ckpt string) *testCluster {
	return startClusterWith(t, ckpt, 1)
}

// startClusterWith starts a driver and n in-process executors (e1, e2, …).
func startClusterWith(t *testing.T, ckpt string, executors int) *testCluster {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// HTTP on loopback: the JSON API (httpapi.go) is then open without
	// credentials, as on a real driver with a loopback --http.
	d, err := New(Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Advertise: "127.0.0.1:0", Checkpoint: ckpt, Logger: log, Stdout: io.Discard,
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: time.Second, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &testCluster{d: d, cancel: cancel, ckpt: ckpt}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); d.Run(ctx) }()
	addr := d.Addr()
	for i := range executors {
		e, err := executor.New(executor.Config{Driver: addr, Slots: 2, ID: fmt.Sprintf("e%d", i+1), Logger: log, Stdout: io.Discard, DrainTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		c.wg.Add(1)
		go func() { defer c.wg.Done(); e.Run(ctx) }()
	}
	conn, err := rpc.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.api = sluicev1.NewDriverServiceClient(conn)
	t.Cleanup(func() { conn.Close(); c.stop() })
	waitFor(t, "driver leads", func() error {
		_, err := c.api.ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
		return err
	})
	return c
}

func (c *testCluster) stop() {
	c.cancel()
	c.wg.Wait()
}

func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func kafkaWith(t *testing.T, topic string, partitions int, n int) (*kfake.Cluster, []string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	produceN(t, c.ListenAddrs(), topic, 0, n)
	return c, c.ListenAddrs()
}

func produceN(t *testing.T, brokers []string, topic string, from, to int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		v, _ := json.Marshal(map[string]any{"id": i, "amount": i % 5})
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func spec(name string, brokers []string, topic, out string, trigger *sluicev1.Trigger) *sluicev1.JobSpec {
	return &sluicev1.JobSpec{
		Name: name,
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(brokers, ","), Subscribe: []string{topic}, StartingOffsets: "earliest", MaxOffsetsPerTrigger: 50,
		}}},
		Transforms: []*sluicev1.Transform{{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}}},
		Sink:       &sluicev1.Sink{Kind: &sluicev1.Sink_File{File: &sluicev1.FileSink{Path: out}}},
		Trigger:    trigger,
	}
}

var (
	availableNow = &sluicev1.Trigger{Kind: &sluicev1.Trigger_AvailableNow{AvailableNow: true}}
	fast         = &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "50ms"}}
)

func waitState(t *testing.T, api sluicev1.DriverServiceClient, job string, want sluicev1.JobState) *sluicev1.Job {
	t.Helper()
	var j *sluicev1.Job
	waitFor(t, fmt.Sprintf("job %s %s", job, want), func() error {
		var err error
		if j, err = api.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: job}); err != nil {
			return err
		}
		if j.GetState() != want {
			return fmt.Errorf("state %s (%s)", j.GetState(), j.GetLastError())
		}
		return nil
	})
	return j
}

func ids(t *testing.T, out, job string) map[int64]int {
	t.Helper()
	rows, err := file.ReadAll(out, job)
	if err != nil {
		t.Fatal(err)
	}
	m := map[int64]int{}
	for _, r := range rows {
		switch id := r["id"].(type) {
		case int64:
			m[id]++
		case float64:
			m[int64(id)]++
		default:
			t.Fatalf("id %v has type %T", id, id)
		}
	}
	return m
}

func TestSubmitInvalidSpec(t *testing.T) {
	c := startCluster(t, t.TempDir())
	bad := spec("", nil, "t", "", &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "often"}})
	bad.Transforms = append(bad.Transforms, &sluicev1.Transform{Kind: &sluicev1.Transform_Filter{Filter: "amount >"}})
	bad.Limits = &sluicev1.Limits{MaxTaskFailures: -2}
	_, err := c.api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: bad})
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %s, want InvalidArgument: %v", st.Code(), err)
	}
	fields := map[string]bool{}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields[v.GetField()] = true
			}
		}
	}
	for _, f := range []string{"name", "source.kafka.bootstrapServers", "transforms[1].filter", "trigger.processingTime", "limits.maxTaskFailures", "sink.file.path"} {
		if !fields[f] {
			t.Errorf("no violation for %s; got %v", f, fields)
		}
	}
}

// TestUnreachableBrokersShowInStatus: a job whose brokers cannot be reached
// keeps RUNNING, retrying, with the reason in its status.
func TestUnreachableBrokersShowInStatus(t *testing.T) {
	c := startCluster(t, t.TempDir())
	s := spec("lost", []string{"127.0.0.1:1"}, "t", t.TempDir(), fast)
	if _, err := c.api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "error in status", func() error {
		j, err := c.api.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: "lost"})
		if err != nil {
			return err
		}
		if j.GetState() != sluicev1.JobState_JOB_STATE_RUNNING || !strings.Contains(j.GetLastError(), "retrying") {
			return fmt.Errorf("state %s, last error %q", j.GetState(), j.GetLastError())
		}
		return nil
	})
}

// TestStopResumeExactlyOnce stops a job mid-stream and submits it again,
// also across a driver restart: the output holds every record once.
func TestStopResumeExactlyOnce(t *testing.T) {
	_, brokers := kafkaWith(t, "ev", 3, 600)
	ckpt, out := t.TempDir(), t.TempDir()
	c := startCluster(t, ckpt)
	ctx := context.Background()
	s := spec("resume", brokers, "ev", out, fast)
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "some batches", func() error {
		j, _ := c.api.GetJob(ctx, &sluicev1.GetJobRequest{Name: "resume"})
		if j.GetLastProgress().GetBatchId() < 2 {
			return fmt.Errorf("batch %d", j.GetLastProgress().GetBatchId())
		}
		return nil
	})
	j, err := c.api.StopJob(ctx, &sluicev1.StopJobRequest{Name: "resume"})
	if err != nil || j.GetState() != sluicev1.JobState_JOB_STATE_STOPPED {
		t.Fatalf("stop: %v %v", j.GetState(), err)
	}
	// Submitting while running is refused; a changed source is refused.
	other := spec("resume", brokers, "other-topic", out, fast)
	_, err = c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: other})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "another source") {
		t.Fatalf("changed source: %v", err)
	}
	// Restart the whole driver on the same checkpoint directory, then resume.
	c.stop()
	produceN(t, brokers, "ev", 600, 900)
	c = startCluster(t, ckpt)
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second submit of a running job: %v", err)
	}
	waitFor(t, "all 900 records", func() error {
		if n := len(ids(t, out, "resume")); n < 900 {
			return fmt.Errorf("%d ids", n)
		}
		return nil
	})
	for id, n := range ids(t, out, "resume") {
		if n != 1 {
			t.Fatalf("id %v written %d times", id, n)
		}
	}
}

// TestFailOnDataLoss: records deleted by retention before they were read
// fail the job with a message naming the partition, unless failOnDataLoss
// is false.
func TestFailOnDataLoss(t *testing.T) {
	kc, brokers := kafkaWith(t, "ret", 1, 100)
	_ = kc
	c := startCluster(t, t.TempDir())
	ctx := context.Background()
	out := t.TempDir()
	s := spec("strict", brokers, "ret", out, availableNow)
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	waitState(t, c.api, "strict", sluicev1.JobState_JOB_STATE_FINISHED)
	// Retention deletes everything below offset 150, then the job resumes at 100.
	produceN(t, brokers, "ret", 100, 200)
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "ret", Partition: 0, At: 150})
	if _, err := kadm.NewClient(adm).DeleteRecords(ctx, offs); err != nil {
		t.Fatal(err)
	}
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	j := waitState(t, c.api, "strict", sluicev1.JobState_JOB_STATE_FAILED)
	if !strings.Contains(j.GetLastError(), "ret/0") || !strings.Contains(j.GetLastError(), "failOnDataLoss") {
		t.Fatalf("last error %q should name the partition and the option", j.GetLastError())
	}
	lenient := spec("lenient", brokers, "ret", filepath.Join(out, "l"), availableNow)
	no := false
	lenient.GetSource().GetKafka().FailOnDataLoss = &no
	lenient.GetSource().GetKafka().StartingOffsets = `{"ret":{"0":100}}`
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: lenient}); err != nil {
		t.Fatal(err)
	}
	waitState(t, c.api, "lenient", sluicev1.JobState_JOB_STATE_FINISHED)
	if got := len(ids(t, filepath.Join(out, "l"), "lenient")); got != 50 {
		t.Fatalf("lenient job read %d records, want the 50 that survive", got)
	}
}

// TestOnceAndWatch: a once trigger runs one batch and finishes; WatchJob
// streams its batch and its end.
func TestOnceAndWatch(t *testing.T) {
	_, brokers := kafkaWith(t, "w", 2, 80)
	c := startCluster(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := spec("one", brokers, "w", t.TempDir(), &sluicev1.Trigger{Kind: &sluicev1.Trigger_Once{Once: true}})
	s.GetSource().GetKafka().MaxOffsetsPerTrigger = 0
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	w, err := c.api.WatchJob(ctx, &sluicev1.WatchJobRequest{Name: "one"})
	if err != nil {
		t.Fatal(err)
	}
	var rows int64
	var last sluicev1.JobState
	for {
		ev, err := w.Recv()
		if err != nil {
			break
		}
		rows += ev.GetBatch().GetNumInputRows()
		last = ev.GetJob().GetState()
	}
	j := waitState(t, c.api, "one", sluicev1.JobState_JOB_STATE_FINISHED)
	if j.GetLastProgress().GetNumInputRows() != 80 {
		t.Fatalf("once batch read %d rows, want 80 (watched %d, last state %s)", j.GetLastProgress().GetNumInputRows(), rows, last)
	}
}
