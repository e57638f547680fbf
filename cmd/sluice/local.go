package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/driver"
	"github.com/sluicehq/sluice/internal/executor"
	"github.com/sluicehq/sluice/internal/flagenv"
)

// runLocal starts an embedded etcd, one driver and N executors in this
// process. They talk real gRPC over loopback, exactly as separate processes
// would; only the process boundary is missing.
func runLocal(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("local", flag.ContinueOnError)
	executors := fs.Int("executors", 2, "executors to start")
	slots := fs.Int("slots", 2, "task slots per executor")
	listen := fs.String("listen", "127.0.0.1:7077", "driver gRPC address")
	httpAddr := fs.String("http", "127.0.0.1:8080", "driver HTTP address (metrics, health); empty disables")
	dir := fs.String("dir", "sluice-local", "directory for etcd data")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	if *executors < 1 {
		return fmt.Errorf("--executors (%d) must be at least 1", *executors)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level (%q): %w", *logLevel, err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	etcd, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{Dir: filepath.Join(*dir, "etcd"), Logger: log})
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		etcd.Close(cctx)
	}()

	d, err := driver.New(driver.Config{
		Listen: *listen, HTTP: *httpAddr, Etcd: etcd.Endpoints(), Advertise: *listen,
		LeaseTTL: 5 * time.Second, ShutdownTimeout: 5 * time.Second, Logger: log.With("component", "driver"), Stdout: out,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var driverErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		driverErr = d.Run(ctx)
		cancel()
	}()
	addr := d.Addr()
	for i := range *executors {
		e, err := executor.New(executor.Config{
			Driver: addr, Slots: *slots, ID: fmt.Sprintf("local-%d", i), DrainTimeout: 5 * time.Second,
			Logger: log.With("component", "executor", "executor", i), Stdout: out,
		})
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Run(ctx)
		}()
	}
	fmt.Fprintf(out, "sluice local: driver at %s (HTTP %s), %d executors with %d slots, etcd at %v\n",
		addr, *httpAddr, *executors, *slots, etcd.Endpoints())
	fmt.Fprintf(out, "submit a job with: sluice --driver %s submit job.yaml   (Ctrl-C stops)\n", addr)
	<-ctx.Done()
	wg.Wait()
	if driverErr != nil && !errors.Is(driverErr, context.Canceled) {
		return driverErr
	}
	return nil
}
