package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/internal/rpc"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestLegacyExecutorServiceName: an executor of the release before the
// protocol left sluice.v1 dials /sluice.v1.ExecutorService/Connect; the
// driver welcomes it and counts it like any other.
func TestLegacyExecutorServiceName(t *testing.T) {
	c := startClusterWith(t, filepath.Join(t.TempDir(), "ckpt"), 0)
	conn, err := rpc.Dial(c.d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{StreamName: "Connect", ServerStreams: true, ClientStreams: true}, legacyExecutorConnect)
	if err != nil {
		t.Fatal(err)
	}
	hello := &clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Hello{Hello: &clusterv1.Hello{ExecutorId: "old", Slots: 1}}}
	if err := st.SendMsg(hello); err != nil {
		t.Fatal(err)
	}
	m := &clusterv1.DriverMessage{}
	if err := st.RecvMsg(m); err != nil || m.GetWelcome() == nil {
		t.Fatalf("no welcome on the legacy name: %v %v", m, err)
	}
	waitFor(t, "the legacy executor listed", func() error {
		r, err := c.api.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		if len(r.GetExecutors()) != 1 || r.GetExecutors()[0].GetId() != "old" {
			return fmt.Errorf("executors %v", r.GetExecutors())
		}
		return nil
	})
}
