package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// MinIO release used by the tests (a commit of github.com/minio/minio; the
// S3 checkpoint store's fencing relies on its If-None-Match/If-Match
// support). Built once with `go install` into ToolsDir.
const (
	MinIOModule  = "github.com/minio/minio"
	MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"
)

// MinIO is a running server.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	Region    string
}

// StartMinIO starts a MinIO server with its data in t.TempDir() on a free
// loopback port and stops it when the test ends. The first call on a machine
// builds the binary (about 3 minutes on 2 cores).
func StartMinIO(t testing.TB) MinIO {
	t.Helper()
	bin := GoInstall(t, "minio", MinIOModule, MinIOVersion)
	port, consolePort := FreePort(t), FreePort(t)
	m := MinIO{
		Endpoint:  "http://" + Addr(port),
		AccessKey: "sluiceminio",
		SecretKey: "sluiceminio-secret",
		Region:    "us-east-1",
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", Addr(port),
		"--console-address", Addr(consolePort), t.TempDir())
	cmd.Env = append(cmd.Environ(),
		"MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_REGION="+m.Region, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	StartProcess(t, "minio", cmd, 60*time.Second, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", resp.Status)
		}
		return nil
	})
	return m
}
