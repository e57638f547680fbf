package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/checkpointtest"
	"github.com/sluicehq/sluice/pkg/checkpoint/etcd"
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
