// Command driver runs a Sluice driver: the gRPC API, leader election through
// etcd, and the micro-batch loops of the jobs while it leads. Every flag can
// also be set as SLUICE_<FLAG> (e.g. SLUICE_ETCD).
package main

import (
	"fmt"
	"os"

	"github.com/sluicehq/sluice/internal/process"
	"github.com/sluicehq/sluice/sluicecmd"
)

func main() {
	ctx, stop := process.SignalContext()
	err := sluicecmd.Driver(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "driver:", err)
		os.Exit(1)
	}
}
