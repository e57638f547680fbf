package file

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newSink(t *testing.T) (*Sink, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "out")
	s, err := New(Config{Path: root})
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func write(t *testing.T, s *Sink, key connectors.WriteKey, rows []stream.Row, commit bool) {
	t.Helper()
	ctx := context.Background()
	w, err := s.OpenWriter(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if commit {
		err = w.Commit(ctx)
	} else {
		err = w.Abort()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Path: "/tmp/x"}, ""},
		{Config{Path: "/tmp/x", Format: "jsonl"}, ""},
		{Config{}, "sink.file.path: required"},
		{Config{Path: "x", Format: "parquet"}, `sink.file.format: unsupported format "parquet" (want jsonl)`},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestPartName(t *testing.T) {
	tests := map[string]string{
		"transaction/3":               "transaction=3",
		"transaction/3#1":             "transaction=3+1",
		"my-topic.v2_x/12":            "my-topic.v2_x=12",
		"aggregate":                   "aggregate",
		"stream/shardId-000000000001": "stream=shardId-000000000001",
		"a=b/1":                       "a%3Db=1",
		"a+b %/1":                     "a%2Bb%20%25=1",
		"ü":                           "%C3%BC",
		"..":                          "%2E%2E%",
		"":                            "%",
	}
	seen := map[string]string{}
	for in, want := range tests {
		got := PartName(in)
		if got != want {
			t.Errorf("PartName(%q) = %q, want %q", in, got, want)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("PartName(%q) = PartName(%q) = %q", in, prev, got)
		}
		seen[got] = in
	}
}

func TestWriteAndReadAll(t *testing.T) {
	s, root := newSink(t)
	ts := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	key := connectors.WriteKey{Job: "payments", Batch: 3, Part: "transaction/3", Columns: []string{"branch", "amount"}}
	write(t, s, key, []stream.Row{
		{"amount": int64(-42), "branch": "Kazan", "extra": true, "b": "x"},
		{"branch": "Omsk", "amount": 1.0, "when": ts, "raw": []byte("hi"), "nested": map[string]any{"z": []any{int64(1), nil}, "a": 1e-7},
			"nan": math.NaN(), "big": 1e21, "s": "q\"\\\n\t\x01<>&\u2028\xff"},
	}, true)

	data, err := os.ReadFile(filepath.Join(root, "payments", "batch=3", "part-transaction=3.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"branch":"Kazan","amount":-42,"b":"x","extra":true}` + "\n" +
		`{"branch":"Omsk","amount":1.0,"big":1e+21,"nan":"NaN","nested":{"a":1e-7,"z":[1,null]},"raw":"aGk=",` +
		`"s":"q\"\\\n\t\u0001<>&\u2028\ufffd","when":"2026-03-01T12:00:00.123456789Z"}` + "\n"
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}

	// Sorted keys without columns, and a second batch.
	write(t, s, connectors.WriteKey{Job: "payments", Batch: 10, Part: "transaction/0"}, []stream.Row{{"b": int64(2), "a": int64(1)}}, true)
	rows, err := ReadAll(root, "payments")
	if err != nil {
		t.Fatal(err)
	}
	wantRows := []map[string]any{
		{"amount": int64(-42), "branch": "Kazan", "extra": true, "b": "x"},
		{"branch": "Omsk", "amount": 1.0, "big": 1e21, "nan": "NaN", "nested": map[string]any{"a": 1e-7, "z": []any{int64(1), nil}},
			"raw": "aGk=", "s": "q\"\\\n\t\x01<>&\u2028\ufffd", "when": "2026-03-01T12:00:00.123456789Z"},
		{"a": int64(1), "b": int64(2)},
	}
	if diff := cmp.Diff(wantRows, rows); diff != "" {
		t.Errorf("ReadAll (-want +got):\n%s", diff)
	}
}

// TestReadAllOrder checks batches sort numerically (batch=10 after batch=9),
// parts by name, and temporary files are ignored.
func TestReadAllOrder(t *testing.T) {
	s, root := newSink(t)
	for _, b := range []stream.BatchID{10, 9, 0} {
		for _, p := range []string{"t/1", "t/0"} {
			write(t, s, connectors.WriteKey{Job: "j", Batch: b, Part: p}, []stream.Row{{"id": fmt.Sprintf("%d-%s", b, p)}}, true)
		}
	}
	// An attempt in flight (or crashed) leaves a temporary file.
	w, err := s.OpenWriter(context.Background(), connectors.WriteKey{Job: "j", Batch: 9, Part: "t/2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(context.Background(), []stream.Row{{"id": "uncommitted"}}); err != nil {
		t.Fatal(err)
	}
	rows, err := ReadAll(root, "j")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r["id"].(string))
	}
	want := []string{"0-t/0", "0-t/1", "9-t/0", "9-t/1", "10-t/0", "10-t/1"}
	if diff := cmp.Diff(want, ids); diff != "" {
		t.Errorf("ReadAll order (-want +got):\n%s", diff)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAll(root, "nope"); !os.IsNotExist(err) {
		t.Errorf("ReadAll of an unknown job = %v, want not exist", err)
	}
}

// TestRetryReplaces is the idempotence the engine relies on: a second
// attempt of the same key replaces the first's rows instead of adding to
// them.
func TestRetryReplaces(t *testing.T) {
	s, root := newSink(t)
	key := connectors.WriteKey{Job: "j", Batch: 1, Part: "t/0"}
	write(t, s, key, []stream.Row{{"attempt": int64(1)}, {"attempt": int64(1)}, {"attempt": int64(1)}}, true)
	write(t, s, key, []stream.Row{{"attempt": int64(2)}, {"attempt": int64(2)}}, true)
	rows, err := ReadAll(root, "j")
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{"attempt": int64(2)}, {"attempt": int64(2)}}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows after a retry (-want +got):\n%s", diff)
	}
	assertOnlyFiles(t, filepath.Join(root, "j", "batch=1"), "part-t=0.jsonl")
}

func TestAbortLeavesNothing(t *testing.T) {
	s, root := newSink(t)
	key := connectors.WriteKey{Job: "j", Batch: 1, Part: "t/0"}
	write(t, s, key, []stream.Row{{"x": int64(1)}}, false)
	assertOnlyFiles(t, filepath.Join(root, "j", "batch=1"))

	// Aborting a retry keeps the earlier commit.
	write(t, s, key, []stream.Row{{"x": int64(1)}}, true)
	write(t, s, key, []stream.Row{{"x": int64(2)}}, false)
	rows, err := ReadAll(root, "j")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]map[string]any{{"x": int64(1)}}, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	assertOnlyFiles(t, filepath.Join(root, "j", "batch=1"), "part-t=0.jsonl")
}

func TestWriterMisuse(t *testing.T) {
	s, _ := newSink(t)
	ctx := context.Background()
	w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Part: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []stream.Row{{}}); err == nil {
		t.Error("Write after Commit succeeded")
	}
	if err := w.Commit(ctx); err == nil {
		t.Error("second Commit succeeded")
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after Commit = %v, want nil", err)
	}
	w, err = s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Part: "q"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []stream.Row{{"f": make(chan int)}}); err == nil || !strings.Contains(err.Error(), `field "f"`) {
		t.Errorf("Write of an unencodable value = %v, want an error naming the field", err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.OpenWriter(cctx, connectors.WriteKey{Job: "j", Part: "p"}); err == nil {
		t.Error("OpenWriter with a cancelled context succeeded")
	}
}

// TestConcurrentWriters writes many keys at once, as the tasks of a batch
// do; run it with -race.
func TestConcurrentWriters(t *testing.T) {
	s, root := newSink(t)
	const parts, rowsPer = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, parts)
	for p := range parts {
		wg.Go(func() {
			ctx := context.Background()
			w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 7, Part: fmt.Sprintf("t/%d", p)})
			if err != nil {
				errs <- err
				return
			}
			for i := range rowsPer {
				if err := w.Write(ctx, []stream.Row{{"p": int64(p), "i": int64(i)}}); err != nil {
					errs <- err
					return
				}
			}
			errs <- w.Commit(ctx)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	rows, err := ReadAll(root, "j")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[2]int64]int{}
	for _, r := range rows {
		seen[[2]int64{r["p"].(int64), r["i"].(int64)}]++
	}
	if len(rows) != parts*rowsPer || len(seen) != parts*rowsPer {
		t.Errorf("read %d rows, %d distinct; want %d each", len(rows), len(seen), parts*rowsPer)
	}
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files in %s (-want +got):\n%s", dir, diff)
	}
}
