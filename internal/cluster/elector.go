package cluster

import (
	"context"
	"errors"
	"sync"

	"github.com/sluicehq/sluice/pkg/checkpoint"
)

var (
	// ErrNoLeader means no candidate currently leads.
	ErrNoLeader = errors.New("no leader elected")
	// ErrClosed means the elector was closed.
	ErrClosed = errors.New("elector closed")
)

// Elector is what the driver needs from leader election, whether it runs
// against etcd (Election) or alone (Standalone).
type Elector interface {
	// Campaign blocks until this process leads or ctx ends, and returns the
	// term's Leadership. advertise is the address followers and executors
	// use to reach this driver. A ctx error is returned wrapped.
	Campaign(ctx context.Context, advertise string) (*Leadership, error)
	// Leader returns the current leader's advertised address, or an error
	// matching ErrNoLeader when nobody leads.
	Leader(ctx context.Context) (string, error)
	// Close ends every term and campaign of this elector; see each
	// implementation for what it waits for.
	Close(ctx context.Context) error
}

// Leadership is one term of leadership, from a successful Campaign until Lost
// is closed.
//
// The driver runs leader-only work (batch loops, committer) for as long as
// Lost is open and stops it at once when Lost closes: another driver may
// already lead. Writes the old leader still has in flight are harmless
// because the store refuses them (checkpoint.ErrFenced), but new work must not
// start.
type Leadership struct {
	fence checkpoint.Fence

	lost     chan struct{}
	lostOnce sync.Once

	resignOnce sync.Once
	resignErr  error
	resign     func(ctx context.Context) error
}

func newLeadership(f checkpoint.Fence, resign func(ctx context.Context) error) *Leadership {
	return &Leadership{fence: f, lost: make(chan struct{}), resign: resign}
}

// Fence is the proof of this term handed to every checkpoint write: the
// election key and its create revision (zero for Standalone).
func (l *Leadership) Fence() checkpoint.Fence { return l.fence }

// Lost is closed when the term ends: lease expired or revoked, election key
// deleted, Resign or the elector's Close. On Lost the driver must stop leader
// work at once; its in-flight writes fail the fence anyway.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Resign ends the term on purpose so a follower can take over without
// waiting for the lease to expire (clean handover on SIGTERM). Stop leader
// work before calling it. Lost is closed when Resign returns, whatever the
// error; an error means the handover may wait for the lease TTL. ctx bounds
// the etcd calls. Only the first call does anything.
func (l *Leadership) Resign(ctx context.Context) error {
	l.resignOnce.Do(func() {
		l.resignErr = l.resign(ctx)
		l.markLost()
	})
	return l.resignErr
}

func (l *Leadership) markLost() {
	l.lostOnce.Do(func() { close(l.lost) })
}
