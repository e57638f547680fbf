package driver

import (
	"context"
	"sync"
)

// nameLocks serialises the API calls that change one job (submit, stop,
// delete), so that concurrent requests for a name see each other's catalog
// writes: one wins and the others get a clear answer instead of starting a
// second batch loop. Calls for different jobs do not wait on each other.
type nameLocks struct {
	mu    sync.Mutex
	locks map[string]*nameLock
}

type nameLock struct {
	held  chan struct{} // holds one token while locked
	users int           // holders and waiters; the entry goes at zero
}

func newNameLocks() *nameLocks { return &nameLocks{locks: map[string]*nameLock{}} }

// lock takes name's lock, waiting while another call holds it, until ctx
// ends. The returned func unlocks.
func (n *nameLocks) lock(ctx context.Context, name string) (func(), error) {
	n.mu.Lock()
	l := n.locks[name]
	if l == nil {
		l = &nameLock{held: make(chan struct{}, 1)}
		n.locks[name] = l
	}
	l.users++
	n.mu.Unlock()
	done := func() {
		n.mu.Lock()
		if l.users--; l.users == 0 {
			delete(n.locks, name)
		}
		n.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
