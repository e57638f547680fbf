package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/stream"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("local checkpoint store closed")

// Store is a checkpoint.Store in a local directory. It is safe for
// concurrent use; writes of different jobs proceed in parallel.
//
// Lock order: mu (guards the map and closed) is never held while a job lock
// is taken or held.
type Store struct {
	dir  string
	lock *os.File // holds the flock on <dir>/LOCK

	mu     sync.Mutex
	closed bool
	jobs   map[string]*sync.RWMutex // per job: writers exclusive, readers shared
}

var _ checkpoint.Store = (*Store)(nil)

// Open opens (creating if needed) the checkpoint directory dir and locks it
// for this Store with a non-blocking exclusive flock on <dir>/LOCK. A
// directory locked by another Store, in this process or another, is an
// error: two drivers must never write the same checkpoints. Leftovers of a
// crash (temporary files, half-deleted jobs) are removed.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open local checkpoint store: directory must not be empty")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open local checkpoint store %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open local checkpoint store: %w", err)
	}
	lockPath := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open local checkpoint store: %w", err)
	}
	// flock locks belong to the open file description, so a second Open in
	// the same process is refused too.
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("checkpoint directory %s is in use by another driver", dir)
		}
		return nil, fmt.Errorf("open local checkpoint store: lock %s: %w", lockPath, err)
	}
	s := &Store{dir: dir, lock: f, jobs: map[string]*sync.RWMutex{}}
	for _, d := range []string{s.jobsDir(), s.logsRoot()} {
		if err := mkdirs(dir, d); err != nil {
			s.Close()
			return nil, fmt.Errorf("open local checkpoint store %s: %w", dir, err)
		}
	}
	if err := cleanup(dir); err != nil {
		s.Close()
		return nil, fmt.Errorf("open local checkpoint store %s: remove crash leftovers: %w", dir, err)
	}
	return s, nil
}

// Close releases the directory lock. Calls after Close fail with ErrClosed.
// Close is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	// Closing the descriptor releases the flock.
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("close local checkpoint store %s: %w", s.dir, err)
	}
	return nil
}

// Paths.

func (s *Store) jobsDir() string              { return filepath.Join(s.dir, "jobs") }
func (s *Store) jobFile(job string) string    { return filepath.Join(s.jobsDir(), escape(job)+".json") }
func (s *Store) logsRoot() string             { return filepath.Join(s.dir, "logs") }
func (s *Store) logsDir(job string) string    { return filepath.Join(s.logsRoot(), escape(job)) }
func (s *Store) offsetsDir(job string) string { return filepath.Join(s.logsDir(job), "offsets") }
func (s *Store) endsDir(job string) string    { return filepath.Join(s.logsDir(job), "ends") }
func (s *Store) commitsDir(job string) string { return filepath.Join(s.logsDir(job), "commits") }
func batchName(b stream.BatchID) string       { return strconv.FormatInt(int64(b), 10) }

// taskEnd is the stored content of a task end file. The key is stored so
// reading does not depend on reversing the file name's escaping.
type taskEnd struct {
	Key string          `json:"key"`
	End stream.Position `json:"end"`
}

// begin checks the store is open and the job name valid, and takes the
// job's lock (exclusive for writes). The returned func releases it.
func (s *Store) begin(ctx context.Context, job string, write bool) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkpoint.CheckJob(job); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	l, ok := s.jobs[job]
	if !ok {
		l = new(sync.RWMutex)
		s.jobs[job] = l
	}
	s.mu.Unlock()
	if write {
		l.Lock()
		return l.Unlock, nil
	}
	l.RLock()
	return l.RUnlock, nil
}

// put writes v as JSON to path, creating its directory.
func (s *Store) put(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := mkdirs(s.dir, filepath.Dir(path)); err != nil {
		return err
	}
	return writeFile(path, data)
}

// get reads JSON from path into v; a missing file is checkpoint.ErrNotFound.
func get(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return checkpoint.ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

// batches lists the batch numbers that have an entry in dir, ascending.
func batches(dir string) ([]stream.BatchID, error) {
	entries, err := readDirNames(dir)
	if err != nil {
		return nil, err
	}
	out := make([]stream.BatchID, 0, len(entries))
	for _, e := range entries {
		n, err := strconv.ParseInt(e.Name(), 10, 64)
		if err != nil || n < 0 {
			continue // not ours
		}
		out = append(out, stream.BatchID(n))
	}
	slices.Sort(out)
	return out, nil
}

// PutJob writes the job's catalog entry. The fence is not checked: the
// directory lock makes this Store the only writer.
func (s *Store) PutJob(ctx context.Context, _ checkpoint.Fence, job checkpoint.JobRecord) error {
	what := fmt.Sprintf("job %q: put catalog entry", job.Name)
	done, err := s.begin(ctx, job.Name, true)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	if err := s.put(s.jobFile(job.Name), job); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// GetJob reads a catalog entry; an unknown job is checkpoint.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (checkpoint.JobRecord, error) {
	var rec checkpoint.JobRecord
	what := fmt.Sprintf("job %q: get catalog entry", name)
	done, err := s.begin(ctx, name, false)
	if err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	if err := get(s.jobFile(name), &rec); err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	return rec, nil
}

// ListJobs returns every catalog entry, sorted by name; an entry that does
// not decode is listed with its name and Unreadable set.
func (s *Store) ListJobs(ctx context.Context) ([]checkpoint.JobRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("list jobs: %w", ErrClosed)
	}
	entries, err := readDirNames(s.jobsDir())
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs := make([]checkpoint.JobRecord, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rec checkpoint.JobRecord
		// Files are replaced by rename, so a concurrent write is seen whole;
		// a concurrent delete makes the file vanish, which just drops it.
		if err := get(filepath.Join(s.jobsDir(), e.Name()), &rec); err != nil {
			if errors.Is(err, checkpoint.ErrNotFound) {
				continue
			}
			name, uerr := url.PathUnescape(strings.TrimSuffix(e.Name(), ".json"))
			var syn *json.SyntaxError
			var typ *json.UnmarshalTypeError
			if uerr != nil || !(errors.As(err, &syn) || errors.As(err, &typ)) {
				return nil, fmt.Errorf("list jobs: %w", err)
			}
			// One bad entry must not hide the others: list it as unreadable.
			jobs = append(jobs, checkpoint.JobRecord{Name: name, Unreadable: err})
			continue
		}
		jobs = append(jobs, rec)
	}
	slices.SortFunc(jobs, func(a, b checkpoint.JobRecord) int { return strings.Compare(a.Name, b.Name) })
	return jobs, nil
}

// DeleteJob removes the catalog entry and all logs of the job (see the
// package doc for the crash-safe order). Deleting an unknown job succeeds.
func (s *Store) DeleteJob(ctx context.Context, _ checkpoint.Fence, name string) error {
	what := fmt.Sprintf("job %q: delete", name)
	done, err := s.begin(ctx, name, true)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	logs := s.logsDir(name)
	trash, err := os.MkdirTemp(s.logsRoot(), deletedPrefix+"*")
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	// Rename into the fresh trash directory: one atomic step takes the logs
	// out of sight.
	renamed := false
	if err := os.Rename(logs, filepath.Join(trash, "logs")); err == nil {
		renamed = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		os.Remove(trash)
		return fmt.Errorf("%s: %w", what, err)
	}
	if renamed {
		if err := syncDir(s.logsRoot()); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := removeFile(s.jobFile(name)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// PutPlan writes the offset log entry of plan.Batch, replacing any earlier
// plan of that batch.
func (s *Store) PutPlan(ctx context.Context, _ checkpoint.Fence, job string, plan checkpoint.BatchPlan) error {
	what := fmt.Sprintf("job %q: put plan %d", job, plan.Batch)
	if err := checkpoint.CheckBatch(plan.Batch); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done, err := s.begin(ctx, job, true)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	if err := s.put(filepath.Join(s.offsetsDir(job), batchName(plan.Batch)), plan); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// LatestPlan returns the plan of the highest batch, or checkpoint.ErrNotFound.
func (s *Store) LatestPlan(ctx context.Context, job string) (checkpoint.BatchPlan, error) {
	var plan checkpoint.BatchPlan
	err := s.latest(ctx, job, "latest plan", s.offsetsDir(job), &plan)
	return plan, err
}

// PutTaskEnd records where the task key of batch stopped.
func (s *Store) PutTaskEnd(ctx context.Context, _ checkpoint.Fence, job string, batch stream.BatchID, key string, end stream.Position) error {
	what := fmt.Sprintf("job %q: batch %d: put task end %q", job, batch, key)
	if err := checkpoint.CheckBatch(batch); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if key == "" {
		return fmt.Errorf("%s: range key must not be empty", what)
	}
	done, err := s.begin(ctx, job, true)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	path := filepath.Join(s.endsDir(job), batchName(batch), escape(key))
	if err := s.put(path, taskEnd{Key: key, End: end}); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// TaskEnds returns the recorded task ends of batch by range key; none is an
// empty map, not an error.
func (s *Store) TaskEnds(ctx context.Context, job string, batch stream.BatchID) (map[string]stream.Position, error) {
	what := fmt.Sprintf("job %q: batch %d: task ends", job, batch)
	if err := checkpoint.CheckBatch(batch); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	done, err := s.begin(ctx, job, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	dir := filepath.Join(s.endsDir(job), batchName(batch))
	entries, err := readDirNames(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ends := make(map[string]stream.Position, len(entries))
	for _, e := range entries {
		var te taskEnd
		if err := get(filepath.Join(dir, e.Name()), &te); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		ends[te.Key] = te.End
	}
	return ends, nil
}

// PutCommit writes the commit log entry of c.Batch.
func (s *Store) PutCommit(ctx context.Context, _ checkpoint.Fence, job string, c checkpoint.Commit) error {
	what := fmt.Sprintf("job %q: put commit %d", job, c.Batch)
	if err := checkpoint.CheckBatch(c.Batch); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done, err := s.begin(ctx, job, true)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	if err := s.put(filepath.Join(s.commitsDir(job), batchName(c.Batch)), c); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// LatestCommit returns the commit of the highest batch, or
// checkpoint.ErrNotFound.
func (s *Store) LatestCommit(ctx context.Context, job string) (checkpoint.Commit, error) {
	var c checkpoint.Commit
	err := s.latest(ctx, job, "latest commit", s.commitsDir(job), &c)
	return c, err
}

// Purge deletes plans, task ends and commits of batches below before. The
// catalog entry stays. Each file removal is durable on its own; a crash in
// the middle leaves some old batches, which a later Purge removes.
func (s *Store) Purge(ctx context.Context, _ checkpoint.Fence, job string, before stream.BatchID) error {
	what := fmt.Sprintf("job %q: purge batches below %d", job, before)
	done, err := s.begin(ctx, job, true)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	// Only batches below before are touched, and the caller purges below
	// its latest commit, so the plan and commit a restart resumes from are
	// never removed, whatever the order or a crash in between.
	for _, dir := range []string{s.offsetsDir(job), s.endsDir(job), s.commitsDir(job)} {
		bs, err := batches(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		removed := false
		for _, b := range bs {
			if b >= before {
				break
			}
			if err := os.RemoveAll(filepath.Join(dir, batchName(b))); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			removed = true
		}
		if removed {
			if err := syncDir(dir); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
	}
	return nil
}

// latest decodes into v the entry of the highest batch in dir.
func (s *Store) latest(ctx context.Context, job, what, dir string, v any) error {
	what = fmt.Sprintf("job %q: %s", job, what)
	done, err := s.begin(ctx, job, false)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	bs, err := batches(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(bs) == 0 {
		return fmt.Errorf("%s: %w", what, checkpoint.ErrNotFound)
	}
	if err := get(filepath.Join(dir, batchName(bs[len(bs)-1])), v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
