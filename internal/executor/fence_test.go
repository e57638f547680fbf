package executor

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/pkg/connectors/file"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestCutOffExecutorDoesNotCommit pins the zombie bug: an executor that no
// longer heard its driver kept running its attempts for its own keep-alive
// time, past the driver's heartbeat timeout, so an attempt and its
// replacement could both write. Here the driver goes silent while an attempt
// waits for records; the executor must fence itself (end the session and
// cancel the attempt) and commit nothing, even once the records arrive.
func TestCutOffExecutorDoesNotCommit(t *testing.T) {
	verifyNoLeaks(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "z"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	produce(t, cluster.ListenAddrs(), "z", 5)
	out := t.TempDir()
	spec := &sluicev1.JobSpec{
		Name: "zombie",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: strings.Join(cluster.ListenAddrs(), ","), Subscribe: []string{"z"}, StartingOffsets: "earliest",
		}}},
		Transforms: []*sluicev1.Transform{{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}}},
		Sink:       &sluicev1.Sink{Kind: &sluicev1.Sink_File{File: &sluicev1.FileSink{Path: out}}},
	}
	tasks := plan(t, spec)
	// The range reaches past what is there, so the attempt is still reading
	// when the driver goes quiet.
	task := tasks[0]
	task.Until = []byte(strconv.Itoa(10))

	f, addr := startFakeDriver(t)
	f.fenceMs = 300
	f.hellos = make(chan struct{}, 10)
	_, _, stop := startExecutor(t, addr)
	<-f.hellos
	f.welcome <- struct{}{}
	c := <-f.conns
	if err := c.stream.Send(&clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Tasks{Tasks: &clusterv1.TaskAssignment{
		Jobs: []*sluicev1.JobSpec{spec}, Tasks: []*clusterv1.Task{task},
	}}}); err != nil {
		t.Fatal(err)
	}
	// No pings: the executor fences itself and, with its attempts ended,
	// says hello again.
	select {
	case <-f.hellos:
	case <-time.After(45 * time.Second):
		t.Fatal("the executor did not fence itself: it still holds its session to a silent driver")
	}
	produce(t, cluster.ListenAddrs(), "z", 5) // what the zombie waited for
	if rows, err := file.ReadAll(out, "zombie"); err == nil && len(rows) > 0 {
		t.Fatalf("a fenced attempt committed %d rows", len(rows))
	}
	stop()
}
