package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"
)

// httpShutdownTimeout bounds the graceful stop of the HTTP server.
const httpShutdownTimeout = 5 * time.Second

// checkHTTP validates --http: empty (disabled) or host:port.
func checkHTTP(addr string) error {
	if addr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("--http (%q) must be host:port: %w", addr, err)
	}
	return nil
}

// Ready reports whether the executor can take tasks: a leading driver has
// welcomed its stream and it is not draining. The reason says why not (or to
// which driver it is connected).
func (e *Executor) Ready() (bool, string) {
	e.mu.Lock()
	draining := e.draining
	e.mu.Unlock()
	if draining {
		return false, "draining: shutting down"
	}
	if d := e.metrics.connectedTo(); d != "" {
		return true, "connected to driver " + d
	}
	return false, "not connected to a leading driver"
}

// welcomed and disconnected are the session's hooks for readiness and the
// connection metrics.
func (e *Executor) welcomed(addr string) { e.metrics.welcomed(addr) }
func (e *Executor) disconnected()        { e.metrics.disconnected() }

// HTTPAddr is the address the HTTP server listens on (with the port chosen
// for ":0"), nil when --http is empty or Run has not started it yet.
func (e *Executor) HTTPAddr() net.Addr {
	e.metrics.mu.Lock()
	defer e.metrics.mu.Unlock()
	return e.metrics.httpAddr
}

// httpHandler serves /healthz (liveness: 200 while the process runs),
// /readyz (readiness: 200 while connected to a leading driver and not
// draining, else 503 with the reason), /metrics (Prometheus) and, with
// --pprof, Go's profiles under /debug/pprof/.
func (e *Executor) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := e.Ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, why+"\n")
	})
	mux.Handle("/metrics", e.metrics.handler())
	if e.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// serveHTTP starts the HTTP server on --http (nothing when it is empty). The
// returned stop shuts it down gracefully, bounded by httpShutdownTimeout, and
// returns once the serving goroutine has ended. Run calls stop when it
// returns, after the drain, so that /readyz reports the drain and /metrics
// stays scrapeable until then.
func (e *Executor) serveHTTP() (stop func(), err error) {
	if e.cfg.HTTP == "" {
		return func() {}, nil
	}
	l, err := net.Listen("tcp", e.cfg.HTTP)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", e.cfg.HTTP, err)
	}
	e.metrics.mu.Lock()
	e.metrics.httpAddr = l.Addr()
	e.metrics.mu.Unlock()
	hs := &http.Server{Handler: e.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("http server stopped", "err", err)
		}
	}()
	e.log.Info("executor http serving", "http", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			e.log.Warn("http graceful stop timed out; closing connections", "err", err)
			hs.Close()
		}
		wg.Wait()
	}, nil
}
