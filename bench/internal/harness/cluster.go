package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/rpc"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Binaries are the built Sluice programs.
type Binaries struct {
	Driver, Executor, Sluice string
}

// Driver is one driver process with its gRPC client.
type Driver struct {
	*Proc
	Addr string // gRPC
	HTTP string // /metrics, /healthz, /readyz
	conn *grpc.ClientConn
	API  sluicev1.DriverServiceClient
}

// Health is the standard gRPC health client of the driver, used as the
// cheapest real loopback round trip to a Sluice process.
func (d *Driver) Health() healthpb.HealthClient { return healthpb.NewHealthClient(d.conn) }

// Ready reports whether the driver leads (its /readyz answers 200).
func (d *Driver) Ready(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HTTP+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Metrics scrapes the driver's /metrics.
func (d *Driver) Metrics(ctx context.Context) (Metrics, error) {
	return ScrapeMetrics(ctx, "http://"+d.HTTP+"/metrics")
}

// ClusterOptions shape a Sluice cluster.
type ClusterOptions struct {
	Drivers, Executors, Slots                     int
	LeaseTTL, HeartbeatInterval, HeartbeatTimeout time.Duration
	// Pprof has every process serve /debug/pprof/ on its HTTP port (the
	// executors get one for it); PprofTargets lists them.
	Pprof bool
}

// Cluster is an embedded etcd (in this process) with drivers and executors
// as separate processes, as in production.
type Cluster struct {
	Etcd      *cluster.Embedded
	Drivers   []*Driver
	Executors []*Proc
	// execHTTP are the executors' HTTP addresses by name, with Pprof.
	execHTTP map[string]string
	bins     Binaries
	dir      string
	opts     ClusterOptions
	nextExec int
}

// StartCluster starts etcd, the drivers (the first one started leads) and
// the executors, and returns when the leader sees every executor.
func StartCluster(ctx context.Context, bins Binaries, dir string, opts ClusterOptions) (c *Cluster, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	etcd, err := cluster.StartEmbeddedEtcd(ctx, cluster.EmbeddedConfig{Dir: filepath.Join(dir, "etcd"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	c = &Cluster{Etcd: etcd, bins: bins, dir: dir, opts: opts, execHTTP: map[string]string{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for i := range opts.Drivers {
		d, err := c.startDriver(fmt.Sprintf("driver-%d", i))
		if err != nil {
			return nil, err
		}
		if i == 0 {
			// Let the first driver win the election, so tests know who leads.
			if err := Eventually(ctx, 30*time.Second, "driver-0 leads", func() error {
				if !d.Alive() {
					return Permanent(fmt.Errorf("driver-0 exited: %s", d.Tail(2000)))
				}
				if !d.Ready(ctx) {
					return errors.New("not ready")
				}
				return nil
			}); err != nil {
				return nil, err
			}
		}
	}
	for range opts.Executors {
		if _, err := c.AddExecutor(ctx); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Cluster) startDriver(name string) (*Driver, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"--listen", addr, "--advertise", addr, "--http", httpAddr,
		"--etcd", strings.Join(c.Etcd.Endpoints(), ","),
		"--lease-ttl", c.opts.LeaseTTL.String(),
		"--heartbeat-interval", c.opts.HeartbeatInterval.String(),
		"--heartbeat-timeout", c.opts.HeartbeatTimeout.String(),
		"--shutdown-timeout", "5s"}
	if c.opts.Pprof {
		args = append(args, "--pprof")
	}
	p, err := StartProc(c.dir, name, c.bins.Driver, args...)
	if err != nil {
		return nil, err
	}
	conn, err := rpc.Dial(addr)
	if err != nil {
		p.Kill()
		return nil, err
	}
	d := &Driver{Proc: p, Addr: addr, HTTP: httpAddr, conn: conn, API: sluicev1.NewDriverServiceClient(conn)}
	c.Drivers = append(c.Drivers, d)
	return d, nil
}

// AddExecutor starts one more executor, pointed at every driver, and waits
// until the leader lists it.
func (c *Cluster) AddExecutor(ctx context.Context) (*Proc, error) {
	name := "executor-" + strconv.Itoa(c.nextExec)
	c.nextExec++
	addrs := make([]string, len(c.Drivers))
	for i, d := range c.Drivers {
		addrs[i] = d.Addr
	}
	// The local stores of stateful jobs live in the work directory, so that
	// a killed executor's (which cannot remove its own) go with it.
	args := []string{"--driver", strings.Join(addrs, ","),
		"--slots", strconv.Itoa(c.opts.Slots), "--id", name, "--drain-timeout", "2s",
		"--state-dir", filepath.Join(c.dir, name+"-state")}
	if c.opts.Pprof {
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		args = append(args, "--http", httpAddr, "--pprof")
		c.execHTTP[name] = httpAddr
	}
	p, err := StartProc(c.dir, name, c.bins.Executor, args...)
	if err != nil {
		return nil, err
	}
	c.Executors = append(c.Executors, p)
	err = Eventually(ctx, 30*time.Second, name+" connects", func() error {
		if !p.Alive() {
			return Permanent(fmt.Errorf("%s exited: %s", name, p.Tail(2000)))
		}
		l, err := c.Leader(ctx)
		if err != nil {
			return err
		}
		r, err := l.API.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		for _, e := range r.GetExecutors() {
			if e.GetId() == name {
				return nil
			}
		}
		return fmt.Errorf("leader lists %d executors, not %s", len(r.GetExecutors()), name)
	})
	return p, err
}

// Leader returns the driver that currently leads.
func (c *Cluster) Leader(ctx context.Context) (*Driver, error) {
	for _, d := range c.Drivers {
		if d.Alive() && d.Ready(ctx) {
			return d, nil
		}
	}
	return nil, errors.New("no driver leads")
}

// Close stops executors, then drivers (so the last leader hands over to
// nobody quickly), then etcd.
func (c *Cluster) Close() {
	for _, e := range c.Executors {
		e.Kill()
	}
	for _, d := range c.Drivers {
		if d.conn != nil {
			d.conn.Close()
		}
		d.Stop(5 * time.Second)
	}
	if c.Etcd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Etcd.Close(ctx)
	}
}

// PprofTargets are the HTTP addresses of the running processes by name,
// for StartCPUProfiles; empty unless the cluster was started with Pprof.
func (c *Cluster) PprofTargets() map[string]string {
	out := map[string]string{}
	if !c.opts.Pprof {
		return out
	}
	for _, d := range c.Drivers {
		if d.Alive() {
			out[d.Name] = d.HTTP
		}
	}
	for _, e := range c.Executors {
		if a, ok := c.execHTTP[e.Name]; ok && e.Alive() {
			out[e.Name] = a
		}
	}
	return out
}

// SluiceProcs are the driver and executor processes still running, for CPU
// and memory accounting.
func (c *Cluster) SluiceProcs() []*Proc {
	var out []*Proc
	for _, d := range c.Drivers {
		if d.Alive() {
			out = append(out, d.Proc)
		}
	}
	for _, e := range c.Executors {
		if e.Alive() {
			out = append(out, e)
		}
	}
	return out
}

// RunResult is what a job did until it reached a terminal state.
type RunResult struct {
	Elapsed time.Duration
	State   sluicev1.JobState
	Error   string
	// Batches are the batch events seen (a slow watcher may miss some;
	// counts should come from the driver's metrics).
	Batches []*sluicev1.BatchProgress
	// BatchAt is when each of Batches arrived, counted from the submit.
	BatchAt []time.Duration
}

// Submit submits spec to d.
func Submit(ctx context.Context, d *Driver, spec *sluicev1.JobSpec) error {
	if _, err := d.API.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		return fmt.Errorf("submit job %s: %w", spec.GetName(), err)
	}
	return nil
}

// RunJob submits spec to d and watches it until it is FINISHED, FAILED or
// STOPPED. Elapsed runs from just before the submit to the terminal event.
func RunJob(ctx context.Context, d *Driver, spec *sluicev1.JobSpec) (RunResult, error) {
	start := time.Now()
	if err := Submit(ctx, d, spec); err != nil {
		return RunResult{}, err
	}
	var res RunResult
	err := Watch(ctx, d, spec.GetName(), func(ev *sluicev1.JobEvent) bool {
		if b := ev.GetBatch(); b != nil {
			res.Batches = append(res.Batches, b)
			res.BatchAt = append(res.BatchAt, time.Since(start))
		}
		switch st := ev.GetJob().GetState(); st {
		case sluicev1.JobState_JOB_STATE_FINISHED, sluicev1.JobState_JOB_STATE_FAILED, sluicev1.JobState_JOB_STATE_STOPPED:
			res.Elapsed, res.State, res.Error = time.Since(start), st, ev.GetJob().GetLastError()
			return true
		}
		return false
	})
	if err != nil {
		return res, err
	}
	if res.State != sluicev1.JobState_JOB_STATE_FINISHED {
		return res, fmt.Errorf("job %s ended %s: %s", spec.GetName(), res.State, res.Error)
	}
	return res, nil
}

// Watch calls fn with every event of job until fn returns true or ctx
// ends. The stream is reopened when it breaks.
func Watch(ctx context.Context, d *Driver, job string, fn func(*sluicev1.JobEvent) bool) error {
	for {
		stream, err := d.API.WatchJob(ctx, &sluicev1.WatchJobRequest{Name: job})
		if err == nil {
			for {
				ev, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				if fn(ev) {
					return nil
				}
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("watch job %s: %w (last error: %v)", job, ctx.Err(), err)
		}
		if !d.Alive() {
			return fmt.Errorf("watch job %s: driver %s exited: %s", job, d.Name, d.Tail(2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopJob stops job on d.
func StopJob(ctx context.Context, d *Driver, job string) error {
	if _, err := d.API.StopJob(ctx, &sluicev1.StopJobRequest{Name: job}); err != nil {
		return fmt.Errorf("stop job %s: %w", job, err)
	}
	return nil
}

// permanentError ends Eventually at once.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks an error that Eventually must not retry.
func Permanent(err error) error { return permanentError{err} }

// Eventually polls f every 50ms until it returns nil, returns a Permanent
// error, ctx ends or timeout passes.
func Eventually(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return nil
		}
		var p permanentError
		if errors.As(err, &p) {
			return fmt.Errorf("%s: %w", what, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still not true after %s: %w", what, timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}
