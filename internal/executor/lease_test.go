package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the lease, safe to read from its
// watchdog goroutine.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1000, 0)} }

// TestLease pins the zombie-executor bug: an executor cut off from the driver
// kept writing for its own keep-alive time, past the driver's heartbeat
// timeout, so an attempt and its replacement could both commit. The lease
// ends after the fence without word from the driver, and after a pause of
// the process even when stale pings arrive on resume.
func TestLease(t *testing.T) {
	const fence = 8 * time.Second
	tests := []struct {
		name string
		run  func(l *lease, c *fakeClock, turn func())
		want bool // still valid
	}{
		{"fresh", func(*lease, *fakeClock, func()) {}, true},
		{"pings keep it", func(l *lease, c *fakeClock, turn func()) {
			for range 20 {
				c.add(time.Second)
				l.heardFromDriver()
				turn()
			}
		}, true},
		{"silence past the fence", func(l *lease, c *fakeClock, turn func()) {
			for range 9 {
				c.add(time.Second)
				turn()
			}
		}, false},
		{"paused process, checked before the watchdog turns", func(l *lease, c *fakeClock, turn func()) {
			c.add(12 * time.Second) // SIGSTOP … SIGCONT
			l.heardFromDriver()     // a ping buffered before the driver gave up
		}, false},
		{"paused process, watchdog first", func(l *lease, c *fakeClock, turn func()) {
			c.add(12 * time.Second)
			l.heardFromDriver()
			turn()
			c.add(time.Second)
			l.heardFromDriver()
			turn() // the lease stays ended
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newFakeClock()
			l := newLease(fence, c.now)
			tick := make(chan time.Time)
			expired := make(chan error, 1)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); l.watch(ctx, tick, func(err error) { expired <- err }) }()
			// A turn after the watchdog ended (the lease expired) is a no-op.
			turn := func() {
				select {
				case tick <- c.now():
				case <-done:
				}
			}
			tc.run(l, c, turn)
			cancel()
			<-done
			err := l.valid()
			if got := err == nil; got != tc.want {
				t.Fatalf("valid = %v, want valid %v", err, tc.want)
			}
			if err != nil && !errors.Is(err, errFenced) {
				t.Fatalf("error %v is not errFenced", err)
			}
		})
	}
}
