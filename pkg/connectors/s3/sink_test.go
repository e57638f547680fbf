package s3

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// minio is one MinIO server and a client on it.
type minio struct {
	srv testenv.MinIO
	cl  *s3.Client
}

func startMinIO(t *testing.T) *minio {
	t.Helper()
	srv := testenv.StartMinIO(t)
	s, err := New(Config{Bucket: "unused", Endpoint: srv.Endpoint, Region: srv.Region,
		Auth: awsauth.Options{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &minio{srv: srv, cl: s.client}
}

func (m *minio) bucket(t *testing.T, name string) {
	t.Helper()
	if _, err := m.cl.CreateBucket(tctx(t), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

func (m *minio) sink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	cfg.Endpoint, cfg.Region = m.srv.Endpoint, m.srv.Region
	if cfg.Auth == (awsauth.Options{}) {
		cfg.Auth = awsauth.Options{AccessKey: m.srv.AccessKey, SecretKey: m.srv.SecretKey}
	}
	s, err := New(cfg, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// keys lists the bucket's keys under prefix, sorted.
func (m *minio) keys(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	out, err := m.cl.ListObjectsV2(tctx(t), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	sort.Strings(keys)
	return keys
}

func (m *minio) get(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := m.cl.GetObject(tctx(t), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lines decodes a JSON-lines object.
func lines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func wkey(job string, batch int64, part string, cols ...string) connectors.WriteKey {
	return connectors.WriteKey{Job: stream.JobID(job), Batch: stream.BatchID(batch), Part: part, Columns: cols}
}

func run(t *testing.T, s *Sink, key connectors.WriteKey, rows []stream.Row, commit bool) error {
	t.Helper()
	c := tctx(t)
	w, err := s.OpenWriter(c, key)
	if err != nil {
		return err
	}
	if err := w.Write(c, rows); err != nil {
		_ = w.Abort()
		return err
	}
	if !commit {
		return w.Abort()
	}
	return w.Commit(c)
}

func TestSinkOnMinIO(t *testing.T) {
	m := startMinIO(t)
	m.bucket(t, "out")
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

	t.Run("JSON lines, retries replace, _SUCCESS lists the batch", func(t *testing.T) {
		spool := t.TempDir()
		s := m.sink(t, Config{Bucket: "out", Prefix: "jsonl/"})
		s.tempDir = spool
		rows0 := []stream.Row{{"id": int64(1), "amount": 2.0, "at": at, "raw": []byte("hi")}, {"id": int64(2), "amount": -1.5}}
		rows1 := []stream.Row{{"id": int64(3), "amount": 0.0}}
		if err := run(t, s, wkey("copy", 4, "transaction/0", "id", "amount"), rows0, true); err != nil {
			t.Fatal(err)
		}
		// A failed attempt of the second part, then its retry, twice.
		if err := run(t, s, wkey("copy", 4, "transaction/1#1", "id", "amount"), rows1, false); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := run(t, s, wkey("copy", 4, "transaction/1#1", "id", "amount"), rows1, true); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CommitBatch(tctx(t), "copy", 4); err != nil {
			t.Fatal(err)
		}
		want := []string{
			"jsonl/copy/batch=4/_SUCCESS",
			"jsonl/copy/batch=4/part-transaction=0.jsonl",
			"jsonl/copy/batch=4/part-transaction=1+1.jsonl",
		}
		if diff := cmp.Diff(want, m.keys(t, "out", "jsonl/")); diff != "" {
			t.Fatalf("keys (-want +got):\n%s", diff)
		}
		got := string(m.get(t, "out", want[1]))
		wantLines := `{"id":1,"amount":2.0,"at":"2026-05-01T09:00:00Z","raw":"aGk="}` + "\n" + `{"id":2,"amount":-1.5}` + "\n"
		if got != wantLines {
			t.Fatalf("part 0:\n%s\nwant\n%s", got, wantLines)
		}
		if n := len(lines(t, m.get(t, "out", want[2]))); n != 1 {
			t.Fatalf("part 1 holds %d lines after three attempts, want 1", n)
		}
		var man manifest
		if err := json.Unmarshal(m.get(t, "out", want[0]), &man); err != nil {
			t.Fatal(err)
		}
		if man.Job != "copy" || man.Batch != 4 || len(man.Objects) != 2 || man.Objects[0].Key != want[1] || man.Objects[0].Size != int64(len(got)) {
			t.Fatalf("manifest: %+v", man)
		}
		if left, _ := os.ReadDir(spool); len(left) != 0 {
			t.Fatalf("spool files left behind: %v", left)
		}
	})

	t.Run("Parquet read back with parquet-go", func(t *testing.T) {
		s := m.sink(t, Config{Bucket: "out", Prefix: "pq", Format: "parquet"})
		rows := []stream.Row{
			{"branch": "SPB", "currency": "RUB", "batch_value": int64(120), "n": int64(4), "avg": 30.0, "at": at},
			{"branch": "Kazan", "currency": "USD", "batch_value": int64(-7), "n": int64(1), "avg": -7.0, "at": at, "tags": []any{"a"}},
		}
		if err := run(t, s, wkey("treasury", 0, "aggregate"), rows, true); err != nil {
			t.Fatal(err)
		}
		_, got := readParquet(t, m.get(t, "out", "pq/treasury/batch=0/part-aggregate.parquet"))
		want := []map[string]any{
			{"branch": "SPB", "currency": "RUB", "batch_value": int64(120), "n": int64(4), "avg": 30.0, "at": at, "tags": nil},
			{"branch": "Kazan", "currency": "USD", "batch_value": int64(-7), "n": int64(1), "avg": -7.0, "at": at, "tags": `["a"]`},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("rows (-want +got):\n%s", diff)
		}
	})

	t.Run("partitionBy splits a task into folders", func(t *testing.T) {
		s := m.sink(t, Config{Bucket: "out", Prefix: "byday", PartitionBy: "day"})
		rows := []stream.Row{
			{"id": int64(1), "day": "2026-05-01"}, {"id": int64(2), "day": "2026-05-02"},
			{"id": int64(3), "day": "2026-05-01"}, {"id": int64(4)},
		}
		if err := run(t, s, wkey("j", 1, "t/0"), rows, true); err != nil {
			t.Fatal(err)
		}
		want := []string{
			"byday/j/batch=1/day=2026-05-01/part-t=0.jsonl",
			"byday/j/batch=1/day=2026-05-02/part-t=0.jsonl",
			"byday/j/batch=1/day=__HIVE_DEFAULT_PARTITION__/part-t=0.jsonl",
		}
		if diff := cmp.Diff(want, m.keys(t, "out", "byday/")); diff != "" {
			t.Fatalf("keys (-want +got):\n%s", diff)
		}
		if n := len(lines(t, m.get(t, "out", want[0]))); n != 2 {
			t.Fatalf("%s holds %d rows, want 2", want[0], n)
		}
		// Another part's objects in the same folders stay.
		if err := run(t, s, wkey("j", 1, "t/1"), rows[1:2], true); err != nil {
			t.Fatal(err)
		}
		// A retry holding other rows (a Kinesis range replayed to another
		// end) replaces the task's objects and removes those it no longer
		// has rows for.
		if err := run(t, s, wkey("j", 1, "t/0"), rows[:1], true); err != nil {
			t.Fatal(err)
		}
		want = []string{
			"byday/j/batch=1/day=2026-05-01/part-t=0.jsonl",
			"byday/j/batch=1/day=2026-05-02/part-t=1.jsonl",
		}
		if diff := cmp.Diff(want, m.keys(t, "out", "byday/")); diff != "" {
			t.Fatalf("keys after the retry (-want +got):\n%s", diff)
		}
	})

	t.Run("a retry without rows removes the earlier attempt's object", func(t *testing.T) {
		s := m.sink(t, Config{Bucket: "out", Prefix: "shrink"})
		if err := run(t, s, wkey("j", 0, "t/0"), []stream.Row{{"id": int64(1)}}, true); err != nil {
			t.Fatal(err)
		}
		if err := run(t, s, wkey("j", 0, "t/0"), nil, true); err != nil {
			t.Fatal(err)
		}
		if keys := m.keys(t, "out", "shrink/"); len(keys) != 0 {
			t.Fatalf("keys after an empty retry: %v", keys)
		}
	})

	t.Run("an empty task uploads nothing; _SUCCESS still marks the batch", func(t *testing.T) {
		s := m.sink(t, Config{Bucket: "out", Prefix: "empty"})
		if err := run(t, s, wkey("j", 0, "t/0"), nil, true); err != nil {
			t.Fatal(err)
		}
		if err := s.CommitBatch(tctx(t), "j", 0); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"empty/j/batch=0/_SUCCESS"}, m.keys(t, "out", "empty/")); diff != "" {
			t.Fatalf("keys (-want +got):\n%s", diff)
		}
	})

	t.Run("errors", func(t *testing.T) {
		const secret = "not-the-secret-key"
		tests := []struct {
			name      string
			cfg       Config
			want      string
			permanent bool
		}{
			{"missing bucket", Config{Bucket: "nope"}, `bucket "nope" does not exist`, true},
			{"wrong secret key", Config{Bucket: "out", Auth: awsauth.Options{AccessKey: m.srv.AccessKey, SecretKey: secret}},
				"check auth.awsAccessKey and auth.awsSecretKey", true},
			{"unknown access key", Config{Bucket: "out", Auth: awsauth.Options{AccessKey: "nobody", SecretKey: secret}},
				"check auth.awsAccessKey and auth.awsSecretKey", true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := m.sink(t, tt.cfg)
				err := run(t, s, wkey("j", 0, "p"), []stream.Row{{"id": int64(1)}}, true)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				if connectors.IsPermanent(err) != tt.permanent {
					t.Fatalf("IsPermanent = %v, want %v", !tt.permanent, tt.permanent)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), m.srv.SecretKey) {
					t.Fatalf("error shows a secret: %v", err)
				}
			})
		}
		t.Run("unreachable endpoint", func(t *testing.T) {
			s, err := New(Config{Bucket: "out", Endpoint: "http://" + testenv.Addr(testenv.FreePort(t)),
				Auth: awsauth.Options{AccessKey: "k", SecretKey: secret}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = run(t, s, wkey("j", 0, "p"), []stream.Row{{"id": int64(1)}}, true)
			if err == nil || !strings.Contains(err.Error(), "right and reachable?") || strings.Contains(err.Error(), secret) {
				t.Fatalf("err = %v, want a hint about the endpoint", err)
			}
		})
	})
}
