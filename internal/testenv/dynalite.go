package testenv

import (
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Dynalite is a running dynalite (a DynamoDB emulator from npm, pinned in
// testdata/npm). It implements conditional writes and consistent reads, not
// transactions, and accepts any well-formed credentials.
type Dynalite struct {
	Endpoint string // http://127.0.0.1:port
	// Region and the static keys to sign with; dynalite checks their form,
	// not their value.
	Region    string
	AccessKey string
	SecretKey string
}

// StartDynalite starts an in-memory dynalite on a free loopback port and
// stops it when the test ends. The first call on a machine runs `npm ci`.
func StartDynalite(t testing.TB) Dynalite {
	t.Helper()
	bin := NPMBin(t, "dynalite")
	port := FreePort(t)
	// Tables stay CREATING for a moment, as on AWS, so callers that must
	// wait for ACTIVE are exercised.
	cmd := exec.Command(bin, "--host", "127.0.0.1", "--port", strconv.Itoa(port), "--createTableMs", "300")
	StartProcess(t, "dynalite", cmd, 30*time.Second, TCPReady(Addr(port)))
	return Dynalite{
		Endpoint:  "http://" + Addr(port),
		Region:    "us-east-1",
		AccessKey: "AKIDDYNALITE",
		SecretKey: "dynalite-secret",
	}
}
