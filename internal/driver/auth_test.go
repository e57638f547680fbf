package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/executor"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// pki is one test's certificates: a CA, the driver's server certificate for
// loopback, users' certificates with a role in the OU, and an executor's.
type pki struct {
	ca                  *testenv.CA
	server              testenv.KeyPair
	exec, viewer, admin testenv.KeyPair
	authFile            string
	viewerTok, operTok  string
	adminTok            string
}

func newPKI(t *testing.T) *pki {
	ca := testenv.NewCA(t, "sluice-test")
	p := &pki{
		ca:        ca,
		server:    ca.Server(t, "driver", "127.0.0.1", "localhost"),
		exec:      ca.Client(t, "exec-1", rpc.ExecutorOU),
		viewer:    ca.Client(t, "alice", "viewer"),
		admin:     ca.Client(t, "root", "admin"),
		authFile:  filepath.Join(t.TempDir(), "auth.yaml"),
		viewerTok: "viewer-token", operTok: "operator-token", adminTok: "admin-token",
	}
	p.writeAuth(t, map[string]string{"dash": "viewer", "ci": "operator", "ops": "admin"})
	return p
}

// writeAuth writes the token file: name → role, each name's token being
// viewer-token, operator-token or admin-token by its original role.
func (p *pki) writeAuth(t *testing.T, roles map[string]string) {
	t.Helper()
	tokens := map[string]string{"dash": p.viewerTok, "ci": p.operTok, "ops": p.adminTok}
	var b strings.Builder
	b.WriteString("tokens:\n")
	for _, name := range []string{"dash", "ci", "ops"} {
		sum := sha256.Sum256([]byte(tokens[name]))
		fmt.Fprintf(&b, "  - {name: %s, sha256: %q, role: %s}\n", name, hex.EncodeToString(sum[:]), roles[name])
	}
	if err := os.WriteFile(p.authFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	// Move the mtime on: rewrites within one tick of a coarse clock look unchanged.
	at := time.Now().Add(time.Duration(len(b.String())) * time.Second)
	os.Chtimes(p.authFile, at, at)
}

// dial connects to addr with TLS verified against the test CA, presenting
// cert when not nil and sending token when not empty.
func (p *pki) dial(t *testing.T, addr string, cert *testenv.KeyPair, token string) *grpc.ClientConn {
	t.Helper()
	tc := rpc.ClientTLSConfig{CAFile: p.ca.CertFile}
	if cert != nil {
		tc.CertFile, tc.KeyFile = cert.CertFile, cert.KeyFile
	}
	cfg, err := tc.Build()
	if err != nil {
		t.Fatal(err)
	}
	opts := []rpc.DialOption{rpc.WithTLS(cfg)}
	if token != "" {
		opts = append(opts, rpc.WithToken(token))
	}
	conn, err := rpc.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (p *pki) api(t *testing.T, addr string, cert *testenv.KeyPair, token string) sluicev1.DriverServiceClient {
	return sluicev1.NewDriverServiceClient(p.dial(t, addr, cert, token))
}

// secureCluster is a standalone driver with TLS, --tls-client-ca and
// --auth-file, and executors that present their certificates.
type secureCluster struct {
	d      *Driver
	addr   string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *bytes.Buffer
	logMu  *sync.Mutex
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

func startSecure(t *testing.T, p *pki) *secureCluster {
	t.Helper()
	buf, mu := &bytes.Buffer{}, &sync.Mutex{}
	log := slog.New(slog.NewTextHandler(syncWriter{mu, buf}, nil))
	d, err := New(Config{Listen: "127.0.0.1:0", Advertise: "127.0.0.1:0", Checkpoint: t.TempDir(), Logger: log, Stdout: io.Discard,
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: time.Second, ShutdownTimeout: time.Second,
		TLSCert: p.server.CertFile, TLSKey: p.server.KeyFile, TLSClientCA: p.ca.CertFile, AuthFile: p.authFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &secureCluster{d: d, cancel: cancel, log: buf, logMu: mu}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); d.Run(ctx) }()
	c.addr = d.Addr()
	t.Cleanup(func() { c.cancel(); c.wg.Wait() })
	return c
}

func (c *secureCluster) logs() string {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	return c.log.String()
}

// startExecutor runs an in-process executor with the given TLS settings.
func (c *secureCluster) startExecutor(t *testing.T, tc *rpc.ClientTLSConfig, id string) {
	t.Helper()
	e, err := executor.New(executor.Config{Driver: c.addr, Slots: 2, ID: id, TLS: tc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func code(err error) codes.Code { return status.Code(err) }

func TestTLSDriverRefusesPlaintextClient(t *testing.T) {
	p := newPKI(t)
	c := startSecure(t, p)
	plain, err := rpc.Dial(c.addr, rpc.WithToken(p.viewerTok))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = sluicev1.NewDriverServiceClient(plain).ListJobs(ctx, &sluicev1.ListJobsRequest{})
	if code(err) != codes.Unavailable {
		t.Fatalf("plaintext ListJobs: %v, want Unavailable", err)
	}
	waitFor(t, "TLS ListJobs", func() error {
		_, err := p.api(t, c.addr, nil, p.viewerTok).ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
		return err
	})
}

// TestCallsNeedARole: every refusal carries its typed code; the token file
// is re-read when it changes.
func TestCallsNeedARole(t *testing.T) {
	p := newPKI(t)
	c := startSecure(t, p)
	ctx := context.Background()
	waitFor(t, "driver leads", func() error {
		_, err := p.api(t, c.addr, nil, p.adminTok).ListJobs(ctx, &sluicev1.ListJobsRequest{})
		return err
	})
	// An invalid spec is refused by validation, after authorisation: its
	// InvalidArgument shows the call got through.
	submit := func(api sluicev1.DriverServiceClient) error {
		_, err := api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: &sluicev1.JobSpec{Name: "x"}})
		return err
	}
	list := func(api sluicev1.DriverServiceClient) error {
		_, err := api.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		return err
	}
	del := func(api sluicev1.DriverServiceClient) error {
		_, err := api.DeleteJob(ctx, &sluicev1.DeleteJobRequest{Name: "nope"})
		return err
	}
	tests := []struct {
		name  string
		cert  *testenv.KeyPair
		token string
		call  func(sluicev1.DriverServiceClient) error
		want  codes.Code
	}{
		{"no token", nil, "", list, codes.Unauthenticated},
		{"wrong token", nil, "guess", list, codes.Unauthenticated},
		{"viewer lists", nil, p.viewerTok, list, codes.OK},
		{"viewer submits", nil, p.viewerTok, submit, codes.PermissionDenied},
		{"operator submits", nil, p.operTok, submit, codes.InvalidArgument},
		{"operator deletes", nil, p.operTok, del, codes.PermissionDenied},
		{"admin deletes", nil, p.adminTok, del, codes.NotFound},
		{"viewer certificate lists", &p.viewer, "", list, codes.OK},
		{"viewer certificate submits", &p.viewer, "", submit, codes.PermissionDenied},
		{"admin certificate deletes", &p.admin, "", del, codes.NotFound},
		{"executor certificate lists", &p.exec, "", list, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(p.api(t, c.addr, tt.cert, tt.token))
			if code(err) != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
		})
	}

	// Re-read on change: ci becomes a viewer.
	p.writeAuth(t, map[string]string{"dash": "viewer", "ci": "viewer", "ops": "admin"})
	if err := submit(p.api(t, c.addr, nil, p.operTok)); code(err) != codes.PermissionDenied {
		t.Fatalf("ci after demotion: %v, want PermissionDenied", err)
	}
}

// TestExecutorsAreAdmittedByCertificate: an executor without a client
// certificate is refused before its hello; one whose hello names another id
// is refused; one with its certificate runs a job to the end, which is
// audited with who asked.
func TestExecutorsAreAdmittedByCertificate(t *testing.T) {
	p := newPKI(t)
	c := startSecure(t, p)
	ctx := context.Background()
	api := p.api(t, c.addr, nil, p.operTok)
	waitFor(t, "driver leads", func() error { _, err := api.ListJobs(ctx, &sluicev1.ListJobsRequest{}); return err })

	connect := func(cert *testenv.KeyPair, id string) error {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		stream, err := clusterv1.NewExecutorServiceClient(p.dial(t, c.addr, cert, "")).Connect(cctx)
		if err != nil {
			return err
		}
		stream.Send(&clusterv1.ExecutorMessage{Kind: &clusterv1.ExecutorMessage_Hello{Hello: &clusterv1.Hello{ExecutorId: id, Slots: 1}}})
		_, err = stream.Recv()
		return err
	}
	tests := []struct {
		name string
		cert *testenv.KeyPair
		id   string
		want codes.Code
	}{
		{"no certificate", nil, "exec-1", codes.Unauthenticated},
		{"a user's certificate", &p.admin, "root", codes.PermissionDenied},
		{"another executor's id", &p.exec, "exec-2", codes.PermissionDenied},
		{"its own id", &p.exec, "exec-1", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := connect(tt.cert, tt.id); code(err) != tt.want {
				t.Fatalf("connect: %v, want %s", err, tt.want)
			}
		})
	}

	// An executor without a certificate gets no task; the one with its
	// certificate (and no --id: the name comes from it) runs the job.
	c.startExecutor(t, &rpc.ClientTLSConfig{CAFile: p.ca.CertFile}, "anonymous")
	c.startExecutor(t, &rpc.ClientTLSConfig{CAFile: p.ca.CertFile, CertFile: p.exec.CertFile, KeyFile: p.exec.KeyFile}, "")
	_, brokers := kafkaWith(t, "ev", 2, 200)
	out := t.TempDir()
	if _, err := api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec("tls", brokers, "ev", out, availableNow)}); err != nil {
		t.Fatal(err)
	}
	waitState(t, api, "tls", sluicev1.JobState_JOB_STATE_FINISHED)
	got := ids(t, out, "tls")
	for i := range int64(200) {
		if got[i] != 1 {
			t.Fatalf("id %d written %d times", i, got[i])
		}
	}
	ex, err := api.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ex.GetExecutors()); n != 1 || ex.GetExecutors()[0].GetId() != "exec-1" {
		t.Fatalf("executors %v, want exec-1 alone", ex.GetExecutors())
	}
	if l := c.logs(); !strings.Contains(l, "msg=audit method=SubmitJob job=tls principal=ci via=token role=operator") {
		t.Fatalf("no audit line for the submit in:\n%s", l)
	}
	if strings.Contains(c.logs(), p.operTok) {
		t.Fatal("a token reached the log")
	}
}

// TestCertificateRotation: a new certificate on disk is served by the
// running driver.
func TestCertificateRotation(t *testing.T) {
	p := newPKI(t)
	c := startSecure(t, p)
	pool := x509Pool(t, p.ca.CertFile)
	served := func() string {
		conn, err := tls.Dial("tcp", c.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	if got, want := served(), testenv.Serial(t, p.server.CertFile).String(); got != want {
		t.Fatalf("serves serial %s, want %s", got, want)
	}
	next := p.ca.Reissue(t, p.server, "driver", "127.0.0.1", "localhost")
	if got := served(); got != next.String() {
		t.Fatalf("after rotation serves serial %s, want %s", got, next)
	}
	// And gRPC still works over the new certificate.
	waitFor(t, "list over the new certificate", func() error {
		_, err := p.api(t, c.addr, nil, p.viewerTok).ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
		return err
	})
}

func TestSecurityFlags(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // error substring; empty means valid
	}{
		{"loopback plaintext", Config{Listen: "127.0.0.1:7077"}, ""},
		{"localhost plaintext", Config{Listen: "localhost:7077"}, ""},
		{"all interfaces plaintext", Config{Listen: ":7077"}, "or pass --insecure"},
		{"all interfaces insecure", Config{Listen: "0.0.0.0:7077", Insecure: true}, ""},
		{"TLS without client CA", Config{Listen: ":7077", TLSCert: "c", TLSKey: "k"}, "--tls-client-ca"},
		{"TLS with client CA", Config{Listen: ":7077", TLSCert: "c", TLSKey: "k", TLSClientCA: "ca"}, ""},
		{"cert without key", Config{Listen: "127.0.0.1:7077", TLSCert: "c"}, "--tls-cert and --tls-key go together"},
		{"client CA without TLS", Config{Listen: "127.0.0.1:7077", TLSClientCA: "ca"}, "--tls-client-ca needs --tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Checkpoint = t.TempDir()
			cfg.Defaults()
			err := cfg.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestInsecureWarnsAtStart(t *testing.T) {
	var buf bytes.Buffer
	s := &security{log: slog.New(slog.NewTextHandler(&buf, nil))}
	s.warnIfInsecure(Config{Listen: ":7077", Insecure: true})
	if !strings.Contains(buf.String(), "INSECURE") {
		t.Fatalf("no warning: %q", buf.String())
	}
	buf.Reset()
	s.warnIfInsecure(Config{Listen: "127.0.0.1:7077"})
	if buf.Len() != 0 {
		t.Fatalf("warned on loopback: %q", buf.String())
	}
}

func TestPprofNeedsAdmin(t *testing.T) {
	p := newPKI(t)
	tokens, err := rpc.LoadTokens(p.authFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "profile") })
	withAuth := &security{authn: &rpc.Authenticator{Tokens: tokens}}
	tests := []struct {
		name  string
		sec   *security
		http  string
		token string
		want  int
	}{
		{"loopback needs nothing", &security{}, "127.0.0.1:8080", "", http.StatusOK},
		{"no auth configured", &security{}, ":8080", "", http.StatusForbidden},
		{"no token", withAuth, ":8080", "", http.StatusUnauthorized},
		{"wrong token", withAuth, ":8080", "guess", http.StatusUnauthorized},
		{"operator token", withAuth, ":8080", p.operTok, http.StatusForbidden},
		{"admin token", withAuth, ":8080", p.adminTok, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/debug/pprof/", nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			tt.sec.requireAdmin(tt.http, ok).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), tt.want)
			}
		})
	}
}

// TestHTTPServesTLS: /healthz stays open, over TLS, on a driver with
// --tls-cert.
func TestHTTPServesTLS(t *testing.T) {
	p := newPKI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()
	d, err := New(Config{Listen: "127.0.0.1:0", HTTP: httpAddr, Advertise: "127.0.0.1:0", Checkpoint: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownTimeout: time.Second,
		TLSCert: p.server.CertFile, TLSKey: p.server.KeyFile, TLSClientCA: p.ca.CertFile, AuthFile: p.authFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509Pool(t, p.ca.CertFile)}}, Timeout: 5 * time.Second}
	waitFor(t, "https /healthz", func() error {
		resp, err := hc.Get("https://" + httpAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

func x509Pool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}
