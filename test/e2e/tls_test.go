package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestTLSAndTokens runs two drivers with TLS, executor certificates and a
// token file, executors and the CLI pointed at the follower (so both follow
// the redirect to the leader over TLS), and a Kafka → PostgreSQL job submitted by
// an operator token through the CLI into PostgreSQL; an executor is killed
// mid-run and the table still holds every record once.
func TestTLSAndTokens(t *testing.T) {
	ca := testenv.NewCA(t, "e2e")
	srv := ca.Server(t, "driver", "127.0.0.1", "localhost")
	dir := t.TempDir()
	authFile := filepath.Join(dir, "auth.yaml")
	const operator, viewer = "op-secret-token", "view-secret-token"
	digest := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf("tokens:\n  - {name: ci, sha256: %q, role: operator}\n  - {name: dash, sha256: %q, role: viewer}\n",
		digest(operator), digest(viewer))), 0o600); err != nil {
		t.Fatal(err)
	}
	secure := []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--tls-client-ca", ca.CertFile, "--auth-file", authFile}

	etcd := testenv.StartEtcd(t)
	leaderProc, leader := startDriver(t, "driver-a", etcd, secure...)
	tc, err := rpc.ClientTLSConfig{CAFile: ca.CertFile}.Build()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rpc.Dial(leader, rpc.WithTLS(tc), rpc.WithToken(viewer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := sluicev1.NewDriverServiceClient(conn)
	eventually(t, 30*time.Second, "driver-a leads", func() error {
		_, err := c.ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
		return err
	})
	_, follower := startDriver(t, "driver-b", etcd, secure...)

	executor := func(name string) *proc {
		kp := ca.Client(t, name, rpc.ExecutorOU)
		// No --id: the executor is known by its certificate's name.
		return start(t, name, "executor", "--driver", follower, "--slots", "2", "--drain-timeout", "2s",
			"--tls-ca", ca.CertFile, "--tls-cert", kp.CertFile, "--tls-key", kp.KeyFile)
	}
	victim := executor("exec-1")
	executor("exec-2")
	eventually(t, 30*time.Second, "both executors reach the leader through the follower", func() error {
		r, err := c.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		if len(r.GetExecutors()) != 2 {
			return fmt.Errorf("%d executors", len(r.GetExecutors()))
		}
		return nil
	})

	brokers := startKafka(t, 3, "ev")
	produce(t, brokers, "ev", 0, 3000)
	pg := testenv.StartPostgres(t)
	db := pgConn(t, pg)
	job := filepath.Join(dir, "job.yaml")
	os.WriteFile(job, []byte(`name: secure
source: {kafka: {bootstrapServers: "`+strings.Join(brokers, ",")+`", subscribe: [ev], startingOffsets: earliest, maxOffsetsPerTrigger: 150}}
transforms:
  - decode: {format: json, schema: "id BIGINT, amount BIGINT"}
sink: {postgres: {url: "`+pg.URL+`", table: secure, createTable: true}}
trigger: {processingTime: 100ms}
`), 0o644)
	sluice := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "sluice"), append([]string{"--driver", follower}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	withCA := "SLUICE_TLS_CA=" + ca.CertFile
	for _, tt := range []struct {
		name string
		env  []string
		want string
	}{
		{"plaintext", []string{"SLUICE_TOKEN=" + operator}, "cannot reach the driver"},
		{"no token", []string{withCA}, "not authenticated"},
		{"viewer", []string{withCA, "SLUICE_TOKEN=" + viewer}, "permission denied"},
	} {
		if out, err := sluice(tt.env, "submit", job); err == nil || !strings.Contains(out, tt.want) {
			t.Fatalf("%s submit: err %v, want %q in:\n%s", tt.name, err, tt.want, out)
		}
	}
	if out, err := sluice([]string{withCA, "SLUICE_TOKEN=" + operator}, "submit", job); err != nil {
		t.Fatalf("operator submit: %v\n%s", err, out)
	}

	killSinkExecutorMidBatch(t, c, "secure", 2, victim)
	const n = 3000
	eventually(t, 2*time.Minute, fmt.Sprintf("the table holds all %d ids", n), func() error {
		d, err := pgInt(db, `SELECT count(DISTINCT id) FROM secure`)
		if err != nil || d < n {
			return fmt.Errorf("%d of %d ids so far (err %v)", d, n, err)
		}
		return nil
	})
	if rows, err := pgInt(db, `SELECT count(*) FROM secure`); err != nil || rows != n {
		t.Fatalf("table secure holds %d rows (err %v), want %d: each record once", rows, err, n)
	}
	if _, err := db.Exec(context.Background(), `ALTER TABLE secure ADD UNIQUE ("partition", "offset")`); err != nil {
		t.Fatalf("(partition, offset) is not unique: %v", err)
	}

	logs, _ := os.ReadFile(leaderProc.log)
	if !strings.Contains(string(logs), "msg=audit method=SubmitJob job=secure principal=ci") {
		t.Fatalf("no audit line for the submit in driver-a's log:\n%s", tail(logs, 4000))
	}
	if strings.Contains(string(logs), operator) {
		t.Fatal("a token reached driver-a's log")
	}
}
