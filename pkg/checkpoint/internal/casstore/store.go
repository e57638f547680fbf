package casstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/stream"
)

// maxAttempts bounds the compare-and-swap loops. Contention on one record
// comes from one leader's sequential writes of a job plus, around a
// takeover, a deposed leader and readers sealing heads: a handful of
// rounds. Running out means something rewrites the record continuously.
const maxAttempts = 64

// Hook points, in the order a log write passes them.
const (
	// HookFenceChecked: the fence record admitted the writer (step 1).
	HookFenceChecked = "fence-checked"
	// HookBeforeHeadWrite: the blob is written; the head is about to be
	// compared and swapped (step 2). For a task end: about to be written.
	HookBeforeHeadWrite = "before-head-write"
)

// Options configure a Store.
type Options struct {
	// Hook, if set, is called at the named points of every write, with the
	// job. Tests use it to interleave a deposed leader's write with a
	// takeover deterministically. Default: none.
	Hook func(point, job string)
}

// Store implements checkpoint.Store over a Backend; see the package doc.
// It is safe for concurrent use.
type Store struct {
	b    Backend
	hook func(point, job string)
}

// New returns a Store on b.
func New(b Backend, o Options) *Store {
	return &Store{b: b, hook: o.Hook}
}

func (s *Store) at(point, job string) {
	if s.hook != nil {
		s.hook(point, job)
	}
}

// stamp is the leader epoch a record was last written with.
type stamp struct {
	Epoch    int64  `json:"epoch"`
	FenceKey string `json:"fenceKey"`
}

func stampOf(f checkpoint.Fence) stamp { return stamp{Epoch: f.Epoch, FenceKey: f.Key} }

func (s stamp) admits(w stamp) bool { return Admits(s.Epoch, s.FenceKey, w.Epoch, w.FenceKey) }

// pointer locates the blob of a batch's plan or commit.
type pointer struct {
	Batch int64  `json:"batch"`
	ID    string `json:"id"`
	// Epoch is the stamp of the leader that wrote the blob.
	Epoch int64 `json:"epoch"`
}

// head is a job's visible state; see the package doc.
type head struct {
	stamp
	Name    string                `json:"name"`
	Inc     string                `json:"inc"`
	Deleted bool                  `json:"deleted,omitempty"`
	Job     *checkpoint.JobRecord `json:"job,omitempty"`
	Plan    *pointer              `json:"plan,omitempty"`
	Commit  *pointer              `json:"commit,omitempty"`
}

// live reports whether the head is a job's (with a catalog entry, or only
// logs written without one) rather than a deleted job's tombstone.
func (h *head) live() bool { return !h.Deleted }

// errUnreadableHead marks a head whose bytes do not decode (an item or
// object corrupted outside Sluice): ListJobs lists the job with
// JobRecord.Unreadable set instead of failing, and DeleteJob replaces the
// head with a tombstone.
var errUnreadableHead = errors.New("unreadable job head")

func decodeHead(job string, v []byte) (head, error) {
	var h head
	if err := json.Unmarshal(v, &h); err != nil {
		return h, fmt.Errorf("decode head of job %q: %w: %w", job, errUnreadableHead, err)
	}
	return h, nil
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// newInc names a new incarnation of a job.
func newInc() string { return randomID(8) }

// newBlobID names a blob; the epoch is there for people reading the bucket.
func newBlobID(epoch int64) string { return fmt.Sprintf("%d-%s", epoch, randomID(6)) }

// fencedError explains a refused write; it matches checkpoint.ErrFenced.
func fencedError(what string, have, mine stamp) error {
	return fmt.Errorf("%s: written by leader epoch %d (%s), this writer holds epoch %d (%s): %w",
		what, have.Epoch, have.FenceKey, mine.Epoch, mine.FenceKey, checkpoint.ErrFenced)
}

func checkFence(f checkpoint.Fence) error {
	if f.Key == "" || f.Epoch <= 0 {
		return fmt.Errorf("fence %+v is not a leadership fence: this store only accepts writes from a driver elected through etcd (internal/cluster)", f)
	}
	return nil
}

// readFence returns the fence record's stamp (zero when there is none yet)
// and version.
func (s *Store) readFence(ctx context.Context) (stamp, string, error) {
	v, ver, err := s.b.GetFence(ctx)
	if errors.Is(err, ErrNotExist) {
		return stamp{}, "", nil
	}
	if err != nil {
		return stamp{}, "", fmt.Errorf("read store fence: %w", err)
	}
	var st stamp
	if err := json.Unmarshal(v, &st); err != nil {
		return stamp{}, "", fmt.Errorf("decode store fence: %w", err)
	}
	return st, ver, nil
}

// admit is step 1: the fence record must admit w, and is raised to w when
// w is newer.
func (s *Store) admit(ctx context.Context, w stamp) error {
	for range maxAttempts {
		cur, ver, err := s.readFence(ctx)
		if err != nil {
			return err
		}
		if !cur.admits(w) {
			return fencedError("store fence", cur, w)
		}
		if cur == w {
			return nil
		}
		v, _ := json.Marshal(w)
		err = s.b.PutFence(ctx, v, ver)
		if errors.Is(err, ErrConflict) {
			continue // raised by someone else meanwhile: look again
		}
		if err != nil {
			return fmt.Errorf("raise store fence to epoch %d: %w", w.Epoch, err)
		}
		return nil
	}
	return fmt.Errorf("raise store fence to epoch %d: still changing after %d attempts", w.Epoch, maxAttempts)
}

// begin validates the fence and runs step 1 for a write to job.
func (s *Store) begin(ctx context.Context, f checkpoint.Fence, job string) (stamp, error) {
	if err := checkFence(f); err != nil {
		return stamp{}, err
	}
	w := stampOf(f)
	if err := s.admit(ctx, w); err != nil {
		return w, err
	}
	s.at(HookFenceChecked, job)
	return w, nil
}

// getHead reads a head; ok is false when there is none.
func (s *Store) getHead(ctx context.Context, job string) (h head, ver string, ok bool, err error) {
	v, ver, err := s.b.GetHead(ctx, job)
	if errors.Is(err, ErrNotExist) {
		return head{}, "", false, nil
	}
	if err != nil {
		return head{}, "", false, fmt.Errorf("read head: %w", err)
	}
	h, err = decodeHead(job, v)
	return h, ver, err == nil, err
}

func (s *Store) putHead(ctx context.Context, job string, h head, ver string) (string, error) {
	v, err := json.Marshal(h)
	if err != nil {
		return "", err
	}
	return s.b.PutHead(ctx, job, v, ver)
}

// change is step 2: it reads the job's head, lets fn edit a copy (exists
// tells whether there was a live head; fn may make one), and swaps it in,
// stamped with w, if the head did not change meanwhile. fn returns false
// when it changed nothing; then the head is written only to raise its
// stamp to w, and if it carries w already the read itself is the point the
// write took effect. It retries on conflicts and returns the head.
func (s *Store) change(ctx context.Context, w stamp, job string, fn func(h *head, exists bool) bool) (head, error) {
	for range maxAttempts {
		h, ver, ok, err := s.getHead(ctx, job)
		if err != nil {
			return head{}, err
		}
		if ok && !h.admits(w) {
			return head{}, fencedError("job head", h.stamp, w)
		}
		nh := h
		if !fn(&nh, ok && h.live()) && (!ok || h.stamp == w) {
			return h, nil
		}
		// Changed, or unchanged but stamped by an older leader: a new
		// leader's first write of a job stamps its head either way.
		nh.stamp, nh.Name = w, job
		s.at(HookBeforeHeadWrite, job)
		_, err = s.putHead(ctx, job, nh, ver)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return head{}, fmt.Errorf("write head: %w", err)
		}
		return nh, nil
	}
	return head{}, fmt.Errorf("write head: still changing after %d attempts", maxAttempts)
}

// liveHead returns the job's live head stamped with w: it creates one (a
// new incarnation) when the job has none or only a tombstone, and raises
// the stamp of one written by an older leader. Its version is returned for
// a following compare and swap.
func (s *Store) liveHead(ctx context.Context, w stamp, job string) (head, string, error) {
	for range maxAttempts {
		h, ver, ok, err := s.getHead(ctx, job)
		if err != nil {
			return head{}, "", err
		}
		if ok && !h.admits(w) {
			return head{}, "", fencedError("job head", h.stamp, w)
		}
		nh := h
		switch {
		case ok && h.live() && h.stamp == w:
			return h, ver, nil
		case ok && h.live():
			nh.stamp = w // a new leader's first write of the job stamps its head
		default:
			nh = head{stamp: w, Name: job, Inc: newInc()}
		}
		nver, err := s.putHead(ctx, job, nh, ver)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return head{}, "", fmt.Errorf("write head: %w", err)
		}
		return nh, nver, nil
	}
	return head{}, "", fmt.Errorf("write head: still changing after %d attempts", maxAttempts)
}

// read returns the job's head for a reader, sealed (step 3): when the fence
// record is newer than the head, the head is first stamped with it, so no
// older leader can change what this read returns.
func (s *Store) read(ctx context.Context, job string) (head, bool, error) {
	fence, _, err := s.readFence(ctx)
	if err != nil {
		return head{}, false, err
	}
	return s.sealed(ctx, Head{Job: job}, fence)
}

// sealed returns the head hd, sealed with fence. It reads the head when hd
// does not carry it (a read, or a listing without values), and again after
// a seal lost a race; ok is false when the job has no head.
func (s *Store) sealed(ctx context.Context, hd Head, fence stamp) (h head, ok bool, err error) {
	v, ver := hd.Value, hd.Version
	for attempt := range maxAttempts {
		if attempt > 0 || v == nil {
			v, ver, err = s.b.GetHead(ctx, hd.Job)
			if errors.Is(err, ErrNotExist) {
				return head{}, false, nil
			}
			if err != nil {
				return head{}, false, fmt.Errorf("read head: %w", err)
			}
		}
		if h, err = decodeHead(hd.Job, v); err != nil {
			return head{}, false, err
		}
		h, err = s.seal(ctx, hd.Job, h, ver, fence)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return head{}, false, err
		}
		return h, true, nil
	}
	return head{}, false, fmt.Errorf("seal head: still changing after %d attempts", maxAttempts)
}

// seal stamps h with fence when fence is newer; ErrConflict when the head
// changed since it was read.
func (s *Store) seal(ctx context.Context, job string, h head, ver string, fence stamp) (head, error) {
	if fence.Epoch == 0 || h.stamp == fence || !h.admits(fence) {
		return h, nil
	}
	h.stamp = fence
	if _, err := s.putHead(ctx, job, h, ver); err != nil {
		if errors.Is(err, ErrConflict) {
			return h, err
		}
		return h, fmt.Errorf("seal head at epoch %d: %w", fence.Epoch, err)
	}
	return h, nil
}

// Claim raises the store's fence to f, so that from now on every reader
// seals the heads it reads and every write of an older leader fails. A
// newly elected leader calls it before it reads checkpoints; see the
// package doc for what happens without it. It fails with
// checkpoint.ErrFenced when a newer leader already claimed the store.
func (s *Store) Claim(ctx context.Context, f checkpoint.Fence) error {
	if _, err := s.begin(ctx, f, ""); err != nil {
		return fmt.Errorf("claim checkpoint store for epoch %d: %w", f.Epoch, err)
	}
	return nil
}

// PutJob writes the job's catalog entry.
func (s *Store) PutJob(ctx context.Context, f checkpoint.Fence, job checkpoint.JobRecord) error {
	what := fmt.Sprintf("job %q: put catalog entry", job.Name)
	if err := checkpoint.CheckJob(job.Name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w, err := s.begin(ctx, f, job.Name)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	_, err = s.change(ctx, w, job.Name, func(h *head, exists bool) bool {
		if !exists {
			*h = head{Inc: newInc()}
		}
		h.Job = &job
		return true
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// GetJob reads a catalog entry; an unknown job is checkpoint.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (checkpoint.JobRecord, error) {
	what := fmt.Sprintf("job %q: get catalog entry", name)
	if err := checkpoint.CheckJob(name); err != nil {
		return checkpoint.JobRecord{}, fmt.Errorf("%s: %w", what, err)
	}
	h, ok, err := s.read(ctx, name)
	if err != nil {
		return checkpoint.JobRecord{}, fmt.Errorf("%s: %w", what, err)
	}
	if !ok || !h.live() || h.Job == nil {
		return checkpoint.JobRecord{}, fmt.Errorf("%s: %w", what, checkpoint.ErrNotFound)
	}
	return *h.Job, nil
}

// listConcurrency bounds the heads ListJobs reads and seals at once.
const listConcurrency = 8

// ListJobs returns every catalog entry, sorted by name, sealing each head
// as a read does. It relies on the backend's listing, which may miss a job
// created a moment ago.
func (s *Store) ListJobs(ctx context.Context) ([]checkpoint.JobRecord, error) {
	fence, _, err := s.readFence(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	heads, err := s.b.ListHeads(ctx)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	recs := make([]*checkpoint.JobRecord, len(heads))
	errs := make([]error, len(heads))
	sem := make(chan struct{}, listConcurrency)
	var wg sync.WaitGroup
	for i, hd := range heads {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			recs[i], errs[i] = s.listed(ctx, hd, fence)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs := make([]checkpoint.JobRecord, 0, len(recs))
	for _, r := range recs {
		if r != nil {
			jobs = append(jobs, *r)
		}
	}
	slices.SortFunc(jobs, func(a, b checkpoint.JobRecord) int { return strings.Compare(a.Name, b.Name) })
	return jobs, nil
}

// listed seals one listed head and returns its catalog entry, if any; a
// job without a head (S3: a directory whose head is gone, after a crash
// while deleting) has none.
func (s *Store) listed(ctx context.Context, hd Head, fence stamp) (*checkpoint.JobRecord, error) {
	h, ok, err := s.sealed(ctx, hd, fence)
	if errors.Is(err, errUnreadableHead) {
		return &checkpoint.JobRecord{Name: hd.Job, Unreadable: err}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", hd.Job, err)
	}
	if !ok || !h.live() || h.Job == nil {
		return nil, nil
	}
	return h.Job, nil
}

// DeleteJob turns the job's head into a tombstone, then removes the logs of
// its incarnation. Deleting an unknown job succeeds, and deleting again
// finishes a removal an error interrupted.
func (s *Store) DeleteJob(ctx context.Context, f checkpoint.Fence, name string) error {
	what := fmt.Sprintf("job %q: delete", name)
	if err := checkpoint.CheckJob(name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w, err := s.begin(ctx, f, name)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := s.dropUnreadable(ctx, w, name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var existed bool
	h, err := s.change(ctx, w, name, func(h *head, exists bool) bool {
		existed = h.Inc != ""
		if !exists {
			return false // unknown, or a tombstone already: nothing to hide
		}
		h.Deleted, h.Job, h.Plan, h.Commit = true, nil, nil, nil
		return true
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !existed {
		return nil
	}
	if err := s.b.DeleteLogs(ctx, LogRef{Job: name, Inc: h.Inc}, AllBatches); err != nil {
		return fmt.Errorf("%s: remove logs (the job is already gone; delete again to finish): %w", what, err)
	}
	return nil
}

// dropUnreadable replaces a head that does not decode with a tombstone
// stamped w, so that DeleteJob can go on. Such a head has no stamp to check
// against w; begin has just checked the fence, and a newer leader's write
// would have replaced the head with a readable one and changed its version,
// so the conditional put fails in that case. Logs of the lost incarnation
// cannot be found without the head and stay behind.
func (s *Store) dropUnreadable(ctx context.Context, w stamp, job string) error {
	v, ver, err := s.b.GetHead(ctx, job)
	if errors.Is(err, ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read head: %w", err)
	}
	if _, err := decodeHead(job, v); err == nil {
		return nil
	}
	if _, err := s.putHead(ctx, job, head{stamp: w, Name: job, Deleted: true}, ver); err != nil {
		return fmt.Errorf("replace the unreadable head: %w", err)
	}
	return nil
}

// putLog writes a plan or commit blob of batch and points the head at it
// when apply says so (apply edits the head; false keeps it as it is).
func (s *Store) putLog(ctx context.Context, w stamp, job, kind string, batch int64, data []byte,
	apply func(h *head, p *pointer) bool) error {
	var written *BlobRef
	for range maxAttempts {
		h, ver, err := s.liveHead(ctx, w, job)
		if err != nil {
			return err
		}
		if written == nil || written.Inc != h.Inc {
			ref := BlobRef{LogRef: LogRef{Job: job, Inc: h.Inc}, Batch: batch, Kind: kind, ID: newBlobID(w.Epoch)}
			if err := s.b.PutBlob(ctx, ref, data); err != nil {
				return fmt.Errorf("write %s: %w", kind, err)
			}
			written = &ref
		}
		s.at(HookBeforeHeadWrite, job)
		nh := h // stamped with w by liveHead
		if !apply(&nh, &pointer{Batch: batch, ID: written.ID, Epoch: w.Epoch}) {
			// An older batch than the latest: stored, not pointed to. The
			// head read above admitted us, which is when this took effect.
			return nil
		}
		_, err = s.putHead(ctx, job, nh, ver)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write head: %w", err)
		}
		return nil
	}
	return fmt.Errorf("write head: still changing after %d attempts", maxAttempts)
}

// PutPlan writes the offset log entry of plan.Batch; the latest plan is the
// highest batch, and writing a batch again replaces its plan.
func (s *Store) PutPlan(ctx context.Context, f checkpoint.Fence, job string, plan checkpoint.BatchPlan) error {
	what := fmt.Sprintf("job %q: put plan %d", job, plan.Batch)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(plan.Batch)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	data, err := json.Marshal(plan)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w, err := s.begin(ctx, f, job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.putLog(ctx, w, job, KindPlan, int64(plan.Batch), data, func(h *head, p *pointer) bool {
		if h.Plan != nil && h.Plan.Batch > p.Batch {
			return false
		}
		h.Plan = p
		return true
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// PutCommit writes the commit log entry of c.Batch.
func (s *Store) PutCommit(ctx context.Context, f checkpoint.Fence, job string, c checkpoint.Commit) error {
	what := fmt.Sprintf("job %q: put commit %d", job, c.Batch)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(c.Batch)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	w, err := s.begin(ctx, f, job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	err = s.putLog(ctx, w, job, KindCommit, int64(c.Batch), data, func(h *head, p *pointer) bool {
		if h.Commit != nil && h.Commit.Batch > p.Batch {
			return false
		}
		h.Commit = p
		return true
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// LatestPlan returns the plan of the highest batch, or checkpoint.ErrNotFound.
func (s *Store) LatestPlan(ctx context.Context, job string) (checkpoint.BatchPlan, error) {
	var plan checkpoint.BatchPlan
	err := s.latest(ctx, job, KindPlan, func(h head) *pointer { return h.Plan }, &plan)
	return plan, err
}

// LatestCommit returns the commit of the highest batch, or
// checkpoint.ErrNotFound.
func (s *Store) LatestCommit(ctx context.Context, job string) (checkpoint.Commit, error) {
	var c checkpoint.Commit
	err := s.latest(ctx, job, KindCommit, func(h head) *pointer { return h.Commit }, &c)
	return c, err
}

func (s *Store) latest(ctx context.Context, job, kind string, ptr func(head) *pointer, v any) error {
	what := fmt.Sprintf("job %q: latest %s", job, kind)
	if err := checkpoint.CheckJob(job); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	h, ok, err := s.read(ctx, job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !ok || !h.live() || ptr(h) == nil {
		return fmt.Errorf("%s: %w", what, checkpoint.ErrNotFound)
	}
	p := ptr(h)
	ref := BlobRef{LogRef: LogRef{Job: job, Inc: h.Inc}, Batch: p.Batch, Kind: kind, ID: p.ID}
	data, err := s.b.GetBlob(ctx, ref)
	if err != nil {
		// A head points only to blobs written before it, and nothing
		// deletes a blob a head points to: a missing one was removed by
		// hand or by a concurrent DeleteJob.
		return fmt.Errorf("%s: read batch %d (%s): %w", what, p.Batch, p.ID, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: decode batch %d: %w", what, p.Batch, err)
	}
	return nil
}

// PutTaskEnd records where the task key of batch stopped. Recording a key
// again replaces its end, unless a newer leader recorded it
// (checkpoint.ErrFenced).
func (s *Store) PutTaskEnd(ctx context.Context, f checkpoint.Fence, job string, batch stream.BatchID, key string, end stream.Position) error {
	what := fmt.Sprintf("job %q: batch %d: put task end %q", job, batch, key)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(batch)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if key == "" {
		return fmt.Errorf("%s: range key must not be empty", what)
	}
	w, err := s.begin(ctx, f, job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	h, _, err := s.liveHead(ctx, w, job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.at(HookBeforeHeadWrite, job)
	err = s.b.PutEnd(ctx, LogRef{Job: job, Inc: h.Inc}, int64(batch), key, End{End: end, Epoch: w.Epoch, FenceKey: w.FenceKey})
	if errors.Is(err, ErrConflict) {
		return fmt.Errorf("%s: recorded by a newer leader than epoch %d: %w", what, w.Epoch, checkpoint.ErrFenced)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// TaskEnds returns the recorded task ends of batch by range key; none is an
// empty map. Ends recorded under an older epoch than the batch's current
// plan are left out: they belong to a plan a newer leader replaced.
func (s *Store) TaskEnds(ctx context.Context, job string, batch stream.BatchID) (map[string]stream.Position, error) {
	what := fmt.Sprintf("job %q: batch %d: task ends", job, batch)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(batch)); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	h, ok, err := s.read(ctx, job)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := map[string]stream.Position{}
	if !ok || !h.live() {
		return out, nil
	}
	ends, err := s.b.Ends(ctx, LogRef{Job: job, Inc: h.Inc}, int64(batch))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var planEpoch int64
	if h.Plan != nil && h.Plan.Batch == int64(batch) {
		planEpoch = h.Plan.Epoch
	}
	for k, e := range ends {
		if e.Epoch >= planEpoch {
			out[k] = e.End
		}
	}
	return out, nil
}

// Purge deletes plans, task ends and commits of batches below before. The
// head stops pointing below before first (fenced); the blobs and ends are
// removed after. The catalog entry stays.
func (s *Store) Purge(ctx context.Context, f checkpoint.Fence, job string, before stream.BatchID) error {
	what := fmt.Sprintf("job %q: purge batches below %d", job, before)
	if err := checkpoint.CheckJob(job); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if before < 0 {
		before = 0 // nothing is below a negative batch; still check the fence
	}
	w, err := s.begin(ctx, f, job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var live bool
	h, err := s.change(ctx, w, job, func(h *head, exists bool) bool {
		live = exists
		if !exists {
			return false
		}
		changed := false
		if h.Plan != nil && h.Plan.Batch < int64(before) {
			h.Plan, changed = nil, true
		}
		if h.Commit != nil && h.Commit.Batch < int64(before) {
			h.Commit, changed = nil, true
		}
		return changed
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !live {
		return nil
	}
	if err := s.b.DeleteLogs(ctx, LogRef{Job: job, Inc: h.Inc}, int64(before)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Close does nothing: the backend belongs to the caller.
func (s *Store) Close() error { return nil }
