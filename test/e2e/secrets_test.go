package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/cluster"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestNoSecretLeavesTheCluster runs a driver on etcd and two executors as
// processes, submits (with the CLI, from YAML) a job whose secrets are
// distinct markers — the sasl.password of a SASL Kafka broker, the
// password of a PostgreSQL role in the sink's URL, an sslpassword given by
// reference to an environment variable — and jobs that fail on wrong or
// missing secrets, then greps every byte the cluster produced: a dump of
// every etcd key, etcd's data directory (WAL and database, so every
// revision), the output of every process, every API and CLI answer, and
// the /metrics of the driver and executors. No marker may appear, not
// even base64-encoded.
func TestNoSecretLeavesTheCluster(t *testing.T) {
	const (
		saslMarker  = "Mk-e2e-sasl-71c2"
		pgMarker    = "Mk-e2e-pgpass-0b9d"
		envMarker   = "Mk-e2e-envref-5e3a"
		wrongMarker = "Mk-e2e-wrong-c41f"
		topic       = "events"
	)
	markers := []string{saslMarker, pgMarker, envMarker, wrongMarker}
	// The processes inherit this environment: the sink's sslpassword is a
	// reference to it.
	t.Setenv("SLUICE_E2E_SSLPASSWORD", envMarker)

	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", saslMarker))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.SASL(plain.Auth{User: "admin", Pass: saslMarker}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 30 {
		v, _ := json.Marshal(map[string]any{"id": i, "amount": i % 5})
		recs = append(recs, &kgo.Record{Value: v})
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	pg := testenv.StartPostgres(t)
	conn := pgConn(t, pg)
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("CREATE ROLE writer LOGIN SUPERUSER PASSWORD '%s'", pgMarker)); err != nil {
		t.Fatal(err)
	}

	etcdDir := t.TempDir()
	etcd, err := cluster.StartEmbeddedEtcd(context.Background(), cluster.EmbeddedConfig{Dir: etcdDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stopEtcd := sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		etcd.Close(ctx)
	})
	t.Cleanup(stopEtcd)

	driverHTTP := freeAddr(t)
	driver, addr := startDriver(t, "driver", etcd.Endpoints(), "--http", driverHTTP, "--log-level", "debug")
	procs := []*proc{driver}
	var execHTTP []string
	for _, name := range []string{"exec-1", "exec-2"} {
		h := freeAddr(t)
		execHTTP = append(execHTTP, h)
		procs = append(procs, start(t, name, "executor", "--driver", addr, "--slots", "2", "--id", name, "--drain-timeout", "2s",
			"--http", h, "--log-level", "debug"))
	}
	c := client(t, addr)
	eventually(t, 30*time.Second, "both executors connect", func() error {
		r, err := c.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
		if err == nil && len(r.GetExecutors()) != 2 {
			err = fmt.Errorf("%d executors", len(r.GetExecutors()))
		}
		return err
	})

	var answers bytes.Buffer
	keep := func(v proto.Message, err error) {
		if err != nil {
			answers.WriteString(err.Error() + "\n")
			if st, ok := status.FromError(err); ok {
				b, _ := protojson.Marshal(st.Proto())
				answers.Write(b)
			}
		}
		if v != nil {
			b, _ := protojson.Marshal(v)
			answers.Write(b)
			answers.WriteString("\n")
		}
	}
	cli := func(args ...string) {
		out, err := exec.Command(filepath.Join(binDir, "sluice"), append([]string{"--driver", addr}, args...)...).CombinedOutput()
		answers.Write(out)
		if err != nil {
			answers.WriteString(err.Error() + "\n")
		}
	}
	jobYAML := func(name, pgPass, saslPass string) string {
		return fmt.Sprintf(`name: %s
source:
  kafka:
    bootstrapServers: %s
    subscribe: [%s]
    startingOffsets: earliest
    properties: {security.protocol: SASL_PLAINTEXT, sasl.mechanism: PLAIN, sasl.username: admin, sasl.password: %q}
transforms:
  - decode: {format: json, schema: "id BIGINT, amount BIGINT"}
sink:
  postgres:
    url: "postgres://writer:%s@%s:%d/%s?sslmode=disable&sslpassword=${env:SLUICE_E2E_SSLPASSWORD}"
    table: %s
    createTable: true
    columns: [{name: id, type: bigint}, {name: amount, type: bigint}]
trigger: {availableNow: true}
restartStrategy: {type: none}
`, name, strings.Join(kc.ListenAddrs(), ","), topic, saslPass, pgPass, pg.Host, pg.Port, pg.Database, strings.ReplaceAll(name, "-", "_"))
	}
	submit := func(name, yaml string) {
		path := filepath.Join(t.TempDir(), name+".yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		cli("submit", path)
	}

	submit("good", jobYAML("good", pgMarker, saslMarker))
	cli("watch", "good")
	eventually(t, 90*time.Second, "job good finishes", func() error {
		j, err := c.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: "good"})
		keep(j, err)
		if err == nil && j.GetState() != sluicev1.JobState_JOB_STATE_FINISHED {
			err = fmt.Errorf("state %s (%s)", j.GetState(), j.GetLastError())
		}
		return err
	})
	if n, err := pgInt(conn, "SELECT count(*) FROM good"); err != nil || n != 30 {
		t.Fatalf("rows written = %d, %v", n, err)
	}

	submit("bad-sasl", jobYAML("bad-sasl", pgMarker, wrongMarker))
	submit("bad-pg", jobYAML("bad-pg", wrongMarker, saslMarker))
	submit("missing-ref", jobYAML("missing-ref", pgMarker, "${env:SLUICE_E2E_NOT_SET}"))
	for _, name := range []string{"bad-sasl", "bad-pg", "missing-ref"} {
		eventually(t, 60*time.Second, "job "+name+" shows its error", func() error {
			j, err := c.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: name})
			keep(j, err)
			if err == nil && j.GetLastError() == "" {
				err = fmt.Errorf("no error yet (%s)", j.GetState())
			}
			return err
		})
		cli("status", name)
		cli("stop", name)
	}
	cli("jobs")
	keep(c.ListJobs(context.Background(), &sluicev1.ListJobsRequest{}))
	keep(c.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{}))

	var metrics bytes.Buffer
	for _, h := range append([]string{driverHTTP}, execHTTP...) {
		resp, err := http.Get("http://" + h + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(b, []byte("sluice_")) {
			t.Errorf("%s/metrics has no sluice metric", h)
		}
		metrics.Write(b)
	}

	// The etcd dump: every key and value as it is now.
	var dump bytes.Buffer
	ec, err := clientv3.New(clientv3.Config{Endpoints: etcd.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ec.Get(context.Background(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		dump.Write(kv.Key)
		dump.WriteByte('=')
		dump.Write(kv.Value)
		dump.WriteByte('\n')
	}
	ec.Close()
	if !bytes.Contains(dump.Bytes(), []byte("good")) {
		t.Fatalf("etcd dump has no job catalog:\n%s", dump.Bytes())
	}

	for _, p := range procs {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.kill()
		}
	}
	stopEtcd()

	sources := map[string][]byte{"API and CLI answers": answers.Bytes(), "/metrics": metrics.Bytes(), "etcd dump": dump.Bytes()}
	for _, p := range procs {
		b, err := os.ReadFile(p.log)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s output: %d bytes, %v", p.name, len(b), err)
		}
		sources[p.name+" output"] = b
	}
	files := 0
	if err := filepath.WalkDir(etcdDir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files++
		sources["etcd file "+strings.TrimPrefix(path, etcdDir)] = b
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Fatalf("etcd data directory has %d files", files)
	}
	for where, b := range sources {
		for _, m := range markers {
			for _, v := range testenv.SecretEncodings(m) {
				if i := bytes.Index(b, []byte(v)); i >= 0 {
					t.Errorf("%s holds secret marker %s (as %q): ...%q...", where, m, v, b[max(0, i-200):min(len(b), i+len(v)+50)])
				}
			}
		}
	}
}
