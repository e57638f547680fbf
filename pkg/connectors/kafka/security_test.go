package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
)

func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sec"),
				kfake.EnableSASL(), kfake.Superuser(mech, "sluice", "s3cret"))
			if err != nil {
				t.Fatal(err)
			}
			defer fake.Close()
			cfg := kafka.Config{BootstrapServers: fake.ListenAddrs()[0], Subscribe: []string{"sec"}, Properties: map[string]string{
				"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mech, "sasl.username": "sluice", "sasl.password": "s3cret",
			}}
			if _, err := newSource(t, cfg).Plan(testCtx(t), connectors.PlanRequest{}); err != nil {
				t.Fatalf("Plan with the right credentials: %v", err)
			}
			cfg.Properties["sasl.password"] = "wrong"
			// kfake, unlike Kafka, closes the connection on bad credentials,
			// which the client retries until the context ends.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err = newSource(t, cfg).Plan(ctx, connectors.PlanRequest{})
			if err == nil || strings.Contains(err.Error(), "wrong") {
				t.Fatalf("Plan with a wrong password = %v: want an error that does not show it", err)
			}
			if !strings.Contains(err.Error(), "sasl.mechanism, sasl.username and sasl.password") {
				t.Errorf("error %q does not say what to check", err)
			}
		})
	}
}

// The broker's certificate names another host: with
// ssl.endpoint.identification.algorithm "" the chain is still verified
// against ssl.ca.location, the host name is not.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := newCert(t, nil, nil, "sluice test CA", true)
	srvCert, srvKey := newCert(t, caCert, caKey, "broker.example", false)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "sec"), kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
		MinVersion:   tls.VersionTLS12,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	addr := fake.ListenAddrs()[0]
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	cfg := func(props ...string) kafka.Config {
		c := kafka.Config{BootstrapServers: addr, Subscribe: []string{"sec"}, Properties: map[string]string{}}
		for i := 0; i < len(props); i += 2 {
			c.Properties[props[i]] = props[i+1]
		}
		return c
	}

	ok := cfg("security.protocol", "SSL", "ssl.ca.location", caFile, "ssl.endpoint.identification.algorithm", "")
	if _, err := newSource(t, ok).Plan(ctx(), connectors.PlanRequest{}); err != nil {
		t.Fatalf("Plan over TLS: %v", err)
	}
	for name, c := range map[string]kafka.Config{
		"host name checked": cfg("security.protocol", "SSL", "ssl.ca.location", caFile),
		"unknown CA":        cfg("security.protocol", "SSL", "ssl.endpoint.identification.algorithm", ""),
	} {
		if _, err := newSource(t, c).Plan(ctx(), connectors.PlanRequest{}); err == nil {
			t.Errorf("%s: Plan succeeded, want a certificate error", name)
		}
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, name string, ca bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  ca,
		BasicConstraintsValid: true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
