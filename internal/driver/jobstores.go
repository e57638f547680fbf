package driver

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/pkg/checkpoint"
)

// jobStores keeps the jobs' own checkpoint stores (DynamoDB, S3) open, one
// per job, for as long as this driver knows the job. Opening one costs
// service calls (DescribeTable, an S3 conditional-write probe) that loading
// the status, each run of the batch loop and deletion would otherwise repeat.
type jobStores struct {
	log  *slog.Logger
	mu   sync.Mutex
	open map[string]openStore // job name → its store
}

type openStore struct {
	key string // the checkpoint options it was opened with
	st  checkpoint.Store
}

func newJobStores(log *slog.Logger) *jobStores {
	return &jobStores{log: log, open: map[string]openStore{}}
}

// get returns job's own checkpoint store, opening it on first use, or nil
// when the job keeps its checkpoints in the driver's store. A resubmitted job
// whose checkpoint options changed gets a store opened with the new ones.
func (s *jobStores) get(ctx context.Context, job *jobspec.Job) (checkpoint.Store, error) {
	c := job.Spec.GetCheckpoint()
	if c == nil {
		return nil, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, err
	}
	name, key := job.Spec.GetName(), string(b)
	s.mu.Lock()
	cur, ok := s.open[name]
	s.mu.Unlock()
	if ok && cur.key == key {
		return cur.st, nil
	}
	// Open without the lock: it may wait minutes for a table to be created,
	// and other jobs' stores must not wait for that.
	st, err := job.OpenCheckpoint(ctx)
	if err != nil || st == nil { // nil: checkpoint holds only state options
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.open[name]; ok {
		if cur.key == key {
			s.close(name, st) // opened meanwhile by another caller
			return cur.st, nil
		}
		s.close(name, cur.st)
	}
	s.open[name] = openStore{key: key, st: st}
	return st, nil
}

// forget closes the store of a deleted job.
func (s *jobStores) forget(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.open[name]; ok {
		delete(s.open, name)
		s.close(name, cur.st)
	}
}

// closeAll closes every store, when the driver stops.
func (s *jobStores) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, cur := range s.open {
		s.close(name, cur.st)
	}
	clear(s.open)
}

func (s *jobStores) close(name string, st checkpoint.Store) {
	if err := st.Close(); err != nil {
		s.log.Warn("close the job's checkpoint store", "job", name, "err", err)
	}
}
