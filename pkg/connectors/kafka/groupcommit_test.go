package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// groupOffsets reads the group's committed offsets as topic/partition →
// offset.
func (c *cluster) groupOffsets(ctx context.Context, group string) (map[string]int64, error) {
	resps, err := c.adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	if err := resps.Error(); err != nil {
		return nil, err
	}
	got := map[string]int64{}
	resps.Each(func(r kadm.OffsetResponse) { got[fmt.Sprintf("%s/%d", r.Topic, r.Partition)] = r.At })
	return got, nil
}

// eventually polls f every 20ms until it returns nil or 20s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantOffsets(ctx context.Context, c *cluster, group string, want map[string]int64) func() error {
	return func() error {
		got, err := c.groupOffsets(ctx, group)
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("committed offsets (-want +got):\n%s", diff)
		}
		return nil
	}
}

func TestCommittedEndsReachTheGroup(t *testing.T) {
	c := newCluster(t, 2, "orders")
	c.produce("orders", 0, 7)
	c.produce("orders", 1, 3)
	cfg := c.config("orders")
	cfg.CommitOffsetsToGroup = "sluice-orders"
	src := newSource(t, cfg)
	ctx := testCtx(t)
	var _ connectors.BatchCommitObserver = src

	p := plan(t, src, connectors.PlanRequest{Batch: 0})
	e := ends(p)
	e["not a partition"] = stream.Position("12") // pseudo entries are not committed
	src.Committed(ctx, 0, e)
	eventually(t, "batch 0 ends in the group", wantOffsets(ctx, c, "sluice-orders", map[string]int64{"orders/0": 7, "orders/1": 3}))

	// Later batches win.
	src.Committed(ctx, 1, map[stream.PartitionID]stream.Position{"orders/0": stream.Position("5"), "orders/1": stream.Position("3")})
	src.Committed(ctx, 2, map[stream.PartitionID]stream.Position{"orders/0": stream.Position("7"), "orders/1": stream.Position("2")})
	eventually(t, "batch 2 ends in the group", wantOffsets(ctx, c, "sluice-orders", map[string]int64{"orders/0": 7, "orders/1": 2}))

	// The group was never joined: lag tools see it without members.
	groups, err := c.adm.DescribeGroups(ctx, "sluice-orders")
	if err != nil {
		t.Fatal(err)
	}
	if g := groups["sluice-orders"]; len(g.Members) != 0 {
		t.Fatalf("group has members %+v", g.Members)
	}
}

// TestCloseCommitsTheLastEnds: ends handed over just before Close are still
// committed, so a finished or stopped job shows its true lag.
func TestCloseCommitsTheLastEnds(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := c.config("orders")
	cfg.CommitOffsetsToGroup = "sluice-orders"
	src, err := kafka.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	src.Committed(ctx, 4, map[stream.PartitionID]stream.Position{"orders/0": stream.Position("0")})
	src.Committed(ctx, 5, map[stream.PartitionID]stream.Position{"orders/0": stream.Position("42")})
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	src.Committed(ctx, 6, map[stream.PartitionID]stream.Position{"orders/0": stream.Position("43")}) // after Close: nothing
	if err := wantOffsets(ctx, c, "sluice-orders", map[string]int64{"orders/0": 42})(); err != nil {
		t.Fatal(err)
	}
}

func TestGroupCommitErrorsAreReportedAndLoggedOnce(t *testing.T) {
	c := newCluster(t, 1, "orders")
	var failing atomic.Bool
	failing.Store(true)
	c.fake.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.fake.KeepControl()
		if !failing.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.OffsetCommitRequest)
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		resp.Version = req.Version
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.GroupAuthorizationFailed.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	cfg := c.config("orders")
	cfg.CommitOffsetsToGroup = "sluice-orders"
	log, logs := logBuffer()
	src := newSource(t, cfg, kafka.WithLogger(log))
	reported := make(chan error, 10)
	src.ReportErrorsTo(func(err error) { reported <- err })
	ctx := testCtx(t)

	for b := range 3 {
		src.Committed(ctx, stream.BatchID(b), map[stream.PartitionID]stream.Position{"orders/0": stream.Position(fmt.Sprint(b))})
		select {
		case err := <-reported:
			if !errors.Is(err, kerr.GroupAuthorizationFailed) {
				t.Fatalf("reported %v, want GROUP_AUTHORIZATION_FAILED", err)
			}
		case <-ctx.Done():
			t.Fatalf("batch %d: no error reported", b)
		}
	}
	if n := strings.Count(logs.String(), "committing offsets to the consumer group failed"); n != 1 {
		t.Fatalf("logged the same error %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "group=sluice-orders") {
		t.Fatalf("log does not name the group:\n%s", logs.String())
	}

	failing.Store(false)
	src.Committed(ctx, 3, map[stream.PartitionID]stream.Position{"orders/0": stream.Position("3")})
	eventually(t, "batch 3 ends in the group", wantOffsets(ctx, c, "sluice-orders", map[string]int64{"orders/0": 3}))
	eventually(t, "recovery logged", func() error {
		if !strings.Contains(logs.String(), "works again") {
			return errors.New("no recovery line")
		}
		return nil
	})
	if len(reported) != 0 {
		t.Fatalf("a successful commit reported %v", <-reported)
	}
}

func TestCommitOffsetsToGroupValidation(t *testing.T) {
	for _, tt := range []struct {
		group, want string
	}{
		{"", ""},
		{"sluice-orders", ""},
		{strings.Repeat("g", 255), ""},
		{strings.Repeat("g", 256), "source.kafka.commitOffsetsToGroup: group id is 256 characters long; at most 255"},
		{"  ", "source.kafka.commitOffsetsToGroup: must not be blank"},
		{"a\nb", "source.kafka.commitOffsetsToGroup: group id \"a\\nb\" holds a control character"},
	} {
		cfg := kafka.Config{BootstrapServers: "127.0.0.1:9092", Subscribe: []string{"t"}, CommitOffsetsToGroup: tt.group}
		err := cfg.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("group %q: %v", tt.group, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("group %q: error %v, want %q", tt.group, err, tt.want)
		}
	}
}
