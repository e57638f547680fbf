package executor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// blockedCompile makes e's compiles wait until unblock is called (at the
// test's end at the latest, so that a failing test does not hang in its
// clean-up); started receives one value per compile that began.
func blockedCompile(t *testing.T, e *Executor) (started chan struct{}, unblock func(), compiles *atomic.Int32) {
	ch := make(chan struct{})
	var once sync.Once
	unblock = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(unblock)
	started, compiles = make(chan struct{}, 8), &atomic.Int32{}
	real := e.compile
	e.compile = func(s *sluicev1.JobSpec) (*jobspec.Job, error) {
		compiles.Add(1)
		started <- struct{}{}
		<-ch
		return real(s)
	}
	return started, unblock, compiles
}

// within fails the test when ch yields nothing for a long time: a deadlock
// guard, not a measure of speed.
func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: nothing after 20s", what)
		var zero T
		return zero
	}
}

type cacheResult struct {
	jc  *jobCache
	err error
}

// TestBuildDoesNotBlock: while a job is being built, the executor's other
// work goes on (a built job's tasks get their cache; running attempts are
// listed and cancelled); tasks of the job being built wait for that one
// build and share it, or give up when cancelled.
func TestBuildDoesNotBlock(t *testing.T) {
	r := newSessionRig(t, time.Second)
	e, ctx := r.e, context.Background()
	a, err := e.cache(ctx, r.spec, "a")
	if err != nil {
		t.Fatal(err)
	}
	e.release(a)

	started, unblock, compiles := blockedCompile(t, e)
	specB := proto.Clone(r.spec).(*sluicev1.JobSpec)
	specB.Name = "sess-b"
	results := make(chan cacheResult, 2)
	get := func(ctx context.Context) {
		jc, err := e.cache(ctx, specB, "b")
		results <- cacheResult{jc, err}
	}
	go get(ctx)
	within(t, "the build of b to start", started)
	go get(ctx)
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan cacheResult, 1)
	go func() {
		jc, err := e.cache(cctx, specB, "b")
		cancelled <- cacheResult{jc, err}
	}()

	others := make(chan error, 1)
	go func() {
		jc, err := e.cache(ctx, r.spec, "a")
		if err == nil {
			e.release(jc)
		}
		e.runningIDs()
		e.cancelAttempts([]string{"none"})
		others <- err
	}()
	if err := within(t, "a built job's cache while b builds", others); err != nil {
		t.Fatal(err)
	}
	cancel()
	if res := within(t, "a cancelled wait for b's build", cancelled); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want context.Canceled", res.err)
	}

	unblock()
	first, second := within(t, "b's first task", results), within(t, "b's second task", results)
	if first.err != nil || second.err != nil || first.jc != second.jc {
		t.Fatalf("b's tasks got %p (%v) and %p (%v), want one build", first.jc, first.err, second.jc, second.err)
	}
	if n := compiles.Load(); n != 1 {
		t.Errorf("b compiled %d times, want once", n)
	}
	e.release(first.jc)
	e.release(second.jc)
}

// TestBuildEndsAfterClose: a build that ends once the executor closed its
// caches closes what it built, and the task is refused retryably.
func TestBuildEndsAfterClose(t *testing.T) {
	r := newSessionRig(t, time.Second)
	e, ctx := r.e, context.Background()
	started, unblock, _ := blockedCompile(t, e)
	results := make(chan cacheResult, 1)
	go func() {
		jc, err := e.cache(ctx, r.spec, "c")
		results <- cacheResult{jc, err}
	}()
	within(t, "the build to start", started)
	e.closeCaches()
	unblock()
	res := within(t, "the build's end", results)
	if !errors.Is(res.err, rpc.ErrUnavailable) {
		t.Fatalf("cache after close: %v, want ErrUnavailable", res.err)
	}
	e.mu.Lock()
	n := len(e.jobs)
	e.mu.Unlock()
	if n != 0 {
		t.Errorf("%d jobs cached after close", n)
	}
}
