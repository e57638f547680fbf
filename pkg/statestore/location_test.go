package statestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDirLocation(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "new", "root")
	loc, err := Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	if names, err := loc.List(ctx, "p"); err != nil || len(names) != 0 {
		t.Fatalf("List of an absent prefix = %v, %v; want empty", names, err)
	}
	for _, n := range []string{"p/b", "p/a", "p/sub/c", "q/x"} {
		if err := loc.Put(ctx, n, []byte("data "+n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := loc.Put(ctx, "p/a", []byte("again")); err != nil {
		t.Fatal(err)
	}
	// A leftover temp file from a crashed Put must stay invisible.
	if err := os.WriteFile(filepath.Join(root, "p", tmpPrefix+"junk"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	names, err := loc.List(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"p/a", "p/b", "p/sub/c"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if got, err := loc.Get(ctx, "p/a"); err != nil || string(got) != "again" {
		t.Errorf("Get(p/a) = %q, %v", got, err)
	}
	if _, err := loc.Get(ctx, "p/none"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Get of an absent file = %v, want ErrNotExist", err)
	}
	if err := loc.Delete(ctx, "p/a"); err != nil {
		t.Fatal(err)
	}
	if err := loc.Delete(ctx, "p/a"); err != nil {
		t.Errorf("Delete of an absent file = %v, want nil", err)
	}
	if _, err := loc.Get(ctx, "p/a"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Get after Delete = %v, want ErrNotExist", err)
	}
	for _, bad := range []string{"", "/abs", "../up", "a//b"} {
		if err := loc.Put(ctx, bad, nil); err == nil {
			t.Errorf("Put(%q) succeeded", bad)
		}
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		name     string
		v        int64
		snapshot bool
		ok       bool
	}{
		{"p/x/000000000012.delta", 12, false, true},
		{"p/x/000000000020.snapshot", 20, true, true},
		{"p/x/12.delta", 0, false, false},
		{"p/x/sub/000000000012.delta", 0, false, false},
		{"p/xy/000000000012.delta", 0, false, false},
		{"p/x/000000000012.txt", 0, false, false},
		{"p/x/-00000000012.delta", 0, false, false},
	}
	for _, tt := range tests {
		v, snap, ok := parseName("p/x", tt.name)
		if v != tt.v || snap != tt.snapshot || ok != tt.ok {
			t.Errorf("parseName(%q) = %d, %v, %v; want %d, %v, %v", tt.name, v, snap, ok, tt.v, tt.snapshot, tt.ok)
		}
	}
	if got := deltaName("p/x", 12); got != "p/x/000000000012.delta" {
		t.Errorf("deltaName = %q", got)
	}
}
