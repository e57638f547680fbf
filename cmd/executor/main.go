// Command executor runs a Sluice executor: it connects to the leading driver,
// announces --slots task slots and runs the tasks it is given. --http serves
// /healthz (liveness), /readyz (ready = connected to the leading driver and
// not draining) and /metrics (Prometheus). Every flag can also be set as
// SLUICE_<FLAG> (e.g. SLUICE_DRIVER).
package main

import (
	"fmt"
	"os"

	"github.com/sluicehq/sluice/internal/process"
	"github.com/sluicehq/sluice/sluicecmd"
)

func main() {
	ctx, stop := process.SignalContext()
	err := sluicecmd.Executor(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "executor:", err)
		os.Exit(1)
	}
}
