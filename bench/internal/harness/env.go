package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Env is what the scenarios of one run share: the knobs, the built
// binaries, a work directory, and the Kafka with the preloaded throughput
// topic (created on first use). It is used by one scenario at a time.
type Env struct {
	Cfg  Config
	Bins Binaries
	// Self is this program; baselines run as its subcommands, in processes
	// of their own like the Sluice processes they are compared with.
	Self string
	// Root is the repository root.
	Root string
	// Dir is the work directory of the run (logs, etcd data).
	Dir string
	// Run prefixes topic and job names, so that runs against an external
	// Kafka do not collide.
	Run string

	kafka *Kafka
	tx    *Workload
}

// NewEnv creates the work directory and builds the binaries.
func NewEnv(ctx context.Context, cfg Config, root string) (*Env, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program: %w", err)
	}
	dir, err := os.MkdirTemp("", "sluicebench-")
	if err != nil {
		return nil, err
	}
	e := &Env{Cfg: cfg, Self: self, Root: root, Dir: dir, Run: time.Now().UTC().Format("0102t150405")}
	bin := filepath.Join(dir, "bin")
	start := time.Now()
	// The binaries are built as `make build` builds them: the figures are
	// those of what users run.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), "./cmd/driver", "./cmd/executor", "./cmd/sluice")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("go build ./cmd/driver ./cmd/executor ./cmd/sluice: %w\n%s", err, out)
	}
	e.Bins = Binaries{Driver: filepath.Join(bin, "driver"), Executor: filepath.Join(bin, "executor"), Sluice: filepath.Join(bin, "sluice")}
	fmt.Fprintf(os.Stderr, "sluicebench: built the binaries in %s (%s)\n", bin, time.Since(start).Round(100*time.Millisecond))
	return e, nil
}

// Close stops Kafka and removes the work directory unless BENCH_KEEP=1.
func (e *Env) Close() {
	if e.kafka != nil {
		e.kafka.Close()
	}
	if e.Cfg.Keep {
		fmt.Fprintf(os.Stderr, "sluicebench: work directory kept: %s\n", e.Dir)
		return
	}
	os.RemoveAll(e.Dir)
}

// KafkaKind describes the broker for the report.
func (e *Env) KafkaKind() string {
	if len(e.Cfg.Kafka) > 0 {
		return "external " + strings.Join(e.Cfg.Kafka, ",")
	}
	return "kfake in the harness process"
}

// Kafka returns the run's broker, starting kfake on first use.
func (e *Env) Kafka() (*Kafka, error) {
	if e.kafka == nil {
		k, err := StartKafka(e.Cfg.Kafka)
		if err != nil {
			return nil, err
		}
		e.kafka = k
	}
	return e.kafka, nil
}

// Topic returns a run-unique topic name.
func (e *Env) Topic(name string) string { return "sluicebench-" + e.Run + "-" + name }

// ThroughputTopic returns the topic of scenarios 1 and 2, preloading it with
// BENCH_N transactions on first use.
func (e *Env) ThroughputTopic(ctx context.Context) (*Kafka, *Workload, error) {
	k, err := e.Kafka()
	if err != nil {
		return nil, nil, err
	}
	if e.tx != nil {
		return k, e.tx, nil
	}
	topic := e.Topic("tx")
	if err := k.CreateTopic(ctx, topic, e.Cfg.Partitions); err != nil {
		return nil, nil, err
	}
	start := time.Now()
	w, err := k.Preload(ctx, topic, e.Cfg.Partitions, e.Cfg.N, 3)
	if err != nil {
		return nil, nil, err
	}
	el := time.Since(start)
	fmt.Fprintf(os.Stderr, "sluicebench: preloaded %d transactions (%.0f bytes each on average) into %s in %s (%.0f rec/s)\n",
		w.Records, float64(w.Bytes)/float64(w.Records), topic, el.Round(100*time.Millisecond), float64(w.Records)/el.Seconds())
	e.tx = w
	return k, w, nil
}

// StartCluster starts a Sluice cluster with the run's settings under
// Dir/name.
func (e *Env) StartCluster(ctx context.Context, name string, drivers int) (*Cluster, error) {
	return e.StartClusterWith(ctx, name, ClusterOptions{Drivers: drivers})
}

// StartClusterWith is StartCluster with the run's executors, slots and
// timings filled into opts, which says the rest (drivers, pprof).
func (e *Env) StartClusterWith(ctx context.Context, name string, opts ClusterOptions) (*Cluster, error) {
	opts.Executors, opts.Slots = e.Cfg.Executors, e.Cfg.Slots
	opts.LeaseTTL, opts.HeartbeatInterval, opts.HeartbeatTimeout = e.Cfg.LeaseTTL, e.Cfg.HeartbeatInterval, e.Cfg.HeartbeatTimeout
	return StartCluster(ctx, e.Bins, filepath.Join(e.Dir, name), opts)
}

// Baseline runs this program's baseline subcommand with args in its own
// process, waits for it, and returns the exited process (for its CPU and
// peak memory) and what it printed on stdout. env adds NAME=value
// variables (credentials travel there, not in arguments).
func (e *Env) Baseline(ctx context.Context, name string, env []string, args ...string) (*Proc, []byte, error) {
	p, err := startProc(e.Dir, name, true, env, e.Self, append([]string{"baseline"}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	if err := p.Wait(ctx); err != nil {
		return p, nil, fmt.Errorf("baseline %s: %w: %s", name, err, p.Tail(2000))
	}
	out, err := os.ReadFile(p.Stdout)
	if err != nil {
		return p, nil, fmt.Errorf("baseline %s: %w", name, err)
	}
	return p, out, nil
}
