package casstore_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore/casstoretest"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memory is a Backend in maps: the protocol's logic is tested here quickly;
// the DynamoDB and S3 packages run the same suites against the services.
type memory struct {
	mu      sync.Mutex
	n       int
	records map[string]record // "fence", "head/<job>"
	blobs   map[string][]byte // "<inc>/<batch %020d>/<kind>/<id>"
	ends    map[string]map[string]casstore.End
}

type record struct {
	value   []byte
	version string
}

func newMemory() *memory {
	return &memory{records: map[string]record{}, blobs: map[string][]byte{}, ends: map[string]map[string]casstore.End{}}
}

func (m *memory) get(k string) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.records[k]
	if !ok {
		return nil, "", casstore.ErrNotExist
	}
	return r.value, r.version, nil
}

func (m *memory) put(k string, v []byte, version string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records[k].version != version {
		return "", casstore.ErrConflict
	}
	m.n++
	r := record{value: append([]byte(nil), v...), version: strconv.Itoa(m.n)}
	m.records[k] = r
	return r.version, nil
}

func (m *memory) GetFence(context.Context) ([]byte, string, error) { return m.get("fence") }
func (m *memory) PutFence(_ context.Context, v []byte, ver string) error {
	_, err := m.put("fence", v, ver)
	return err
}
func (m *memory) GetHead(_ context.Context, job string) ([]byte, string, error) {
	return m.get("head/" + job)
}
func (m *memory) PutHead(_ context.Context, job string, v []byte, ver string) (string, error) {
	return m.put("head/"+job, v, ver)
}

func (m *memory) ListHeads(context.Context) ([]casstore.Head, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var hs []casstore.Head
	for k, r := range m.records {
		if job, ok := strings.CutPrefix(k, "head/"); ok {
			hs = append(hs, casstore.Head{Job: job, Value: r.value, Version: r.version})
		}
	}
	return hs, nil
}

func blobKey(r casstore.BlobRef) string {
	return fmt.Sprintf("%s/%020d/%s/%s", r.Inc, r.Batch, r.Kind, r.ID)
}

func endsKey(l casstore.LogRef, batch int64) string {
	return fmt.Sprintf("%s/%020d/ends", l.Inc, batch)
}

func (m *memory) PutBlob(_ context.Context, r casstore.BlobRef, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[blobKey(r)]; ok {
		return fmt.Errorf("blob %s exists", blobKey(r))
	}
	m.blobs[blobKey(r)] = append([]byte(nil), v...)
	return nil
}

func (m *memory) GetBlob(_ context.Context, r casstore.BlobRef) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.blobs[blobKey(r)]
	if !ok {
		return nil, casstore.ErrNotExist
	}
	return v, nil
}

func (m *memory) PutEnd(_ context.Context, l casstore.LogRef, batch int64, key string, e casstore.End) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := endsKey(l, batch)
	if m.ends[k] == nil {
		m.ends[k] = map[string]casstore.End{}
	}
	if old, ok := m.ends[k][key]; ok && !casstore.Admits(old.Epoch, old.FenceKey, e.Epoch, e.FenceKey) {
		return casstore.ErrConflict
	}
	m.ends[k][key] = e
	return nil
}

func (m *memory) Ends(_ context.Context, l casstore.LogRef, batch int64) (map[string]casstore.End, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.ends[endsKey(l, batch)]), nil
}

func (m *memory) DeleteLogs(_ context.Context, l casstore.LogRef, before int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := fmt.Sprintf("%s/%020d", l.Inc, before)
	for k := range m.blobs {
		if strings.HasPrefix(k, l.Inc+"/") && (before == casstore.AllBatches || k < limit) {
			delete(m.blobs, k)
		}
	}
	for k := range m.ends {
		if strings.HasPrefix(k, l.Inc+"/") && (before == casstore.AllBatches || k < limit) {
			delete(m.ends, k)
		}
	}
	return nil
}

// namespaces gives each test a fresh memory backend; wrap, if set, is the
// backend the stores see instead.
func namespaces(wrap func(*memory) casstore.Backend) casstoretest.Namespace {
	return func(t *testing.T) func(hook func(point, job string)) casstoretest.Store {
		var b casstore.Backend = newMemory()
		if wrap != nil {
			b = wrap(b.(*memory))
		}
		return func(hook func(point, job string)) casstoretest.Store {
			return casstore.New(b, casstore.Options{Hook: hook})
		}
	}
}

func TestContract(t *testing.T) { casstoretest.RunContract(t, namespaces(nil)) }

func TestFencing(t *testing.T) { casstoretest.RunFencing(t, namespaces(nil)) }

// namesOnly lists jobs without reading their heads, as the S3 backend
// does, plus one name without a head (a directory left behind).
type namesOnly struct{ *memory }

func (n namesOnly) ListHeads(ctx context.Context) ([]casstore.Head, error) {
	hs, err := n.memory.ListHeads(ctx)
	for i := range hs {
		hs[i] = casstore.Head{Job: hs[i].Job}
	}
	return append(hs, casstore.Head{Job: "no-head"}), err
}

// TestListingNamesOnly: ListJobs reads the heads a listing names without
// them, seals them as well, and leaves out a name without a head.
func TestListingNamesOnly(t *testing.T) {
	ns := namespaces(func(m *memory) casstore.Backend { return namesOnly{m} })
	t.Run("Contract", func(t *testing.T) { casstoretest.RunContract(t, ns) })
	t.Run("Fencing", func(t *testing.T) { casstoretest.RunFencing(t, ns) })
}

// TestDeposedWithoutClaim: a new leader that writes instead of claiming
// deposes the old one as well; its first write raises the fence.
func TestDeposedWithoutClaim(t *testing.T) {
	m := newMemory()
	a, b := casstore.New(m, casstore.Options{}), casstore.New(m, casstore.Options{})
	ctx := context.Background()
	if err := a.PutJob(ctx, casstoretest.Old, checkpoint.JobRecord{Name: "j"}); err != nil {
		t.Fatal(err)
	}
	if err := b.PutPlan(ctx, casstoretest.New, "other", checkpoint.BatchPlan{Batch: 1}); err != nil {
		t.Fatal(err)
	}
	err := a.PutJob(ctx, casstoretest.Old, checkpoint.JobRecord{Name: "j", State: "FAILED"})
	if err == nil || !strings.Contains(err.Error(), "checkpoint write fenced") {
		t.Fatalf("old leader's write after the new one wrote elsewhere: got %v, want fenced", err)
	}
	// The message names both epochs, for the operator.
	for _, want := range []string{"epoch 57", "epoch 41"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("fenced error %q does not mention %s", err, want)
		}
	}
}

// TestConflictsRetry: concurrent writers of one job's head (a leader's
// loop and readers sealing it) only cost retries.
func TestConflictsRetry(t *testing.T) {
	m := newMemory()
	s := casstore.New(m, casstore.Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for b := range 20 {
				if err := s.PutPlan(ctx, casstoretest.Old, "j", checkpoint.BatchPlan{Batch: stream.BatchID(i*20 + b)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	p, err := s.LatestPlan(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	if p.Batch != 159 {
		t.Fatalf("latest plan %d, want 159", p.Batch)
	}
}

// TestUnreadableHead pins that one corrupted job head (an item or object
// edited outside Sluice) failed ListJobs, so every elected driver exited.
// Now the job is listed as unreadable and DeleteJob removes it.
func TestUnreadableHead(t *testing.T) {
	m := newMemory()
	s := casstore.New(m, casstore.Options{})
	ctx := context.Background()
	for _, name := range []string{"broken", "fine"} {
		if err := s.PutJob(ctx, casstoretest.Old, checkpoint.JobRecord{Name: name, State: "RUNNING"}); err != nil {
			t.Fatal(err)
		}
	}
	_, ver, err := m.GetHead(ctx, "broken")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PutHead(ctx, "broken", []byte(`{"epoch": 41, "name": "bro`), ver); err != nil {
		t.Fatal(err)
	}
	jobs, err := s.ListJobs(ctx)
	if err != nil {
		t.Fatalf("ListJobs with one unreadable head: %v", err)
	}
	if len(jobs) != 2 || jobs[0].Name != "broken" || jobs[0].Unreadable == nil || jobs[1].Name != "fine" || jobs[1].Unreadable != nil {
		t.Fatalf("listed %+v, want broken (unreadable) and fine", jobs)
	}
	if err := s.DeleteJob(ctx, casstoretest.Old, "broken"); err != nil {
		t.Fatalf("delete of the unreadable job: %v", err)
	}
	if jobs, err = s.ListJobs(ctx); err != nil || len(jobs) != 1 || jobs[0].Name != "fine" {
		t.Fatalf("after delete: %+v, %v", jobs, err)
	}
	// The name is free again.
	if err := s.PutJob(ctx, casstoretest.Old, checkpoint.JobRecord{Name: "broken", State: "PENDING"}); err != nil {
		t.Fatal(err)
	}
}
