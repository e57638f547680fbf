// Package driver composes the driver process: the public DriverService, the
// executor registry, leader election, and — while this driver leads — one
// micro-batch loop per running job (docs/design.md, The micro-batch, step by step).
//
// Always-on parts: gRPC and HTTP servers, health, the executor registry and
// the election campaign. Leader-only parts: the manager and its batch loops,
// started on election and stopped at once on loss. Losing leadership makes
// Run return an error: the process exits rather than risk acting as a second
// leader, and its supervisor restarts it as a follower.
package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/driver/registry"
	"github.com/sluicehq/sluice/internal/driver/runner"
	"github.com/sluicehq/sluice/internal/driver/statusboard"
	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/secrets"
	"github.com/sluicehq/sluice/internal/webui"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	dynamodbstore "github.com/sluicehq/sluice/pkg/checkpoint/dynamodb"
	etcdstore "github.com/sluicehq/sluice/pkg/checkpoint/etcd"
	"github.com/sluicehq/sluice/pkg/checkpoint/local"
	s3store "github.com/sluicehq/sluice/pkg/checkpoint/s3"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// ErrLostLeadership is returned by Run when this driver stopped leading while
// running: the caller must exit (a new leader may already be running jobs).
var ErrLostLeadership = errors.New("lost leadership")

// Config configures a driver. Flags and SLUICE_* environment variables fill
// it (cmd/driver); Validate names the flag of a bad value.
type Config struct {
	// Listen is the gRPC address (--listen, default :7077).
	Listen string
	// HTTP serves /metrics, /healthz and /readyz (--http, default :8080; empty disables).
	HTTP string
	// Pprof adds Go's /debug/pprof/ profiles to the HTTP port (--pprof).
	Pprof bool
	// Etcd endpoints (--etcd). None means a standalone driver on a local
	// checkpoint directory, which is then the only possible leader.
	Etcd []string
	// EtcdCACert, EtcdCert and EtcdKey are PEM files for TLS to etcd
	// (--etcd-cacert, --etcd-cert, --etcd-key); cert and key go together.
	EtcdCACert, EtcdCert, EtcdKey string
	// Advertise is the address executors and clients use to reach this
	// driver (--advertise, default: Listen with the host name when the host is empty).
	Advertise string
	// AdvertiseHTTP is the URL of this driver's web UI and HTTP API as
	// browsers reach it (--advertise-http, default: --http's port on
	// --advertise's host, https with --tls-cert). Followers redirect the UI
	// to the leader's.
	AdvertiseHTTP string
	// Checkpoint is the local checkpoint directory of a standalone driver
	// (--checkpoint, default ./sluice-checkpoints).
	Checkpoint string
	// Store keeps the job catalog and checkpoints in DynamoDB or S3 instead
	// of etcd (--store dynamodb://<table>?region=..&endpoint=.. or
	// s3://<bucket>/<prefix>?region=..&endpoint=..); needs Etcd for the
	// election, whose epoch fences the store's writes.
	Store string
	// SecretsKeyFile holds the cluster key(s) that encrypt literal secrets
	// of job specs in the catalog (--secrets-key-file; AES-256-GCM, newest
	// key first). Default: a standalone driver generates
	// <Checkpoint>/secrets.key; drivers on etcd have none and refuse
	// literal secrets, while references work (secrets.go).
	SecretsKeyFile string
	// LeaseTTL is the etcd election lease (--lease-ttl, default 10s): how long
	// a dead leader keeps its leadership.
	LeaseTTL time.Duration
	// HeartbeatInterval is how often executors report (--heartbeat-interval, default 2s).
	HeartbeatInterval time.Duration
	// HeartbeatTimeout drops an executor that stays silent this long
	// (--heartbeat-timeout, default 10s, at least 3x the interval).
	HeartbeatTimeout time.Duration
	// ShutdownTimeout bounds the graceful gRPC stop (--shutdown-timeout, default 20s).
	ShutdownTimeout time.Duration
	// TLSCert and TLSKey serve TLS on the gRPC and HTTP ports (--tls-cert,
	// --tls-key), re-read when the files change. See auth.go.
	TLSCert, TLSKey string
	// TLSClientCA admits executors, and users whose certificate's OU names
	// a role, by a client certificate it signed (--tls-client-ca).
	TLSClientCA string
	// AuthFile lists users' tokens as SHA-256 digests with a role each
	// (--auth-file), re-read when it changes.
	AuthFile string
	// Insecure lets a non-loopback --listen serve without TLS and client
	// authentication (--insecure); a warning is logged at every start.
	Insecure bool
	Logger   *slog.Logger
	// Stdout receives console sink output.
	Stdout io.Writer
}

// Defaults fills unset fields.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = ":7077"
	}
	if c.Checkpoint == "" {
		c.Checkpoint = "sluice-checkpoints"
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 20 * time.Second
	}
	if c.Advertise == "" {
		host, port, err := net.SplitHostPort(c.Listen)
		if err == nil {
			if host == "" || host == "0.0.0.0" || host == "::" {
				host, _ = os.Hostname()
			}
			c.Advertise = net.JoinHostPort(host, port)
		}
	}
	if c.AdvertiseHTTP == "" && c.HTTP != "" {
		host, port, err := net.SplitHostPort(c.HTTP)
		if err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			host, _, err = net.SplitHostPort(c.Advertise)
		}
		if err == nil {
			scheme := "http"
			if c.TLSCert != "" {
				scheme = "https"
			}
			c.AdvertiseHTTP = scheme + "://" + net.JoinHostPort(host, port)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
}

// Validate reports the first bad setting, naming its flag.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen (%q) must be host:port: %w", c.Listen, err)
	}
	if c.HTTP != "" {
		if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
			return fmt.Errorf("--http (%q) must be host:port: %w", c.HTTP, err)
		}
	}
	if c.Advertise == "" {
		return errors.New("--advertise is required when the host name cannot be found")
	}
	if c.AdvertiseHTTP != "" {
		if u, err := url.Parse(c.AdvertiseHTTP); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--advertise-http (%q) must be an http:// or https:// URL", c.AdvertiseHTTP)
		}
	}
	if c.LeaseTTL < 2*time.Second {
		return fmt.Errorf("--lease-ttl (%s) must be at least 2s", c.LeaseTTL)
	}
	if c.HeartbeatInterval <= 0 {
		return fmt.Errorf("--heartbeat-interval (%s) must be positive", c.HeartbeatInterval)
	}
	if c.HeartbeatTimeout < 3*c.HeartbeatInterval {
		return fmt.Errorf("--heartbeat-timeout (%s) must be at least 3x --heartbeat-interval (%s)", c.HeartbeatTimeout, c.HeartbeatInterval)
	}
	if err := c.validateSecurity(); err != nil {
		return err
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		return errors.New("--etcd-cert and --etcd-key go together")
	}
	if len(c.Etcd) == 0 && c.Checkpoint == "" {
		return errors.New("--checkpoint is required without --etcd")
	}
	if c.Store != "" {
		if len(c.Etcd) == 0 {
			return errors.New("--store needs --etcd: the leader election's epoch fences the store's writes")
		}
		if _, err := parseStoreURL(c.Store); err != nil {
			return fmt.Errorf("--store: %w", err)
		}
	}
	return nil
}

// storeOpener opens a --store checkpoint store.
type storeOpener func(ctx context.Context) (checkpoint.Store, error)

func parseStoreURL(raw string) (storeOpener, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the input, which may carry credentials.
		return nil, errors.New("not a URL of the form dynamodb://<table>?region=<region> or s3://<bucket>/<prefix>?region=<region>")
	}
	switch u.Scheme {
	case "dynamodb":
		cfg, err := dynamodbstore.ParseURL(u)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (checkpoint.Store, error) { return dynamodbstore.Open(ctx, cfg) }, nil
	case "s3":
		cfg, err := s3store.ParseURL(u)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) (checkpoint.Store, error) { return s3store.Open(ctx, cfg) }, nil
	}
	return nil, fmt.Errorf("scheme %q is not dynamodb or s3", u.Scheme)
}

// Driver is one driver process.
type Driver struct {
	cfg   Config
	log   *slog.Logger
	store checkpoint.Store
	// jobStores are the jobs' own checkpoint stores.
	jobStores *jobStores
	// jobLocks serialise submit, stop and delete per job name.
	jobLocks *nameLocks
	elector  cluster.Elector
	reg      *registry.Registry
	status   *statusboard.Board
	metrics  *metrics
	health   *health.Server
	sec      *security        // TLS and access control (auth.go)
	keys     *secrets.Keyring // encrypts the catalog's literal secrets; nil: none (secrets.go)

	listener net.Listener
	ready    chan struct{}

	mu      sync.Mutex
	mgr     *manager
	fence   checkpoint.Fence
	lost    chan struct{}
	closers []func()
}

// New validates cfg and opens the store and elector; Run starts serving.
func New(cfg Config) (*Driver, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, log: cfg.Logger, status: statusboard.New(), jobStores: newJobStores(cfg.Logger), jobLocks: newNameLocks(),
		ready: make(chan struct{}), lost: make(chan struct{})}
	keys, err := loadKeyring(cfg, cfg.Logger)
	if err != nil {
		return nil, err
	}
	d.keys = keys
	sec, err := newSecurity(cfg)
	if err != nil {
		return nil, err
	}
	d.sec = sec
	if len(cfg.Etcd) > 0 {
		ecfg := clientv3.Config{Endpoints: cfg.Etcd, DialTimeout: 5 * time.Second, Logger: quietZap()}
		if cfg.EtcdCACert != "" || cfg.EtcdCert != "" {
			tlsInfo := transport.TLSInfo{TrustedCAFile: cfg.EtcdCACert, CertFile: cfg.EtcdCert, KeyFile: cfg.EtcdKey}
			tc, err := tlsInfo.ClientConfig()
			if err != nil {
				return nil, fmt.Errorf("etcd TLS (--etcd-cacert, --etcd-cert, --etcd-key): %w", err)
			}
			ecfg.TLS = tc
		}
		client, err := clientv3.New(ecfg)
		if err != nil {
			return nil, fmt.Errorf("connect to etcd %s: %w", strings.Join(cfg.Etcd, ","), err)
		}
		d.closers = append(d.closers, func() { client.Close() })
		el, err := cluster.New(client, cluster.WithLeaseTTL(cfg.LeaseTTL), cluster.WithLogger(cfg.Logger))
		if err != nil {
			client.Close()
			return nil, err
		}
		var st checkpoint.Store
		if cfg.Store != "" {
			open, _ := parseStoreURL(cfg.Store) // checked by Validate
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			st, err = open(ctx)
			cancel()
			if err != nil {
				client.Close()
				return nil, fmt.Errorf("open --store: %w", err)
			}
		} else if st, err = etcdstore.New(client); err != nil {
			client.Close()
			return nil, err
		}
		d.elector, d.store = el, st
	} else {
		st, err := local.Open(cfg.Checkpoint)
		if err != nil {
			return nil, fmt.Errorf("open --checkpoint: %w", err)
		}
		d.elector, d.store = cluster.Standalone(cfg.Advertise), st
	}
	d.reg = registry.New(cfg.Logger, cfg.HeartbeatInterval, cfg.HeartbeatTimeout, d.leading,
		func(reason string) { d.metrics.refused.WithLabelValues(reason).Inc() })
	d.metrics = newMetrics(d)
	return d, nil
}

// Addr is the gRPC listener's address once Run has started listening.
func (d *Driver) Addr() string {
	<-d.ready
	return d.listener.Addr().String()
}

// Run serves until ctx ends (a clean shutdown: jobs are handed over, not
// stopped) or leadership is lost (ErrLostLeadership). It closes the driver.
//
// Shutdown order: 1. stop the batch loops (uncommitted batches are re-run
// by the next leader); 2. resign, so a follower takes over without waiting
// for the lease; 3. gracefully stop gRPC, forced after ShutdownTimeout;
// 4. stop HTTP; 5. close the elector, store and etcd client.
// legacyExecutorService is ExecutorService under the name it had before
// the driver↔executor protocol left the public sluice.v1 package: the
// messages are the same on the wire, so executors of the previous release
// keep working with this driver during a rolling upgrade (drivers first).
// Remove it one release after.
var legacyExecutorService = func() grpc.ServiceDesc {
	d := clusterv1.ExecutorService_ServiceDesc
	d.ServiceName = "sluice.v1.ExecutorService"
	return d
}()

// legacyExecutorConnect is the old name's Connect method, admitted like
// the new one (auth.go).
const legacyExecutorConnect = "/sluice.v1.ExecutorService/Connect"

func (d *Driver) Run(ctx context.Context) (err error) {
	defer d.closeAll()
	lis, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", d.cfg.Listen, err)
	}
	d.listener = lis
	close(d.ready)

	srv := grpc.NewServer(append(rpc.ServerOptions(), d.sec.serverOptions()...)...)
	sluicev1.RegisterDriverServiceServer(srv, &api{d: d})
	clusterv1.RegisterExecutorServiceServer(srv, d.reg)
	srv.RegisterService(&legacyExecutorService, d.reg)
	d.health = health.NewServer()
	d.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	d.health.SetServingStatus(sluicev1.DriverService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, d.health)
	reflection.Register(srv)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			d.log.Error("grpc server stopped", "err", err)
		}
	}()
	defer d.stopGRPC(srv)

	if d.cfg.HTTP != "" {
		hs := &http.Server{Addr: d.cfg.HTTP, Handler: d.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		hl, err := net.Listen("tcp", d.cfg.HTTP)
		if err != nil {
			return fmt.Errorf("--http %s: %w", d.cfg.HTTP, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serve := func() error { return hs.Serve(hl) }
			if d.sec.tls != nil {
				hs.TLSConfig = d.sec.tls.Config()
				serve = func() error { return hs.ServeTLS(hl, "", "") }
			}
			if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("http server stopped", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		}()
	}
	d.log.Info("driver serving", "grpc", lis.Addr().String(), "http", d.cfg.HTTP, "advertise", d.cfg.Advertise,
		"etcd", strings.Join(d.cfg.Etcd, ","), "tls", d.sec.tls != nil)
	d.sec.warnIfInsecure(d.cfg)

	lead, err := d.elector.Campaign(ctx, encodeLeader(d.cfg.Advertise, d.cfg.AdvertiseHTTP))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaign for leadership: %w", err)
	}
	fence := lead.Fence()
	d.log.Info("elected leader", "epoch", fence.Epoch)
	m := newManager(ctx, d, fence)
	d.mu.Lock()
	d.fence = fence
	d.mu.Unlock()
	if err := checkpoint.Claim(ctx, d.store, fence); err != nil {
		m.close()
		if errors.Is(err, checkpoint.ErrFenced) {
			return fmt.Errorf("claim the checkpoint store: %w: %w", ErrLostLeadership, err)
		}
		return fmt.Errorf("claim the checkpoint store: %w", err)
	}
	if err := d.loadStatus(ctx); err != nil {
		m.close()
		return err
	}
	d.mu.Lock()
	d.mgr = m
	d.mu.Unlock()
	d.metrics.leader.Set(1)
	d.health.SetServingStatus(sluicev1.DriverService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if err := m.start(); err != nil {
		m.close()
		return err
	}

	select {
	case <-lead.Lost():
		d.log.Error("leadership lost; stopping at once")
		d.dropLeadership(m)
		return ErrLostLeadership
	case <-ctx.Done():
		d.log.Info("shutting down; handing leadership over")
		d.dropLeadership(m)
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := lead.Resign(rctx); err != nil {
			d.log.Warn("resign leadership", "err", err)
		}
		return nil
	}
}

func (d *Driver) dropLeadership(m *manager) {
	d.mu.Lock()
	d.mgr = nil
	close(d.lost)
	d.mu.Unlock()
	d.health.SetServingStatus(sluicev1.DriverService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	d.metrics.leader.Set(0)
	m.close()
	d.reg.DisconnectAll()
}

func (d *Driver) stopGRPC(srv *grpc.Server) {
	done := make(chan struct{})
	go func() { srv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.cfg.ShutdownTimeout):
		d.log.Warn("graceful stop timed out; closing connections", "timeout", d.cfg.ShutdownTimeout)
		srv.Stop()
		<-done
	}
}

func (d *Driver) closeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if d.elector != nil {
		if err := d.elector.Close(ctx); err != nil {
			d.log.Warn("close elector", "err", err)
		}
	}
	d.jobStores.closeAll()
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.log.Warn("close checkpoint store", "err", err)
		}
	}
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// loadStatus fills the status board from the catalog and last commits.
func (d *Driver) loadStatus(ctx context.Context) error {
	jobs, err := d.store.ListJobs(ctx)
	if err != nil {
		return fmt.Errorf("load job catalog: %w", err)
	}
	for _, j := range jobs {
		if j.Unreadable != nil {
			d.status.Update(unreadableJob(j), nil)
			continue
		}
		d.status.Update(j, d.lastProgress(ctx, j))
	}
	return nil
}

func (d *Driver) lastProgress(ctx context.Context, rec checkpoint.JobRecord) *sluicev1.BatchProgress {
	st, err := d.logStore(ctx, rec)
	if err != nil {
		d.log.Warn("open the job's checkpoint store for its status", "job", rec.Name, "err", err)
		return nil
	}
	c, err := st.LatestCommit(ctx, rec.Name)
	if err != nil {
		return nil
	}
	return runner.LoadProgress(c)
}

// logStore returns the store holding the plans, task ends and commits of
// job rec: the job's own checkpoint store when its spec names one (kept open
// by d.jobStores), else the driver's.
func (d *Driver) logStore(ctx context.Context, rec checkpoint.JobRecord) (checkpoint.Store, error) {
	spec := &sluicev1.JobSpec{}
	if err := proto.Unmarshal(rec.Spec, spec); err != nil || spec.GetCheckpoint().GetKind() == nil {
		return d.store, nil
	}
	job, err := d.compileForUse(spec)
	if err != nil {
		return nil, err
	}
	return d.jobLogStore(ctx, job)
}

// jobLogStore is logStore for a compiled job.
func (d *Driver) jobLogStore(ctx context.Context, job *jobspec.Job) (checkpoint.Store, error) {
	own, err := d.jobStores.get(ctx, job)
	if err != nil || own == nil {
		return d.store, err
	}
	return own, nil
}

func (d *Driver) currentManager() *manager {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mgr
}

// leading reports whether this driver leads, the leader's address as far as
// this driver knows, and its epoch.
func (d *Driver) leading() (bool, string, int64) {
	d.mu.Lock()
	m, fence := d.mgr, d.fence
	d.mu.Unlock()
	if m != nil {
		return true, d.cfg.Advertise, fence.Epoch
	}
	addr, _ := d.leaderAddrs()
	return false, addr, 0
}

// leaderAddrs returns the leader's gRPC address and HTTP URL as far as this
// driver knows ("" when no leader is known).
func (d *Driver) leaderAddrs() (grpcAddr, httpURL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v, _ := d.elector.Leader(ctx)
	return decodeLeader(v)
}

// encodeLeader is the value a driver campaigns with: its gRPC address, or,
// when it serves HTTP, a JSON object with both addresses. A plain address
// stays readable by drivers of earlier versions during a rolling upgrade of
// drivers without HTTP.
func encodeLeader(grpcAddr, httpURL string) string {
	if httpURL == "" {
		return grpcAddr
	}
	b, _ := json.Marshal(leaderValue{GRPC: grpcAddr, HTTP: httpURL})
	return string(b)
}

type leaderValue struct {
	GRPC string `json:"grpc"`
	HTTP string `json:"http,omitempty"`
}

// decodeLeader reads encodeLeader's value.
func decodeLeader(v string) (grpcAddr, httpURL string) {
	if !strings.HasPrefix(v, "{") {
		return v, ""
	}
	var lv leaderValue
	if err := json.Unmarshal([]byte(v), &lv); err != nil {
		return "", ""
	}
	return lv.GRPC, lv.HTTP
}

func (d *Driver) lostCh() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost
}

func (d *Driver) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if d.currentManager() == nil {
			http.Error(w, "not the leader", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "leader\n")
	})
	mux.Handle("/metrics", d.metrics.handler())
	(&httpAPI{d: d, api: &api{d: d}}).register(mux)
	// The web UI: the leader serves it, a follower sends browsers to the
	// leader when it knows its URL (else it serves the page, which shows
	// the API's "not the leader" answer).
	ui := webui.Handler()
	mux.Handle("/ui/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lead, _, _ := d.leading(); !lead {
			if _, leaderURL := d.leaderAddrs(); leaderURL != "" && leaderURL != d.cfg.AdvertiseHTTP {
				http.Redirect(w, r, strings.TrimSuffix(leaderURL, "/")+r.URL.RequestURI(), http.StatusTemporaryRedirect)
				return
			}
		}
		ui.ServeHTTP(w, r)
	}))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	if d.cfg.Pprof {
		guard := func(h http.HandlerFunc) http.Handler { return d.sec.requireAdmin(d.cfg.HTTP, h) }
		mux.Handle("/debug/pprof/", guard(pprof.Index))
		mux.Handle("/debug/pprof/cmdline", guard(pprof.Cmdline))
		mux.Handle("/debug/pprof/profile", guard(pprof.Profile))
		mux.Handle("/debug/pprof/symbol", guard(pprof.Symbol))
		mux.Handle("/debug/pprof/trace", guard(pprof.Trace))
	}
	return mux
}

// quietZap silences the etcd client's own logging; errors reach us as
// returned errors.
func quietZap() *zap.Logger { return zap.NewNop() }
