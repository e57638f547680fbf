package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/internal/testenv"
)

// servedSerial handshakes with addr and returns the serial number of the
// certificate the server presented.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) *big.Int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func TestServerTLSRotation(t *testing.T) {
	ca := testenv.NewCA(t, "test")
	kp := ca.Server(t, "driver", "127.0.0.1", "localhost")
	var reloadErrs atomic.Int32
	st, err := NewServerTLS(kp.CertFile, kp.KeyFile, "", func(error) { reloadErrs.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, st.Config())
	roots, err := loadPool(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	first := testenv.Serial(t, kp.CertFile)
	if got := servedSerial(t, addr, roots); got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", got, first)
	}

	// Rotation: new files on disk are served without restarting.
	next := ca.Reissue(t, kp, "driver", "127.0.0.1", "localhost")
	if got := servedSerial(t, addr, roots); got.Cmp(next) != 0 {
		t.Fatalf("after rotation served serial %v, want %v", got, next)
	}

	// A half-written rotation (a key that does not match) keeps the last
	// good certificate and is reported.
	other := ca.Server(t, "other", "localhost")
	key, _ := os.ReadFile(other.KeyFile)
	if err := os.WriteFile(kp.KeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, addr, roots); got.Cmp(next) != 0 {
		t.Fatalf("after a bad rotation served serial %v, want the last good %v", got, next)
	}
	if reloadErrs.Load() != 1 {
		t.Fatalf("reload errors reported %d times, want 1", reloadErrs.Load())
	}
}

func TestClientCertPrincipal(t *testing.T) {
	ca := testenv.NewCA(t, "test")
	tests := []struct {
		name string
		cn   string
		ous  []string
		want Principal
	}{
		{"executor OU", "exec-1", []string{ExecutorOU}, Principal{Name: "exec-1", Executor: true, Via: "certificate"}},
		{"no OU is an executor", "exec-2", nil, Principal{Name: "exec-2", Executor: true, Via: "certificate"}},
		{"unknown OU is an executor", "exec-3", []string{"platform"}, Principal{Name: "exec-3", Executor: true, Via: "certificate"}},
		{"viewer", "alice", []string{"viewer"}, Principal{Name: "alice", Role: RoleViewer, Via: "certificate"}},
		{"first role OU wins", "bob", []string{"team-a", "admin", "viewer"}, Principal{Name: "bob", Role: RoleAdmin, Via: "certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp := ca.Client(t, tt.cn, tt.ous...)
			pair, err := tls.LoadX509KeyPair(kp.CertFile, kp.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			leaf, _ := x509.ParseCertificate(pair.Certificate[0])
			got, ok := CertPrincipal(&tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}})
			if !ok || got != tt.want {
				t.Fatalf("CertPrincipal = %+v, %v; want %+v", got, ok, tt.want)
			}
			// Unverified certificates (no client CA) are nobody.
			if _, ok := CertPrincipal(&tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}); ok {
				t.Fatal("an unverified certificate authenticated")
			}
		})
	}
}

func TestCertName(t *testing.T) {
	tests := []struct {
		cert x509.Certificate
		want string
	}{
		{x509.Certificate{DNSNames: []string{"exec-1.sluice", "x"}}, "exec-1.sluice"},
		{x509.Certificate{DNSNames: []string{"x"}}, "x"},
		{x509.Certificate{}, ""},
	}
	for _, tt := range tests {
		if got := CertName(&tt.cert); got != tt.want {
			t.Errorf("CertName(%v) = %q, want %q", tt.cert.DNSNames, got, tt.want)
		}
	}
}

func TestClientTLSConfig(t *testing.T) {
	ca := testenv.NewCA(t, "test")
	kp := ca.Client(t, "exec-1", ExecutorOU)
	if _, err := (ClientTLSConfig{CAFile: ca.CertFile, CertFile: kp.CertFile}).Build(); !errors.Is(err, ErrClientCertKey) {
		t.Fatalf("a certificate without its key: %v", err)
	}
	if _, err := (ClientTLSConfig{CAFile: kp.KeyFile}).Build(); err == nil {
		t.Fatal("a CA file without certificates was accepted")
	}
	if name, err := CertFileName(kp.CertFile, kp.KeyFile); err != nil || name != "exec-1" {
		t.Fatalf("CertFileName = %q, %v", name, err)
	}
}

func TestIsLoopback(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1:7077": true, "[::1]:7077": true, "localhost:7077": true, "127.0.0.2:1": true,
		":7077": false, "0.0.0.0:7077": false, "[::]:7077": false, "10.0.0.1:7077": false, "driver:7077": false,
	}
	for addr, want := range tests {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestDialRefusesPlaintextTokenOffHost(t *testing.T) {
	if _, err := Dial("10.0.0.1:7077", WithToken("t")); !errors.Is(err, ErrTokenInPlaintext) {
		t.Fatalf("plaintext token to 10.0.0.1: %v", err)
	}
	conn, err := Dial("127.0.0.1:7077", WithToken("t"))
	if err != nil {
		t.Fatalf("plaintext token on loopback: %v", err)
	}
	conn.Close()
	conn, err = Dial("10.0.0.1:7077", WithToken("t"), WithTLS(&tls.Config{}))
	if err != nil {
		t.Fatalf("token over TLS: %v", err)
	}
	conn.Close()
}
