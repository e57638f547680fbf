package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// watchedFiles holds a value parsed from one or more files and parses them
// again when any of them changed (size, modification time or identity, so an
// atomic symlink swap as done by Kubernetes Secret volumes and cert-manager
// counts). Checking is a stat per file on each use: handshakes and calls are
// rare next to the cost of a stat, and there is no watcher goroutine to own.
//
// A failed re-parse keeps the last good value: a rotation writes the
// certificate and the key one after the other, and a handshake between the
// two must not take the server down. The failure is reported once per
// change through onError.
type watchedFiles[T any] struct {
	paths   []string
	parse   func() (T, error)
	onError func(error)

	mu    sync.Mutex
	seen  []os.FileInfo
	value T
}

func newWatchedFiles[T any](parse func() (T, error), onError func(error), paths ...string) (*watchedFiles[T], error) {
	w := &watchedFiles[T]{paths: paths, parse: parse, onError: onError}
	seen, err := w.stat()
	if err != nil {
		return nil, err
	}
	v, err := parse()
	if err != nil {
		return nil, err
	}
	w.seen, w.value = seen, v
	return w, nil
}

func (w *watchedFiles[T]) stat() ([]os.FileInfo, error) {
	out := make([]os.FileInfo, len(w.paths))
	for i, p := range w.paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		out[i] = fi
	}
	return out, nil
}

// get returns the current value, re-parsing first when a file changed.
func (w *watchedFiles[T]) get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	now, err := w.stat()
	if err != nil || !changed(w.seen, now) {
		// A file missing for a moment (mid-swap) keeps the last good value.
		return w.value
	}
	w.seen = now
	v, err := w.parse()
	if err != nil {
		if w.onError != nil {
			w.onError(err)
		}
		return w.value
	}
	w.value = v
	return v
}

func changed(old, now []os.FileInfo) bool {
	for i := range old {
		if !os.SameFile(old[i], now[i]) || !old[i].ModTime().Equal(now[i].ModTime()) || old[i].Size() != now[i].Size() {
			return true
		}
	}
	return false
}

// ServerTLS is the TLS configuration of a server whose certificate, and the
// CA its clients' certificates must chain to, are re-read from disk when the
// files change, so a rotated certificate is served without a restart.
type ServerTLS struct {
	cert *watchedFiles[*tls.Certificate]
	ca   *watchedFiles[*x509.CertPool] // nil without a client CA
}

// NewServerTLS loads certFile and keyFile (PEM) and, when clientCAFile is
// not empty, the CA bundle client certificates are verified against. Errors
// at this point are fatal; later reload errors keep the previous files and
// are passed to onError (which may be nil).
func NewServerTLS(certFile, keyFile, clientCAFile string, onError func(error)) (*ServerTLS, error) {
	cert, err := newWatchedFiles(func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
		}
		return &c, nil
	}, onError, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s := &ServerTLS{cert: cert}
	if clientCAFile != "" {
		if s.ca, err = newWatchedFiles(func() (*x509.CertPool, error) { return loadPool(clientCAFile) }, onError, clientCAFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Config returns the tls.Config to serve with. Client certificates are
// verified when given but not required at the handshake: users may
// authenticate with a bearer token instead, and the executor stream demands
// a certificate itself (see Authenticate), so that its refusal is a gRPC
// status rather than a broken handshake.
func (s *ServerTLS) Config() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*s.cert.get()},
			NextProtos:   []string{"h2", "http/1.1"},
		}
		if s.ca != nil {
			c.ClientAuth = tls.VerifyClientCertIfGiven
			c.ClientCAs = s.ca.get()
		}
		return c, nil
	}
	return base
}

// ClientTLSConfig configures TLS for dialing a driver.
type ClientTLSConfig struct {
	// CAFile is the PEM bundle the server's certificate must chain to
	// (--tls-ca). Empty uses the system roots.
	CAFile string
	// CertFile and KeyFile are an optional client certificate (--tls-cert,
	// --tls-key), re-read when they change.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate
	// (--tls-server-name); empty checks the host of the address dialed,
	// which follows a redirect to the leader.
	ServerName string
}

// ErrClientCertKey is returned when only one of a client certificate and key is given.
var ErrClientCertKey = errors.New("a client certificate and its key go together")

// Build returns the tls.Config for grpc's credentials.
func (c ClientTLSConfig) Build() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, ErrClientCertKey
	}
	if c.CertFile != "" {
		w, err := newWatchedFiles(func() (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("load certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
			}
			return &cert, nil
		}, nil, c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return w.get(), nil }
	}
	return tc, nil
}

// CertName is the identity a certificate names: its subject's common name,
// else its first DNS name. Executors are known by it.
func CertName(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}

// CertFileName is CertName of the first certificate in a PEM file.
func CertFileName(certFile, keyFile string) (string, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return "", fmt.Errorf("load certificate %s and key %s: %w", certFile, keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return "", fmt.Errorf("parse certificate %s: %w", certFile, err)
		}
	}
	return CertName(leaf), nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", file)
	}
	return pool, nil
}
