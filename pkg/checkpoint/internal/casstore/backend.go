package casstore

import (
	"context"
	"errors"
	"math"
)

var (
	// ErrNotExist is returned by a Backend for a record or blob that is not
	// there.
	ErrNotExist = errors.New("does not exist")
	// ErrConflict is returned by a Backend when a conditional write lost:
	// the record's version is no longer the one given, or a task end holds
	// a stamp that does not admit the writer.
	ErrConflict = errors.New("conditional write conflict")
)

// AllBatches is the before argument of DeleteLogs that removes every batch.
const AllBatches = math.MaxInt64

// Backend is the storage a Store needs: small records with compare and swap
// (the fence and one head per job), write-once blobs and per-batch task
// ends under a job's incarnation, and deletion of logs. Every read must be
// strongly consistent, except ListHeads.
//
// A version is an opaque string the backend returns with a record; "" in a
// write means "the record must not exist yet".
type Backend interface {
	GetFence(ctx context.Context) (value []byte, version string, err error)
	PutFence(ctx context.Context, value []byte, version string) error

	GetHead(ctx context.Context, job string) (value []byte, version string, err error)
	// PutHead writes the head if its version is still version and returns
	// the new version; ErrConflict otherwise.
	PutHead(ctx context.Context, job string, value []byte, version string) (newVersion string, err error)
	// ListHeads returns the heads of every job. It may be eventually
	// consistent (an S3 listing): a head written a moment ago may be
	// missing. A Head may come without its Value (nil) when the listing
	// names jobs without reading them; the Store then reads it with
	// GetHead, and a job whose head is not there is left out.
	ListHeads(ctx context.Context) ([]Head, error)

	// PutBlob writes a blob that must not exist yet.
	PutBlob(ctx context.Context, ref BlobRef, value []byte) error
	GetBlob(ctx context.Context, ref BlobRef) ([]byte, error)

	// PutEnd records key's end in batch unless the entry already there
	// carries a stamp that does not admit end's (then ErrConflict).
	PutEnd(ctx context.Context, log LogRef, batch int64, key string, end End) error
	// Ends returns the task ends of batch, empty when there are none.
	Ends(ctx context.Context, log LogRef, batch int64) (map[string]End, error)
	// DeleteLogs removes the blobs and task ends of batches below before
	// (AllBatches: all of them).
	DeleteLogs(ctx context.Context, log LogRef, before int64) error
}

// Head is one job's head as ListHeads returns it; Value nil (and Version
// "") when it was listed but not read.
type Head struct {
	Job     string
	Value   []byte
	Version string
}

// LogRef names one incarnation of a job's logs.
type LogRef struct {
	Job string
	Inc string
}

// BlobRef names one blob: a plan or a commit of a batch.
type BlobRef struct {
	LogRef
	Batch int64
	Kind  string // KindPlan or KindCommit
	ID    string
}

// Blob kinds.
const (
	KindPlan   = "plan"
	KindCommit = "commit"
)

// End is a stored task end with the stamp of the leader that recorded it.
type End struct {
	End      []byte `json:"end"`
	Epoch    int64  `json:"epoch"`
	FenceKey string `json:"fenceKey"`
}

// Admits reports whether an entry stamped (epoch, key) may be replaced by a
// writer holding (wEpoch, wKey): the writer is newer, or the same leader.
// Backends that evaluate the rule themselves (a DynamoDB condition
// expression) must implement exactly this.
func Admits(epoch int64, key string, wEpoch int64, wKey string) bool {
	return epoch < wEpoch || (epoch == wEpoch && key == wKey)
}
