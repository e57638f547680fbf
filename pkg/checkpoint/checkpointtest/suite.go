package checkpointtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Opener returns a fresh, empty store for one subtest, a Fence its writes
// are accepted with, and depose, which makes that fence invalid (for etcd: the
// fence's session ends and another candidate becomes leader). Single-writer
// stores return a nil depose, and the fencing subtest is skipped. The opener
// registers its own cleanup with t.Cleanup; the suite does not Close the
// store.
type Opener func(t *testing.T) (store checkpoint.Store, fence checkpoint.Fence, depose func())

// Run runs the contract against stores from open.
func Run(t *testing.T, open Opener) {
	t.Run("Catalog", func(t *testing.T) { testCatalog(t, open) })
	t.Run("DeleteJobRemovesLogs", func(t *testing.T) { testDeleteJob(t, open) })
	t.Run("SimilarJobNamesAreSeparate", func(t *testing.T) { testSimilarNames(t, open) })
	t.Run("PlansLatestWins", func(t *testing.T) { testPlans(t, open) })
	t.Run("TaskEndsPerBatch", func(t *testing.T) { testTaskEnds(t, open) })
	t.Run("CommitsLatest", func(t *testing.T) { testCommits(t, open) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, open) })
	t.Run("Purge", func(t *testing.T) { testPurge(t, open) })
	t.Run("BinaryPositions", func(t *testing.T) { testPositions(t, open) })
	t.Run("InvalidArguments", func(t *testing.T) { testInvalid(t, open) })
	t.Run("Fenced", func(t *testing.T) { testFenced(t, open) })
	t.Run("ConcurrentJobs", func(t *testing.T) { testConcurrent(t, open) })
}

// cmpOpts compares records as the store keeps them: times by instant (JSON
// drops the monotonic clock and may change the location), nil and empty
// containers alike (positions are checked byte-exact in BinaryPositions).
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func job(name string) checkpoint.JobRecord {
	return checkpoint.JobRecord{
		Name:           name,
		Spec:           []byte(`{"name":"` + name + `"}`),
		SourceIdentity: "kafka:cluster-1:orders",
		State:          "RUNNING",
		Created:        t0,
		Updated:        t0.Add(time.Minute),
	}
}

func plan(b stream.BatchID) checkpoint.BatchPlan {
	return checkpoint.BatchPlan{
		Batch: b,
		Ranges: []stream.Range{
			{Partition: "orders/0", From: pos(int(b) * 10), Until: pos(int(b)*10 + 10)},
			{Partition: "orders/1", Split: 1, From: pos(int(b) * 20)},
		},
		Start:   map[stream.PartitionID]stream.Position{"orders/0": pos(int(b) * 10), "orders/1": pos(int(b) * 20)},
		Planned: t0.Add(time.Duration(b) * time.Second),
	}
}

func commit(b stream.BatchID) checkpoint.Commit {
	return checkpoint.Commit{
		Batch:     b,
		Ends:      map[stream.PartitionID]stream.Position{"orders/0": pos(int(b)*10 + 10)},
		Committed: t0.Add(time.Duration(b)*time.Second + 500*time.Millisecond),
		Progress:  []byte(fmt.Sprintf(`{"batch":%d}`, b)),
	}
}

func pos(n int) stream.Position { return stream.Position(fmt.Sprint(n)) }

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("%s: got error %v, want one matching checkpoint.ErrNotFound", what, err)
	}
}

func diff(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := cmp.Diff(want, got, cmpOpts...); d != "" {
		t.Fatalf("%s mismatch (-want +got):\n%s", what, d)
	}
}

// fill writes catalog, plans, task ends and commits of batches [0, n).
func fill(t *testing.T, ctx context.Context, s checkpoint.Store, f checkpoint.Fence, name string, n int) {
	t.Helper()
	must(t, "put job", s.PutJob(ctx, f, job(name)))
	for b := range stream.BatchID(n) {
		must(t, "put plan", s.PutPlan(ctx, f, name, plan(b)))
		must(t, "put task end", s.PutTaskEnd(ctx, f, name, b, "orders/1#1", pos(int(b)*20+5)))
		must(t, "put commit", s.PutCommit(ctx, f, name, commit(b)))
	}
}

func testCatalog(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)

	jobs, err := s.ListJobs(ctx)
	must(t, "list empty catalog", err)
	if len(jobs) != 0 {
		t.Fatalf("new store lists %d jobs, want none", len(jobs))
	}
	names := []string{"orders", "team/clicks#2", "a b%c", "jobs", "LOCK", ".hidden", "ünïcode"}
	for _, n := range names {
		must(t, "put job "+n, s.PutJob(ctx, f, job(n)))
	}
	for _, n := range names {
		got, err := s.GetJob(ctx, n)
		must(t, "get job "+n, err)
		diff(t, "job "+n, job(n), got)
	}

	updated := job("orders")
	updated.State = "FAILED"
	updated.LastError = "sink unreachable"
	updated.Updated = t0.Add(time.Hour)
	must(t, "update job", s.PutJob(ctx, f, updated))
	got, err := s.GetJob(ctx, "orders")
	must(t, "get updated job", err)
	diff(t, "updated job", updated, got)

	must(t, "delete job", s.DeleteJob(ctx, f, "team/clicks#2"))
	_, err = s.GetJob(ctx, "team/clicks#2")
	wantNotFound(t, "get deleted job", err)

	jobs, err = s.ListJobs(ctx)
	must(t, "list jobs", err)
	want := []checkpoint.JobRecord{job(".hidden"), job("LOCK"), job("a b%c"), job("jobs"), updated, job("ünïcode")}
	diff(t, "listed jobs (sorted by name)", want, jobs)

	must(t, "delete unknown job", s.DeleteJob(ctx, f, "never-existed"))
}

func testDeleteJob(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	fill(t, ctx, s, f, "doomed", 3)
	fill(t, ctx, s, f, "survivor", 2)

	must(t, "delete job", s.DeleteJob(ctx, f, "doomed"))

	_, err := s.GetJob(ctx, "doomed")
	wantNotFound(t, "get deleted job", err)
	_, err = s.LatestPlan(ctx, "doomed")
	wantNotFound(t, "latest plan of deleted job", err)
	_, err = s.LatestCommit(ctx, "doomed")
	wantNotFound(t, "latest commit of deleted job", err)
	for b := range stream.BatchID(3) {
		ends, err := s.TaskEnds(ctx, "doomed", b)
		must(t, "task ends of deleted job", err)
		if len(ends) != 0 {
			t.Fatalf("deleted job still has task ends for batch %d: %v", b, ends)
		}
	}

	// A new job of the same name starts from nothing.
	must(t, "recreate job", s.PutJob(ctx, f, job("doomed")))
	_, err = s.LatestCommit(ctx, "doomed")
	wantNotFound(t, "latest commit of recreated job", err)

	c, err := s.LatestCommit(ctx, "survivor")
	must(t, "latest commit of other job", err)
	diff(t, "other job's commit", commit(1), c)
	ends, err := s.TaskEnds(ctx, "survivor", 1)
	must(t, "task ends of other job", err)
	diff(t, "other job's task ends", map[string]stream.Position{"orders/1#1": pos(25)}, ends)
}

// testSimilarNames pins a key-layout bug: with raw names, the log prefix of
// job "a" ("plans/a/") also covers job "a/b" ("plans/a/b/..."), so job "a"
// would see, and DeleteJob("a") would delete, job "a/b"'s records.
func testSimilarNames(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	fill(t, ctx, s, f, "a/b", 5)
	must(t, "put job a", s.PutJob(ctx, f, job("a")))

	_, err := s.LatestPlan(ctx, "a")
	wantNotFound(t, `latest plan of "a" when only "a/b" has plans`, err)
	_, err = s.LatestCommit(ctx, "a")
	wantNotFound(t, `latest commit of "a" when only "a/b" has commits`, err)

	must(t, "put plan of a", s.PutPlan(ctx, f, "a", plan(0)))
	must(t, "purge a", s.Purge(ctx, f, "a", 100))
	must(t, "delete a", s.DeleteJob(ctx, f, "a"))

	p, err := s.LatestPlan(ctx, "a/b")
	must(t, "latest plan of a/b", err)
	diff(t, "plan of a/b", plan(4), p)
	c, err := s.LatestCommit(ctx, "a/b")
	must(t, "latest commit of a/b", err)
	diff(t, "commit of a/b", commit(4), c)
	ends, err := s.TaskEnds(ctx, "a/b", 0)
	must(t, "task ends of a/b", err)
	if len(ends) != 1 {
		t.Fatalf("task ends of a/b batch 0 = %v, want one", ends)
	}
}

func testPlans(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	// Out of order, and across a digit boundary: 10 sorts after 9 only if
	// batches are compared as numbers.
	for _, b := range []stream.BatchID{2, 9, 0, 10, 1} {
		must(t, fmt.Sprintf("put plan %d", b), s.PutPlan(ctx, f, "orders", plan(b)))
	}
	p, err := s.LatestPlan(ctx, "orders")
	must(t, "latest plan", err)
	diff(t, "latest plan", plan(10), p)

	replanned := plan(10)
	replanned.Exhausted = true
	replanned.Ranges = replanned.Ranges[:1]
	must(t, "replace plan 10", s.PutPlan(ctx, f, "orders", replanned))
	p, err = s.LatestPlan(ctx, "orders")
	must(t, "latest plan after replace", err)
	diff(t, "replaced plan", replanned, p)

	big := plan(1 << 40)
	must(t, "put plan 2^40", s.PutPlan(ctx, f, "orders", big))
	p, err = s.LatestPlan(ctx, "orders")
	must(t, "latest plan", err)
	diff(t, "latest plan", big, p)
}

func testTaskEnds(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	want3 := map[string]stream.Position{
		"shardId-000000000001": stream.Position("49590338271490256608559692538361571095921575989136588898"),
		"orders/3":             pos(42),
		"orders/3#2":           pos(43),
		"odd key %2F/../x":     pos(44),
	}
	for k, v := range want3 {
		must(t, "put task end "+k, s.PutTaskEnd(ctx, f, "stream", 3, k, v))
	}
	must(t, "put task end of batch 4", s.PutTaskEnd(ctx, f, "stream", 4, "orders/3", pos(99)))
	must(t, "put task end of batch 30", s.PutTaskEnd(ctx, f, "stream", 30, "orders/3", pos(999)))

	got, err := s.TaskEnds(ctx, "stream", 3)
	must(t, "task ends of batch 3", err)
	diff(t, "task ends of batch 3", want3, got)

	// A replayed task reports again: the newer end replaces the older.
	must(t, "replace task end", s.PutTaskEnd(ctx, f, "stream", 4, "orders/3", pos(100)))
	got, err = s.TaskEnds(ctx, "stream", 4)
	must(t, "task ends of batch 4", err)
	diff(t, "task ends of batch 4", map[string]stream.Position{"orders/3": pos(100)}, got)

	got, err = s.TaskEnds(ctx, "stream", 5)
	if err != nil {
		t.Fatalf("task ends of a batch without ends: got error %v, want an empty map", err)
	}
	if len(got) != 0 {
		t.Fatalf("task ends of a batch without ends = %v, want empty", got)
	}
}

func testCommits(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	_, err := s.LatestCommit(ctx, "orders")
	wantNotFound(t, "latest commit before any", err)
	for _, b := range []stream.BatchID{0, 1, 11, 2} {
		must(t, fmt.Sprintf("put commit %d", b), s.PutCommit(ctx, f, "orders", commit(b)))
	}
	c, err := s.LatestCommit(ctx, "orders")
	must(t, "latest commit", err)
	diff(t, "latest commit", commit(11), c)
}

func testNotFound(t *testing.T, open Opener) {
	s, _, _ := open(t)
	ctx := ctxFor(t)
	_, err := s.GetJob(ctx, "nope")
	wantNotFound(t, "get unknown job", err)
	_, err = s.LatestPlan(ctx, "nope")
	wantNotFound(t, "latest plan of unknown job", err)
	_, err = s.LatestCommit(ctx, "nope")
	wantNotFound(t, "latest commit of unknown job", err)
}

func testPurge(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	fill(t, ctx, s, f, "orders", 12)
	fill(t, ctx, s, f, "other", 3)

	must(t, "purge below 10", s.Purge(ctx, f, "orders", 10))
	for b := range stream.BatchID(12) {
		ends, err := s.TaskEnds(ctx, "orders", b)
		must(t, "task ends", err)
		if kept := len(ends) > 0; kept != (b >= 10) {
			t.Fatalf("after purge below 10, batch %d task ends = %v", b, ends)
		}
	}
	p, err := s.LatestPlan(ctx, "orders")
	must(t, "latest plan after purge", err)
	diff(t, "latest plan after purge", plan(11), p)

	must(t, "purge everything", s.Purge(ctx, f, "orders", 12))
	_, err = s.LatestPlan(ctx, "orders")
	wantNotFound(t, "latest plan after purging all", err)
	_, err = s.LatestCommit(ctx, "orders")
	wantNotFound(t, "latest commit after purging all", err)

	got, err := s.GetJob(ctx, "orders")
	must(t, "purge keeps the catalog entry", err)
	diff(t, "job after purge", job("orders"), got)
	c, err := s.LatestCommit(ctx, "other")
	must(t, "purge leaves other jobs", err)
	diff(t, "other job's commit", commit(2), c)
	ends, err := s.TaskEnds(ctx, "other", 0)
	must(t, "task ends of other job", err)
	if len(ends) != 1 {
		t.Fatalf("purge of orders removed other's task ends: %v", ends)
	}

	must(t, "purge of a job without logs", s.Purge(ctx, f, "empty", 5))
}

func testPositions(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	all := make(stream.Position, 256)
	for i := range all {
		all[i] = byte(i)
	}
	kinesisSeq := stream.Position("\x00\x01shard\xff\xfe")
	empty := stream.Position{}

	p := checkpoint.BatchPlan{
		Batch: 7,
		Ranges: []stream.Range{
			{Partition: "bin", From: all, Until: kinesisSeq},
			{Partition: "open-ended", From: kinesisSeq}, // Until nil: end reported by the task
		},
		Start:   map[stream.PartitionID]stream.Position{"bin": all, "unset": nil, "empty": empty},
		Planned: t0,
	}
	must(t, "put plan", s.PutPlan(ctx, f, "bin", p))
	gotPlan, err := s.LatestPlan(ctx, "bin")
	must(t, "latest plan", err)
	samePos(t, "plan range 0 from", all, gotPlan.Ranges[0].From)
	samePos(t, "plan range 0 until", kinesisSeq, gotPlan.Ranges[0].Until)
	samePos(t, "plan range 1 until", nil, gotPlan.Ranges[1].Until)
	samePos(t, "plan start bin", all, gotPlan.Start["bin"])
	samePos(t, "plan start unset", nil, gotPlan.Start["unset"])
	samePos(t, "plan start empty", empty, gotPlan.Start["empty"])

	must(t, "put task end", s.PutTaskEnd(ctx, f, "bin", 7, "bin", all))
	ends, err := s.TaskEnds(ctx, "bin", 7)
	must(t, "task ends", err)
	samePos(t, "task end", all, ends["bin"])

	c := checkpoint.Commit{Batch: 7, Ends: map[stream.PartitionID]stream.Position{"bin": all, "seq": kinesisSeq}, Committed: t0}
	must(t, "put commit", s.PutCommit(ctx, f, "bin", c))
	gotCommit, err := s.LatestCommit(ctx, "bin")
	must(t, "latest commit", err)
	samePos(t, "commit end bin", all, gotCommit.Ends["bin"])
	samePos(t, "commit end seq", kinesisSeq, gotCommit.Ends["seq"])
}

// samePos compares byte-exact, nil and empty included: nil means "unset" to
// the engine, empty is a value.
func samePos(t *testing.T, what string, want, got stream.Position) {
	t.Helper()
	if !bytes.Equal(want, got) || (want == nil) != (got == nil) {
		t.Fatalf("%s: got %#v, want %#v", what, got, want)
	}
}

func testInvalid(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"put job without name", s.PutJob(ctx, f, checkpoint.JobRecord{})},
		{"put plan without job", s.PutPlan(ctx, f, "", plan(0))},
		{"put plan of negative batch", s.PutPlan(ctx, f, "orders", plan(-1))},
		{"put task end of negative batch", s.PutTaskEnd(ctx, f, "orders", -1, "k", pos(1))},
		{"put task end without key", s.PutTaskEnd(ctx, f, "orders", 0, "", pos(1))},
		{"put commit of negative batch", s.PutCommit(ctx, f, "orders", commit(-1))},
		{"delete job without name", s.DeleteJob(ctx, f, "")},
	} {
		if tc.err == nil {
			t.Errorf("%s: accepted, want an error", tc.name)
		}
	}
	if _, err := s.GetJob(ctx, ""); err == nil || errors.Is(err, checkpoint.ErrNotFound) {
		t.Errorf("get job without name: got %v, want an argument error (not ErrNotFound)", err)
	}
	_, err := s.LatestPlan(ctx, "orders")
	wantNotFound(t, "latest plan after refused writes", err)
}

func testFenced(t *testing.T, open Opener) {
	s, f, depose := open(t)
	if depose == nil {
		t.Skip("single-writer store: no fence to depose")
	}
	ctx := ctxFor(t)
	fill(t, ctx, s, f, "orders", 2)
	before := snapshot(t, ctx, s, "orders", 3)

	depose()

	changed := job("orders")
	changed.State = "STOPPED"
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"PutJob", s.PutJob(ctx, f, changed)},
		{"PutJob of a new job", s.PutJob(ctx, f, job("new"))},
		{"PutPlan", s.PutPlan(ctx, f, "orders", plan(2))},
		{"PutTaskEnd", s.PutTaskEnd(ctx, f, "orders", 1, "orders/0", pos(1000))},
		{"PutCommit", s.PutCommit(ctx, f, "orders", commit(2))},
		{"Purge", s.Purge(ctx, f, "orders", 2)},
		{"DeleteJob", s.DeleteJob(ctx, f, "orders")},
	} {
		if !errors.Is(tc.err, checkpoint.ErrFenced) {
			t.Errorf("%s with a deposed fence: got %v, want an error matching checkpoint.ErrFenced", tc.name, tc.err)
		}
	}
	diff(t, "store after fenced writes", before, snapshot(t, ctx, s, "orders", 3))
	_, err := s.GetJob(ctx, "new")
	wantNotFound(t, "job put with a deposed fence", err)
}

// state is what a store shows of one job.
type state struct {
	Jobs   []checkpoint.JobRecord
	Plan   checkpoint.BatchPlan
	Commit checkpoint.Commit
	Ends   []map[string]stream.Position
}

func snapshot(t *testing.T, ctx context.Context, s checkpoint.Store, name string, batches int) state {
	t.Helper()
	var st state
	var err error
	st.Jobs, err = s.ListJobs(ctx)
	must(t, "list jobs", err)
	st.Plan, err = s.LatestPlan(ctx, name)
	must(t, "latest plan", err)
	st.Commit, err = s.LatestCommit(ctx, name)
	must(t, "latest commit", err)
	for b := range stream.BatchID(batches) {
		ends, err := s.TaskEnds(ctx, name, b)
		must(t, "task ends", err)
		st.Ends = append(st.Ends, ends)
	}
	return st
}

// testConcurrent runs one writer per job at once, as the driver's batch
// loops do; run it with -race.
func testConcurrent(t *testing.T, open Opener) {
	s, f, _ := open(t)
	ctx := ctxFor(t)
	const jobs, batches = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, jobs)
	for j := range jobs {
		wg.Go(func() {
			name := fmt.Sprintf("job-%d", j)
			err := func() error {
				if err := s.PutJob(ctx, f, job(name)); err != nil {
					return err
				}
				for b := range stream.BatchID(batches) {
					if err := s.PutPlan(ctx, f, name, plan(b)); err != nil {
						return err
					}
					if err := s.PutTaskEnd(ctx, f, name, b, "orders/1#1", pos(int(b))); err != nil {
						return err
					}
					if _, err := s.TaskEnds(ctx, name, b); err != nil {
						return err
					}
					if err := s.PutCommit(ctx, f, name, commit(b)); err != nil {
						return err
					}
					if _, err := s.ListJobs(ctx); err != nil {
						return err
					}
					if b > 2 {
						if err := s.Purge(ctx, f, name, b-2); err != nil {
							return err
						}
					}
				}
				return nil
			}()
			if err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	list, err := s.ListJobs(ctx)
	must(t, "list jobs", err)
	if len(list) != jobs {
		t.Fatalf("listed %d jobs, want %d", len(list), jobs)
	}
	for j := range jobs {
		name := fmt.Sprintf("job-%d", j)
		c, err := s.LatestCommit(ctx, name)
		must(t, "latest commit of "+name, err)
		diff(t, "latest commit of "+name, commit(batches-1), c)
	}
}
