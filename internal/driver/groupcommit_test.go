package driver

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// groupCommitErrors reads sluice_group_commit_errors_total{job} from the
// driver's registry.
func groupCommitErrors(t *testing.T, c *testCluster, job string) float64 {
	t.Helper()
	mfs, err := c.d.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_group_commit_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "job" && l.GetValue() == job {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func adminOn(t *testing.T, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// TestCommitOffsetsToGroup runs a job for several batches and finds each
// partition's end offset committed to the group, which has no members.
func TestCommitOffsetsToGroup(t *testing.T) {
	_, brokers := kafkaWith(t, "ev", 3, 300)
	c := startCluster(t, t.TempDir())
	ctx := context.Background()
	s := spec("lagged", brokers, "ev", t.TempDir(), fast)
	s.GetSource().GetKafka().CommitOffsetsToGroup = "sluice-lagged"
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	adm := adminOn(t, brokers)
	latest, err := adm.ListEndOffsets(ctx, "ev")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the group's offsets at the topic's end", func() error {
		committed, err := adm.FetchOffsets(ctx, "sluice-lagged")
		if err != nil {
			return err
		}
		var errs []error
		latest.Each(func(o kadm.ListedOffset) {
			got, ok := committed.Lookup(o.Topic, o.Partition)
			if !ok || got.At != o.Offset {
				errs = append(errs, fmt.Errorf("%s/%d committed %d (found %v), want %d", o.Topic, o.Partition, got.At, ok, o.Offset))
			}
		})
		return errors.Join(errs...)
	})
	j := waitState(t, c.api, "lagged", sluicev1.JobState_JOB_STATE_RUNNING)
	if j.GetLastProgress().GetBatchId() < 5 {
		t.Fatalf("300 records at 50 per batch took %d batches", j.GetLastProgress().GetBatchId()+1)
	}
	if n := groupCommitErrors(t, c, "lagged"); n != 0 {
		t.Fatalf("sluice_group_commit_errors_total = %v, want 0", n)
	}
	groups, err := adm.DescribeGroups(ctx, "sluice-lagged")
	if err != nil {
		t.Fatal(err)
	}
	if g := groups["sluice-lagged"]; len(g.Members) != 0 {
		t.Fatalf("group has members: %+v", g.Members)
	}
}

// TestGroupCommitErrorsAreCounted: the group's coordinator refuses every
// commit; the job keeps RUNNING and committing batches, and the failures
// show in sluice_group_commit_errors_total.
func TestGroupCommitErrorsAreCounted(t *testing.T) {
	fake, brokers := kafkaWith(t, "ev", 2, 300)
	var refused atomic.Int64
	fake.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		refused.Add(1)
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		resp.Version = req.Version
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.GroupAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})

	c := startCluster(t, t.TempDir())
	ctx := context.Background()
	s := spec("refused", brokers, "ev", t.TempDir(), fast)
	s.GetSource().GetKafka().CommitOffsetsToGroup = "sluice-refused"
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "commit errors counted over several batches", func() error {
		if n := groupCommitErrors(t, c, "refused"); n < 3 {
			return fmt.Errorf("sluice_group_commit_errors_total = %v", n)
		}
		return nil
	})
	j := waitState(t, c.api, "refused", sluicev1.JobState_JOB_STATE_RUNNING)
	if j.GetLastProgress().GetBatchId() < 2 {
		t.Fatalf("last batch %d after 3 failed group commits", j.GetLastProgress().GetBatchId())
	}
	if n := groupCommitErrors(t, c, "refused"); n > float64(refused.Load()) {
		t.Fatalf("counted %v errors for %d refused commits", n, refused.Load())
	}
}
