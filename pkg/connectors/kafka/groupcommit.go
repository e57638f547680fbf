package kafka

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

var _ connectors.BatchCommitObserver = (*Source)(nil)

// groupCommitTimeout bounds one commit to the group, so that a coordinator
// that never answers does not hold back the commits of later batches.
const groupCommitTimeout = 30 * time.Second

// closeFlushTimeout bounds how long Close waits for the last commit.
const closeFlushTimeout = 5 * time.Second

// groupCommitter commits the ends of committed batches to the consumer group
// of commitOffsetsToGroup, for lag tools. One goroutine does the commits, so
// the batch loop never waits on the brokers; only the latest ends are kept,
// so when commits are slower than batches the batches in between are
// skipped, which a lag tool cannot tell apart.
//
// The group is never joined: an OffsetCommit with generation -1 and no
// member id is the "simple consumer" commit Kafka accepts for a group
// without members. Where the job reads comes from the checkpoint alone;
// nothing here is read back, so a commit that fails, or one an old leader
// makes late, only makes the lag shown wrong until the next batch.
//
// Lifecycle: newGroupCommitter starts the goroutine; close stops it after
// one last bounded commit and closes the source's client.
type groupCommitter struct {
	group  string
	adm    *kadm.Client
	log    *slog.Logger
	wake   chan struct{} // capacity 1: pending holds ends to commit
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine returned

	mu           sync.Mutex // guards the fields below
	pending      kadm.Offsets
	pendingBatch stream.BatchID
	report       func(error)
}

func newGroupCommitter(group string, adm *kadm.Client, log *slog.Logger) *groupCommitter {
	ctx, cancel := context.WithCancel(context.Background())
	g := &groupCommitter{group: group, adm: adm, log: log, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go g.run(ctx)
	return g
}

// offer replaces the pending ends with batch's; it never blocks.
func (g *groupCommitter) offer(batch stream.BatchID, ends map[stream.PartitionID]stream.Position) {
	offs := make(kadm.Offsets, 1)
	for id, pos := range ends {
		// Only real partitions: an entry that is not topic/partition with
		// an offset is not the group's business.
		tp, err := parsePartitionID(id)
		if err != nil {
			continue
		}
		off, err := parsePosition(pos)
		if err != nil {
			continue
		}
		// The end is the next offset to read, which is what a consumer
		// group commits. No leader epoch: the source does not track them.
		offs.Add(kadm.Offset{Topic: tp.topic, Partition: tp.partition, At: off, LeaderEpoch: -1})
	}
	if len(offs) == 0 {
		return
	}
	g.mu.Lock()
	g.pending, g.pendingBatch = offs, batch
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default: // a wake-up is already pending; it will take these ends
	}
}

func (g *groupCommitter) setReport(fn func(error)) {
	g.mu.Lock()
	g.report = fn
	g.mu.Unlock()
}

// run commits pending ends until stop ends, then commits what is still
// pending once more, so that a job that finished or was stopped shows its
// true lag; Close bounds that last commit (closeFlushTimeout).
func (g *groupCommitter) run(stop context.Context) {
	defer close(g.done)
	var lastErr string
	for {
		select {
		case <-stop.Done():
			g.commitPending(&lastErr)
			return
		case <-g.wake:
			g.commitPending(&lastErr)
		}
	}
}

// commitPending commits the pending ends, if any. It logs an error once,
// when it first appears or differs from the last one (*lastErr), and a
// recovery once; every failure is reported. The commit is not bound to the
// stop context, so that Close can let it finish: closing the client ends
// it.
func (g *groupCommitter) commitPending(lastErr *string) {
	g.mu.Lock()
	offs, batch := g.pending, g.pendingBatch
	g.pending = nil
	g.mu.Unlock()
	if offs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
	err := g.adm.CommitAllOffsets(ctx, g.group, offs)
	cancel()
	switch {
	case errors.Is(err, kgo.ErrClientClosed):
		return // the source is closing: this says nothing about the group
	case err == nil:
		if *lastErr != "" {
			g.log.Info("committing offsets to the consumer group works again", "group", g.group, "batch", batch)
			*lastErr = ""
		}
		return
	}
	if msg := err.Error(); msg != *lastErr {
		g.log.Warn("committing offsets to the consumer group failed; the job goes on and the next batch tries again "+
			"(sluice_group_commit_errors_total counts failures)", "group", g.group, "batch", batch, "err", err)
		*lastErr = msg
	}
	g.mu.Lock()
	report := g.report
	g.mu.Unlock()
	if report != nil {
		report(err)
	}
}

// close stops the goroutine, letting it commit what is pending for at most
// closeFlushTimeout, then closes the client (closeClient), which ends a
// commit still in flight, and waits for the goroutine to return.
func (g *groupCommitter) close(closeClient func()) {
	g.cancel()
	t := time.NewTimer(closeFlushTimeout)
	defer t.Stop()
	select {
	case <-g.done:
	case <-t.C:
	}
	closeClient()
	<-g.done
}

// ReportErrorsTo sets the function that hears of each failed commit to
// commitOffsetsToGroup (connectors.BatchCommitObserver). It is called from
// the source's committing goroutine and must not block.
func (s *Source) ReportErrorsTo(fn func(error)) {
	if s.group != nil {
		s.group.setReport(fn)
	}
}

// Committed hands batch's ends to the goroutine that commits them to
// commitOffsetsToGroup and returns at once (connectors.BatchCommitObserver);
// without that option it does nothing. ctx is not used: the commit outlives
// the call and ends with Close.
func (s *Source) Committed(_ context.Context, batch stream.BatchID, ends map[stream.PartitionID]stream.Position) {
	if s.group != nil {
		s.group.offer(batch, ends)
	}
}
