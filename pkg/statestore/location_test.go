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
	root := filepath.Join(t.TempDir(), "new", "root")
	loc, err := Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	testLocation(t, loc, func(name string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// testLocation checks the Location contract on an empty loc. raw writes a
// file behind loc's back (as a crashed writer or another tool would), with
// a name loc itself may refuse.
func testLocation(t *testing.T, loc Location, raw func(name string, data []byte)) {
	t.Helper()
	ctx := context.Background()
	list := func(prefix string) []string {
		t.Helper()
		names, err := loc.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		return names
	}
	if names, err := loc.List(ctx, "p"); err != nil || len(names) != 0 {
		t.Fatalf("List of an absent prefix = %v, %v; want empty", names, err)
	}
	if names, err := loc.List(ctx, ""); err != nil || len(names) != 0 {
		t.Fatalf("List of an empty location = %v, %v; want empty", names, err)
	}
	for _, n := range []string{"p/b", "p/a", "p/sub/c", "q/x", "px/y", "p-/z", "top"} {
		if err := loc.Put(ctx, n, []byte("data "+n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := loc.Put(ctx, "p/a", []byte("again")); err != nil {
		t.Fatal(err)
	}
	if err := loc.Put(ctx, "p/empty", nil); err != nil {
		t.Fatal(err)
	}
	// A leftover temp file from a crashed Put must stay invisible.
	raw("p/"+tmpPrefix+"junk", []byte("half"))
	raw("p/sub/"+tmpPrefix+"junk2", []byte("half"))

	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"p", []string{"p/a", "p/b", "p/empty", "p/sub/c"}},
		{"p/sub", []string{"p/sub/c"}},
		{"px", []string{"px/y"}},
		{"", []string{"p-/z", "p/a", "p/b", "p/empty", "p/sub/c", "px/y", "q/x", "top"}},
		// A prefix naming a file lists that file.
		{"q/x", []string{"q/x"}},
		{"p/none", nil},
		{"q/x/y", nil},
	} {
		if diff := cmp.Diff(tc.want, list(tc.prefix)); diff != "" {
			t.Errorf("List(%q) (-want +got):\n%s", tc.prefix, diff)
		}
	}
	if got, err := loc.Get(ctx, "p/a"); err != nil || string(got) != "again" {
		t.Errorf("Get(p/a) = %q, %v", got, err)
	}
	if got, err := loc.Get(ctx, "p/sub/c"); err != nil || string(got) != "data p/sub/c" {
		t.Errorf("Get(p/sub/c) = %q, %v", got, err)
	}
	if got, err := loc.Get(ctx, "p/empty"); err != nil || len(got) != 0 {
		t.Errorf("Get(p/empty) = %q, %v; want empty", got, err)
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
	if err := loc.Delete(ctx, "never/was"); err != nil {
		t.Errorf("Delete of an absent file = %v, want nil", err)
	}
	if _, err := loc.Get(ctx, "p/a"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Get after Delete = %v, want ErrNotExist", err)
	}
	if diff := cmp.Diff([]string{"p/b", "p/empty", "p/sub/c"}, list("p")); diff != "" {
		t.Errorf("List after Delete (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", ".", "/abs", "../up", "a//b", "a/./b", "a/"} {
		if err := loc.Put(ctx, bad, nil); err == nil {
			t.Errorf("Put(%q) succeeded", bad)
		}
		if _, err := loc.Get(ctx, bad); err == nil || errors.Is(err, ErrNotExist) {
			t.Errorf("Get(%q) = %v, want an invalid-name error", bad, err)
		}
		if err := loc.Delete(ctx, bad); err == nil {
			t.Errorf("Delete(%q) succeeded", bad)
		}
		if bad == "" {
			continue // List("") is the whole location
		}
		if _, err := loc.List(ctx, bad); err == nil {
			t.Errorf("List(%q) succeeded", bad)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := loc.Put(cctx, "p/c", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context = %v", err)
	}
	if _, err := loc.Get(cctx, "p/b"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context = %v", err)
	}
	if _, err := loc.List(cctx, "p"); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context = %v", err)
	}
	if err := loc.Delete(cctx, "p/b"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled context = %v", err)
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
