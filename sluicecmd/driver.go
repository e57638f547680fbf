//go:build duckdb_arrow

package sluicecmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"time"

	"github.com/sluicehq/sluice/internal/driver"
	"github.com/sluicehq/sluice/internal/flagenv"
	"github.com/sluicehq/sluice/internal/process"
	"github.com/sluicehq/sluice/pkg/sqlengine"
)

// Driver runs a driver until ctx ends (or its leadership is lost): args are
// the driver command's flags (every one also readable as SLUICE_<FLAG>).
func Driver(ctx context.Context, args []string, opts ...Option) error {
	o := options(opts)
	fs := flag.NewFlagSet("driver", flag.ContinueOnError)
	var cfg driver.Config
	var etcd, logLevel string
	fs.StringVar(&cfg.Listen, "listen", ":7077", "gRPC listen address")
	fs.StringVar(&cfg.HTTP, "http", ":8080", "HTTP address for /metrics, /healthz, /readyz (empty disables)")
	fs.StringVar(&etcd, "etcd", "", "comma-separated etcd endpoints; none runs a standalone driver on --checkpoint")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on --http")
	fs.StringVar(&cfg.Advertise, "advertise", "", "address executors and clients use to reach this driver (default: host name and --listen port)")
	fs.StringVar(&cfg.AdvertiseHTTP, "advertise-http", "", "URL of this driver's web UI as browsers reach it; followers redirect there (default: --http's port on --advertise's host)")
	fs.StringVar(&cfg.Checkpoint, "checkpoint", "sluice-checkpoints", "local checkpoint directory of a standalone driver")
	fs.StringVar(&cfg.EtcdCACert, "etcd-cacert", "", "PEM file of the CA that signed etcd's certificate (TLS to etcd)")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", "", "PEM client certificate for etcd (with --etcd-key)")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", "", "PEM client key for etcd (with --etcd-cert)")
	fs.StringVar(&cfg.SecretsKeyFile, "secrets-key-file", "", "file of AES-256 keys, newest first, that encrypt literal secrets of job specs in the catalog (create one: head -c32 /dev/urandom | base64); default: a standalone driver generates <checkpoint>/secrets.key, drivers on etcd refuse literal secrets (use ${env:NAME} or ${file:/path} references)")
	fs.StringVar(&cfg.Store, "store", "", "keep the job catalog and checkpoints in dynamodb://<table>?region=..&endpoint=.. or s3://<bucket>/<prefix>?region=..&endpoint=.. instead of etcd (needs --etcd)")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", 10*time.Second, "etcd election lease; a dead leader is replaced after about this long")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 2*time.Second, "how often executors heartbeat")
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 10*time.Second, "drop an executor silent this long (at least 3x --heartbeat-interval)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "bound on the graceful gRPC stop")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate served on --listen and --http (with --tls-key); re-read when it changes")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "PEM CA that signs executors' certificates (required on the executor stream) and users' (role in the OU)")
	fs.StringVar(&cfg.AuthFile, "auth-file", "", "YAML file of user tokens (SHA-256 digests) and their roles; re-read when it changes")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow a non-loopback --listen without TLS and client authentication (logs a warning)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	sqlThreads := fs.Int("sql-threads", runtime.GOMAXPROCS(0), "threads of the SQL engine (DuckDB), which checks jobs' queries and merges their partial aggregates")
	sqlMemory := flagenv.Bytes(1 << 30)
	fs.Var(&sqlMemory, "sql-memory-limit", "memory the SQL engine may use for all queries together, e.g. 1GiB; a merge that needs more fails the batch")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	engineOpen, err := configureEngine(o.engine(sqlengine.WithThreads(*sqlThreads), sqlengine.WithMemoryLimit(int64(sqlMemory)))...)
	if err != nil {
		return err
	}
	cfg.Etcd = flagenv.List(etcd)
	log, err := process.Logger(logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	warnOpen(log, engineOpen)

	d, err := driver.New(cfg)
	if err != nil {
		return err
	}
	err = d.Run(ctx)
	if errors.Is(err, driver.ErrLostLeadership) {
		return fmt.Errorf("%w: exiting so that a supervisor restarts this driver as a follower", err)
	}
	return err
}
