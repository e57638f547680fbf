package local

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/checkpointtest"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestContract(t *testing.T) {
	checkpointtest.Run(t, func(t *testing.T) (checkpoint.Store, checkpoint.Fence, func()) {
		return open(t), checkpoint.Fence{}, nil
	})
}

func TestOpenLocksDirectory(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	_, err = Open(dir)
	if err == nil || !strings.Contains(err.Error(), "is in use by another driver") {
		t.Fatalf("second open of a locked directory: got %v, want \"in use by another driver\"", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("open after close released the lock: %v", err)
	}
	s2.Close()
}

func TestClosedStoreRefuses(t *testing.T) {
	s := open(t)
	s.Close()
	ctx := context.Background()
	if err := s.PutJob(ctx, checkpoint.Fence{}, checkpointRecord("x")); err == nil {
		t.Fatal("put job after close succeeded")
	}
	if _, err := s.ListJobs(ctx); err == nil {
		t.Fatal("list jobs after close succeeded")
	}
}

func checkpointRecord(name string) checkpoint.JobRecord { return checkpoint.JobRecord{Name: name} }

func TestLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	f := checkpoint.Fence{}
	job := "team/orders#1"
	mustDo(t, s.PutJob(ctx, f, checkpointRecord(job)))
	mustDo(t, s.PutPlan(ctx, f, job, checkpoint.BatchPlan{Batch: 12}))
	mustDo(t, s.PutTaskEnd(ctx, f, job, 12, "orders/3#2", stream.Position("9")))
	mustDo(t, s.PutCommit(ctx, f, job, checkpoint.Commit{Batch: 12}))

	esc := "team%2Forders%231"
	for _, p := range []string{
		"LOCK",
		"jobs/" + esc + ".json",
		"logs/" + esc + "/offsets/12",
		"logs/" + esc + "/ends/12/orders%2F3%232",
		"logs/" + esc + "/commits/12",
	} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("expected file %s: %v", p, err)
		}
	}
}

func TestEscape(t *testing.T) {
	seen := map[string]string{}
	for _, in := range []string{"a", "a/b", "a%2Fb", "a#1", ".", "..", ".tmp-x", "a.json", "ü", "a b", "A"} {
		out := escape(in)
		if strings.ContainsAny(out, "/.") || out == "" {
			t.Errorf("escape(%q) = %q: not a safe single path element", in, out)
		}
		if prev, ok := seen[out]; ok {
			t.Errorf("escape(%q) = escape(%q) = %q", in, prev, out)
		}
		seen[out] = in
	}
}

// TestOpenRemovesCrashLeftovers: a crash can leave a temporary file from an
// interrupted write and a renamed-away job log from an interrupted delete;
// neither may be read as data, and Open clears them.
func TestOpenRemovesCrashLeftovers(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustDo(t, s.PutPlan(ctx, checkpoint.Fence{}, "j", checkpoint.BatchPlan{Batch: 1}))
	s.Close()

	offsets := filepath.Join(dir, "logs", "j", "offsets")
	tmp := filepath.Join(offsets, tmpPrefix+"123")
	mustDo(t, os.WriteFile(tmp, []byte("{half"), 0o644))
	deleted := filepath.Join(dir, "logs", deletedPrefix+"9", "logs", "offsets")
	mustDo(t, os.MkdirAll(deleted, 0o755))

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, p := range []string{tmp, filepath.Join(dir, "logs", deletedPrefix+"9")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	p, err := s.LatestPlan(ctx, "j")
	if err != nil || p.Batch != 1 {
		t.Fatalf("latest plan = %v, %v; want batch 1", p.Batch, err)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
