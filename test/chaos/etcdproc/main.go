// Command etcdproc runs a single-member embedded etcd as its own process for
// the fault tests in test/chaos: the test kills, pauses (SIGSTOP) and
// restarts it on the same data directory and ports. It prints "ready" once
// etcd serves clients and stops cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
)

func main() {
	dir := flag.String("dir", "", "data directory (kept across restarts)")
	client := flag.String("client", "127.0.0.1:2379", "client listen address")
	peer := flag.String("peer", "127.0.0.1:2380", "peer listen address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{Dir: *dir, ClientAddr: *client, PeerAddr: *peer, Logger: log})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdproc:", err)
		os.Exit(1)
	}
	fmt.Println("ready", e.Endpoints())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "etcdproc: close:", err)
		os.Exit(1)
	}
}
