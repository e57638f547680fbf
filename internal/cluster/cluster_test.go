package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/etcd"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// wait bounds how long a test waits for an election event.
const wait = 15 * time.Second

func newElection(t *testing.T, client *clientv3.Client, opts ...cluster.Option) *cluster.Election {
	t.Helper()
	// A long TTL unless a test is about expiry: with -race on a loaded
	// machine a 2s lease can expire by accident.
	opts = append([]cluster.Option{cluster.WithLeaseTTL(10 * time.Second), cluster.WithLogger(quiet)}, opts...)
	el, err := cluster.New(client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		el.Close(ctx)
	})
	return el
}

func campaign(t *testing.T, el cluster.Elector, advertise string) *cluster.Leadership {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	l, err := el.Campaign(ctx, advertise)
	if err != nil {
		t.Fatalf("campaign of %s: %v", advertise, err)
	}
	return l
}

type result struct {
	l   *cluster.Leadership
	err error
}

// campaignAsync campaigns in the background; the test must receive from the
// channel (or cancel ctx and then receive) before it ends.
func campaignAsync(ctx context.Context, el cluster.Elector, advertise string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := el.Campaign(ctx, advertise)
		ch <- result{l, err}
	}()
	return ch
}

func leaderIs(t *testing.T, el cluster.Elector, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	got, err := el.Leader(ctx)
	if err != nil || got != want {
		t.Fatalf("Leader() = %q, %v; want %q", got, err, want)
	}
}

func closed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("%s: not closed after %s", what, wait)
	}
}

func open(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// revokeLease ends the term's lease from outside, as etcd does when a
// leader stops refreshing it.
func revokeLease(t *testing.T, c *clientv3.Client, l *cluster.Leadership) {
	t.Helper()
	ctx := context.Background()
	resp, err := c.Get(ctx, l.Fence().Key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get election key %s: %v (%d keys)", l.Fence().Key, err, len(resp.Kvs))
	}
	if _, err := c.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
}

func TestOneLeaderAndFailoverOnLeaseEnd(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	admin := testenv.EtcdClient(t, endpoints)
	a := newElection(t, testenv.EtcdClient(t, endpoints))
	b := newElection(t, testenv.EtcdClient(t, endpoints))
	store, err := etcd.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	la := campaign(t, a, "driver-a:7070")
	if f := la.Fence(); !strings.HasPrefix(f.Key, cluster.DefaultPrefix+"/") || f.Epoch <= 0 {
		t.Fatalf("fence %+v: want a key under %s/ and a positive epoch", f, cluster.DefaultPrefix)
	}
	bctx, cancelB := context.WithCancel(ctx)
	defer cancelB()
	bres := campaignAsync(bctx, b, "driver-b:7070")
	select {
	case r := <-bres:
		t.Fatalf("second candidate's Campaign returned while the first leads: %+v", r)
	case <-time.After(500 * time.Millisecond):
	}
	leaderIs(t, b, "driver-a:7070")
	leaderIs(t, a, "driver-a:7070")
	if err := store.PutJob(ctx, la.Fence(), checkpoint.JobRecord{Name: "j"}); err != nil {
		t.Fatalf("leader's write: %v", err)
	}

	revokeLease(t, admin, la)
	closed(t, "deposed leader's Lost", la.Lost())

	var lb *cluster.Leadership
	select {
	case r := <-bres:
		if r.err != nil {
			t.Fatalf("second candidate's Campaign: %v", r.err)
		}
		lb = r.l
	case <-time.After(wait):
		t.Fatal("second candidate did not become leader")
	}
	leaderIs(t, a, "driver-b:7070")
	if lb.Fence() == la.Fence() {
		t.Fatalf("new term reuses the old fence %+v", lb.Fence())
	}
	if !open(lb.Lost()) {
		t.Fatal("new leader's Lost is closed")
	}

	err = store.PutPlan(ctx, la.Fence(), "j", checkpoint.BatchPlan{Batch: 1})
	if !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("deposed leader's write: got %v, want ErrFenced", err)
	}
	if err := store.PutPlan(ctx, lb.Fence(), "j", checkpoint.BatchPlan{Batch: 1}); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
}

// TestFailoverOnClientClose: a leader that dies without revoking (its
// client closes) keeps its key until the lease TTL expires; then a follower
// leads.
func TestFailoverOnClientClose(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	aClient := testenv.EtcdClient(t, endpoints)
	a := newElection(t, aClient, cluster.WithLeaseTTL(2*time.Second))
	b := newElection(t, testenv.EtcdClient(t, endpoints), cluster.WithLeaseTTL(2*time.Second))
	store, err := etcd.New(testenv.EtcdClient(t, endpoints))
	if err != nil {
		t.Fatal(err)
	}

	la := campaign(t, a, "driver-a:7070")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	bres := campaignAsync(ctx, b, "driver-b:7070")

	aClient.Close()
	// The leader learns at once (its keep-alive stops), well before the
	// lease expires and the follower takes over.
	select {
	case <-la.Lost():
	case r := <-bres:
		t.Fatalf("follower leads (%v) before the old leader saw Lost", r.err)
	case <-time.After(wait):
		t.Fatal("Lost not closed after the leader's client closed")
	}
	r := <-bres
	if r.err != nil {
		t.Fatalf("follower's Campaign after the leader's lease expired: %v", r.err)
	}
	leaderIs(t, b, "driver-b:7070")
	if err := store.PutJob(context.Background(), la.Fence(), checkpoint.JobRecord{Name: "j"}); !errors.Is(err, checkpoint.ErrFenced) {
		t.Fatalf("dead leader's write: got %v, want ErrFenced", err)
	}
}

func TestResignHandsOverAtOnce(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	a := newElection(t, testenv.EtcdClient(t, endpoints), cluster.WithLeaseTTL(60*time.Second))
	b := newElection(t, testenv.EtcdClient(t, endpoints), cluster.WithLeaseTTL(60*time.Second))
	la := campaign(t, a, "driver-a:7070")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	bres := campaignAsync(ctx, b, "driver-b:7070")

	start := time.Now()
	if err := la.Resign(ctx); err != nil {
		t.Fatalf("resign: %v", err)
	}
	if open(la.Lost()) {
		t.Fatal("Lost still open after Resign returned")
	}
	r := <-bres
	if r.err != nil {
		t.Fatalf("follower's Campaign: %v", r.err)
	}
	// With a 60s TTL only the resignation can explain a quick handover.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("handover took %s", d)
	}
	if err := la.Resign(ctx); err != nil {
		t.Fatalf("second Resign: %v", err)
	}
	leaderIs(t, a, "driver-b:7070")
}

// TestLostWhenKeyDeleted: an operator deleting the election key ends the
// term for etcd (writes are fenced) although the lease lives on; the leader
// must notice instead of believing it still leads.
func TestLostWhenKeyDeleted(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	admin := testenv.EtcdClient(t, endpoints)
	a := newElection(t, testenv.EtcdClient(t, endpoints))
	la := campaign(t, a, "driver-a:7070")
	if _, err := admin.Delete(context.Background(), la.Fence().Key); err != nil {
		t.Fatal(err)
	}
	closed(t, "Lost after the election key was deleted", la.Lost())
}

func TestCampaignCancelledLeavesNoCandidate(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	admin := testenv.EtcdClient(t, endpoints)
	a := newElection(t, testenv.EtcdClient(t, endpoints))
	b := newElection(t, testenv.EtcdClient(t, endpoints))
	campaign(t, a, "driver-a:7070")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := b.Campaign(ctx, "driver-b:7070")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled Campaign: got %v, want context.DeadlineExceeded", err)
	}
	resp, err := admin.Get(context.Background(), cluster.DefaultPrefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 1 {
		t.Fatalf("%d candidate keys after a cancelled campaign, want only the leader's", resp.Count)
	}
}

func TestCloseEndsTermAndHandsOver(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	a := newElection(t, testenv.EtcdClient(t, endpoints), cluster.WithLeaseTTL(60*time.Second))
	b := newElection(t, testenv.EtcdClient(t, endpoints), cluster.WithLeaseTTL(60*time.Second))
	la := campaign(t, a, "driver-a:7070")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	bres := campaignAsync(ctx, b, "driver-b:7070")

	if err := a.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if open(la.Lost()) {
		t.Fatal("Lost still open after Close returned")
	}
	if r := <-bres; r.err != nil {
		t.Fatalf("follower's Campaign after the leader closed: %v", r.err)
	}
	if _, err := a.Campaign(ctx, "driver-a:7070"); !errors.Is(err, cluster.ErrClosed) {
		t.Fatalf("Campaign after Close: got %v, want ErrClosed", err)
	}
}

func TestCloseStopsCampaign(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	a := newElection(t, testenv.EtcdClient(t, endpoints))
	b := newElection(t, testenv.EtcdClient(t, endpoints))
	campaign(t, a, "driver-a:7070")
	bres := campaignAsync(context.Background(), b, "driver-b:7070")
	time.Sleep(200 * time.Millisecond)
	if err := b.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case r := <-bres:
		if !errors.Is(r.err, cluster.ErrClosed) {
			t.Fatalf("Campaign interrupted by Close: got %v, want ErrClosed", r.err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not stop a waiting Campaign")
	}
}

func TestLeaderAndObserve(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	admin := testenv.EtcdClient(t, endpoints)
	a := newElection(t, testenv.EtcdClient(t, endpoints))
	b := newElection(t, testenv.EtcdClient(t, endpoints))
	watcher := newElection(t, testenv.EtcdClient(t, endpoints))

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := watcher.Leader(ctx); !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("Leader with no candidate: got %v, want ErrNoLeader", err)
	}
	obs := watcher.Observe(ctx)
	// next expects want, allowing "no leader" in between when
	// allowGap: b's candidate key may appear only after a's is gone.
	next := func(want string, allowGap bool) {
		t.Helper()
		for {
			select {
			case got, ok := <-obs:
				if ok && got == "" && allowGap {
					continue
				}
				if !ok || got != want {
					t.Fatalf("Observe: got %q (open %v), want %q", got, ok, want)
				}
				return
			case <-ctx.Done():
				t.Fatalf("Observe: nothing received, want %q", want)
			}
		}
	}
	next("", false)
	la := campaign(t, a, "driver-a:7070")
	next("driver-a:7070", false)
	bres := campaignAsync(ctx, b, "driver-b:7070")
	revokeLease(t, admin, la)
	next("driver-b:7070", true)
	if r := <-bres; r.err != nil {
		t.Fatal(r.err)
	}
	cancel()
	for range obs {
	}
}

func TestNewValidates(t *testing.T) {
	endpoints := testenv.StartEtcd(t)
	client := testenv.EtcdClient(t, endpoints)
	for _, tc := range []struct {
		name   string
		client *clientv3.Client
		opts   []cluster.Option
		err    string
	}{
		{"nil client", nil, nil, "client is nil"},
		{"empty prefix", client, []cluster.Option{cluster.WithPrefix("/")}, "prefix must not be empty"},
		{"short TTL", client, []cluster.Option{cluster.WithLeaseTTL(time.Second)}, "lease TTL (1s) must be at least 2s"},
		{"fractional TTL", client, []cluster.Option{cluster.WithLeaseTTL(2500 * time.Millisecond)}, "whole number of seconds"},
		{"nil logger", client, []cluster.Option{cluster.WithLogger(nil)}, "logger must not be nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cluster.New(tc.client, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want error containing %q", err, tc.err)
			}
		})
	}
	el, err := cluster.New(client, cluster.WithPrefix("/custom/leader/"), cluster.WithLogger(quiet))
	if err != nil {
		t.Fatalf("valid options: %v", err)
	}
	defer el.Close(context.Background())
	l := campaign(t, el, "d:1")
	if !strings.HasPrefix(l.Fence().Key, "/custom/leader/") || strings.HasPrefix(l.Fence().Key, "/custom/leader//") {
		t.Fatalf("key %q: want one directly under /custom/leader/", l.Fence().Key)
	}
	if _, err := el.Campaign(context.Background(), ""); err == nil {
		t.Fatal("Campaign with an empty address accepted")
	}
}

func TestStandalone(t *testing.T) {
	var el cluster.Elector = cluster.Standalone("localhost:7070")
	ctx := context.Background()
	l := campaign(t, el, "localhost:7070")
	if l.Fence() != (checkpoint.Fence{}) {
		t.Fatalf("standalone fence = %+v, want zero", l.Fence())
	}
	leaderIs(t, el, "localhost:7070")
	if !open(l.Lost()) {
		t.Fatal("standalone Lost closed while leading")
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	closed(t, "Lost after Resign", l.Lost())
	l2 := campaign(t, el, "localhost:7070")
	if err := el.Close(ctx); err != nil {
		t.Fatal(err)
	}
	closed(t, "Lost after Close", l2.Lost())
	if _, err := el.Campaign(ctx, "localhost:7070"); !errors.Is(err, cluster.ErrClosed) {
		t.Fatalf("Campaign after Close: got %v, want ErrClosed", err)
	}
}

func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := func() *cluster.Embedded {
		e, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{Dir: dir, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	client := func(e *cluster.Embedded) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	e := start()
	c := client(e)
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	e = start() // new free ports, same data
	defer e.Close(ctx)
	c = client(e)
	defer c.Close()
	resp, err := c.Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v, %v", resp, err)
	}
}

func TestEmbeddedNeedsDir(t *testing.T) {
	_, err := cluster.StartEmbeddedEtcd(context.Background(), cluster.EmbeddedConfig{})
	if err == nil || !strings.Contains(err.Error(), "Dir") {
		t.Fatalf("got %v, want an error naming Dir", err)
	}
}

// TestEtcdUnreachable: when etcd goes away, the leader must learn it lost
// (its lease can no longer be refreshed, so a new leader may be elected on
// the other side of a partition) and a waiting candidate must still return
// when its ctx ends.
func TestEtcdUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	srv, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	a := newElection(t, testenv.EtcdClient(t, srv.Endpoints()), cluster.WithLeaseTTL(2*time.Second))
	b := newElection(t, testenv.EtcdClient(t, srv.Endpoints()), cluster.WithLeaseTTL(2*time.Second))
	la := campaign(t, a, "driver-a:7070")
	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	bres := campaignAsync(bctx, b, "driver-b:7070")
	time.Sleep(300 * time.Millisecond) // let b put its key and wait

	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed(t, "leader's Lost with etcd unreachable", la.Lost())
	t.Logf("leader saw Lost %s after etcd stopped", time.Since(start))

	start = time.Now()
	bcancel()
	select {
	case r := <-bres:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled Campaign: got %v, want context.Canceled", r.err)
		}
	case <-time.After(wait):
		t.Fatal("Campaign did not return after its ctx was cancelled with etcd unreachable")
	}
	// Bounded by the best-effort revoke of its lease (the 2s TTL).
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled Campaign took %s to return", d)
	}
}
