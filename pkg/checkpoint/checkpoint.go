// Package checkpoint defines where a job's progress is kept: the job catalog,
// the offset log (each batch's plan, written before it runs), task-end
// records (ends reported by executors for sources without planned ends), and
// the commit log (each finished batch's per-partition ends).
//
// Every write is fenced: it carries the writer's Fence and fails with
// ErrFenced once the writer is no longer leader, so a deposed driver cannot
// commit. Implementations live in sub-packages (etcd, local, dynamodb, s3)
// and all pass the contract suite in checkpointtest.
//
// Batch life cycle as stored here:
//
//	PutPlan(N) → PutTaskEnd(N, ...)* → PutCommit(N) → PutPlan(N+1) ...
//
// A plan without a commit is the batch to re-run, with its recorded plan and
// task ends, after a restart or failover.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/pkg/stream"
)

var (
	// ErrFenced means the writer lost leadership; the write did not happen.
	ErrFenced = errors.New("checkpoint write fenced: this driver is no longer the leader")
	// ErrNotFound means the record does not exist.
	ErrNotFound = errors.New("not found")
)

// Fence is the writer's proof of leadership. For etcd it is the election key
// and its create revision; a store compares it inside the same transaction as
// the write. The zero Fence is only accepted by stores that are themselves
// single-writer (the local directory store holds an exclusive lock).
type Fence struct {
	Key   string
	Epoch int64
}

// JobRecord is a job's catalog entry.
type JobRecord struct {
	Name string `json:"name"`
	// Spec is the serialised job spec; the store does not interpret it.
	Spec []byte `json:"spec"`
	// SourceIdentity guards against resuming checkpoints with another source.
	SourceIdentity string    `json:"sourceIdentity"`
	State          string    `json:"state"`
	LastError      string    `json:"lastError,omitempty"`
	Created        time.Time `json:"created"`
	Updated        time.Time `json:"updated"`

	// Unreadable is set, by ListJobs only, on the entry of a job whose
	// stored catalog entry cannot be decoded (truncated, corrupted): the
	// record then holds only Name and this error, and the other jobs are
	// still listed. It is never stored. Such a job cannot run; DeleteJob
	// removes it.
	Unreadable error `json:"-"`
}

// BatchPlan is an offset log entry.
type BatchPlan struct {
	Batch  stream.BatchID                         `json:"batch"`
	Ranges []stream.Range                         `json:"ranges"`
	Start  map[stream.PartitionID]stream.Position `json:"start"`
	// Exhausted records the source's availableNow verdict for the batch.
	Exhausted bool      `json:"exhausted,omitempty"`
	Planned   time.Time `json:"planned"`
	// TasksPerSlot is the source's connectors.Plan.TasksPerSlot, so a replay
	// is scheduled like the first run.
	TasksPerSlot int `json:"tasksPerSlot,omitempty"`
}

// Commit is a commit log entry.
type Commit struct {
	Batch     stream.BatchID                         `json:"batch"`
	Ends      map[stream.PartitionID]stream.Position `json:"ends"`
	Committed time.Time                              `json:"committed"`
	// Progress is the batch's progress report as the driver serialised it.
	Progress []byte `json:"progress,omitempty"`
}

// Store keeps catalogs and logs. Methods block until the write is durable or
// ctx ends.
type Store interface {
	PutJob(ctx context.Context, f Fence, job JobRecord) error
	// GetJob returns ErrNotFound for an unknown job.
	GetJob(ctx context.Context, name string) (JobRecord, error)
	// ListJobs returns every catalog entry, sorted by name. An entry that
	// cannot be decoded does not fail the listing: it is returned with its
	// Name and Unreadable set.
	ListJobs(ctx context.Context) ([]JobRecord, error)
	// DeleteJob removes the catalog entry and every log of the job.
	DeleteJob(ctx context.Context, f Fence, name string) error

	PutPlan(ctx context.Context, f Fence, job string, plan BatchPlan) error
	// LatestPlan returns the highest planned batch, or ErrNotFound.
	LatestPlan(ctx context.Context, job string) (BatchPlan, error)

	// PutTaskEnd records where a task of batch stopped; key is the range key.
	PutTaskEnd(ctx context.Context, f Fence, job string, batch stream.BatchID, key string, end stream.Position) error
	TaskEnds(ctx context.Context, job string, batch stream.BatchID) (map[string]stream.Position, error)

	PutCommit(ctx context.Context, f Fence, job string, c Commit) error
	// LatestCommit returns the highest committed batch, or ErrNotFound.
	LatestCommit(ctx context.Context, job string) (Commit, error)

	// Purge deletes plans, task ends and commits of batches below before.
	Purge(ctx context.Context, f Fence, job string, before stream.BatchID) error

	Close() error
}

// Claimer is implemented by stores whose fencing is not a transaction on the
// election key itself (DynamoDB, S3): a newly elected leader claims the
// store with its fence before it reads checkpoints, so a deposed leader's
// later writes fail and its in-flight ones cannot change what was read.
type Claimer interface {
	Claim(ctx context.Context, f Fence) error
}

// Claim claims st for f when st is a Claimer, and does nothing otherwise.
func Claim(ctx context.Context, st Store, f Fence) error {
	if c, ok := st.(Claimer); ok {
		return c.Claim(ctx, f)
	}
	return nil
}

// CheckJob refuses an empty job name. Every Store checks its arguments with
// CheckJob and CheckBatch before it touches storage, so that all refuse the
// same arguments in the same words.
func CheckJob(name string) error {
	if name == "" {
		return errors.New("job name must not be empty")
	}
	return nil
}

// CheckBatch refuses a negative batch: stores key batches by their
// zero-padded number.
func CheckBatch(b stream.BatchID) error {
	if b < 0 {
		return fmt.Errorf("batch %d is negative", b)
	}
	return nil
}
