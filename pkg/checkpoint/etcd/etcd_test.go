package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/checkpointtest"
	"github.com/sluicehq/sluice/pkg/checkpoint/etcd"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// leader campaigns on a fresh client and returns its term.
func leader(t *testing.T, endpoints []string, prefix, advertise string) *cluster.Leadership {
	t.Helper()
	el, err := cluster.New(testenv.EtcdClient(t, endpoints),
		cluster.WithPrefix(prefix), cluster.WithLeaseTTL(10*time.Second), cluster.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { el.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := el.Campaign(ctx, advertise)
	if err != nil {
		t.Fatalf("campaign of %s: %v", advertise, err)
	}
	return l
}

func TestContract(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	var n atomic.Int64
	checkpointtest.Run(t, func(t *testing.T) (checkpoint.Store, checkpoint.Fence, func()) {
		// Every subtest gets its own key space in the one server.
		root := fmt.Sprintf("/test-%d/", n.Add(1))
		first := leader(t, endpoints, root+"leader", "driver-1:7070")
		s, err := etcd.New(testenv.EtcdClient(t, endpoints), etcd.WithPrefix(root))
		if err != nil {
			t.Fatal(err)
		}
		depose := func() {
			// The first leader is deposed the way a crash deposes it (its
			// lease ends), and a second driver takes over.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := first.Resign(ctx); err != nil {
				t.Fatalf("depose first leader: %v", err)
			}
			second := leader(t, endpoints, root+"leader", "driver-2:7070")
			// The new leader's fence works where the old one now fails.
			if err := s.PutJob(ctx, second.Fence(), checkpoint.JobRecord{Name: "probe"}); err != nil {
				t.Fatalf("write with the new leader's fence: %v", err)
			}
			if err := s.DeleteJob(ctx, second.Fence(), "probe"); err != nil {
				t.Fatalf("delete with the new leader's fence: %v", err)
			}
		}
		return s, first.Fence(), depose
	})
}

func TestZeroFenceRefused(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	s, err := etcd.New(testenv.EtcdClient(t, endpoints))
	if err != nil {
		t.Fatal(err)
	}
	err = s.PutJob(context.Background(), checkpoint.Fence{}, checkpoint.JobRecord{Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "not a leadership fence") {
		t.Fatalf("put with zero fence: got %v, want a \"not a leadership fence\" error", err)
	}
	if errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("zero fence reported as ErrFenced (%v): it is a programming error, not a lost election", err)
	}
}

// TestFenceOfUnknownKey: a fence whose election key never existed (or was
// deleted) compares against create revision 0 and must fail.
func TestFenceOfUnknownKey(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	s, err := etcd.New(testenv.EtcdClient(t, endpoints))
	if err != nil {
		t.Fatal(err)
	}
	err = s.PutJob(context.Background(), checkpoint.Fence{Key: "/sluice/leader/gone", Epoch: 5}, checkpoint.JobRecord{Name: "x"})
	if !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("put with a fence of a missing key: got %v, want ErrFenced", err)
	}
}

func TestKeyLayout(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	client := testenv.EtcdClient(t, endpoints)
	l := leader(t, endpoints, "/sluice/leader", "d:1")
	s, err := etcd.New(client)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := l.Fence()
	job := "team/orders"
	for _, err := range []error{
		s.PutJob(ctx, f, checkpoint.JobRecord{Name: job}),
		s.PutPlan(ctx, f, job, checkpoint.BatchPlan{Batch: 42}),
		s.PutTaskEnd(ctx, f, job, 42, "orders/3#1", []byte("7")),
		s.PutCommit(ctx, f, job, checkpoint.Commit{Batch: 42}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{
		"/sluice/jobs/team%2Forders",
		"/sluice/plans/team%2Forders/00000000000000000042",
		"/sluice/ends/team%2Forders/00000000000000000042/orders/3#1",
		"/sluice/commits/team%2Forders/00000000000000000042",
	} {
		resp, err := client.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 {
			t.Errorf("key %s missing", key)
		}
	}
}

func TestNewValidates(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	client := testenv.EtcdClient(t, endpoints)
	for _, tc := range []struct {
		name string
		err  string
		run  func() error
	}{
		{"nil client", "client is nil", func() error { _, err := etcd.New(nil); return err }},
		{"empty prefix", "must be non-empty", func() error { _, err := etcd.New(client, etcd.WithPrefix("")); return err }},
		{"prefix without slash", "end with '/'", func() error { _, err := etcd.New(client, etcd.WithPrefix("/x")); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want error containing %q", err, tc.err)
			}
		})
	}
}

// A plan of ~12,000 partitions used to be one etcd value, and etcd refused
// the request as too large (1.5 MiB by default), so such a job could never
// run. Large plans and commits are now chunked; this writes, rewrites, reads
// back, purges and deletes them.
func TestLargePlanAndCommit(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	client := testenv.EtcdClient(t, endpoints)
	l := leader(t, endpoints, "/big/leader", "d:1")
	s, err := etcd.New(client, etcd.WithPrefix("/big/"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := l.Fence()
	const job = "wide"

	bigPlan := func(b stream.BatchID, n int, tag string) checkpoint.BatchPlan {
		p := checkpoint.BatchPlan{Batch: b, Start: map[stream.PartitionID]stream.Position{}, Planned: time.Unix(1700000000, 0).UTC()}
		for i := range n {
			id := stream.PartitionID(fmt.Sprintf("topic-with-a-long-name/%d", i))
			// Large positions, e.g. Kinesis sequence numbers.
			from := stream.Position(fmt.Sprintf("%s-4959%052d", tag, i))
			until := stream.Position(fmt.Sprintf("%s-4960%052d", tag, i))
			p.Ranges = append(p.Ranges, stream.Range{Partition: id, From: from, Until: until})
			p.Start[id] = from
		}
		return p
	}
	bigCommit := func(p checkpoint.BatchPlan) checkpoint.Commit {
		c := checkpoint.Commit{Batch: p.Batch, Ends: map[stream.PartitionID]stream.Position{}, Committed: p.Planned}
		for _, r := range p.Ranges {
			c.Ends[r.Partition] = r.Until
		}
		return c
	}
	countKeys := func(prefix string) int64 {
		t.Helper()
		resp, err := client.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}

	for _, tt := range []struct {
		name   string
		batch  stream.BatchID
		ranges int
		tag    string
	}{
		{"large plan", 1, 12000, "a"},
		{"rewritten larger", 1, 13000, "b"},
		{"rewritten small", 1, 3, "c"},
		{"next batch large", 2, 12000, "d"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := bigPlan(tt.batch, tt.ranges, tt.tag)
			if err := s.PutPlan(ctx, f, job, want); err != nil {
				t.Fatalf("PutPlan of %d ranges: %v", tt.ranges, err)
			}
			got, err := s.LatestPlan(ctx, job)
			if err != nil {
				t.Fatalf("LatestPlan: %v", err)
			}
			if !reflect.DeepEqual(want, got) { // cmp.Diff is slow on 12,000 ranges
				t.Fatalf("plan read back (-want +got):\n%s", cmp.Diff(want, got))
			}
			wantC := bigCommit(want)
			if err := s.PutCommit(ctx, f, job, wantC); err != nil {
				t.Fatalf("PutCommit of %d ends: %v", tt.ranges, err)
			}
			gotC, err := s.LatestCommit(ctx, job)
			if err != nil {
				t.Fatalf("LatestCommit: %v", err)
			}
			if !reflect.DeepEqual(wantC, gotC) {
				t.Fatalf("commit read back (-want +got):\n%s", cmp.Diff(wantC, gotC))
			}
		})
	}
	// Only the parts of the latest generation of batch 2 remain: batch 1's
	// small rewrite removed its parts.
	if n := countKeys("/big/planparts/wide/00000000000000000001/"); n != 0 {
		t.Fatalf("%d plan parts of batch 1 left after a small rewrite", n)
	}
	if countKeys("/big/planparts/wide/00000000000000000002/") == 0 || countKeys("/big/commitparts/wide/00000000000000000002/") == 0 {
		t.Fatal("batch 2 was not chunked")
	}
	if err := s.Purge(ctx, f, job, 3); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/big/planparts/", "/big/commitparts/"} {
		if n := countKeys(p); n != 0 {
			t.Fatalf("%d keys under %s after Purge", n, p)
		}
	}
	if err := s.PutPlan(ctx, f, job, bigPlan(3, 12000, "e")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob(ctx, f, job); err != nil {
		t.Fatal(err)
	}
	if n := countKeys("/big/"); n != countKeys("/big/leader") {
		t.Fatalf("%d keys left under /big/ after DeleteJob besides the election", n)
	}
}

// A head whose parts are missing is an error, never a partial entry.
func TestChunkedHeadWithoutParts(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	client := testenv.EtcdClient(t, endpoints)
	s, err := etcd.New(client, etcd.WithPrefix("/h/"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	head := `{"chunked":{"gen":"00","parts":2,"size":10,"sha256":"x"}}`
	if _, err := client.Put(ctx, "/h/plans/j/00000000000000000001", head); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Put(ctx, "/h/planparts/j/00000000000000000001/00/000000", `{"batch":`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LatestPlan(ctx, "j"); err == nil || !strings.Contains(err.Error(), "1 of its 2 parts") {
		t.Fatalf("LatestPlan with a missing part = %v, want an error", err)
	}
}

// One truncated catalog entry used to fail ListJobs as a whole, so an
// elected driver could start none of the jobs and exited. The bad entry
// must be listed by name with Unreadable set, the others as usual, and
// DeleteJob must remove it.
func TestListJobsUnreadableEntry(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	client := testenv.EtcdClient(t, endpoints)
	l := leader(t, endpoints, "/u/leader", "d:1")
	f := l.Fence()
	for i, tt := range []struct{ name, value string }{
		{"truncated", `{"name":"team/bad","spec":"CgN`},
		{"empty", ``},
		{"wrong type", `{"name":42}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/u/%d/", i)
			s, err := etcd.New(client, etcd.WithPrefix(prefix))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, rec := range []checkpoint.JobRecord{{Name: "a-good", State: "RUNNING"}, {Name: "team/bad"}, {Name: "z-good"}} {
				if err := s.PutJob(ctx, f, rec); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := client.Put(ctx, prefix+"jobs/team%2Fbad", tt.value); err != nil {
				t.Fatal(err)
			}
			jobs, err := s.ListJobs(ctx)
			if err != nil {
				t.Fatalf("ListJobs with one bad entry: %v", err)
			}
			if len(jobs) != 3 || jobs[0].Name != "a-good" || jobs[1].Name != "team/bad" || jobs[2].Name != "z-good" {
				t.Fatalf("ListJobs = %+v, want a-good, team/bad, z-good", jobs)
			}
			if jobs[0].Unreadable != nil || jobs[2].Unreadable != nil || jobs[0].State != "RUNNING" {
				t.Fatalf("good entries: %+v", jobs)
			}
			if jobs[1].Unreadable == nil {
				t.Fatalf("bad entry listed without Unreadable: %+v", jobs[1])
			}
			if err := s.DeleteJob(ctx, f, "team/bad"); err != nil {
				t.Fatalf("DeleteJob of the bad entry: %v", err)
			}
			if jobs, err = s.ListJobs(ctx); err != nil || len(jobs) != 2 {
				t.Fatalf("after DeleteJob: %+v, %v", jobs, err)
			}
		})
	}
}
