//go:build duckdb_arrow

// Command sluice-fn is Sluice's driver and executor with the sqlfunc
// example's Go functions (mask_iban, to_eur), so that jobs can call them:
//
//	go build -tags duckdb_arrow -o sluice-fn ./examples/sqlfunc/sluice-fn
//	./sluice-fn driver --checkpoint /tmp/sluice &
//	./sluice-fn executor --driver localhost:7077 &
//
// Both take the stock binaries' flags. The driver needs the functions to
// check a job's query at submit, the executors to run it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sluicehq/sluice/examples/sqlfunc/payments"
	"github.com/sluicehq/sluice/sluicecmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice-fn:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fns, err := payments.Functions()
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("usage: sluice-fn driver|executor [flags]")
	}
	switch args[0] {
	case "driver":
		return sluicecmd.Driver(ctx, args[1:], sluicecmd.WithFunctions(fns))
	case "executor":
		return sluicecmd.Executor(ctx, args[1:], sluicecmd.WithFunctions(fns))
	}
	return fmt.Errorf("%q: run driver or executor", args[0])
}
