package executor

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/connectors"
)

// TestDataLossTravelsTyped: a Kafka task whose records retention deleted
// after planning fails with DATA_LOSS; the partition and offsets travel as
// ErrorInfo metadata, and the driver's decoding gives back a
// *connectors.DataLossError, permanent, with the executor's message. Before,
// only the text and the kind "data_loss" travelled.
func TestDataLossTravelsTyped(t *testing.T) {
	verifyNoLeaks(t)
	r := newSessionRig(t, time.Second)
	task := r.task(t, "lost-1", 5) // offsets [0, 5)
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: "s", Partition: 0, At: 3})
	if _, err := kadm.NewClient(cl).DeleteRecords(context.Background(), offs); err != nil {
		t.Fatal(err)
	}

	c, end := r.start(t, context.Background())
	r.send(t, c, task)
	res := r.result(t)
	c.kick <- nil
	waitEnd(t, end, 10*time.Second)

	st := status.FromProto(res.GetStatus())
	if res.GetOk() || st.Code() != codes.DataLoss {
		t.Fatalf("result ok %v, status %v; want DATA_LOSS", res.GetOk(), st)
	}
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	if info == nil || info.GetReason() != "DATA_LOSS" || info.GetMetadata()[rpc.MetaPartition] != task.GetPartition() ||
		info.GetMetadata()[rpc.MetaRequested] != "0" || info.GetMetadata()[rpc.MetaEarliest] != "3" {
		t.Fatalf("ErrorInfo %v; want DATA_LOSS with partition %s, requested 0, earliest 3", info, task.GetPartition())
	}
	err = rpc.TaskFailure(res)
	var dl *connectors.DataLossError
	if !errors.As(err, &dl) || !connectors.IsPermanent(err) || err.Error() != st.Message() {
		t.Fatalf("decoded %q (%T): want a permanent *connectors.DataLossError", err, err)
	}
	if diff := cmp.Diff(&connectors.DataLossError{Partition: dl.Partition, Requested: "0", Earliest: "3", Reason: dl.Reason}, dl); diff != "" || dl.Partition == "" {
		t.Errorf("decoded fields (-want +got):\n%s", diff)
	}
	t.Logf("decoded: %v", err)
	// The executor's metrics label it from the same error's type.
	if got := attemptsCounted(t, r.e, "sess", "data_loss"); got != 1 {
		t.Errorf("sluice_executor_task_attempts_total{outcome=data_loss} = %v, want 1", got)
	}
}

// attemptsCounted reads sluice_executor_task_attempts_total{job, outcome}.
func attemptsCounted(t *testing.T, e *Executor, job, outcome string) float64 {
	t.Helper()
	mfs, err := e.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_executor_task_attempts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["job"] == job && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
