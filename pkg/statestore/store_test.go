package statestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/go-cmp/cmp"
)

const testPrefix = "orders/3f2a/state/7"

func newDir(t *testing.T) Location {
	t.Helper()
	loc, err := Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func openStore(t *testing.T, loc Location, mod func(*Options)) *Store {
	t.Helper()
	opts := Options{LocalDir: t.TempDir(), Location: loc, Prefix: testPrefix}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// genChanges makes batch v's changes: sets, overwrites, deletes (some of
// absent keys), empty values and repeated keys, all deterministic in v.
func genChanges(v int64) []Change {
	r := rand.New(rand.NewPCG(uint64(v), 42))
	var cs []Change
	for range 6 {
		key := []byte(fmt.Sprintf("k%02d", r.IntN(25)))
		switch r.IntN(5) {
		case 0:
			cs = append(cs, Change{Key: key}) // delete
		case 1:
			cs = append(cs, Change{Key: key, Value: []byte{}})
		default:
			cs = append(cs, Change{Key: key, Value: []byte(fmt.Sprintf("v%d-%d", v, r.IntN(1000)))})
		}
	}
	return cs
}

type model map[string]string

func (m model) apply(cs []Change) model {
	out := model{}
	for k, v := range m {
		out[k] = v
	}
	for _, c := range cs {
		if c.Value == nil {
			delete(out, string(c.Key))
		} else {
			out[string(c.Key)] = string(c.Value)
		}
	}
	return out
}

// history[v+1] is the expected state at version v; history[0] is version -1.
type history []model

func (h history) at(v int64) model { return h[v+1] }

// commitRange commits versions from..to with genChanges and returns the
// expected states, extending h.
func commitRange(t *testing.T, s *Store, h history, from, to int64) history {
	t.Helper()
	if h == nil {
		h = history{model{}}
	}
	for v := from; v <= to; v++ {
		cs := genChanges(v)
		if _, err := s.Commit(context.Background(), v, cs); err != nil {
			t.Fatalf("commit %d: %v", v, err)
		}
		h = append(h[:v+1], h.at(v-1).apply(cs))
	}
	return h
}

func checkState(t *testing.T, s *Store, want model) {
	t.Helper()
	got := model{}
	var prev []byte
	err := s.Scan(func(k, v []byte) error {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			t.Errorf("scan out of order: %q after %q", k, prev)
		}
		prev = bytes.Clone(k)
		got[string(k)] = string(v)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state at version %d (-want +got):\n%s", s.Version(), diff)
	}
	for k, v := range want {
		gv, ok, err := s.Get([]byte(k))
		if err != nil || !ok || string(gv) != v {
			t.Errorf("Get(%q) = %q, %v, %v; want %q", k, gv, ok, err, v)
		}
	}
	if _, ok, _ := s.Get([]byte("absent")); ok {
		t.Errorf("Get(absent) found")
	}
	if got := s.Stats().Keys; got != int64(len(want)) {
		t.Errorf("Stats().Keys = %d, want %d", got, len(want))
	}
}

func TestRestoreAnyVersion(t *testing.T) {
	loc := newDir(t)
	w := openStore(t, loc, func(o *Options) { o.SnapshotInterval = 10 })
	h := history{model{}}
	for v := int64(0); v <= 25; v++ {
		cs := genChanges(v)
		st, err := w.Commit(context.Background(), v, cs)
		if err != nil {
			t.Fatalf("commit %d: %v", v, err)
		}
		h = append(h, h.at(v-1).apply(cs))
		if want := v%10 == 0; st.Snapshot != want || (st.SnapshotBytes > 0) != want || st.DeltaBytes == 0 {
			t.Errorf("commit %d stats = %+v, want snapshot %v", v, st, want)
		}
	}
	checkState(t, w, h.at(25))

	r := openStore(t, loc, nil)
	for _, v := range []int64{25, 19, 10, 9, -1, 0, 20} {
		t.Run(fmt.Sprint("load", v), func(t *testing.T) {
			restored, err := r.Load(context.Background(), v)
			if err != nil || !restored {
				t.Fatalf("Load(%d) = %v, %v; want restored", v, restored, err)
			}
			if r.Version() != v {
				t.Fatalf("Version() = %d, want %d", r.Version(), v)
			}
			checkState(t, r, h.at(v))
			if restored, err := r.Load(context.Background(), v); err != nil || restored {
				t.Fatalf("second Load(%d) = %v, %v; want not restored", v, restored, err)
			}
		})
	}
}

func TestReplay(t *testing.T) {
	loc := newDir(t)
	s := openStore(t, loc, nil)
	h := commitRange(t, s, nil, 0, 7)

	restored, err := s.Load(context.Background(), 6)
	if err != nil || !restored {
		t.Fatalf("Load(6) = %v, %v; want restored", restored, err)
	}
	checkState(t, s, h.at(6))
	// The replay may present the same changes in another order: the delta
	// is canonical, so it is byte-identical either way.
	cs := genChanges(7)
	for i, j := 0, len(cs)-1; i < j; i, j = i+1, j-1 {
		if !bytes.Equal(cs[i].Key, cs[j].Key) {
			cs[i], cs[j] = cs[j], cs[i]
		}
	}
	before, err := loc.Get(context.Background(), deltaName(testPrefix, 7))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), 7, cs); err != nil {
		t.Fatalf("replayed Commit(7): %v", err)
	}
	after, _ := loc.Get(context.Background(), deltaName(testPrefix, 7))
	if !bytes.Equal(before, after) {
		t.Errorf("replayed delta differs from the first attempt's")
	}
	checkState(t, s, h.at(7))

	r := openStore(t, loc, nil)
	if _, err := r.Load(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	checkState(t, r, h.at(7))
}

func TestDeletesAndOverwrites(t *testing.T) {
	kv := func(k, v string) Change { return Change{Key: []byte(k), Value: []byte(v)} }
	del := func(k string) Change { return Change{Key: []byte(k)} }
	batches := [][]Change{
		{kv("a", "1"), kv("b", "2"), kv("c", "3")},
		{del("b"), kv("a", "10")},
		{kv("b", ""), del("c"), del("never")},
		{kv("a", "x"), kv("a", "y"), del("c"), kv("c", "3again"), kv("d", "4"), del("d")},
		{del("a"), del("b"), del("c")},
		{kv("", "empty key")},
	}
	loc := newDir(t)
	s := openStore(t, loc, func(o *Options) { o.SnapshotInterval = 2 })
	h := history{model{}}
	for v, cs := range batches {
		if _, err := s.Commit(context.Background(), int64(v), cs); err != nil {
			t.Fatal(err)
		}
		h = append(h, h.at(int64(v)-1).apply(cs))
		checkState(t, s, h.at(int64(v)))
	}
	if got, want := h.at(3), (model{"a": "y", "b": "", "c": "3again"}); !cmp.Equal(got, want) {
		t.Fatalf("model at 3 = %v, want %v (test bug)", got, want)
	}
	for v := range batches {
		t.Run(fmt.Sprint("load", v), func(t *testing.T) {
			r := openStore(t, loc, nil)
			if _, err := r.Load(context.Background(), int64(v)); err != nil {
				t.Fatal(err)
			}
			checkState(t, r, h.at(int64(v)))
		})
	}
}

func listNames(t *testing.T, loc Location) []string {
	t.Helper()
	names, err := loc.List(context.Background(), testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		names[i] = strings.TrimPrefix(n, testPrefix+"/")
	}
	return names
}

func TestPurge(t *testing.T) {
	loc := newDir(t)
	s := openStore(t, loc, func(o *Options) { o.SnapshotInterval = 4; o.MinVersionsToRetain = 5 })
	h := commitRange(t, s, nil, 0, 30)

	// Last 5 versions are 26..30, so the snapshot 24 (latest <= 26) and the
	// deltas after it are needed; snapshot 28 too.
	want := []string{"000000000024.snapshot", "000000000025.delta", "000000000026.delta",
		"000000000027.delta", "000000000028.delta", "000000000028.snapshot",
		"000000000029.delta", "000000000030.delta"}
	if diff := cmp.Diff(want, listNames(t, loc)); diff != "" {
		t.Errorf("files after purge (-want +got):\n%s", diff)
	}
	r := openStore(t, loc, nil)
	for v := int64(26); v <= 30; v++ {
		if _, err := r.Load(context.Background(), v); err != nil {
			t.Fatalf("Load(%d): %v", v, err)
		}
		checkState(t, r, h.at(v))
	}
	for _, v := range []int64{23, 10, 0} {
		_, err := r.Load(context.Background(), v)
		if !errors.Is(err, ErrVersionMissing) {
			t.Errorf("Load(%d) of a purged version: err = %v, want ErrVersionMissing", v, err)
		}
	}
}

func TestPurgeKeepsEverythingEarly(t *testing.T) {
	loc := newDir(t)
	s := openStore(t, loc, func(o *Options) { o.SnapshotInterval = 10; o.MinVersionsToRetain = 5 })
	commitRange(t, s, nil, 0, 8)
	// Versions 4..8 need snapshot 0 and deltas 1..8: only delta 0 can go.
	if got := len(listNames(t, loc)); got != 9 {
		t.Errorf("%d files, want 9: %v", got, listNames(t, loc))
	}
}

func TestCorruptDelta(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(good []byte, other []byte) []byte
	}{
		{"truncated", func(b, _ []byte) []byte { return b[:len(b)/2] }},
		{"empty", func(b, _ []byte) []byte { return nil }},
		{"bit flip", func(b, _ []byte) []byte { b = bytes.Clone(b); b[len(b)/2] ^= 0x10; return b }},
		{"foreign", func(_, _ []byte) []byte { return []byte("hello, this is not a delta file at all") }},
		{"other version's delta", func(_, other []byte) []byte { return other }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			loc := newDir(t)
			s := openStore(t, loc, nil)
			commitRange(t, s, nil, 0, 5)
			name := deltaName(testPrefix, 3)
			good, _ := loc.Get(ctx, name)
			other, _ := loc.Get(ctx, deltaName(testPrefix, 4))
			if err := loc.Put(ctx, name, tt.corrupt(good, other)); err != nil {
				t.Fatal(err)
			}
			r := openStore(t, loc, nil)
			_, err := r.Load(ctx, 5)
			if err == nil || !strings.Contains(err.Error(), name) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load(5) = %v; want ErrCorrupt naming %s", err, name)
			}
			if r.Version() != -1 {
				t.Errorf("Version() = %d after failed load, want -1 (untouched)", r.Version())
			}
		})
	}
}

func TestCorruptSnapshot(t *testing.T) {
	ctx := context.Background()
	loc := newDir(t)
	s := openStore(t, loc, nil)
	commitRange(t, s, nil, 0, 12)
	name := snapshotName(testPrefix, 10)
	good, _ := loc.Get(ctx, name)
	if err := loc.Put(ctx, name, good[:len(good)-1]); err != nil {
		t.Fatal(err)
	}
	r := openStore(t, loc, nil)
	if _, err := r.Load(ctx, 12); err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("Load(12) = %v; want an error naming %s", err, name)
	}
}

func TestMissingDelta(t *testing.T) {
	ctx := context.Background()
	loc := newDir(t)
	s := openStore(t, loc, nil)
	h := commitRange(t, s, nil, 0, 15)
	name := deltaName(testPrefix, 13)
	if err := loc.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	r := openStore(t, loc, nil)
	for _, v := range []int64{15, 13, 16} {
		_, err := r.Load(ctx, v)
		if !errors.Is(err, ErrVersionMissing) {
			t.Errorf("Load(%d) = %v; want ErrVersionMissing", v, err)
		}
	}
	if _, err := r.Load(ctx, 15); err == nil || !strings.Contains(err.Error(), name) {
		t.Errorf("Load(15) = %v; want it to name %s", err, name)
	}
	if _, err := r.Load(ctx, 12); err != nil {
		t.Fatalf("Load(12): %v", err)
	}
	checkState(t, r, h.at(12))
}

// failingLocation fails Put for names containing failOn while it is set.
type failingLocation struct {
	Location
	mu     sync.Mutex
	failOn string
}

func (f *failingLocation) setFail(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failOn = s
}

func (f *failingLocation) Put(ctx context.Context, name string, data []byte) error {
	f.mu.Lock()
	fail := f.failOn != "" && strings.Contains(name, f.failOn)
	f.mu.Unlock()
	if fail {
		return fmt.Errorf("injected failure writing %s", name)
	}
	return f.Location.Put(ctx, name, data)
}

func TestLocationWriteFailure(t *testing.T) {
	tests := []struct {
		name   string
		failOn string
		v      int64
	}{
		{"delta", ".delta", 7},
		{"snapshot only", ".snapshot", 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			loc := &failingLocation{Location: newDir(t)}
			s := openStore(t, loc, nil)
			h := commitRange(t, s, nil, 0, tt.v-1)
			loc.setFail(tt.failOn)
			if _, err := s.Commit(ctx, tt.v, []Change{{Key: []byte("k00"), Value: []byte("boom")}, {Key: []byte("new"), Value: []byte("x")}}); err == nil {
				t.Fatal("Commit succeeded despite the failing Location")
			}
			if s.Version() != tt.v-1 {
				t.Fatalf("Version() = %d after failed commit, want %d", s.Version(), tt.v-1)
			}
			checkState(t, s, h.at(tt.v-1))

			// The batch can be retried once the Location works again.
			loc.setFail("")
			h = commitRange(t, s, h, tt.v, tt.v)
			checkState(t, s, h.at(tt.v))
			r := openStore(t, loc, nil)
			if _, err := r.Load(ctx, tt.v); err != nil {
				t.Fatal(err)
			}
			checkState(t, r, h.at(tt.v))
		})
	}
}

func TestEmptyLocation(t *testing.T) {
	ctx := context.Background()
	loc := newDir(t)
	s := openStore(t, loc, nil)
	if _, err := s.Load(ctx, 41); err != nil {
		t.Fatalf("Load(41) on an empty location: %v", err)
	}
	if s.Version() != 41 {
		t.Fatalf("Version() = %d, want 41", s.Version())
	}
	checkState(t, s, model{})

	// The first commit after must be loadable on its own: nothing earlier
	// exists, so it carries a snapshot whatever the interval.
	cs := []Change{{Key: []byte("a"), Value: []byte("1")}}
	st, err := s.Commit(ctx, 42, cs)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Snapshot {
		t.Errorf("first commit after an empty location wrote no snapshot")
	}
	if st, _ := s.Commit(ctx, 43, nil); st.Snapshot {
		t.Errorf("second commit wrote a snapshot off the interval")
	}
	r := openStore(t, loc, nil)
	if _, err := r.Load(ctx, 43); err != nil {
		t.Fatal(err)
	}
	checkState(t, r, model{"a": "1"})
	if _, err := r.Load(ctx, 41); !errors.Is(err, ErrVersionMissing) {
		t.Errorf("Load(41) once the partition has files = %v; want ErrVersionMissing", err)
	}
}

func TestNeedSnapshotSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	loc := newDir(t)
	dir := t.TempDir()
	s, err := Open(Options{LocalDir: dir, Location: loc, Prefix: testPrefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, loc, func(o *Options) { o.LocalDir = dir })
	if st, err := s.Commit(ctx, 6, nil); err != nil || !st.Snapshot {
		t.Fatalf("Commit(6) after reopen = %+v, %v; want a snapshot", st, err)
	}
}

func TestReopenKeepsVersion(t *testing.T) {
	ctx := context.Background()
	loc := newDir(t)
	dir := t.TempDir()
	s, err := Open(Options{LocalDir: dir, Location: loc, Prefix: testPrefix})
	if err != nil {
		t.Fatal(err)
	}
	h := commitRange(t, s, nil, 0, 12)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get([]byte("k00")); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}

	s = openStore(t, loc, func(o *Options) { o.LocalDir = dir })
	if s.Version() != 12 {
		t.Fatalf("reopened Version() = %d, want 12", s.Version())
	}
	if restored, err := s.Load(ctx, 12); err != nil || restored {
		t.Fatalf("Load(12) = %v, %v; want no restore", restored, err)
	}
	checkState(t, s, h.at(12))
	if st := s.Stats(); st.DiskBytes <= 0 || st.MemoryBytes < 0 {
		t.Errorf("Stats() = %+v", st)
	}

	// Another partition's prefix must not trust this database.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o := openStore(t, loc, func(o *Options) { o.LocalDir = dir; o.Prefix = "other/partition" })
	if o.Version() != -1 {
		t.Errorf("database opened under another prefix: Version() = %d, want -1", o.Version())
	}
	checkState(t, o, model{})
}

func TestRemove(t *testing.T) {
	loc := newDir(t)
	dir := filepath.Join(t.TempDir(), "db")
	s, err := Open(Options{LocalDir: dir, Location: loc, Prefix: testPrefix})
	if err != nil {
		t.Fatal(err)
	}
	commitRange(t, s, nil, 0, 3)
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Errorf("local files left after Remove: %v", m)
	}
	if got := len(listNames(t, loc)); got != 5 { // snapshot 0, deltas 0..3
		t.Errorf("Remove touched the Location: %d files, want 5", got)
	}
}

func TestCommitVersionCheck(t *testing.T) {
	s := openStore(t, newDir(t), nil)
	for _, v := range []int64{1, -1, 5} {
		if _, err := s.Commit(context.Background(), v, nil); err == nil {
			t.Errorf("Commit(%d) at version -1 succeeded", v)
		}
	}
	if _, err := s.Load(context.Background(), -2); err == nil {
		t.Errorf("Load(-2) succeeded")
	}
}

func TestOpenValidation(t *testing.T) {
	loc := newDir(t)
	tests := []struct {
		field string
		mod   func(*Options)
	}{
		{"LocalDir", func(o *Options) { o.LocalDir = "" }},
		{"Location", func(o *Options) { o.Location = nil }},
		{"Prefix", func(o *Options) { o.Prefix = "" }},
		{"Prefix", func(o *Options) { o.Prefix = "../up" }},
		{"Prefix", func(o *Options) { o.Prefix = "/abs" }},
		{"SnapshotInterval", func(o *Options) { o.SnapshotInterval = -1 }},
		{"MinVersionsToRetain", func(o *Options) { o.MinVersionsToRetain = -3 }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			opts := Options{LocalDir: t.TempDir(), Location: loc, Prefix: testPrefix}
			tt.mod(&opts)
			s, err := Open(opts)
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), "Options."+tt.field) {
				t.Errorf("error %q does not name Options.%s", err, tt.field)
			}
		})
	}
}

func TestStores(t *testing.T) {
	loc := newDir(t)
	root := t.TempDir()
	c := NewStores(root)
	get := func(prefix string) *Store {
		t.Helper()
		s, err := c.Get(Options{Location: loc, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := get("job/a/state/1")
	if get("job/a/state/1") != a {
		t.Error("same prefix gave another Store")
	}
	b := get("job/a_state/1")
	if b == a {
		t.Error("different prefix gave the same Store")
	}
	if a.opts.LocalDir == b.opts.LocalDir || filepath.Dir(a.opts.LocalDir) != root {
		t.Errorf("local dirs %q, %q; want distinct, directly under %q", a.opts.LocalDir, b.opts.LocalDir, root)
	}

	// Concurrent first use opens exactly one Store.
	var wg sync.WaitGroup
	got := make([]*Store, 8)
	for i := range got {
		wg.Go(func() { got[i] = get("job/c") })
	}
	wg.Wait()
	for _, s := range got {
		if s != got[0] {
			t.Fatal("concurrent Get opened two Stores for one prefix")
		}
	}

	// A Store closed by its user leaves the cache.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b2 := get("job/a_state/1"); b2 == b {
		t.Error("closed Store handed out again")
	}

	if _, err := a.Commit(context.Background(), 0, []Change{{Key: []byte("k"), Value: []byte("v")}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range append(got[:1], a) {
		if _, _, err := s.Get([]byte("k")); !errors.Is(err, ErrClosed) {
			t.Errorf("Get after Stores.Close = %v, want ErrClosed", err)
		}
	}
	if _, err := c.Get(Options{Location: loc, Prefix: "x"}); err == nil {
		t.Error("Get after Close succeeded")
	}
}

// recordingLocation records the names passed to Get.
type recordingLocation struct {
	Location
	mu   sync.Mutex
	gets []string
}

func (r *recordingLocation) Get(ctx context.Context, name string) ([]byte, error) {
	r.mu.Lock()
	r.gets = append(r.gets, strings.TrimPrefix(name, testPrefix+"/"))
	r.mu.Unlock()
	return r.Location.Get(ctx, name)
}

func (r *recordingLocation) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.gets
	r.gets = nil
	return g
}

func TestRollForward(t *testing.T) {
	otherDelta := []Change{{Key: []byte("k00"), Value: []byte("from another attempt")}, {Key: []byte("zz"), Value: []byte("z")}}
	tests := []struct {
		name     string
		readerAt int64                            // the second store's version before the writer moves on
		target   int64                            // what it loads next
		tamper   func(t *testing.T, loc Location) // run before the second load
		wantGets []string                         // Location reads of the second load
	}{
		{
			name: "local version from a delta rolls forward", readerAt: 12, target: 17,
			wantGets: []string{"000000000012.delta", "000000000013.delta", "000000000014.delta",
				"000000000015.delta", "000000000016.delta", "000000000017.delta"},
		},
		{
			name: "local version from a snapshot restores", readerAt: 10, target: 12,
			wantGets: []string{"000000000010.snapshot", "000000000011.delta", "000000000012.delta"},
		},
		{
			name: "newer snapshot restores", readerAt: 8, target: 21,
			wantGets: []string{"000000000020.snapshot", "000000000021.delta"},
		},
		{
			name: "replaced delta restores", readerAt: 12, target: 13,
			tamper: func(t *testing.T, loc Location) {
				err := loc.Put(context.Background(), deltaName(testPrefix, 12), encodeDelta(12, otherDelta))
				if err != nil {
					t.Fatal(err)
				}
			},
			wantGets: []string{"000000000012.delta", "000000000010.snapshot", "000000000011.delta",
				"000000000012.delta", "000000000013.delta"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			loc := &recordingLocation{Location: newDir(t)}
			w := openStore(t, loc, nil)
			h := commitRange(t, w, nil, 0, tt.readerAt)
			r := openStore(t, loc, nil)
			if _, err := r.Load(ctx, tt.readerAt); err != nil {
				t.Fatal(err)
			}
			h = commitRange(t, w, h, tt.readerAt+1, tt.target)
			if tt.tamper != nil {
				tt.tamper(t, loc)
				// The Location's chain is what counts: rebuild the model.
				h = h[:13]
				h = append(h, h.at(11).apply(otherDelta))
				for v := int64(13); v <= tt.target; v++ {
					h = append(h, h.at(v-1).apply(genChanges(v)))
				}
			}
			loc.take()
			if restored, err := r.Load(ctx, tt.target); err != nil || !restored {
				t.Fatalf("Load(%d) = %v, %v", tt.target, restored, err)
			}
			if diff := cmp.Diff(tt.wantGets, loc.take()); diff != "" {
				t.Errorf("Location reads (-want +got):\n%s", diff)
			}
			checkState(t, r, h.at(tt.target))
		})
	}
}

func TestOpenWipesDataWithoutVersion(t *testing.T) {
	// Simulate a restore that crashed after loading part of a snapshot:
	// data keys, no metadata.
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(dataKey([]byte("half")), []byte("restored"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, newDir(t), func(o *Options) { o.LocalDir = dir })
	if s.Version() != -1 {
		t.Errorf("Version() = %d, want -1", s.Version())
	}
	checkState(t, s, model{})
}
