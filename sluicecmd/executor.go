//go:build duckdb_arrow

package sluicecmd

import (
	"context"
	"flag"
	"runtime"
	"time"

	"github.com/sluicehq/sluice/internal/executor"
	"github.com/sluicehq/sluice/internal/flagenv"
	"github.com/sluicehq/sluice/internal/process"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/sqlengine"
)

// Executor runs an executor until ctx ends (then drains): args are the
// executor command's flags (every one also readable as SLUICE_<FLAG>).
func Executor(ctx context.Context, args []string, opts ...Option) error {
	o := options(opts)
	fs := flag.NewFlagSet("executor", flag.ContinueOnError)
	var cfg executor.Config
	var logLevel string
	var tc rpc.ClientTLSConfig
	var useTLS bool
	fs.StringVar(&cfg.Driver, "driver", "localhost:7077", "address of a driver; followers redirect to the leader")
	fs.IntVar(&cfg.Slots, "slots", runtime.NumCPU(), "tasks run at once")
	fs.StringVar(&cfg.ID, "id", "", "executor id (default: the name in --tls-cert, else host name and pid)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "address shown in `sluice executors`")
	// Off by default, unlike the driver's :8080: several executors often share
	// a host (tests, bare metal), and a fixed port would make the second one
	// fail. The Helm chart sets :8081.
	fs.StringVar(&cfg.HTTP, "http", "", "HTTP address for /metrics, /healthz, /readyz, e.g. :8081 (empty disables)")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on --http (no authentication: keep --http private)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "how long running tasks may finish on SIGTERM")
	fs.BoolVar(&useTLS, "tls", false, "dial the driver with TLS, verified against the system roots unless --tls-ca is given")
	fs.StringVar(&tc.CAFile, "tls-ca", "", "PEM CA that signed the driver's certificate (implies --tls)")
	fs.StringVar(&tc.CertFile, "tls-cert", "", "PEM client certificate the driver admits executors by (with --tls-key; implies --tls); its name is the default --id")
	fs.StringVar(&tc.KeyFile, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&tc.ServerName, "tls-server-name", "", "name to verify in the driver's certificate (default: the host dialed)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory for the local stores of stateful jobs' state partitions (a cache: checkpoint.state holds the durable copy); default a new directory under the system's temporary directory, removed on exit")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	sqlThreads := fs.Int("sql-threads", 0, "threads of the SQL engine (DuckDB), shared by every task's query; 0: GOMAXPROCS over --slots, at least 1 (each running task's query has its own thread already)")
	sqlMemory := flagenv.Bytes(1 << 30)
	fs.Var(&sqlMemory, "sql-memory-limit", "memory the SQL engine may use for all queries together, e.g. 1GiB; a query that needs more fails (nothing spills to disk)")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	engineOpen, err := configureEngine(o.engine(sqlengine.WithThreads(taskSQLThreads(*sqlThreads, cfg.Slots)), sqlengine.WithMemoryLimit(int64(sqlMemory)))...)
	if err != nil {
		return err
	}
	if useTLS || tc != (rpc.ClientTLSConfig{}) {
		cfg.TLS = &tc
	}
	log, err := process.Logger(logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	warnOpen(log, engineOpen)
	e, err := executor.New(cfg)
	if err != nil {
		return err
	}
	return e.Run(ctx)
}

// taskSQLThreads is the executor's DuckDB threads: threads when given,
// otherwise GOMAXPROCS over slots, at least 1. A task's query runs on the
// thread that calls it, and the executor runs slots of them at once, so
// DuckDB's own workers beyond the cores left only contend with them: on 2
// cores and 2 slots, 1 thread instead of 2 ran make bench's scenario 1 at
// 0.77 of its baseline instead of 0.68 (three runs each), with less CPU
// per record.
func taskSQLThreads(threads, slots int) int {
	if threads > 0 {
		return threads
	}
	return max(1, runtime.GOMAXPROCS(0)/max(slots, 1))
}
