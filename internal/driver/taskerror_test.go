package driver

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestTaskErrorsDecideByType: what a failed task's status says decides the
// job's fate, not its words. A data loss reported by a task fails the job
// at once, naming the partition and offsets; a retryable failure whose text
// reads like a data loss is retried, and the retry's success commits.
func TestTaskErrorsDecideByType(t *testing.T) {
	fail := func(e *fakeExecutor, task *clusterv1.Task, err error) {
		res := &clusterv1.TaskResult{AttemptId: task.GetAttemptId(), Job: task.GetJob(), Batch: task.GetBatch(),
			Partition: task.GetPartition(), Split: task.GetSplit(), Token: task.GetToken()}
		rpc.SetTaskFailure(res, err)
		e.send(&clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Result{Result: res}})
	}
	t.Run("data loss fails the job", func(t *testing.T) {
		_, brokers := kafkaWith(t, "lossy", 1, 10)
		c := startClusterWith(t, t.TempDir(), 0)
		s := spec("lossy", brokers, "lossy", t.TempDir(), availableNow)
		if _, err := c.api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
			t.Fatal(err)
		}
		e := connectFake(t, c.d.Addr(), "e1", 2)
		task := e.next()
		fail(e, task, &connectors.DataLossError{Partition: "lossy/0", Requested: "0", Earliest: "4", Reason: "records deleted by retention"})
		j := waitState(t, c.api, "lossy", sluicev1.JobState_JOB_STATE_FAILED)
		for _, want := range []string{"data loss on lossy/0", "requested 0", "earliest available is 4"} {
			if !strings.Contains(j.GetLastError(), want) {
				t.Errorf("last error %q does not say %q", j.GetLastError(), want)
			}
		}
	})
	t.Run("words do not make a data loss", func(t *testing.T) {
		_, brokers := kafkaWith(t, "flaky", 1, 10)
		c := startClusterWith(t, t.TempDir(), 0)
		s := spec("flaky", brokers, "flaky", t.TempDir(), availableNow)
		if _, err := c.api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
			t.Fatal(err)
		}
		e := connectFake(t, c.d.Addr(), "e1", 2)
		first := e.next()
		fail(e, first, errors.New("data loss on flaky/0: requested 0 but earliest available is 4 (a broker said so, once)"))
		retry := e.next()
		if retry.GetPartition() != first.GetPartition() || retry.GetAttemptId() == first.GetAttemptId() {
			t.Fatalf("after a retryable failure got %s, want a new attempt of %s", retry.GetAttemptId(), first.GetPartition())
		}
		e.result(retry, retry.GetUntil(), retry.GetToken())
		j := waitState(t, c.api, "flaky", sluicev1.JobState_JOB_STATE_FINISHED)
		if j.GetLastProgress().GetTaskRetries() != 1 {
			t.Errorf("task retries %d, want 1", j.GetLastProgress().GetTaskRetries())
		}
	})
}
