package driver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/executor"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestSpeculationFinishesTheBatchOnTheCopy: one executor takes tasks and
// never answers them (a straggler that still heartbeats, so it is not
// lost); with speculation on, its tasks get copies on the healthy
// executor once the others finished, the batch commits without waiting for
// the task timeout, the straggler's attempts are superseded (its late
// results ignored), and every record is written once.
func TestSpeculationFinishesTheBatchOnTheCopy(t *testing.T) {
	_, brokers := kafkaWith(t, "spec", 8, 400)
	c := startClusterWith(t, t.TempDir(), 0)
	ctx := context.Background()

	// The straggler connects first, so it surely gets tasks.
	slow := connectFake(t, c.d.Addr(), "slow", 4)
	out := filepath.Join(t.TempDir(), "out")
	s := spec("spec", brokers, "spec", out, availableNow)
	s.GetSource().GetKafka().MaxOffsetsPerTrigger = 0
	s.Speculation = &sluicev1.Speculation{Enabled: true, Quantile: 0.5, Multiplier: 1.5, MinTaskRuntime: "50ms"}
	s.Limits = &sluicev1.Limits{TaskTimeout: "10m"} // only speculation can finish the batch in time
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	held := []*clusterv1.Task{slow.next()}

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := executor.New(executor.Config{Driver: c.d.Addr(), Slots: 4, ID: "healthy", Logger: log, Stdout: io.Discard, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ectx, stopExec := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ectx) }()
	t.Cleanup(func() { stopExec(); <-done })

	j := waitState(t, c.api, "spec", sluicev1.JobState_JOB_STATE_FINISHED)
	for more := true; more; {
		select {
		case task := <-slow.tasks:
			held = append(held, task)
		default:
			more = false
		}
	}
	// The straggler answers at last, with its tokens: too late, ignored.
	for _, task := range held {
		slow.result(task, task.GetUntil(), task.GetToken())
	}

	p := j.GetLastProgress()
	if p.GetSpeculativeTasks() < int32(len(held)) {
		t.Errorf("%d speculative copies, want one for each of the straggler's %d tasks", p.GetSpeculativeTasks(), len(held))
	}
	for _, part := range p.GetPartitions() {
		if part.GetExecutor() != "healthy" {
			t.Errorf("partition %s committed from %s's attempt", part.GetPartition(), part.GetExecutor())
		}
	}
	got := ids(t, out, "spec")
	if len(got) != 400 {
		t.Fatalf("%d distinct records written, want 400", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("record %d written %d times", id, n)
		}
	}
	rec := httptest.NewRecorder()
	c.d.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := fmt.Sprintf(`sluice_speculative_tasks_total{job="spec"} %d`, p.GetSpeculativeTasks()); !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
