package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// startKafkaTopics starts kfake with several topics of the same partition
// count.
func startKafkaTopics(t *testing.T, partitions int, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// readCommittedIDs reads topic from the start up to its last stable offset
// as a read_committed consumer, and counts the "id" of each record's JSON
// value.
func readCommittedIDs(t *testing.T, brokers []string, topic string) (map[int64]int, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, 0, err
	}
	defer admCl.Close()
	ends, err := kadm.NewClient(admCl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return nil, 0, err
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	ids := map[int64]int{}
	total := 0
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, 0, fmt.Errorf("read %s: %w (partitions left: %v)", topic, err, want)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, 0, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() {
				return
			}
			var v struct{ ID int64 }
			if err := json.Unmarshal(r.Value, &v); err != nil {
				ferr = fmt.Errorf("record %d/%d: %w", r.Partition, r.Offset, err)
				return
			}
			ids[v.ID]++
			total++
		})
		if ferr != nil {
			return nil, 0, ferr
		}
	}
	return ids, total, nil
}

// TestKafkaSinkTransactionalExecutorKilled runs a Kafka-to-Kafka job with
// the transactional Kafka sink and kills one of two executors with SIGKILL
// mid-run. Its open transactions are aborted when the retried tasks'
// producers take over their transactional ids, and batches it had already
// committed to Kafka are skipped on replay (commit markers), so a
// read_committed consumer of the output sees every source record exactly
// once.
func TestKafkaSinkTransactionalExecutorKilled(t *testing.T) {
	ctx := context.Background()
	brokers := startKafkaTopics(t, 4, "events", "out")
	produce(t, brokers, "events", 0, 4000)
	c, victim := startSinkCluster(t)

	spec := passThroughSpec("relay", brokers, "events", "", 200)
	spec.Sink = &sluicev1.Sink{Kind: &sluicev1.Sink_Kafka{Kafka: &sluicev1.KafkaSink{
		BootstrapServers: strings.Join(brokers, ","), Topic: "out", Key: "CAST(id AS STRING)", Transactional: true,
	}}}
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	killSinkExecutorMidBatch(t, c, "relay", 3, victim)
	produce(t, brokers, "events", 4000, 6000)

	const n = 6000
	var ids map[int64]int
	var total int
	eventually(t, 2*time.Minute, fmt.Sprintf("a read_committed consumer sees all %d ids", n), func() error {
		var err error
		ids, total, err = readCommittedIDs(t, brokers, "out")
		if err != nil {
			return err
		}
		if len(ids) < n {
			return fmt.Errorf("%d of %d ids so far", len(ids), n)
		}
		return nil
	})
	var dups []string
	for id, k := range ids {
		if k > 1 && len(dups) < 10 {
			dups = append(dups, fmt.Sprintf("id %d ×%d", id, k))
		}
		if id < 0 || id >= n {
			t.Errorf("unexpected id %d in output", id)
		}
	}
	if total != n || len(dups) > 0 {
		t.Fatalf("read_committed consumer sees %d records for %d source records (duplicates: %s)", total, n, strings.Join(dups, ", "))
	}
	j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "relay"})
	if err != nil {
		t.Fatal(err)
	}
	if j.GetState() != sluicev1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job state %s (%s), want RUNNING", j.GetState(), j.GetLastError())
	}
}
