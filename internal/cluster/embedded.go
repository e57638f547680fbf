package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// DefaultEmbeddedStartTimeout bounds how long StartEmbeddedEtcd waits for the
// server to be ready when ctx has no earlier deadline.
const DefaultEmbeddedStartTimeout = 30 * time.Second

// EmbeddedConfig configures an in-process, single-member etcd.
type EmbeddedConfig struct {
	// Dir holds etcd's data (WAL and database). Required. Restarting on the
	// same Dir keeps the data, whatever ports are chosen.
	Dir string
	// ClientAddr is the host:port clients connect to. Default
	// "127.0.0.1:0"; port 0 picks a free port.
	ClientAddr string
	// PeerAddr is the host:port of the (unused, single-member) peer
	// listener. Default "127.0.0.1:0"; port 0 picks a free port.
	PeerAddr string
	// Logger receives etcd's errors (nothing below error level, to keep
	// `sluice local` quiet). Default slog.Default().
	Logger *slog.Logger
}

// Embedded is a running in-process etcd.
type Embedded struct {
	etcd      *embed.Etcd
	endpoints []string

	closeOnce sync.Once
	closed    chan struct{} // closed when etcd.Close has returned
	errsDone  chan struct{} // closed when the error logger has returned
}

// StartEmbeddedEtcd starts a single-member etcd and returns once it serves
// clients. ctx bounds the startup (DefaultEmbeddedStartTimeout when ctx has
// no earlier deadline); on failure everything started is stopped again.
// Ports given as 0 are resolved to free loopback ports first, because etcd
// must advertise the concrete address it listens on; if another process takes
// such a port in between, startup is retried with new ports.
func StartEmbeddedEtcd(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("start embedded etcd: data directory (Dir) is required")
	}
	if cfg.ClientAddr == "" {
		cfg.ClientAddr = "127.0.0.1:0"
	}
	if cfg.PeerAddr == "" {
		cfg.PeerAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultEmbeddedStartTimeout)
	defer cancel()

	const attempts = 3
	for attempt := 1; ; attempt++ {
		e, picked, err := startEmbedded(ctx, cfg)
		if err == nil {
			return e, nil
		}
		if !picked || !errors.Is(err, syscall.EADDRINUSE) || attempt == attempts {
			return nil, fmt.Errorf("start embedded etcd in %s: %w", cfg.Dir, err)
		}
	}
}

// startEmbedded makes one attempt; picked reports whether a port was chosen
// here (and a retry could choose another).
func startEmbedded(ctx context.Context, cfg EmbeddedConfig) (_ *Embedded, picked bool, _ error) {
	client, peer, picked, err := resolvePorts(cfg.ClientAddr, cfg.PeerAddr)
	if err != nil {
		return nil, false, err
	}
	ec := embed.NewConfig()
	ec.Name = "sluice"
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{{Scheme: "http", Host: client}}
	ec.AdvertiseClientUrls = ec.ListenClientUrls
	ec.ListenPeerUrls = []url.URL{{Scheme: "http", Host: peer}}
	ec.AdvertisePeerUrls = ec.ListenPeerUrls
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapToSlog(cfg.Logger, zapcore.ErrorLevel))
	ec.EnableGRPCGateway = false
	// Bound the history kept for watches; a long-running `sluice local`
	// commits every batch and would otherwise grow the database forever.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, picked, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, picked, fmt.Errorf("etcd failed while starting: %w", err)
	case <-ctx.Done():
		e.Server.Stop() // ReadyNotify may never fire: stop raft before closing
		e.Close()
		return nil, picked, fmt.Errorf("wait for etcd to be ready: %w", ctx.Err())
	}

	m := &Embedded{
		etcd:      e,
		endpoints: []string{ec.AdvertiseClientUrls[0].String()},
		closed:    make(chan struct{}),
		errsDone:  make(chan struct{}),
	}
	// etcd reports serving errors on Err until Close closes it.
	go func() {
		defer close(m.errsDone)
		for err := range e.Err() {
			cfg.Logger.Error("embedded etcd", "err", err)
		}
	}()
	return m, picked, nil
}

// Endpoints returns the client URLs to give clientv3.
func (m *Embedded) Endpoints() []string { return append([]string(nil), m.endpoints...) }

// Close stops etcd and waits, bounded by ctx:
//
//  1. etcd stops serving clients (open requests get up to its request
//     timeout, then are cut), stops raft and closes its listeners;
//  2. the goroutine logging etcd's errors returns.
//
// If ctx ends first Close returns its error and etcd finishes stopping in the
// background. Clients should be closed before, or their watches hold step 1
// until the request timeout. Close is idempotent.
func (m *Embedded) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		go func() {
			defer close(m.closed)
			m.etcd.Close()
			<-m.errsDone
		}()
	})
	select {
	case <-m.closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close embedded etcd: %w", ctx.Err())
	}
}

// resolvePorts turns port 0 into free ports on the same host. Both listeners
// are held at once so the two ports differ.
func resolvePorts(clientAddr, peerAddr string) (client, peer string, picked bool, err error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	resolve := func(name, addr string) (string, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return "", fmt.Errorf("%s address %q: %w", name, addr, err)
		}
		if port != "0" {
			return addr, nil
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return "", fmt.Errorf("pick a free port for %s address %q: %w", name, addr, err)
		}
		ls = append(ls, l)
		picked = true
		return l.Addr().String(), nil
	}
	if client, err = resolve("client", clientAddr); err != nil {
		return "", "", false, err
	}
	if peer, err = resolve("peer", peerAddr); err != nil {
		return "", "", false, err
	}
	return client, peer, picked, nil
}
