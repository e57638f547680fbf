package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/statestore"
	"github.com/sluicehq/sluice/pkg/stream"
	"github.com/sluicehq/sluice/pkg/task"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
)

// stateStores are the state partitions this executor holds: their local
// stores stay open between batches (the driver sends a partition back to
// the executor that ran it last), and one attempt at a time uses each.
type stateStores struct {
	dir string // "" until first use: then --state-dir or a temporary directory
	tmp bool   // dir was made here and is removed on close

	// idle: a partition not used for this long has most likely moved to
	// another executor; its local copy is removed (coming back restores
	// it from checkpoint.state).
	idle time.Duration

	mu     sync.Mutex
	stores *statestore.Stores
	busy   map[string]chan struct{} // prefix → held while an attempt uses it
	held   map[string]*heldStore    // prefix → the open store
}

type heldStore struct {
	st       *statestore.Store
	lastUsed time.Time
}

func newStateStores(dir string, idle time.Duration) *stateStores {
	return &stateStores{dir: dir, idle: idle, busy: map[string]chan struct{}{}, held: map[string]*heldStore{}}
}

// removeIdleLocked removes the local copies of partitions unused for
// s.idle and not in use now.
func (s *stateStores) removeIdleLocked(log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	for prefix, h := range s.held {
		if time.Since(h.lastUsed) < s.idle || len(s.busy[prefix]) > 0 {
			continue
		}
		if err := h.st.Remove(); err != nil {
			log.Warn("removing an idle state partition's local copy failed", "partition", prefix, "err", err)
		}
		delete(s.held, prefix)
	}
}

// get returns the store of prefix, held for the caller until release is
// called; it waits for an earlier attempt of the same partition (a retry
// that arrived before the cancelled attempt let go) or ctx.
func (s *stateStores) get(ctx context.Context, opts statestore.Options) (*statestore.Store, func(), error) {
	s.mu.Lock()
	s.removeIdleLocked(opts.Logger)
	if s.stores == nil {
		if s.dir == "" {
			d, err := os.MkdirTemp("", "sluice-state-")
			if err != nil {
				s.mu.Unlock()
				return nil, nil, fmt.Errorf("state directory: %w", err)
			}
			s.dir, s.tmp = d, true
		}
		s.stores = statestore.NewStores(s.dir)
	}
	ch, ok := s.busy[opts.Prefix]
	if !ok {
		ch = make(chan struct{}, 1)
		s.busy[opts.Prefix] = ch
	}
	stores := s.stores
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	st, err := stores.Get(opts)
	if err != nil {
		<-ch
		return nil, nil, fmt.Errorf("open the local store of %s: %w", opts.Prefix, err)
	}
	used := func() {
		s.mu.Lock()
		s.held[opts.Prefix] = &heldStore{st: st, lastUsed: time.Now()}
		s.mu.Unlock()
	}
	used()
	return st, func() { used(); <-ch }, nil
}

// close closes every store; called when the executor stops, after its
// attempts ended.
func (s *stateStores) close(log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stores == nil {
		return
	}
	if err := s.stores.Close(); err != nil {
		log.Warn("closing state stores failed", "err", err)
	}
	if s.tmp {
		if err := os.RemoveAll(s.dir); err != nil {
			log.Warn("removing the state directory failed", "dir", s.dir, "err", err)
		}
	}
	s.stores = nil
}

// statePrefix is where a job's state lives in checkpoint.state: per job
// and incarnation (a job deleted and submitted again starts empty).
func statePrefix(job, incarnation string) string {
	return path.Join(safeName(job), "inc-"+safeName(incarnation), "state")
}

// safeName keeps a name usable as one path element.
func safeName(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// stateLocation opens jc's checkpoint.state once, and checks that the state
// there was written by this job's layout: as many partitions (groups are
// placed by a hash modulo the count, so another count would look for
// every group in the wrong partition) and the same state encoding (a
// changed query would read the old groups' bytes as something else).
func (e *Executor) stateLocation(ctx context.Context, jc *jobCache, t *clusterv1.Task) (statestore.Location, error) {
	e.mu.Lock()
	loc := jc.stateLoc
	e.mu.Unlock()
	if loc != nil {
		return loc, nil
	}
	loc, err := statestore.OpenLocation(ctx, jc.job.State.Location, jc.job.State.S3)
	if err != nil {
		return nil, fmt.Errorf("checkpoint.state %s: %w", jc.job.State.Location, err)
	}
	name := path.Join(statePrefix(t.GetJob(), t.GetIncarnation()), "layout")
	want := stateLayout{Partitions: jc.job.State.Partitions, State: jc.job.SQL.StateLayout(), Signature: jc.job.SQL.StateSignature()}
	data, err := loc.Get(ctx, name)
	switch {
	case errors.Is(err, statestore.ErrNotExist):
		b, _ := json.Marshal(want) // never fails
		if err := loc.Put(ctx, name, b); err != nil {
			return nil, fmt.Errorf("checkpoint.state: record the state's layout: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("checkpoint.state: read the state's layout: %w", err)
	default:
		var got stateLayout
		if err := json.Unmarshal(data, &got); err != nil {
			return nil, connectors.Permanent(fmt.Errorf("checkpoint.state: %s is not a state layout: %w", name, err))
		}
		if got.Partitions != want.Partitions {
			return nil, connectors.Permanent(fmt.Errorf("state.partitions is %d, but the job's state in checkpoint.state was written with %d partitions; the count is fixed for the job's life (submit it under another name to start over)",
				want.Partitions, got.Partitions))
		}
		if got.State != want.State || got.Signature != want.Signature {
			what := fmt.Sprintf("as %s, but the state in checkpoint.state was written as %s", want.State, got.State)
			if got.State == want.State {
				what = "with other group keys or aggregates than the state in checkpoint.state was written with"
			}
			return nil, connectors.Permanent(fmt.Errorf("the job's query keeps its state %s: a changed query cannot read it (submit the job under another name to start over)", what))
		}
	}
	e.mu.Lock()
	jc.stateLoc = loc
	e.mu.Unlock()
	return loc, nil
}

// stateLayout is what checkpoint.state records of the state's shape when a
// job first writes it.
type stateLayout struct {
	Partitions int    `json:"partitions"`
	State      string `json:"state"`
	Signature  string `json:"signature"`
}

// runStateTask runs a state task (clusterv1.StateTask) and fills res.
func (e *Executor) runStateTask(ctx context.Context, jc *jobCache, t *clusterv1.Task, current func() error, res *clusterv1.TaskResult) error {
	st, job := t.GetState(), jc.job
	if job.State == nil || job.SQL == nil || !job.SQL.Stateful() {
		return connectors.Permanent(errors.New("a state task for a job that keeps no state (was the job changed?)"))
	}
	if int(st.GetPartitions()) != job.State.Partitions {
		return connectors.Permanent(fmt.Errorf("state task of %d partitions, the job has %d", st.GetPartitions(), job.State.Partitions))
	}
	loc, err := e.stateLocation(ctx, jc, t)
	if err != nil {
		return err
	}
	prefix := path.Join(statePrefix(t.GetJob(), t.GetIncarnation()), strconv.Itoa(int(st.GetPartition())))
	store, release, err := e.state.get(ctx, statestore.Options{Location: loc, Prefix: prefix,
		SnapshotInterval: job.State.SnapshotInterval, MinVersionsToRetain: job.State.MinBatchesToRetain, Logger: e.log})
	if err != nil {
		return err
	}
	defer release()
	r, err := task.RunState(ctx, task.StateAttempt{
		Job: stream.JobID(t.GetJob()), Incarnation: t.GetIncarnation(), Batch: stream.BatchID(t.GetBatch()),
		Partition: int(st.GetPartition()), Part: t.GetPartition(), Input: st.GetInput(), SQL: job.SQL, BatchTime: t.GetBatchTime().AsTime(),
		Watermarks: sqltransform.Watermarks{Late: timeOf(st.GetWatermark()), Complete: timeOf(st.GetNextWatermark())},
		Store:      store, Sink: jc.sink, CollectRows: jc.collect, Current: current,
	})
	res.RecordsOut = r.RowsOut
	if err != nil {
		return err
	}
	res.Ok, res.Rows, res.RowsTotal = true, r.Rows, r.RowsOut
	res.State = &clusterv1.StateTaskMetrics{
		Partition: st.GetPartition(), NumRowsTotal: r.Total, NumRowsUpdated: r.Updated, MemoryUsedBytes: r.Memory,
		StateOnDiskBytes: r.Disk, CommitTimeMs: r.Commit.Milliseconds(), LoadTimeMs: r.Load.Milliseconds(), Restored: r.Restored,
		ChangelogBytes: r.Changelog, SnapshotBytes: r.Snapshot, NumRowsDroppedByWatermark: r.Dropped, NumRowsRemoved: r.Removed,
		NumDroppedDuplicateRows: r.Duplicates,
	}
	return nil
}

// timeOf is a watermark from the wire: unset is zero, "none yet".
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
