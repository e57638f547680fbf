package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Metric names in Plan.Metrics. The lag in milliseconds comes after the
// batch, from SummarizeTaskMetrics (see lag.go).
const (
	MetricMinOffsetsBehindLatest = "minOffsetsBehindLatest"
	MetricMaxOffsetsBehindLatest = "maxOffsetsBehindLatest"
	MetricAvgOffsetsBehindLatest = "avgOffsetsBehindLatest"
	// MetricDataLoss counts partitions whose lost records this plan skipped
	// (failOnDataLoss false).
	MetricDataLoss = "dataLoss"
)

// Source is the driver half of the Kafka source: it discovers partitions and
// plans exact offset ranges. It is safe for concurrent use; Plan calls are
// serialised.
type Source struct {
	cfg  Config
	set  *settings
	opts options
	cl   *kgo.Client
	adm  *kadm.Client
	errs *brokerErrs

	// calls tracks goroutines running client calls that Plan stopped
	// waiting for (see await); Close waits for them.
	calls sync.WaitGroup
	// group commits batch ends to commitOffsetsToGroup; nil when off.
	group *groupCommitter

	mu sync.Mutex // serialises Plan; guards the fields below
	// snapshot holds the end offsets seen by the first AvailableNow plan:
	// an availableNow run reads exactly up to them. It lives in memory only,
	// so a driver that takes over mid-run snapshots again (reading a little
	// more, never less).
	snapshot map[topicPartition]int64
	// goneWarned remembers vanished partitions already reported, so that
	// with failOnDataLoss false a deleted topic warns once, not every batch.
	goneWarned map[topicPartition]bool
	started    time.Time // the current Plan's start, for brokerErrs.explain
	closed     bool
	// noMaxTimestamp: a broker could not list max timestamps (before
	// Kafka 3.0), so Plan no longer asks (see awaitNewest).
	noMaxTimestamp bool

	// lag is what SummarizeTaskMetrics needs of the last plan (lag.go).
	// Lock order: mu, then lag.mu.
	lag lagState
}

var _ connectors.Source = (*Source)(nil)

// NewSource validates cfg and returns a source. It does not contact the
// brokers: an unreachable cluster shows up as an error from Plan, which the
// driver retries.
func NewSource(cfg Config, opts ...Option) (*Source, error) {
	set, o, copts, err := prepare(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("new kafka source: %w", err)
	}
	errs := &brokerErrs{}
	cl, err := kgo.NewClient(append(copts, kgo.WithHooks(errs))...)
	if err != nil {
		return nil, fmt.Errorf("new kafka source: %w", err)
	}
	s := &Source{
		cfg:        cfg,
		set:        set,
		opts:       o,
		cl:         cl,
		errs:       errs,
		adm:        kadm.NewClient(cl),
		goneWarned: map[topicPartition]bool{},
	}
	if set.group != "" {
		s.group = newGroupCommitter(set.group, s.adm, o.logger)
	}
	return s, nil
}

// Identity is the sorted bootstrap servers and the subscription, e.g.
// "kafka:bootstrapServers=a:9092,b:9092;subscribe=orders,payments".
func (s *Source) Identity() string { return s.set.identity() }

// Close releases the client and waits for calls an earlier Plan abandoned
// when its context ended (closing the client ends them). With
// commitOffsetsToGroup it first
//
//  1. stops the committing goroutine, which commits the last ends handed
//     over and not yet committed,
//  2. waits for that at most 5s, then closes the client, which ends a
//     commit still in flight,
//  3. waits for the goroutine to return.
//
// Plan calls after Close fail; Committed calls do nothing.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		if s.group != nil {
			s.group.close(s.cl.Close)
		} else {
			s.cl.Close()
		}
		s.calls.Wait()
	}
	return nil
}

// await runs fn and returns its result, or ctx's error as soon as ctx ends.
// franz-go bounds connection setup by its own timeouts (request.timeout.ms)
// rather than by the request's context, so a broker that accepts
// connections but never answers would otherwise hold Plan past its
// deadline. fn must not touch the Source's mutable state: it may outlive
// the Plan that started it.
func await[T any](ctx context.Context, wg *sync.WaitGroup, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// Plan discovers the partitions and returns batch req.Batch's ranges.
//
// Each partition starts at its committed end; on the first batch of a job
// (req.Committed empty) at startingTimestamp or startingOffsets; a partition
// that appeared after the job started at earliest. Ranges end at the high
// watermark (the last stable offset with isolation.level read_committed),
// capped by availableNow's snapshot, maxRatePerPartition and
// maxOffsetsPerTrigger, and are split by maxRecordsPerPartition.
//
// Errors: unreachable brokers, a missing topic or a partition without a
// leader are plain errors worth retrying; bad positions and impossible
// startingOffsets are connectors.Permanent; lost records are a
// *connectors.DataLossError unless FailOnDataLoss is false. Plan blocks on
// the brokers no longer than ctx allows.
//
// Alongside the end offsets Plan lists each partition's newest record
// timestamp for SummarizeTaskMetrics; that listing never fails or delays a
// plan (see awaitNewest).
func (s *Source) Plan(ctx context.Context, req connectors.PlanRequest) (connectors.Plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return connectors.Plan{}, errors.New("source closed")
	}
	s.started = time.Now()
	return s.plan(ctx, req)
}

// partPlan is one partition's state while planning.
type partPlan struct {
	tp       topicPartition
	earliest int64 // log start offset
	latest   int64 // high watermark (or last stable offset)
	start    int64
	until    int64
}

func (s *Source) plan(ctx context.Context, req connectors.PlanRequest) (connectors.Plan, error) {
	committed := make(map[topicPartition]int64, len(req.Committed))
	for id, pos := range req.Committed {
		tp, err := parsePartitionID(id)
		if err != nil {
			return connectors.Plan{}, connectors.Permanent(fmt.Errorf("committed: %w", err))
		}
		off, err := parsePosition(pos)
		if err != nil {
			return connectors.Plan{}, connectors.Permanent(fmt.Errorf("committed %s: %w", id, err))
		}
		committed[tp] = off
	}
	firstBatch := len(committed) == 0

	present, missing, err := s.discover(ctx)
	if err != nil {
		return connectors.Plan{}, fmt.Errorf("discover partitions: %w", err)
	}
	// A missing topic is a typo or a topic not created yet, worth retrying,
	// unless the job read it before: then it was deleted, which is data loss.
	for _, m := range missing {
		if !committedIn(committed, m) {
			return connectors.Plan{}, fmt.Errorf("discover partitions: %w", m.err)
		}
	}

	parts := make([]*partPlan, 0, len(present))
	byTP := make(map[topicPartition]*partPlan, len(present))
	for _, tp := range present {
		pp := &partPlan{tp: tp}
		parts = append(parts, pp)
		byTP[tp] = pp
	}
	// The newest record timestamps, for the ms lag figures, are listed
	// beside the bounds so that the plan does not take longer.
	var newestCh <-chan newestAnswer
	if !s.noMaxTimestamp && len(parts) > 0 {
		nctx, cancel := context.WithCancel(ctx)
		defer cancel()
		newestCh = s.listNewest(nctx, parts)
	}
	if err := s.listBounds(ctx, parts); err != nil {
		return connectors.Plan{}, err
	}
	newest := s.awaitNewest(ctx, newestCh)

	lost := 0
	loss := func(tp topicPartition, requested, earliest, reason string) error {
		if s.cfg.FailOnDataLoss {
			return dataLoss(tp, requested, earliest, reason)
		}
		lost++
		s.opts.logger.Warn("kafka source: records lost, skipping ahead (failOnDataLoss is false)",
			"batch", int64(req.Batch), "partition", string(tp.id()), "requested", requested,
			"earliest", earliest, "reason", reason)
		return nil
	}

	// Committed partitions that vanished: their topic was deleted (or
	// recreated with fewer partitions).
	start := make(map[stream.PartitionID]stream.Position, len(parts))
	gone := make([]topicPartition, 0)
	for tp := range committed {
		if byTP[tp] == nil {
			gone = append(gone, tp)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].less(gone[j]) })
	for _, tp := range gone {
		if !s.goneWarned[tp] {
			reason := fmt.Sprintf("topic %q or its partition %d no longer exists: was it deleted?", tp.topic, tp.partition)
			if err := loss(tp, strconv.FormatInt(committed[tp], 10), "none", reason); err != nil {
				return connectors.Plan{}, err
			}
			s.goneWarned[tp] = true
		}
		// Carry the position forward: if the topic comes back, the
		// comparison with its new log tells what happened.
		start[tp.id()] = position(committed[tp])
	}

	var initial map[topicPartition]int64
	if firstBatch {
		if initial, err = s.initialOffsets(ctx, parts); err != nil {
			return connectors.Plan{}, err
		}
	}
	for _, pp := range parts {
		delete(s.goneWarned, pp.tp) // it exists again
		off, ok := committed[pp.tp]
		switch {
		case ok:
		case firstBatch:
			off = initial[pp.tp]
		default:
			// Added after the job started: read it from its beginning, as
			// Spark does. If that beginning is not 0, retention deleted
			// records before we could see them.
			off = pp.earliest
			if pp.earliest > 0 {
				reason := fmt.Sprintf("partition added after the job started begins at offset %d, not 0: records may have been deleted before they were read", pp.earliest)
				if err := loss(pp.tp, "0", strconv.FormatInt(pp.earliest, 10), reason); err != nil {
					return connectors.Plan{}, err
				}
			}
		}
		switch {
		case off < pp.earliest:
			reason := "records deleted by retention or deleteRecords before they were read"
			if err := loss(pp.tp, strconv.FormatInt(off, 10), strconv.FormatInt(pp.earliest, 10), reason); err != nil {
				return connectors.Plan{}, err
			}
			off = pp.earliest
		case off > pp.latest:
			reason := fmt.Sprintf("the partition's latest offset %d is below the committed offset: was the topic deleted and recreated, or the log truncated?", pp.latest)
			if err := loss(pp.tp, strconv.FormatInt(off, 10), strconv.FormatInt(pp.earliest, 10), reason); err != nil {
				return connectors.Plan{}, err
			}
			off = pp.earliest
		}
		pp.start, pp.until = off, off
		start[pp.tp.id()] = position(off)
	}

	// availableNow: the first such plan fixes what "available now" means.
	if req.AvailableNow && s.snapshot == nil {
		s.snapshot = make(map[topicPartition]int64, len(parts))
		for _, pp := range parts {
			s.snapshot[pp.tp] = pp.latest
		}
	}

	// Limits, in order: the availableNow snapshot and the per-partition rate
	// bound what each partition may offer; maxOffsetsPerTrigger then shares
	// the batch between them by lag.
	lags := make([]int64, len(parts))
	for i, pp := range parts {
		end := pp.latest
		if req.AvailableNow {
			snap, ok := s.snapshot[pp.tp]
			end = min(end, snap)
			if !ok {
				end = pp.start // discovered after the run started
			}
		}
		lag := max(0, end-pp.start)
		if s.cfg.MaxRatePerPartition > 0 {
			lag = min(lag, rateCap(s.cfg.MaxRatePerPartition, req.Interval))
		}
		lags[i] = lag
	}
	shares := prorate(lags, s.cfg.MaxOffsetsPerTrigger, int64(req.Batch))

	out := connectors.Plan{Start: start, Metrics: map[string]float64{MetricDataLoss: float64(lost)}}
	lp := &lagPlan{parts: make(map[topicPartition]partLag, len(parts)), newestKnown: newest != nil}
	for i, pp := range parts {
		pp.until = pp.start + shares[i]
		pl := partLag{start: pp.start, until: pp.until, lastSplit: pp.start, latest: pp.latest, newestTs: -1}
		if ts, ok := newest[pp.tp]; ok {
			pl.newestTs = ts
		}
		lp.parts[pp.tp] = pl
		if shares[i] == 0 {
			continue
		}
		splits := splitRange(pp.start, pp.until, s.cfg.MaxRecordsPerPartition)
		pl.lastSplit = splits[len(splits)-1][0]
		lp.parts[pp.tp] = pl
		for k, r := range splits {
			out.Ranges = append(out.Ranges, stream.Range{
				Partition: pp.tp.id(),
				Split:     k,
				From:      position(r[0]),
				Until:     position(r[1]),
			})
		}
	}
	// parts is sorted by topic and partition and splits are appended in
	// order, so the ranges already are in (topic, partition, split) order.

	if len(parts) > 0 {
		minB, maxB, sum := int64(-1), int64(0), 0.0
		for _, pp := range parts {
			behind := max(0, pp.latest-pp.until)
			if minB < 0 || behind < minB {
				minB = behind
			}
			maxB = max(maxB, behind)
			sum += float64(behind)
		}
		out.Metrics[MetricMinOffsetsBehindLatest] = float64(minB)
		out.Metrics[MetricMaxOffsetsBehindLatest] = float64(maxB)
		out.Metrics[MetricAvgOffsetsBehindLatest] = sum / float64(len(parts))
	}

	if req.AvailableNow {
		out.Exhausted = true
		for tp, end := range s.snapshot {
			if pp := byTP[tp]; pp != nil && pp.until < end {
				out.Exhausted = false
				break
			}
		}
	}
	s.lag.setPlan(lp)
	return out, nil
}

func committedIn(committed map[topicPartition]int64, m missingErr) bool {
	for tp := range committed {
		if tp.topic == m.topic && (m.partition < 0 || tp.partition == m.partition) {
			return true
		}
	}
	return false
}

// missingErr is a subscribed topic, or an assigned partition, that the
// cluster does not have.
type missingErr struct {
	topic     string
	partition int32 // -1: the whole topic
	err       error
}

// discover lists the partitions to read, sorted by topic and partition. It
// asks the brokers every time, bypassing the client's metadata cache, so
// that new partitions and, with subscribePattern, new topics are seen at the
// next batch.
func (s *Source) discover(ctx context.Context) ([]topicPartition, []missingErr, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false // reading must never create topics
	var topics []string
	switch {
	case s.set.subscribe != nil:
		topics = s.set.subscribe
	case s.set.assign != nil:
		for t := range s.set.assign {
			topics = append(topics, t)
		}
		sort.Strings(topics)
	}
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	// nil Topics asks for every topic (subscribePattern).
	resp, err := await(ctx, &s.calls, func() (*kmsg.MetadataResponse, error) { return req.RequestWith(ctx, s.cl) })
	if err != nil {
		return nil, nil, fmt.Errorf("metadata: %w", hint(s.ctxErr(ctx, err), s.set.brokers))
	}

	var (
		present []topicPartition
		missing []missingErr
		seen    = map[string]bool{}
	)
	what := "subscribe"
	if s.set.assign != nil {
		what = "assign"
	}
	for _, t := range resp.Topics {
		if t.Topic == nil {
			continue
		}
		name := *t.Topic
		if s.set.pattern != nil && (t.IsInternal || !s.set.pattern.MatchString(name)) {
			continue
		}
		seen[name] = true
		terr := kerr.ErrorForCode(t.ErrorCode)
		switch {
		case errors.Is(terr, kerr.UnknownTopicOrPartition) && s.set.pattern == nil:
			missing = append(missing, missingErr{topic: name, partition: -1,
				err: fmt.Errorf("topic %q: %w: topic does not exist (is %s right?)", name, terr, what)})
			continue
		case terr != nil:
			return nil, nil, fmt.Errorf("topic %q: %w", name, hint(terr, s.set.brokers))
		}
		havePart := map[int32]bool{}
		for _, p := range t.Partitions {
			if s.set.assign != nil && !containsInt32(s.set.assign[name], p.Partition) {
				continue
			}
			if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && !errors.Is(perr, kerr.ReplicaNotAvailable) {
				// No leader (an election in progress): retry the plan.
				return nil, nil, fmt.Errorf("topic %q partition %d: %w", name, p.Partition, perr)
			}
			havePart[p.Partition] = true
			present = append(present, topicPartition{topic: name, partition: p.Partition})
		}
		for _, p := range s.set.assign[name] {
			if !havePart[p] {
				missing = append(missing, missingErr{topic: name, partition: p,
					err: fmt.Errorf("partition %s does not exist (is assign right?)", partitionName(name, p))})
			}
		}
	}
	for _, t := range topics {
		if !seen[t] {
			missing = append(missing, missingErr{topic: t, partition: -1,
				err: fmt.Errorf("topic %q: not in the metadata response (is %s right?)", t, what)})
		}
	}
	sort.Slice(present, func(i, j int) bool { return present[i].less(present[j]) })
	return present, missing, nil
}

func containsInt32(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// listBounds fills each partition's earliest and latest offsets.
func (s *Source) listBounds(ctx context.Context, parts []*partPlan) error {
	if len(parts) == 0 {
		return nil
	}
	topics := topicsOf(parts)
	starts, err := await(ctx, &s.calls, func() (kadm.ListedOffsets, error) { return s.adm.ListStartOffsets(ctx, topics...) })
	if err := s.offsetsErr(ctx, "list start offsets", starts, err, parts); err != nil {
		return err
	}
	list := s.adm.ListEndOffsets
	if s.set.readCommitted() {
		list = s.adm.ListCommittedOffsets // the last stable offset
	}
	ends, err := await(ctx, &s.calls, func() (kadm.ListedOffsets, error) { return list(ctx, topics...) })
	if err := s.offsetsErr(ctx, "list end offsets", ends, err, parts); err != nil {
		return err
	}
	for _, pp := range parts {
		e, _ := starts.Lookup(pp.tp.topic, pp.tp.partition)
		l, _ := ends.Lookup(pp.tp.topic, pp.tp.partition)
		pp.earliest, pp.latest = e.Offset, l.Offset
		if pp.latest < pp.earliest {
			return fmt.Errorf("list offsets for %s: latest %d is below earliest %d", pp.tp.id(), pp.latest, pp.earliest)
		}
	}
	return nil
}

func topicsOf(parts []*partPlan) []string {
	var topics []string
	for i, pp := range parts {
		if i == 0 || pp.tp.topic != parts[i-1].tp.topic {
			topics = append(topics, pp.tp.topic)
		}
	}
	return topics
}

// offsetsErr turns a listing's failure, or a partition missing from it, into
// one error that says where.
func (s *Source) offsetsErr(ctx context.Context, what string, l kadm.ListedOffsets, err error, parts []*partPlan) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, hint(s.ctxErr(ctx, err), s.set.brokers))
	}
	for _, pp := range parts {
		o, ok := l.Lookup(pp.tp.topic, pp.tp.partition)
		if !ok {
			if te, ok := l.Lookup(pp.tp.topic, -1); ok && te.Err != nil {
				return fmt.Errorf("%s for topic %q: %w", what, pp.tp.topic, topicHint(te.Err))
			}
			return fmt.Errorf("%s for %s: no answer from the cluster", what, pp.tp.id())
		}
		if o.Err != nil {
			return fmt.Errorf("%s for %s: %w", what, pp.tp.id(), topicHint(o.Err))
		}
	}
	return nil
}

func topicHint(err error) error {
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("%w: topic does not exist (is subscribe right?)", err)
	}
	return err
}

// ctxErr makes an error that the context ended say so, and why the brokers
// had not answered by then.
func (s *Source) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return s.errs.explain(ctx, err, s.started)
}

// initialOffsets is where each partition starts on a job's first batch.
func (s *Source) initialOffsets(ctx context.Context, parts []*partPlan) (map[topicPartition]int64, error) {
	out := make(map[topicPartition]int64, len(parts))
	if len(parts) == 0 {
		return out, nil
	}
	switch {
	case s.cfg.StartingTimestamp > 0:
		l, err := await(ctx, &s.calls, func() (kadm.ListedOffsets, error) {
			return s.adm.ListOffsetsAfterMilli(ctx, s.cfg.StartingTimestamp, topicsOf(parts)...)
		})
		if err := s.offsetsErr(ctx, "list offsets after startingTimestamp", l, err, parts); err != nil {
			return nil, err
		}
		for _, pp := range parts {
			o, _ := l.Lookup(pp.tp.topic, pp.tp.partition)
			off := o.Offset
			if off < 0 || off > pp.latest {
				off = pp.latest // no record that late: start at latest
			}
			out[pp.tp] = max(off, pp.earliest)
		}
	case s.set.starting == "earliest":
		for _, pp := range parts {
			out[pp.tp] = pp.earliest
		}
	case s.set.starting == "latest":
		for _, pp := range parts {
			out[pp.tp] = pp.latest
		}
	default:
		for _, pp := range parts {
			off, ok := s.set.startJSON[pp.tp.topic][pp.tp.partition]
			switch {
			case !ok:
				return nil, connectors.Permanent(fmt.Errorf(
					"startingOffsets: partition %s is not listed; list every partition (-2 for earliest, -1 for latest)", pp.tp.id()))
			case off == offsetEarliest:
				off = pp.earliest
			case off == offsetLatest:
				off = pp.latest
			case off > pp.latest:
				return nil, connectors.Permanent(fmt.Errorf(
					"startingOffsets: offset %d for %s is beyond its latest offset %d", off, pp.tp.id(), pp.latest))
			}
			// An offset below earliest is data loss, handled by the caller.
			out[pp.tp] = off
		}
	}
	return out, nil
}
