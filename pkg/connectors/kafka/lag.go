package kafka

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Lag in milliseconds.
//
// Kafka has no millisBehindLatest of its own (Kinesis's GetRecords answers
// one), so the source puts it together from three things, none of them per
// record:
//
//   - Plan lists each partition's newest record timestamp (ListOffsets with
//     timestamp -3, KIP-734, Kafka 3.0+) beside the end offsets, in one
//     request running alongside them, and remembers it with the partition's
//     latest offset and planned until;
//   - each reader reports the offset and timestamp of the last record it
//     returned (lastRecordOffset, lastRecordTimestampMs);
//   - after the batch the driver hands those to SummarizeTaskMetrics, which
//     subtracts, and remembers each partition's last read record so that a
//     partition with nothing to read in a later batch still has a figure.
//
// Everything is relative to the plan's snapshot of the partitions, as the
// offsets figures are: records produced while the batch ran do not count
// until the next plan.

// Figure names. The reader's (connectors.ReaderMetrics) and the ones
// SummarizeTaskMetrics adds show per partition in the batch progress; the
// summary's are batch figures and carry the Kinesis source's names, so that
// dashboards and alerts work for both.
const (
	// MetricLastRecordOffset and MetricLastRecordTimestampMs are a reader's:
	// the offset and the timestamp (ms since the epoch) of the last record
	// its range returned.
	MetricLastRecordOffset      = "lastRecordOffset"
	MetricLastRecordTimestampMs = "lastRecordTimestampMs"
	// MetricMsBehindLatest and MetricOffsetsBehindLatest are one
	// partition's lag after the batch, added by SummarizeTaskMetrics.
	MetricMsBehindLatest      = "msBehindLatest"
	MetricOffsetsBehindLatest = "offsetsBehindLatest"
	// The batch summary of MetricMsBehindLatest over the partitions that
	// have one.
	MetricAvgMsBehindLatest = "avgMsBehindLatest"
	MetricMaxMsBehindLatest = "maxMsBehindLatest"
	MetricMinMsBehindLatest = "minMsBehindLatest"
)

// newestWait bounds how long a plan waits for the newest timestamps once
// its offsets are listed. They are asked for at the same time and usually
// arrive first; a monitoring figure must not hold up the batch when they do
// not (the batch then has no ms figures).
const newestWait = 2 * time.Second

// listOffsetsMaxTimestamp is ListOffsets' timestamp for "the record with the
// largest timestamp" (KIP-734), answered from ListOffsets v7.
const (
	listOffsetsMaxTimestamp        int64 = -3
	listOffsetsMaxTimestampVersion int16 = 7
)

// newestAnswer is what a max-timestamp listing learnt.
type newestAnswer struct {
	// ts holds each answered partition's largest record timestamp (ms);
	// a partition without records, or that failed, is absent.
	ts map[topicPartition]int64
	// unsupported: a broker cannot answer (ListOffsets below v7). Old
	// brokers do not all refuse timestamp -3: before Kafka 3.0 it reads as
	// "the first record at or after -3 ms", the earliest one, a plausible
	// wrong answer. So the version used decides, not the error code alone.
	unsupported bool
	err         error // the first failure, for the debug log
}

// listNewest starts listing the partitions' largest record timestamps and
// returns where the answer will arrive. One ListOffsets request, sharded by
// franz-go to the partitions' leaders; the partitions are the plan's, so no
// metadata round trip is needed beyond franz-go's cached leaders.
//
// It lists with read_uncommitted even for isolation.level read_committed:
// under read_committed a broker hides a largest timestamp that sits in an
// open transaction, which for a busy transactional producer is nearly
// always, and the figure would come and go. The price: a job that is
// behind may look behind by up to the age of the open transaction more.
//
// The goroutine counts in s.calls (Close waits for it) and touches nothing
// of the Source but the client: it may outlive the plan.
func (s *Source) listNewest(ctx context.Context, parts []*partPlan) <-chan newestAnswer {
	req := kmsg.NewPtrListOffsetsRequest()
	for i, pp := range parts {
		if i == 0 || pp.tp.topic != parts[i-1].tp.topic {
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = pp.tp.topic
			req.Topics = append(req.Topics, rt)
		}
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = pp.tp.partition
		rp.Timestamp = listOffsetsMaxTimestamp
		rt := &req.Topics[len(req.Topics)-1]
		rt.Partitions = append(rt.Partitions, rp)
	}
	ch := make(chan newestAnswer, 1)
	s.calls.Add(1)
	go func() {
		defer s.calls.Done()
		ch <- newestFrom(s.cl.RequestSharded(ctx, req))
	}()
	return ch
}

// newestFrom reads the shards of a max-timestamp listing.
func newestFrom(shards []kgo.ResponseShard) newestAnswer {
	out := newestAnswer{ts: map[topicPartition]int64{}}
	fail := func(err error) {
		if out.err == nil {
			out.err = err
		}
	}
	for _, sh := range shards {
		if sh.Err != nil {
			fail(sh.Err)
			continue
		}
		resp, ok := sh.Resp.(*kmsg.ListOffsetsResponse)
		if !ok {
			continue
		}
		if resp.GetVersion() < listOffsetsMaxTimestampVersion {
			out.unsupported = true
			continue
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				err := kerr.ErrorForCode(p.ErrorCode)
				switch {
				case errors.Is(err, kerr.UnsupportedVersion):
					out.unsupported = true
				case err != nil:
					fail(err)
				case p.Offset >= 0 && p.Timestamp >= 0: // -1, -1: no records
					out.ts[topicPartition{topic: t.Topic, partition: p.Partition}] = p.Timestamp
				}
			}
		}
	}
	return out
}

// awaitNewest waits for listNewest's answer, at most newestWait or until
// ctx ends, and returns the timestamps, or nil when this plan has none. A
// broker that cannot answer turns the listing off for the Source's life
// (a new driver, or the job's next start, asks again). Never an error: the
// figure is for monitoring.
//
// Callers hold s.mu.
func (s *Source) awaitNewest(ctx context.Context, ch <-chan newestAnswer) map[topicPartition]int64 {
	if ch == nil {
		return nil
	}
	t := time.NewTimer(newestWait)
	defer t.Stop()
	var a newestAnswer
	select {
	case a = <-ch:
	case <-t.C:
		s.opts.logger.Debug("kafka source: newest record timestamps did not arrive in time; no ms lag figures this batch",
			"wait", newestWait)
		return nil
	case <-ctx.Done():
		return nil
	}
	switch {
	case a.unsupported:
		s.noMaxTimestamp = true
		s.opts.logger.Info("kafka source: the brokers cannot list max timestamps (ListOffsets v7, KIP-734, Kafka 3.0+); " +
			"avgMsBehindLatest, maxMsBehindLatest and minMsBehindLatest are off")
		return nil
	case a.err != nil:
		s.opts.logger.Debug("kafka source: listing newest record timestamps failed; no ms lag figures this batch", "err", a.err)
		return nil
	}
	return a.ts
}

// partLag is what a plan knew of one partition, for the lag figures.
type partLag struct {
	start, until int64 // the planned offsets [start, until); equal: no range
	// lastSplit is where the last split of the range starts (start when
	// the range is not split): only a reader of that split returns the
	// partition's last record.
	lastSplit int64
	latest    int64 // the high watermark (last stable offset) the plan saw
	newestTs  int64 // the largest record timestamp (ms); -1: unknown
}

// lagPlan is the last plan's view of the partitions.
type lagPlan struct {
	parts map[topicPartition]partLag
	// newestKnown: the plan has the newest timestamps. Without them
	// (listing off, failed or late) the batch gets no ms figures at all,
	// not even the caught-up partitions' zeros, which alone would make a
	// lagging job look caught up.
	newestKnown bool
}

// lastRecord is the last record a job read from a partition.
type lastRecord struct {
	offset, ts int64
	// through: no record exists in (offset, through), so this is the last
	// record below through. It is the planned until when the record came
	// from the range's last split, and offset+1 when that cannot be told
	// (a driver restart replayed the batch, or the driver handed over a
	// figure of an earlier split).
	through int64
}

// msBehind is the partition's lag after the batch: 0 when the plan read it
// to its latest offset, else the newest timestamp minus the timestamp of
// the last record below until, never negative. ok is false when that
// record, or the newest timestamp, is unknown.
func (pl partLag) msBehind(rec lastRecord, haveRec bool) (ms int64, ok bool) {
	switch {
	case pl.until >= pl.latest:
		return 0, true
	case pl.newestTs < 0 || !haveRec || rec.offset >= pl.until || rec.through < pl.until:
		// The record is not the last one below until: records were read
		// after it that did not report, or it is from before a topic was
		// recreated (its offset lies beyond until).
		return 0, false
	}
	return max(0, pl.newestTs-rec.ts), true
}

// lagState is what the Source keeps between Plan and SummarizeTaskMetrics.
// Its own mutex, not Source.mu, which Plan holds while it waits on the
// brokers; Plan takes this one inside Source.mu, briefly.
type lagState struct {
	mu   sync.Mutex
	plan *lagPlan // the last successful plan in this process; nil before one
	last map[topicPartition]lastRecord
}

// setPlan records a new plan and forgets the last records of partitions it
// no longer has.
func (st *lagState) setPlan(p *lagPlan) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.plan = p
	for tp := range st.last {
		if _, ok := p.parts[tp]; !ok {
			delete(st.last, tp)
		}
	}
}

var _ connectors.TaskMetricsSummarizer = (*Source)(nil)

// SummarizeTaskMetrics turns the readers' figures (lastRecordOffset,
// lastRecordTimestampMs) into the batch's avgMsBehindLatest,
// maxMsBehindLatest and minMsBehindLatest, named as the Kinesis source's.
//
// A partition's lag (msBehindLatest) is, over the partitions of the last
// plan: 0 when the plan read it up to the latest offset it saw, else the
// timestamp of the partition's newest record (its largest record timestamp,
// as listed at plan time) minus the timestamp of the last record the job
// read from it (committed with the batch), never negative. A partition with
// nothing to read this batch (maxOffsetsPerTrigger, a rotation) keeps the
// last record an earlier batch reported. Left out of the summary are the
// partitions whose last read record is unknown: not read since this Source
// started, or whose last range returned only transaction markers. There
// are no ms figures at all, and nil is returned, when the plan has no
// newest timestamps (brokers before Kafka 3.0, a failed or late listing),
// or when the figures come from a batch the last Plan call did not plan (a
// batch re-run from its recorded plan after a driver restart): those
// batches still update the remembered last records.
//
// perPartition's maps are the ones the driver shows as each partition's
// progress (connectors.ReaderMetrics): besides the reader's figures,
// SummarizeTaskMetrics adds msBehindLatest (when known) and
// offsetsBehindLatest (the plan's latest offset minus its until) to them,
// for the partitions that have a map. Partitions read by several splits
// show them on the split the driver passed.
//
// Safe for concurrent use with Plan; it does not block.
func (s *Source) SummarizeTaskMetrics(perPartition map[stream.PartitionID]map[string]float64) map[string]float64 {
	s.lag.mu.Lock()
	defer s.lag.mu.Unlock()
	if s.lag.last == nil {
		s.lag.last = map[topicPartition]lastRecord{}
	}
	return summarizeLag(s.lag.plan, s.lag.last, perPartition)
}

// summarizeLag is SummarizeTaskMetrics without the locking: it updates last
// from perPartition, adds the per-partition figures to perPartition's maps
// and returns the summary (nil when there is none).
func summarizeLag(p *lagPlan, last map[topicPartition]lastRecord, perPartition map[stream.PartitionID]map[string]float64) map[string]float64 {
	maps := make(map[topicPartition]map[string]float64, len(perPartition))
	matches := p != nil
	for id, m := range perPartition {
		tp, err := parsePartitionID(id)
		if err != nil {
			matches = false // not a partition this source plans
			continue
		}
		maps[tp] = m
		offF, okO := m[MetricLastRecordOffset]
		tsF, okT := m[MetricLastRecordTimestampMs]
		if !okO || !okT {
			continue
		}
		rec := lastRecord{offset: int64(offF), ts: int64(tsF)}
		rec.through = rec.offset + 1
		if p != nil {
			pl, ok := p.parts[tp]
			switch {
			case !ok || rec.offset < pl.start || rec.offset >= pl.until:
				// Read outside the last plan's ranges: this batch is not
				// the one that plan planned.
				matches = false
			case rec.offset >= pl.lastSplit:
				rec.through = pl.until
			}
		}
		// The latest read wins, even at a lower offset: the topic was
		// recreated, and the old record no longer says anything.
		last[tp] = rec
	}
	if !matches {
		return nil
	}

	var (
		n          int
		sum        float64
		minV, maxV int64
	)
	for tp, pl := range p.parts {
		m := maps[tp]
		if m != nil {
			m[MetricOffsetsBehindLatest] = float64(max(0, pl.latest-pl.until))
		}
		if !p.newestKnown {
			continue
		}
		rec, haveRec := last[tp]
		ms, ok := pl.msBehind(rec, haveRec)
		if !ok {
			continue
		}
		if m != nil {
			m[MetricMsBehindLatest] = float64(ms)
		}
		if n == 0 || ms < minV {
			minV = ms
		}
		maxV = max(maxV, ms)
		sum += float64(ms)
		n++
	}
	if n == 0 {
		return nil
	}
	return map[string]float64{
		MetricAvgMsBehindLatest: sum / float64(n),
		MetricMaxMsBehindLatest: float64(maxV),
		MetricMinMsBehindLatest: float64(minV),
	}
}
