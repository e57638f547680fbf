package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/executor"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// syncBuffer collects a process's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// TestNoSecretLeavesTheCluster submits jobs whose secrets are distinct
// markers — a Kafka sasl.password against a SASL broker, the password of a
// PostgreSQL sink's URL (a role created with it), an sslpassword given by
// reference to an environment variable, and wrong or missing secrets that
// make jobs fail — runs them, then reads every byte the cluster produced:
// each file of the checkpoint directory, the debug logs of the driver and
// both executors, every API answer (SubmitJob, GetJob, ListJobs, WatchJob
// events, a refused submit, the JSON API of the web UI) and the driver's and executors' /metrics. No
// marker may appear.
func TestNoSecretLeavesTheCluster(t *testing.T) {
	const (
		saslMarker   = "Mk-sasl-5d8e1f"
		pgMarker     = "Mk-pgpass-93b0c2"
		envMarker    = "Mk-envref-4a71d9"
		wrongMarker  = "Mk-wrongpass-c06e2b"
		refusedMark  = "Mk-refused-7f3a55"
		topic, table = "events", "secret_events"
	)
	markers := []string{saslMarker, pgMarker, envMarker, wrongMarker, refusedMark}
	t.Setenv("SLUICE_TEST_SSLPASSWORD", envMarker)

	// A SASL/PLAIN broker that accepts only the marker password.
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "admin", saslMarker))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	brokers := strings.Join(kc.ListenAddrs(), ",")
	prod, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.SASL(plain.Auth{User: "admin", Pass: saslMarker}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 40 {
		v, _ := json.Marshal(map[string]any{"id": i, "amount": i % 5})
		recs = append(recs, &kgo.Record{Value: v})
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	prod.Close()

	// A PostgreSQL role whose password is a marker.
	pg := testenv.StartPostgres(t)
	conn, err := pgx.Connect(context.Background(), pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("CREATE ROLE writer LOGIN SUPERUSER PASSWORD '%s'", pgMarker)); err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	ckpt := t.TempDir()
	logs := map[string]*syncBuffer{"driver": {}, "e1": {}, "e2": {}}
	logger := func(name string) *slog.Logger {
		return slog.New(slog.NewTextHandler(logs[name], &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d, err := New(Config{Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Advertise: "127.0.0.1:0", Checkpoint: ckpt, Logger: logger("driver"), Stdout: io.Discard,
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: time.Second, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx) }()
	var execs []*executor.Executor
	for _, id := range []string{"e1", "e2"} {
		e, err := executor.New(executor.Config{Driver: d.Addr(), Slots: 2, ID: id, Logger: logger(id), Stdout: io.Discard, DrainTimeout: time.Second,
			HTTP: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		execs = append(execs, e)
		wg.Add(1)
		go func() { defer wg.Done(); e.Run(ctx) }()
	}
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	cc, err := rpc.Dial(d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	api := sluicev1.NewDriverServiceClient(cc)
	waitFor(t, "driver leads", func() error {
		_, err := api.ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
		return err
	})

	// answers collects every API answer and error as bytes.
	var answers bytes.Buffer
	keep := func(v proto.Message, err error) {
		if err != nil {
			answers.WriteString(err.Error() + "\n")
			if st, ok := status.FromError(err); ok {
				b, _ := protojson.Marshal(st.Proto())
				answers.Write(b)
			}
		}
		if v != nil && !reflect.ValueOf(v).IsNil() {
			b, _ := protojson.Marshal(v)
			answers.Write(b)
			answers.WriteString("\n")
		}
	}

	job := func(name, pgPassword, saslPassword string) *sluicev1.JobSpec {
		url := fmt.Sprintf("postgres://writer:%s@%s:%d/%s?sslmode=disable&sslpassword=${env:SLUICE_TEST_SSLPASSWORD}", pgPassword, pg.Host, pg.Port, pg.Database)
		return &sluicev1.JobSpec{
			Name: name,
			Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
				BootstrapServers: brokers, Subscribe: []string{topic}, StartingOffsets: "earliest",
				Properties: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
					"sasl.username": "admin", "sasl.password": saslPassword},
			}}},
			Transforms: []*sluicev1.Transform{{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}}},
			Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
				Url: url, Table: table + "_" + strings.ReplaceAll(name, "-", "_"), CreateTable: true,
				Columns: []*sluicev1.PostgresColumn{{Name: "id", Type: "bigint"}, {Name: "amount", Type: "bigint"}}}}},
			Trigger:         availableNow,
			RestartStrategy: &sluicev1.RestartStrategy{Type: "none"},
		}
	}

	// 1. A job that runs to the end with every secret.
	keep(api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: job("good", pgMarker, saslMarker)}))
	w, err := api.WatchJob(context.Background(), &sluicev1.WatchJobRequest{Name: "good"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := w.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				keep(nil, err)
			}
			break
		}
		keep(ev, nil)
	}
	j := waitState(t, api, "good", sluicev1.JobState_JOB_STATE_FINISHED)
	keep(j, nil)
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table+"_good").Scan(&n); err != nil || n != 40 {
		t.Fatalf("rows written = %d, %v", n, err)
	}

	// 2. Jobs that fail: a wrong Kafka password, a wrong PostgreSQL
	// password, a reference to a variable that is not set.
	keep(api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: job("bad-sasl", pgMarker, wrongMarker)}))
	keep(api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: job("bad-pg", wrongMarker, saslMarker)}))
	missing := job("missing-ref", pgMarker, "${env:SLUICE_TEST_NOT_SET}")
	keep(api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: missing}))
	for _, name := range []string{"bad-sasl", "bad-pg", "missing-ref"} {
		// Some of these are retried forever: wait for the error to show.
		waitFor(t, "job "+name+" shows its error", func() error {
			j, err := api.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: name})
			keep(j, err)
			if err == nil && j.GetLastError() == "" {
				return errors.New("no error yet")
			}
			return err
		})
		keep(api.StopJob(context.Background(), &sluicev1.StopJobRequest{Name: name}))
	}
	if j, _ := api.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: "missing-ref"}); !strings.Contains(j.GetLastError(), "${env:SLUICE_TEST_NOT_SET}") {
		t.Errorf("missing reference error = %q, want it to name the reference", j.GetLastError())
	}
	// 3. A refused submit (a malformed reference next to a literal secret).
	bad := job("refused", refusedMark, "${env:not a name}")
	_, err = api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: bad})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("submit with a malformed reference = %v, want InvalidArgument", err)
	}
	keep(nil, err)
	keep(api.ListJobs(context.Background(), &sluicev1.ListJobsRequest{}))
	for _, name := range []string{"good", "bad-sasl", "bad-pg", "missing-ref"} {
		keep(api.GetJob(context.Background(), &sluicev1.GetJobRequest{Name: name}))
	}
	keep(api.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{}))
	// The web UI's JSON API: the same answers as protojson, and errors.
	paths := []string{"/api/v1/info", "/api/v1/jobs", "/api/v1/executors", "/api/v1/jobs/refused"}
	for _, name := range []string{"good", "bad-sasl", "bad-pg", "missing-ref"} {
		paths = append(paths, "/api/v1/jobs/"+name, "/api/v1/jobs/"+name+"/progress")
	}
	for _, path := range paths {
		rec := httptest.NewRecorder()
		d.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK && path != "/api/v1/jobs/refused" {
			t.Errorf("GET %s: %d %s", path, rec.Code, rec.Body.String())
		}
		answers.Write(rec.Body.Bytes())
		answers.WriteString("\n")
	}

	// /metrics of the driver and the executors.
	var metrics bytes.Buffer
	rec := httptest.NewRecorder()
	d.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics.Write(rec.Body.Bytes())
	if !strings.Contains(rec.Body.String(), "sluice_") {
		t.Errorf("driver /metrics has no sluice metric:\n%s", rec.Body.String())
	}
	for _, e := range execs {
		resp, err := http.Get("http://" + e.HTTPAddr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(b, []byte("sluice_")) {
			t.Errorf("executor /metrics has no sluice metric:\n%s", b)
		}
		metrics.Write(b)
	}
	stop() // flush and close the checkpoint store

	sources := map[string][]byte{"API answers": answers.Bytes(), "/metrics": metrics.Bytes()}
	for name, l := range logs {
		sources[name+" log"] = l.Bytes()
	}
	files := 0
	err = filepath.WalkDir(ckpt, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		files++
		sources["checkpoint file "+strings.TrimPrefix(path, ckpt)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 3 || len(logs["driver"].Bytes()) == 0 || len(answers.Bytes()) == 0 {
		t.Fatalf("too little to search: %d checkpoint files, %d bytes of driver log, %d of answers", files, len(logs["driver"].Bytes()), answers.Len())
	}
	for where, b := range sources {
		for _, m := range markers {
			for _, v := range testenv.SecretEncodings(m) {
				if i := bytes.Index(b, []byte(v)); i >= 0 {
					t.Errorf("%s holds secret marker %s (as %q): ...%s...", where, m, v, b[max(0, i-200):min(len(b), i+len(v)+50)])
				}
			}
		}
	}
}

func literalSpec(name, secret string) *sluicev1.JobSpec {
	return &sluicev1.JobSpec{Name: name,
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{BootstrapServers: "k:9092", Subscribe: []string{"t"}}}},
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
			Url: "postgres://u:" + secret + "@db:5432/app", Table: "t"}}}}
}

// Literal secrets are refused where they could not stay secret: a driver
// without a key (on etcd), and a driver serving executors in plaintext off
// loopback (--insecure). References are accepted everywhere.
func TestSealSpecRefusals(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	k, err := loadKeyring(Config{Checkpoint: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	ref := literalSpec("j", "${env:PGPASS}")
	tests := []struct {
		name string
		d    *Driver
		want string // "" accepts literals
	}{
		{"etcd without a key", &Driver{cfg: Config{Listen: "127.0.0.1:7077"}, log: log, sec: &security{}},
			"no --secrets-key-file"},
		{"plaintext off loopback", &Driver{cfg: Config{Listen: "0.0.0.0:7077"}, log: log, sec: &security{}, keys: k},
			"without TLS on 0.0.0.0:7077 (--insecure)"},
		{"key on loopback", &Driver{cfg: Config{Listen: "127.0.0.1:7077"}, log: log, sec: &security{}, keys: k}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.d.sealSpec(ref); err != nil {
				t.Fatalf("sealSpec(references) = %v", err)
			}
			sealed, err := tc.d.sealSpec(literalSpec("j", "Mk-lit-1"))
			if tc.want == "" {
				b, _ := proto.Marshal(sealed)
				if err != nil || bytes.Contains(b, []byte("Mk-lit-1")) {
					t.Fatalf("sealSpec = %v; sealed holds the secret: %v", err, bytes.Contains(b, []byte("Mk-lit-1")))
				}
				if _, err := tc.d.compileForUse(sealed); err != nil {
					t.Fatalf("compileForUse(sealed) = %v", err)
				}
				return
			}
			if status.Code(rpc.ToStatus(err)) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) ||
				!strings.Contains(err.Error(), "sink.postgres.url (password)") || strings.Contains(err.Error(), "Mk-lit-1") {
				t.Fatalf("sealSpec(literal) = %v, want InvalidArgument naming the field and %q", err, tc.want)
			}
		})
	}
	// A catalog entry with literal secrets is not run by a plaintext
	// driver off loopback either (one written before --insecure was set).
	d := &Driver{cfg: Config{Listen: "0.0.0.0:7077"}, log: log, sec: &security{}, keys: k}
	if _, err := d.compileForUse(literalSpec("j", "Mk-lit-2")); err == nil || strings.Contains(err.Error(), "Mk-lit-2") {
		t.Fatalf("compileForUse on an insecure driver = %v", err)
	}
}

func TestLoadKeyring(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	k, err := loadKeyring(Config{Checkpoint: dir}, log)
	if err != nil || k == nil {
		t.Fatalf("standalone loadKeyring = %v, %v", k, err)
	}
	st, err := os.Stat(filepath.Join(dir, localKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v, %v", st, err)
	}
	if k2, _ := loadKeyring(Config{Checkpoint: dir}, log); k2.Primary() != k.Primary() {
		t.Fatal("a second start replaced the key")
	}
	if k, err := loadKeyring(Config{Etcd: []string{"e:2379"}}, log); k != nil || err != nil {
		t.Fatalf("etcd loadKeyring without a file = %v, %v", k, err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	if _, err := loadKeyring(Config{Etcd: []string{"e:2379"}, SecretsKeyFile: bad}, log); err == nil || !strings.Contains(err.Error(), "--secrets-key-file") {
		t.Fatalf("loadKeyring(bad file) = %v", err)
	}
}
