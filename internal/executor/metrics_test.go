package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestMetricsAfterTasks runs real Kafka tasks (kfake) handed out by the fake
// driver, plus two that fail, and reads the series from /metrics.
func TestMetricsAfterTasks(t *testing.T) {
	verifyNoLeaks(t)
	const records = 30
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	produce(t, cluster.ListenAddrs(), "events", records)

	spec := &sluicev1.JobSpec{
		Name: "metered",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(cluster.ListenAddrs(), ","), Subscribe: []string{"events"}, StartingOffsets: "earliest",
		}}},
		Transforms: []*sluicev1.Transform{{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}}},
		Sink:       &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
	}
	tasks := plan(t, spec)

	f, addr := startFakeDriver(t)
	_, base, stop := startExecutor(t, addr)
	f.welcome <- struct{}{}
	c := <-f.conns
	// A task without its spec fails retryably; a spec that does not compile
	// fails for good.
	tasks = append(tasks,
		&clusterv1.Task{Job: "nospec", AttemptId: "nospec-1", SpecHash: "unknown", Partition: "p"},
		&clusterv1.Task{Job: "broken", AttemptId: "broken-1", SpecHash: "broken", Partition: "p"})
	broken := &sluicev1.JobSpec{Name: "broken"}
	if err := c.stream.Send(&clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Tasks{Tasks: &clusterv1.TaskAssignment{
		Jobs: []*sluicev1.JobSpec{spec, broken}, Tasks: tasks,
	}}}); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for range tasks {
		r := <-f.results
		if err := rpc.TaskFailure(r); err != nil {
			kinds[r.GetAttemptId()] = rpc.FailureKind(err)
		}
		if strings.HasPrefix(r.GetAttemptId(), "ok-") && !r.GetOk() {
			t.Fatalf("task %s failed: %v", r.GetAttemptId(), rpc.TaskFailure(r))
		}
	}
	if kinds["nospec-1"] != rpc.ErrorKindRetryable || kinds["broken-1"] != rpc.ErrorKindFatal {
		t.Fatalf("error kinds %v", kinds)
	}

	_, body, err := get(base, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	okTasks := float64(len(tasks) - 2)
	for series, want := range map[string]float64{
		`sluice_executor_task_attempts_total{job="metered",outcome="ok"}`:        okTasks,
		`sluice_executor_task_attempts_total{job="nospec",outcome="retryable"}`:  1,
		`sluice_executor_task_attempts_total{job="broken",outcome="fatal"}`:      1,
		`sluice_executor_task_attempts_total{job="metered",outcome="cancelled"}`: -1, // -1: no such series
		`sluice_executor_records_read_total{job="metered"}`:                      records,
		`sluice_executor_records_written_total{job="metered"}`:                   records,
		`sluice_executor_records_read_total{job="broken"}`:                       0,
		`sluice_executor_task_duration_seconds_count{job="metered"}`:             okTasks,
		`sluice_executor_task_duration_seconds_bucket{job="metered",le="+Inf"}`:  okTasks,
		`sluice_executor_task_duration_seconds_count{job="nospec"}`:              1,
		`sluice_executor_tasks_running`:                                          0,
		`sluice_executor_connected`:                                              1,
		`sluice_executor_reconnects_total`:                                       0,
	} {
		got, ok := sample(body, series)
		switch {
		case want < 0 && ok:
			t.Errorf("%s = %v, want no such series", series, got)
		case want >= 0 && !ok:
			t.Errorf("%s missing from /metrics", series)
		case want >= 0 && got != want:
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got, ok := sample(body, `sluice_executor_bytes_read_total{job="metered"}`); !ok || got <= 0 {
		t.Errorf("sluice_executor_bytes_read_total{job=\"metered\"} = %v (present %v), want > 0", got, ok)
	}
	// Runtime series come with the registry, as on the driver.
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if !strings.Contains(body, "\n"+name+" ") {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	// Bounded labels only: the job, the outcome, histogram buckets.
	label := regexp.MustCompile(`[{,](\w+)="`)
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "sluice_executor_") {
			continue
		}
		for _, m := range label.FindAllStringSubmatch(line, -1) {
			if m[1] != "job" && m[1] != "outcome" && m[1] != "le" {
				t.Errorf("label %s in %q", m[1], line)
			}
		}
	}
	stop()
}

// TestOutcome: cancellations, by the session ending or by the driver, are
// told apart from the failure kinds, and the kinds come from the error's
// type, as on the driver.
func TestOutcome(t *testing.T) {
	for _, c := range []struct {
		cancelled bool
		err       error
		want      string
	}{
		{false, nil, "ok"},
		{true, nil, "ok"},
		{false, errors.New("boom"), "retryable"},
		{false, connectors.Permanent(errors.New("bad record")), "fatal"},
		{false, fmt.Errorf("read t/0: %w", &connectors.DataLossError{Partition: "t/0"}), "data_loss"},
		{true, errors.New("read: EOF"), "cancelled"},
		// The text alone says nothing: only the error's chain does.
		{false, errors.New("fetch p0: context canceled"), "retryable"},
		{false, errors.New("data loss on t/0; set failOnDataLoss: false"), "retryable"},
	} {
		if got := outcome(c.err, c.cancelled); got != c.want {
			t.Errorf("outcome(%v, cancelled %v) = %q, want %q", c.err, c.cancelled, got, c.want)
		}
	}
}

// plan asks the job's Kafka source for one availableNow batch and turns its
// ranges into tasks, as the driver would.
func plan(t *testing.T, spec *sluicev1.JobSpec) []*clusterv1.Task {
	t.Helper()
	job, err := jobspec.Compile(spec)
	if err != nil {
		t.Fatal(err)
	}
	src, err := job.NewSource()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := src.Plan(context.Background(), connectors.PlanRequest{Batch: 0, AvailableNow: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Ranges) == 0 {
		t.Fatal("planned no ranges")
	}
	var tasks []*clusterv1.Task
	for i, r := range p.Ranges {
		tasks = append(tasks, &clusterv1.Task{Job: spec.GetName(), Batch: 0, AttemptId: fmt.Sprintf("ok-%d", i), Epoch: 1,
			Partition: string(r.Partition), Split: int32(r.Split), From: r.From, Until: r.Until,
			SpecHash: jobspec.Hash(spec), Incarnation: "test"})
	}
	return tasks
}

func produce(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range n {
		v, _ := json.Marshal(map[string]any{"id": i})
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// sample returns the value of one series line of a Prometheus text page.
func sample(body, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}
