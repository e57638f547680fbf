package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/driver"
	"github.com/sluicehq/sluice/internal/testenv"
)

// TestCLIAuth runs CLI commands against a driver with TLS and tokens: each
// refusal has its code and a message that says what to do.
func TestCLIAuth(t *testing.T) {
	ca := testenv.NewCA(t, "cli")
	srv := ca.Server(t, "driver", "127.0.0.1", "localhost")
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.yaml")
	var b strings.Builder
	b.WriteString("tokens:\n")
	for name, role := range map[string]string{"dash": "viewer", "ci": "operator"} {
		sum := sha256.Sum256([]byte(name + "-token"))
		fmt.Fprintf(&b, "  - {name: %s, sha256: %s, role: %s}\n", name, hex.EncodeToString(sum[:]), role)
	}
	if err := os.WriteFile(auth, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte("name: j\nsource:\n  kafka: {bootstrapServers: \"127.0.0.1:1\", subscribe: [t]}\nsink:\n  console: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := driver.New(driver.Config{Listen: "127.0.0.1:0", Advertise: "127.0.0.1:0", Checkpoint: filepath.Join(dir, "ckpt"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stdout: io.Discard, ShutdownTimeout: time.Second,
		TLSCert: srv.CertFile, TLSKey: srv.KeyFile, AuthFile: auth})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := d.Addr()

	cli := func(args ...string) error {
		return run(context.Background(), append([]string{"--driver", addr}, args...), &bytes.Buffer{})
	}
	deadline := time.Now().Add(20 * time.Second)
	for cli("--tls-ca", ca.CertFile, "--token", "dash-token", "jobs") != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	tests := []struct {
		name string
		args []string
		want codes.Code
		hint string
	}{
		{"plaintext", []string{"--token", "dash-token", "jobs"}, codes.Unavailable, "--tls-ca"},
		{"no token", []string{"--tls-ca", ca.CertFile, "jobs"}, codes.Unauthenticated, "SLUICE_TOKEN"},
		{"wrong token", []string{"--tls-ca", ca.CertFile, "--token", "guess", "jobs"}, codes.Unauthenticated, "unknown token"},
		{"viewer submits", []string{"--tls-ca", ca.CertFile, "--token", "dash-token", "submit", job}, codes.PermissionDenied, "needs operator"},
		{"viewer lists", []string{"--tls-ca", ca.CertFile, "--token", "dash-token", "jobs"}, codes.OK, ""},
		{"operator submits", []string{"--tls-ca", ca.CertFile, "--token", "ci-token", "submit", job}, codes.OK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cli(tt.args...)
			if status.Code(err) != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
			if err != nil && !strings.Contains(describe(err), tt.hint) {
				t.Fatalf("message %q does not say %q", describe(err), tt.hint)
			}
		})
	}
	t.Setenv("SLUICE_TOKEN", "dash-token")
	t.Setenv("SLUICE_TLS_CA", ca.CertFile)
	if err := cli("status", "j"); err != nil {
		t.Fatalf("with SLUICE_TOKEN and SLUICE_TLS_CA: %v", err)
	}
}
