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
	"github.com/sluicehq/sluice/internal/secrets"
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
	// Local mode has no certificates: a non-loopback --listen must say so.
	insecure := fs.Bool("insecure", false, "allow a non-loopback --listen (plaintext, no authentication)")
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

	// etcd reports its own shutdown as errors ("use of closed network
	// connection"); its real failures reach us as driver errors, so its log
	// is only shown at debug level.
	etcdLog := slog.New(slog.DiscardHandler)
	if lvl <= slog.LevelDebug {
		etcdLog = log
	}
	etcd, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{Dir: filepath.Join(*dir, "etcd"), Logger: etcdLog})
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		etcd.Close(cctx)
	}()

	// Literal secrets of job specs are encrypted in the local catalog with
	// a key kept in --dir, created once (mode 0600).
	keyFile := filepath.Join(*dir, "secrets.key")
	if _, err := secrets.GenerateKeyFile(keyFile); err != nil {
		return fmt.Errorf("create the local secrets key: %w", err)
	}
	d, err := driver.New(driver.Config{
		Listen: *listen, HTTP: *httpAddr, Etcd: etcd.Endpoints(), Advertise: *listen, SecretsKeyFile: keyFile,
		LeaseTTL: 5 * time.Second, ShutdownTimeout: 5 * time.Second, Insecure: *insecure, Logger: log.With("component", "driver"), Stdout: out,
	})
	if err != nil {
		return err
	}
	// Shutdown order: executors first (they drain running tasks), then the
	// driver (it resigns leadership), then etcd (deferred above).
	driverCtx, stopDriver := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDriver()
	execCtx, stopExecutors := context.WithCancel(ctx)
	defer stopExecutors()
	var driverWG, execWG sync.WaitGroup
	var driverErr error
	driverWG.Add(1)
	go func() {
		defer driverWG.Done()
		driverErr = d.Run(driverCtx)
		stopExecutors() // a driver that stopped by itself takes the cluster down
	}()
	addr := d.Addr()
	for i := range *executors {
		e, err := executor.New(executor.Config{
			Driver: addr, Slots: *slots, ID: fmt.Sprintf("local-%d", i), DrainTimeout: 5 * time.Second,
			Logger: log.With("component", "executor", "executor", i), Stdout: out,
		})
		if err != nil {
			stopExecutors()
			execWG.Wait()
			stopDriver()
			driverWG.Wait()
			return err
		}
		execWG.Add(1)
		go func() {
			defer execWG.Done()
			e.Run(execCtx)
		}()
	}
	fmt.Fprintf(out, "sluice local: driver at %s (HTTP %s), %d executors with %d slots, etcd at %v\n",
		addr, *httpAddr, *executors, *slots, etcd.Endpoints())
	fmt.Fprintf(out, "submit a job with: sluice --driver %s submit job.yaml   (Ctrl-C stops)\n", addr)
	<-execCtx.Done()
	execWG.Wait()
	stopDriver()
	driverWG.Wait()
	if driverErr != nil && !errors.Is(driverErr, context.Canceled) {
		return driverErr
	}
	return nil
}
