package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errFenced ends a session whose executor may already have been declared
// lost by the driver: its attempts are being (or about to be) run elsewhere,
// so it must not write another byte for them.
var errFenced = errors.New("fenced: no word from the driver within the heartbeat fence")

// lease is one session's right to commit task output. The driver pings
// every heartbeat interval and declares the executor lost after its
// heartbeat timeout; the executor gives up one interval earlier (the fence
// the driver sends in its welcome), so a cut-off executor stops before the
// replacement attempts start.
//
// Two things end the lease: no message from the driver for the fence, or a
// pause of this process (SIGSTOP, a stalled VM) longer than the fence, seen
// as a gap between watchdog turns. The second matters because pings the
// driver sent before it gave up may still sit in the socket buffer and would
// make a resumed process look current.
type lease struct {
	fence time.Duration
	now   func() time.Time

	mu     sync.Mutex
	heard  time.Time // last message from the driver
	ticked time.Time // last watchdog turn
	ended  error
}

func newLease(fence time.Duration, now func() time.Time) *lease {
	t := now()
	return &lease{fence: fence, now: now, heard: t, ticked: t}
}

// heardFromDriver renews the lease; called for every message received.
func (l *lease) heardFromDriver() {
	l.mu.Lock()
	l.heard = l.now()
	l.mu.Unlock()
}

// valid is nil while this session may still commit output. It is checked
// right before a task commits, so a process resumed from a pause refuses to
// commit even before its watchdog has run.
func (l *lease) valid() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended != nil {
		return l.ended
	}
	return l.checkLocked(l.now())
}

func (l *lease) checkLocked(now time.Time) error {
	if gap := now.Sub(l.ticked); gap > l.fence {
		return fmt.Errorf("%w: this process was paused for %s", errFenced, gap.Round(time.Millisecond))
	}
	if quiet := now.Sub(l.heard); quiet > l.fence {
		return fmt.Errorf("%w: nothing heard for %s (fence %s)", errFenced, quiet.Round(time.Millisecond), l.fence)
	}
	return nil
}

// watch turns every tick until ctx ends or the lease ends; then it calls
// expired once with the reason. A turn that finds the lease ended ends it
// for good, whatever arrives later.
func (l *lease) watch(ctx context.Context, tick <-chan time.Time, expired func(error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		l.mu.Lock()
		now := l.now()
		err := l.checkLocked(now)
		l.ticked = now
		if err != nil {
			l.ended = err
		}
		l.mu.Unlock()
		if err != nil {
			expired(err)
			return
		}
	}
}
