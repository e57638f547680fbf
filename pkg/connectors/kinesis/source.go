package kinesis

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Metric names: in Plan.Metrics (dataLoss) and in the batch summary of the
// readers' figures (the Databricks names).
const (
	MetricAvgMsBehindLatest = "avgMsBehindLatest"
	MetricMaxMsBehindLatest = "maxMsBehindLatest"
	MetricMinMsBehindLatest = "minMsBehindLatest"
	// MetricDataLoss counts shards whose lost records this plan skipped
	// (failOnDataLoss false).
	MetricDataLoss = "dataLoss"
)

// Source is the driver half of the Kinesis source: it lists the shards of
// every stream, checks that each stream is still the one the checkpoint
// was taken from, and plans one open-ended range per readable shard. It is
// safe for concurrent use; Plan calls are serialised.
type Source struct {
	set    *settings
	opts   options
	client api

	mu       sync.Mutex // serialises Plan; guards the fields below
	listings map[string]*listing
	// cutoff is the time (ms) of the first availableNow plan: such a run
	// reads what arrived up to then. It lives in memory only, so a driver
	// that takes over mid-run takes a later one (reading a little more,
	// never less).
	cutoff     int64
	lossWarned map[stream.PartitionID]bool
	closed     bool

	// consumers (efo only) are the enhanced fan-out consumers, one per
	// stream, created with the source and started by Plan.
	consumers map[string]*efo.Manager
}

var (
	_ connectors.Source                = (*Source)(nil)
	_ connectors.TaskMetricsSummarizer = (*Source)(nil)
	_ connectors.Finisher              = (*Source)(nil)
)

// listing is one stream's description and shards, reused for
// shardFetchInterval.
type listing struct {
	at       time.Time
	identity identityPos
	shards   []shardInfo // sorted by id
}

type shardInfo struct {
	id      string
	parents []string
	closed  bool
}

// NewSource validates cfg and returns a source. It does not call AWS: a
// missing stream or bad credentials show up as errors from Plan, which the
// driver retries and shows in the job's status.
func NewSource(cfg Config, opts ...Option) (*Source, error) {
	set, o, awsCfg, err := prepare(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("new kinesis source: %w", err)
	}
	client := kinesisClient(awsCfg, set.endpoint, true)
	s := &Source{set: set, opts: o, client: client, listings: map[string]*listing{}, lossWarned: map[stream.PartitionID]bool{}}
	if set.efo {
		s.consumers = map[string]*efo.Manager{}
		mopts := []efo.ManagerOption{efo.WithLogger(o.logger)}
		if o.consumerBackoffMin > 0 {
			mopts = append(mopts, efo.WithWaitBackoff(o.consumerBackoffMin, o.consumerBackoffMax))
		}
		for _, name := range set.streams {
			m, err := efo.NewManager(client, name, set.jobName, set.efoConfig, mopts...)
			if err != nil {
				return nil, fmt.Errorf("new kinesis source: %w", err)
			}
			s.consumers[name] = m
		}
	}
	return s, nil
}

// ensureConsumer makes sure the stream's enhanced fan-out consumer is
// ACTIVE before its shards are planned. The manager registers and waits for
// it in the background (efo.Manager.Await), and Plan waits for that at most
// consumerWait: a consumer not ACTIVE yet (registration takes seconds to
// minutes, and a busy service may be slow to answer even one call) is
// reported as a plain error saying what is being waited for, which the
// driver retries with back-off and shows in the job's status, so a slow
// registration never looks like a hung driver. Plan's bound never cuts a
// call to the service short: a slow RegisterStreamConsumer goes on, and
// later plans wait for that same one instead of starting another.
func (s *Source) ensureConsumer(ctx context.Context, name string) error {
	m := s.consumers[name]
	if st := m.Status(); st.Phase == efo.PhaseLost {
		// The refresh goroutine found it gone and is dealing with it
		// (job-managed: registering it again); executors cannot subscribe.
		return fmt.Errorf("enhanced fan-out consumer %s on stream %q: %s", m.ConsumerName(), name, st.Message)
	}
	sctx, cancel := context.WithTimeout(ctx, s.opts.consumerWait)
	_, err := m.Await(sctx)
	timedOut := sctx.Err() != nil
	cancel()
	switch {
	case err == nil:
		return nil
	case connectors.IsPermanent(err):
		return fmt.Errorf("enhanced fan-out consumer %s on stream %q: %w", m.ConsumerName(), name, err)
	case ctx.Err() == nil && timedOut && errors.Is(err, context.DeadlineExceeded):
		// Only this wait ended; the manager goes on. Its status says what
		// it is doing (which call it awaits, the consumer's state, the last
		// failed call and when it tries again).
		return fmt.Errorf("waiting for enhanced fan-out consumer %s on stream %q to become ACTIVE: %s",
			m.ConsumerName(), name, m.Status().Message)
	}
	return fmt.Errorf("enhanced fan-out consumer %s on stream %q: %w", m.ConsumerName(), name, err)
}

// Finish ends the consumers' refresh and, on a clean end of the job (stopped
// or deleted by the user, or finished) with requireConsumerDeregistration,
// deregisters them. On a failure they are kept: the job will run again and
// reuse them, instead of finding them DELETING. Polling mode: nothing to do.
func (s *Source) Finish(ctx context.Context, clean bool) error {
	kind := efo.StopFailed
	if clean {
		kind = efo.StopClean
	}
	return s.stopConsumers(ctx, kind)
}

func (s *Source) stopConsumers(ctx context.Context, kind efo.StopKind) error {
	var errs []error
	for _, name := range s.set.streams {
		if m := s.consumers[name]; m != nil {
			if err := m.Stop(ctx, kind); err != nil {
				errs = append(errs, fmt.Errorf("stream %q: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Identity is the region, endpoint, role and sorted stream names, e.g.
// "kinesis:region=us-east-1;streamName=clicks,orders". It does not call
// AWS; the stream's ARN and creation time are checked by Plan.
func (s *Source) Identity() string { return s.set.identity() }

// Close ends planning; later Plan calls fail. In efo mode it stops the
// consumers' refresh goroutines without deregistering anything (a driver
// shutting down or handing the job over: the job goes on elsewhere); Finish,
// called before Close when the job ends for good, is what deregisters.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.stopConsumers(ctx, efo.StopFailed)
}

// Plan lists the shards and returns batch req.Batch's ranges: one per
// shard that is open or not yet read to its end, starting at its committed
// position, or for a new job at initialPosition. Ranges have no until: the
// executors read until their limits and report where they stopped.
//
// Resharding: a child shard is planned only once every parent's SHARD_END
// is in req.Committed, so a key's records from the parent are committed
// before any from the child; it starts at TRIM_HORIZON (AT_TIMESTAMP with
// initialPosition at_timestamp). Shards read to their end stay in Start,
// without a task, until the service stops listing them.
//
// Errors: a missing stream, one still being created, or a failed call is a
// plain error (the driver retries); a stream deleted and recreated since the
// checkpoint is connectors.Permanent; records that can no longer be read
// (a shard that expired before it was read to its end) are a
// *connectors.DataLossError unless failOnDataLoss is false.
func (s *Source) Plan(ctx context.Context, req connectors.PlanRequest) (connectors.Plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return connectors.Plan{}, errors.New("kinesis source closed")
	}
	// Errors are not prefixed with the batch: the driver does that.
	return s.plan(ctx, req)
}

// streamCommitted is one stream's part of the last commit.
type streamCommitted struct {
	identity *identityPos
	shards   map[string]position
}

func parseCommitted(in map[stream.PartitionID]stream.Position) (map[string]*streamCommitted, error) {
	out := map[string]*streamCommitted{}
	for id, pos := range in {
		name, shard, err := splitPartitionID(id)
		if err != nil {
			return nil, err
		}
		sc := out[name]
		if sc == nil {
			sc = &streamCommitted{shards: map[string]position{}}
			out[name] = sc
		}
		if shard == identitySuffix {
			ip, err := decodeIdentity(pos)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
			sc.identity = &ip
			continue
		}
		p, err := decodePosition(pos)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		sc.shards[shard] = p
	}
	return out, nil
}

func (s *Source) plan(ctx context.Context, req connectors.PlanRequest) (connectors.Plan, error) {
	committed, err := parseCommitted(req.Committed)
	if err != nil {
		return connectors.Plan{}, connectors.Permanent(fmt.Errorf("committed positions: %w", err))
	}
	now := s.opts.now()
	if req.AvailableNow && s.cutoff == 0 {
		s.cutoff = now.UnixMilli()
	}
	cutoff := int64(0)
	if req.AvailableNow {
		cutoff = s.cutoff
	}
	init := initialSpec{kind: s.set.initial, ts: s.set.at.UnixMilli()}
	if init.kind == initialLatest {
		init.ts = now.UnixMilli()
	}

	out := connectors.Plan{
		Start:        map[stream.PartitionID]stream.Position{},
		TasksPerSlot: s.set.shardsPerTask,
		Metrics:      map[string]float64{},
	}
	lost := 0
	for _, name := range s.set.streams {
		if s.consumers != nil {
			if err := s.ensureConsumer(ctx, name); err != nil {
				return connectors.Plan{}, err
			}
		}
		l, err := s.list(ctx, name)
		if err != nil {
			return connectors.Plan{}, err
		}
		sc := committed[name]
		if sc == nil {
			sc = &streamCommitted{shards: map[string]position{}}
		}
		if err := checkIdentity(name, sc.identity, l.identity); err != nil {
			return connectors.Plan{}, err
		}
		out.Start[partitionID(name, identitySuffix)] = l.identity.encode()

		sp := planStream(name, l.shards, sc, init, cutoff, l.identity.Created)
		if len(sp.losses) > 0 {
			// A shard the commit holds is gone. Before calling that data
			// loss, make sure the listing was of the same stream throughout:
			// a stream deleted and recreated between the description and
			// the shard listing looks exactly like expired shards.
			if err := s.confirmIdentity(ctx, name, sc.identity, l.identity); err != nil {
				delete(s.listings, name)
				return connectors.Plan{}, err
			}
		}
		for _, loss := range sp.losses {
			if s.set.failOnDataLoss {
				return connectors.Plan{}, loss
			}
			lost++
			if !s.lossWarned[loss.Partition] {
				s.lossWarned[loss.Partition] = true
				s.opts.logger.Warn("kinesis source: records lost, skipping ahead (failOnDataLoss is false)",
					"batch", int64(req.Batch), "shard", string(loss.Partition), "requested", loss.Requested, "reason", loss.Reason)
			}
		}
		for id, p := range sp.start {
			out.Start[id] = p
		}
		out.Ranges = append(out.Ranges, sp.ranges...)
	}
	sort.Slice(out.Ranges, func(i, j int) bool { return out.Ranges[i].Partition < out.Ranges[j].Partition })
	out.Metrics[MetricDataLoss] = float64(lost)
	out.Exhausted = req.AvailableNow && len(out.Ranges) == 0
	return out, nil
}

// checkIdentity refuses a checkpoint taken from another incarnation of the
// stream: sequence numbers of a deleted stream mean nothing in its
// successor, and reading with them would skip or repeat records silently.
func checkIdentity(name string, committed *identityPos, live identityPos) error {
	switch {
	case committed == nil:
		return nil
	case committed.ARN != live.ARN:
		return connectors.Permanent(fmt.Errorf("stream %q is now %s but the checkpoint was taken from %s: "+
			"the region or account changed; submit the job under a new name to read this stream", name, live.ARN, committed.ARN))
	case committed.Created != live.Created:
		return recreatedErr(name, committed.Created, live.Created)
	}
	return nil
}

func recreatedErr(name string, was, now int64) error {
	return connectors.Permanent(fmt.Errorf("stream %q was deleted and recreated: the checkpoint is from the stream created at %s, "+
		"the stream now was created at %s, and its sequence numbers do not continue the old ones; "+
		"to read the new stream submit the job under a new name (or stop it and delete its checkpoint), "+
		"which starts at initialPosition", name,
		time.UnixMilli(was).UTC().Format(time.RFC3339Nano), time.UnixMilli(now).UTC().Format(time.RFC3339Nano)))
}

// initialSpec is initialPosition resolved for one plan: latest becomes
// AT_TIMESTAMP of the plan's time.
type initialSpec struct {
	kind string
	ts   int64
}

func (in initialSpec) first() position {
	if in.kind == initialTrimHorizon {
		return position{Start: startTrimHorizon}
	}
	return position{Start: startAtTimestamp, TS: in.ts}
}

// child is where a shard found after the job started begins: everything
// in it was written after the split or merge that created it, so all of it,
// unless at_timestamp asks for later records only.
func (in initialSpec) child() position {
	if in.kind == initialAtTimestamp {
		return position{Start: startAtTimestamp, TS: in.ts}
	}
	return position{Start: startTrimHorizon}
}

type streamPlan struct {
	ranges []stream.Range
	start  map[stream.PartitionID]stream.Position
	losses []*connectors.DataLossError
}

// planStream decides, for one stream, which shards are read in this batch
// and from where. It is pure: the listing, the committed positions, the
// initial position and the availableNow cutoff (0 = none) decide.
//
// Per shard, in the order of these rules:
//
//	committed, ended            → carried forward, no task
//	committed, not ended        → task from the committed position (none
//	                              when availableNow already read past the cutoff)
//	new job, latest             → closed: ended at once (nothing arrives
//	                              there after "now"); open: task from now
//	new job, otherwise          → task from initialPosition when no parent
//	                              is listed (a listed parent is read first)
//	known stream, new shard     → task once every listed parent is ended in
//	                              the commit; a parent neither listed nor
//	                              committed expired unread: data loss
//	committed, no longer listed → dropped; data loss unless it had ended
func planStream(name string, shards []shardInfo, sc *streamCommitted, init initialSpec, cutoff, created int64) streamPlan {
	sp := streamPlan{start: map[stream.PartitionID]stream.Position{}}
	listed := make(map[string]bool, len(shards))
	for _, sh := range shards {
		listed[sh.id] = true
	}
	first := sc.identity == nil && len(sc.shards) == 0

	gone := make([]string, 0)
	for id, p := range sc.shards {
		if !listed[id] && !p.End {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		sp.losses = append(sp.losses, &connectors.DataLossError{
			Partition: partitionID(name, id), Requested: sc.shards[id].starting().String(), Earliest: "none",
			Reason: "the shard is no longer listed: it expired (retention) before it was read to its end",
		})
	}

	task := func(id string, p position) {
		pid := partitionID(name, id)
		sp.start[pid] = p.encode()
		if cutoff > 0 && p.CutDone >= cutoff {
			return // availableNow: this shard is done for the run
		}
		from := p.point()
		from.Cut, from.Created = cutoff, created
		sp.ranges = append(sp.ranges, stream.Range{Partition: pid, From: from.encode()})
	}
	for _, sh := range shards {
		pid := partitionID(name, sh.id)
		if p, ok := sc.shards[sh.id]; ok {
			if p.End {
				sp.start[pid] = p.encode()
			} else {
				task(sh.id, p)
			}
			continue
		}
		if first && init.kind == initialLatest {
			if sh.closed {
				sp.start[pid] = position{End: true}.encode()
			} else {
				task(sh.id, init.first())
			}
			continue
		}
		ready := true
		for _, parent := range sh.parents {
			p, ok := sc.shards[parent]
			switch {
			case listed[parent]:
				ready = ready && ok && p.End
			case ok || first:
				// Read to its end and since expired, or lost (reported
				// above), or gone before the job began: nothing to wait for.
			default:
				sp.losses = append(sp.losses, &connectors.DataLossError{
					Partition: pid, Requested: "parent shard " + parent, Earliest: "none",
					Reason: fmt.Sprintf("parent shard %s expired (retention) before it was read; its records are gone", parent),
				})
			}
		}
		if !ready {
			continue // a parent is still being read
		}
		if first {
			task(sh.id, init.first())
		} else {
			task(sh.id, init.child())
		}
	}
	return sp
}

// confirmIdentity describes stream name afresh and returns an error unless
// it is still the stream listed (listed): the "deleted and recreated" error
// when the checkpoint's stream (committed) was replaced, or a plain error
// (the driver plans again) while the stream is gone or changing.
func (s *Source) confirmIdentity(ctx context.Context, name string, committed *identityPos, listed identityPos) error {
	sum, err := s.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("describe stream: %w", streamErr(name, err))
	}
	d := sum.StreamDescriptionSummary
	now := identityPos{ARN: aws.ToString(d.StreamARN), Created: aws.ToTime(d.StreamCreationTimestamp).UnixMilli()}
	if err := checkIdentity(name, committed, now); err != nil {
		return err
	}
	if now != listed || d.StreamStatus != types.StreamStatusActive && d.StreamStatus != types.StreamStatusUpdating {
		return fmt.Errorf("stream %q changed while its shards were listed (now %s, created %d); listing again", name, d.StreamStatus, now.Created)
	}
	return nil
}

// list returns the stream's description and shards, from the last listing
// when it is younger than shardFetchInterval.
func (s *Source) list(ctx context.Context, name string) (*listing, error) {
	now := s.opts.now()
	if l := s.listings[name]; l != nil && now.Sub(l.at) < s.set.listInterval {
		return l, nil
	}
	sum, err := s.client.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
	if err != nil {
		return nil, fmt.Errorf("describe stream: %w", streamErr(name, err))
	}
	d := sum.StreamDescriptionSummary
	switch d.StreamStatus {
	case types.StreamStatusCreating:
		return nil, fmt.Errorf("stream %q is still being created; waiting for it to become ACTIVE", name)
	case types.StreamStatusDeleting:
		return nil, fmt.Errorf("stream %q is being deleted", name)
	}
	l := &listing{at: now, identity: identityPos{ARN: aws.ToString(d.StreamARN), Created: aws.ToTime(d.StreamCreationTimestamp).UnixMilli()}}
	if l.identity.ARN == "" || l.identity.Created == 0 {
		return nil, fmt.Errorf("stream %q: the service returned no ARN or creation time", name)
	}

	var token *string
	for restarts := 0; ; {
		in := &kinesis.ListShardsInput{MaxResults: aws.Int32(s.set.pageSize)}
		if token == nil {
			in.StreamName = aws.String(name)
		} else {
			in.NextToken = token
		}
		out, err := s.client.ListShards(ctx, in)
		var expired *types.ExpiredNextTokenException
		if errors.As(err, &expired) && restarts < 3 {
			// A listing that took over five minutes: start again.
			restarts++
			token, l.shards = nil, nil
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list shards: %w", streamErr(name, err))
		}
		for _, sh := range out.Shards {
			info := shardInfo{id: aws.ToString(sh.ShardId)}
			for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
				if v := aws.ToString(p); v != "" {
					info.parents = append(info.parents, v)
				}
			}
			// A closed shard has an ending sequence number (kinesis-mock
			// writes 2^63-1 there; only its presence matters here).
			info.closed = sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil
			if strings.Contains(info.id, "/") || info.id == "" {
				return nil, fmt.Errorf("stream %q: the service listed a shard named %q", name, info.id)
			}
			l.shards = append(l.shards, info)
		}
		if out.NextToken == nil {
			break
		}
		token = out.NextToken
	}
	sort.Slice(l.shards, func(i, j int) bool { return l.shards[i].id < l.shards[j].id })
	s.listings[name] = l
	return l, nil
}

// SummarizeTaskMetrics turns the readers' per-shard MillisBehindLatest into
// the batch's avgMsBehindLatest, maxMsBehindLatest and minMsBehindLatest.
// Shards that reported nothing (a replay that needed no fetch) are left out.
func (s *Source) SummarizeTaskMetrics(perPartition map[stream.PartitionID]map[string]float64) map[string]float64 {
	var (
		n             int
		sum, minV, mx float64
	)
	for _, m := range perPartition {
		v, ok := m[MetricMillisBehindLatest]
		if !ok {
			continue
		}
		if n == 0 || v < minV {
			minV = v
		}
		mx = max(mx, v)
		sum += v
		n++
	}
	if n == 0 {
		return nil
	}
	return map[string]float64{MetricAvgMsBehindLatest: sum / float64(n), MetricMaxMsBehindLatest: mx, MetricMinMsBehindLatest: minV}
}
