package testenv

import (
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sluicehq/sluice/internal/cluster"
)

// StartEtcd starts an embedded single-member etcd with its data in
// t.TempDir() on free loopback ports, and stops it when the test ends. It
// returns the client endpoints. Clients made with EtcdClient after this call
// are closed before the server stops.
func StartEtcd(t testing.TB) (endpoints []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{
		Dir: t.TempDir(),
		// Discard: etcd may log after the test has finished, where t.Log panics.
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("stop embedded etcd: %v", err)
		}
	})
	return e.Endpoints()
}

// EtcdClient returns a quiet client of endpoints, closed when the test ends.
func EtcdClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
