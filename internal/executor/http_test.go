package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
)

// fakeDriver is a leading driver's executor endpoint under the test's
// control: it welcomes a stream only for a token on welcome, hands each
// welcomed stream to the test on conns, and passes task results on.
type fakeDriver struct {
	clusterv1.UnimplementedExecutorServiceServer
	// fenceMs is sent in the welcome; 0 means a fence far beyond any test
	// (the fake sends no pings).
	fenceMs int64
	// hellos, when set, hears of every stream's hello.
	hellos chan struct{}
	// beats, when set, hears of heartbeats (dropped when full).
	beats   chan struct{}
	welcome chan struct{}
	conns   chan *fakeConn
	results chan *clusterv1.TaskResult
}

type fakeConn struct {
	stream clusterv1.ExecutorService_ConnectServer // Send only from the test goroutine
	kick   chan error                              // ends the stream with this error
}

func (f *fakeDriver) Connect(s clusterv1.ExecutorService_ConnectServer) error {
	ctx := s.Context()
	if _, err := s.Recv(); err != nil { // Hello
		return err
	}
	if f.hellos != nil {
		select {
		case f.hellos <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fence := f.fenceMs
	if fence == 0 {
		fence = 60_000
	}
	select {
	case <-f.welcome:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.Send(&clusterv1.DriverMessage{Kind: &clusterv1.DriverMessage_Welcome{Welcome: &clusterv1.Welcome{
		DriverId: "fake", HeartbeatIntervalMs: 100, HeartbeatFenceMs: fence, Epoch: 1,
	}}}); err != nil {
		return err
	}
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if r := m.GetResult(); r != nil {
				select {
				case f.results <- r:
				case <-ctx.Done():
				}
			}
			if m.GetHeartbeat() != nil && f.beats != nil {
				select {
				case f.beats <- struct{}{}:
				default:
				}
			}
		}
	}()
	c := &fakeConn{stream: s, kick: make(chan error, 1)}
	select {
	case f.conns <- c:
	case <-ctx.Done():
	}
	var err error
	select {
	case err = <-c.kick:
	case err = <-recvDone:
	case <-ctx.Done():
	}
	return err
}

// startFakeDriver serves a fakeDriver on loopback until the test ends.
func startFakeDriver(t *testing.T) (*fakeDriver, string) {
	t.Helper()
	return startFakeDriverAs(t, clusterv1.ExecutorService_ServiceDesc.ServiceName)
}

// startFakeDriverAs serves the fake driver's ExecutorService under the
// given service name (a driver of the previous release: sluice.v1's).
func startFakeDriverAs(t *testing.T, service string) (*fakeDriver, string) {
	t.Helper()
	f := &fakeDriver{welcome: make(chan struct{}, 10), conns: make(chan *fakeConn, 10), results: make(chan *clusterv1.TaskResult, 100)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(rpc.ServerOptions()...)
	desc := clusterv1.ExecutorService_ServiceDesc
	desc.ServiceName = service
	srv.RegisterService(&desc, f)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f, l.Addr().String()
}

// startExecutor runs an executor with --http on a free loopback port; stop
// cancels it and waits for Run to return.
func startExecutor(t *testing.T, driver string) (e *Executor, base string, stop func()) {
	t.Helper()
	e, err := New(Config{Driver: driver, Slots: 2, ID: "e1", HTTP: "127.0.0.1:0", DrainTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	waitFor(t, "http listener", func() error {
		if e.HTTPAddr() == nil {
			return errors.New("not listening yet")
		}
		return nil
	})
	return e, "http://" + e.HTTPAddr().String(), stop
}

// verifyNoLeaks checks, after every other clean-up of the test, that the
// goroutines the test started have ended, but for the process's SQL engine
// (testenv.SharedEngineGoroutine).
func verifyNoLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, ignore, goleak.IgnoreTopFunction(testenv.SharedEngineGoroutine))
	})
}

func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func get(base, path string) (int, string, error) {
	resp, err := http.Get(base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// wantGet waits until GET path answers code with a body containing want.
func wantGet(t *testing.T, base, path string, code int, want string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("GET %s = %d %q", path, code, want), func() error {
		c, body, err := get(base, path)
		if err != nil {
			return err
		}
		if c != code || !strings.Contains(body, want) {
			return fmt.Errorf("got %d %q", c, body)
		}
		return nil
	})
}

// TestHTTPHealthAndReadiness: /healthz answers while the process runs;
// /readyz flips to 200 when a driver welcomes the stream, back to 503 when
// the stream ends, to 200 on the next welcome (counted as a reconnect), and
// to 503 "draining" on shutdown; the listener is closed when Run returns.
func TestHTTPHealthAndReadiness(t *testing.T) {
	verifyNoLeaks(t)
	f, addr := startFakeDriver(t)
	e, base, stop := startExecutor(t, addr)

	wantGet(t, base, "/healthz", 200, "ok")
	// The executor has dialled, but the driver has not welcomed it yet.
	wantGet(t, base, "/readyz", 503, "not connected to a leading driver")
	wantGet(t, base, "/metrics", 200, "sluice_executor_connected 0")

	f.welcome <- struct{}{}
	c := <-f.conns
	wantGet(t, base, "/readyz", 200, "connected to driver "+addr)
	wantGet(t, base, "/metrics", 200, "sluice_executor_connected 1")
	wantGet(t, base, "/metrics", 200, "sluice_executor_reconnects_total 0")

	// The driver ends the stream: not ready until a driver welcomes again.
	c.kick <- errors.New("driver went away")
	wantGet(t, base, "/readyz", 503, "not connected to a leading driver")
	wantGet(t, base, "/metrics", 200, "sluice_executor_connected 0")
	wantGet(t, base, "/healthz", 200, "ok")

	f.welcome <- struct{}{}
	<-f.conns
	wantGet(t, base, "/readyz", 200, "connected to driver")
	wantGet(t, base, "/metrics", 200, "sluice_executor_reconnects_total 1")

	// Shutdown: the drain makes the executor unready; once Run returns the
	// server is gone.
	stop()
	if ok, why := e.Ready(); ok || !strings.Contains(why, "draining") {
		t.Errorf("Ready after shutdown = %v, %q; want false, draining", ok, why)
	}
	rec := httptest.NewRecorder()
	e.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "draining") {
		t.Errorf("/readyz after shutdown: %d %q", rec.Code, rec.Body.String())
	}
	if _, _, err := get(base, "/healthz"); err == nil {
		t.Errorf("HTTP server still answers after Run returned")
	}
}

func TestHTTPDisabledAndValidated(t *testing.T) {
	e, err := New(Config{Driver: "127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := e.serveHTTP()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if e.HTTPAddr() != nil {
		t.Errorf("empty --http listens on %v", e.HTTPAddr())
	}
	for _, bad := range []string{"8081", "localhost"} {
		_, err := New(Config{Driver: "127.0.0.1:1", HTTP: bad})
		if err == nil || !strings.Contains(err.Error(), "--http") {
			t.Errorf("--http %q: error %v, want one naming --http", bad, err)
		}
	}
	// A port in use fails Run, naming the flag.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, err = New(Config{Driver: "127.0.0.1:1", HTTP: l.Addr().String(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "--http") {
		t.Errorf("Run with --http in use: %v", err)
	}
}

// TestPprof checks that --pprof serves the profiles only when asked, and
// that it needs --http.
func TestPprof(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := New(Config{Driver: "127.0.0.1:1", Pprof: true, Logger: quiet}); err == nil || !strings.Contains(err.Error(), "--http") {
		t.Errorf("--pprof without --http: error %v, want one naming --http", err)
	}
	for _, on := range []bool{false, true} {
		e, err := New(Config{Driver: "127.0.0.1:1", HTTP: "127.0.0.1:0", Pprof: on, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		e.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/cmdline", nil))
		if got := rec.Code == 200; got != on {
			t.Errorf("--pprof=%v: /debug/pprof/cmdline answered %d", on, rec.Code)
		}
	}
}
