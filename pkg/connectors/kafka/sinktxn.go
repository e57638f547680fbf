package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// marker is the value of a commit marker record.
type marker struct {
	Job  string `json:"job"`
	Sink string `json:"sink"`
	Part string `json:"part"`
	// Incarnation is WriteKey.Incarnation: markers of an earlier job of
	// the same name are not this job's commits. Absent ("") in markers of
	// sink versions before it was stored.
	Incarnation string `json:"incarnation,omitempty"`
	Batch       int64  `json:"batch"`
	Records     int64  `json:"records"`
	// End is the task end stored by CommitEnd (base64 in JSON); absent
	// when the output was committed by Commit.
	End []byte `json:"end,omitempty"`
}

// TransactionalID is the transactional id of the writer of (job, sink
// name, part): the same for every attempt of a task, on any executor, so
// that each attempt fences the one before.
func TransactionalID(job stream.JobID, sinkName, part string) string {
	return "sluice/" + string(job) + "/" + sinkName + "/" + part
}

// markerKey is the commit marker's key; job names hold no '/', so the key
// is unambiguous even though parts may.
func markerKey(job stream.JobID, sinkName, part string) string {
	return string(job) + "/" + sinkName + "/" + part
}

// markerPartition spreads keys over the commits topic's partitions.
func markerPartition(key string, partitions int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int32(h.Sum32() % uint32(partitions))
}

// commitsMeta is what the sink knows about the commits topic.
type commitsMeta struct {
	partitions int32
	id         [16]byte
	leaders    map[int32]int32
}

// commitsTopic returns the commits topic's metadata, creating the topic
// (compacted, commitsTopicPartitions partitions, the brokers' default
// replication) when it does not exist.
func (s *Sink) commitsTopic(ctx context.Context, cl *kgo.Client) (*commitsMeta, error) {
	s.mu.Lock()
	m := s.meta
	s.mu.Unlock()
	if m != nil {
		return m, nil
	}
	topic := s.set.commitsTopic
	adm := kadm.NewClient(cl)
	created := false
	for {
		md, err := adm.Metadata(ctx, topic)
		if err != nil {
			return nil, fmt.Errorf("describe commits topic %s: %w", topic, err)
		}
		td, ok := md.Topics[topic]
		switch {
		case ok && td.Err == nil && len(td.Partitions) > 0:
			m := &commitsMeta{partitions: int32(len(td.Partitions)), id: td.ID, leaders: map[int32]int32{}}
			for p, pd := range td.Partitions {
				m.leaders[p] = pd.Leader
			}
			s.mu.Lock()
			s.meta = m
			s.mu.Unlock()
			return m, nil
		case (!ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition)) && !created:
			compact := "compact"
			resp, err := adm.CreateTopic(ctx, commitsTopicPartitions, -1, map[string]*string{"cleanup.policy": &compact}, topic)
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				return nil, fmt.Errorf("create commits topic %s: %w", topic, err)
			}
			if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
				return nil, fmt.Errorf("create commits topic %s: %w", topic, resp.Err)
			}
			created = true
			s.log.Info("created the Kafka sink's commits topic", "topic", topic, "partitions", commitsTopicPartitions)
		}
		// Freshly created: metadata may lag for a moment.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("describe commits topic %s: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// forgetCommitsTopic drops cached metadata after an error that may mean a
// leader moved.
func (s *Sink) forgetCommitsTopic() {
	s.mu.Lock()
	s.meta = nil
	s.mu.Unlock()
}

// lastCommitted returns the last committed marker of key (the newest in
// log order: markers of one key are written by one transactional id, one
// transaction at a time, so the log holds them in commit order), or nil when
// there is none.
//
// Markers of all keys that hash to the partition share it, and a
// read_committed reader sees nothing past the first offset of a
// transaction still open there (the last stable offset). So the read first
// takes the partition's high watermark and then reads read_committed until
// the last stable offset has passed it: every transaction that wrote there
// before now, including any attempt of this key that committed before this
// attempt's producer id fenced it, is then resolved and visible. Markers are
// written at commit, just before the transaction ends, so the wait is short
// unless a writer died in between (then until its transaction times out).
//
// The newest marker of the key is near the end of the partition, so the log
// is read backwards in growing windows until one holds the key.
func (s *Sink) lastCommitted(ctx context.Context, cl *kgo.Client, key string) (*marker, error) {
	meta, err := s.commitsTopic(ctx, cl)
	if err != nil {
		return nil, err
	}
	topic := s.set.commitsTopic
	p := markerPartition(key, meta.partitions)
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	end, ok1 := ends.Lookup(topic, p)
	start, ok2 := starts.Lookup(topic, p)
	switch {
	case !ok1 || !ok2:
		s.forgetCommitsTopic()
		return nil, fmt.Errorf("commits topic %s has no partition %d", topic, p)
	case end.Err != nil:
		return nil, fmt.Errorf("list end offset of %s/%d: %w", topic, p, end.Err)
	case start.Err != nil:
		return nil, fmt.Errorf("list start offset of %s/%d: %w", topic, p, start.Err)
	}
	to, floor := end.Offset, start.Offset
	for window := int64(256); to > floor; window *= 4 {
		from := max(floor, to-window)
		m, newFloor, err := s.scanMarkers(ctx, cl, meta, p, key, from, to)
		if err != nil {
			return nil, err
		}
		if m != nil {
			return m, nil
		}
		floor = max(floor, newFloor)
		to = from
	}
	return nil, nil
}

// scanMarkers reads [from, to) of the commits partition read_committed and
// returns key's last marker there, nil when there is none. newFloor is the
// log start offset when the read found it moved (retention or compaction).
func (s *Sink) scanMarkers(ctx context.Context, cl *kgo.Client, meta *commitsMeta, p int32, key string,
	from, to int64) (last *marker, newFloor int64, err error) {
	topic := s.set.commitsTopic
	for off := from; off < to; {
		fp, next, err := fetchCommitted(ctx, cl, meta, topic, p, off)
		if err != nil {
			if isLeaderChange(err) {
				s.forgetCommitsTopic()
			}
			return nil, 0, fmt.Errorf("read commits topic %s/%d at %d: %w", topic, p, off, err)
		}
		switch {
		case errors.Is(fp.Err, kerr.OffsetOutOfRange):
			if fp.LogStartOffset > off {
				newFloor = fp.LogStartOffset
				off = fp.LogStartOffset
				continue
			}
			return nil, 0, fmt.Errorf("read commits topic %s/%d at %d: %w", topic, p, off, fp.Err)
		case fp.Err != nil:
			if isLeaderChange(fp.Err) {
				s.forgetCommitsTopic()
			}
			return nil, 0, fmt.Errorf("read commits topic %s/%d at %d: %w", topic, p, off, fp.Err)
		}
		for _, r := range fp.Records {
			if r.Attrs.IsControl() || string(r.Key) != key {
				continue
			}
			m := new(marker)
			if err := json.Unmarshal(r.Value, m); err != nil {
				return nil, 0, fmt.Errorf("commit marker at %s/%d offset %d: %w", topic, p, r.Offset, err)
			}
			last = m
		}
		if next > off {
			off = next
		}
		// Otherwise the last stable offset is still below `to`: a
		// transaction there is open. The fetch waited MaxWaitMillis; ask
		// again until it ends (commit, abort, or its timeout).
	}
	return last, newFloor, nil
}

func isLeaderChange(err error) bool {
	return errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.FencedLeaderEpoch) ||
		errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.LeaderNotAvailable) ||
		errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
}

// fetchCommitted sends one read_committed Fetch for topic/p at off to the
// partition's leader and decodes it. franz-go's consumer is not used
// because it does not say how far it got past aborted records and
// transaction markers, which is what tells the scan it reached its end; a
// raw fetch decoded with ProcessFetchPartition returns the next offset.
func fetchCommitted(ctx context.Context, cl *kgo.Client, meta *commitsMeta, topic string, p int32, off int64) (kgo.FetchPartition, int64, error) {
	leader, ok := meta.leaders[p]
	if !ok || leader < 0 {
		return kgo.FetchPartition{}, 0, kerr.LeaderNotAvailable
	}
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = 500
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.IsolationLevel = 1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, meta.id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = p
	rp.FetchOffset = off
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return kgo.FetchPartition{}, 0, err
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return kgo.FetchPartition{}, 0, err
	}
	for _, t := range resp.Topics {
		for i := range t.Partitions {
			if t.Partitions[i].Partition != p {
				continue
			}
			fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset: off, IsolationLevel: kgo.ReadCommitted(), Topic: topic, Partition: p,
			}, &t.Partitions[i], kgo.DefaultDecompressor(), nil)
			return fp, next, nil
		}
	}
	return kgo.FetchPartition{}, 0, fmt.Errorf("fetch response lacks %s/%d", topic, p)
}

// txnWriter is one task attempt's Kafka transaction.
type txnWriter struct {
	s    *Sink
	cl   *kgo.Client
	key  connectors.WriteKey
	mkey string
	recs produced
	skip bool // the batch is already committed: write nothing
	// storedEnd is the end the committed attempt stored, when skipping a
	// replay of its batch; nil when it stored none.
	storedEnd stream.Position
	done      bool
	begun     bool
	began     time.Time
}

// openTxn creates the attempt's transactional client, initialises its
// producer id (fencing every earlier attempt of the key and aborting their
// open transactions) and reads the key's commit marker.
func (s *Sink) openTxn(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, errors.New("kafka sink: closed")
	}
	txnID := TransactionalID(key.Job, s.set.name, key.Part)
	opts := append(append([]kgo.Opt(nil), s.base...),
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(s.set.txnTimeout),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	w := &txnWriter{s: s, cl: cl, key: key, mkey: markerKey(key.Job, s.set.name, key.Part)}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, s.wrap("initialise transactional id "+txnID, err)
	}
	last, err := s.lastCommitted(ctx, cl, w.mkey)
	if err != nil {
		cl.Close()
		return nil, s.wrap("read commit marker", err)
	}
	switch {
	case last == nil:
	case last.Incarnation != key.Incarnation:
		// The job was deleted and submitted again under the same name:
		// the old job's markers are no commits of this one.
		s.log.Info("the last commit marker belongs to an earlier incarnation of the job (deleted and submitted again); writing",
			"job", key.Job, "batch", key.Batch, "part", key.Part, "markerBatch", last.Batch, "transactionalId", txnID)
	case last.Batch >= int64(key.Batch):
		w.skip = true
		level, msg := slog.LevelInfo, "batch already committed by an earlier attempt; writing nothing"
		if last.Batch > int64(key.Batch) {
			// A zombie attempt of an earlier batch: the driver moved on
			// and ignores what it reports.
			level, msg = slog.LevelWarn, "the commits topic holds a later batch of this job; writing nothing"
		} else {
			w.storedEnd = last.End
		}
		s.log.Log(ctx, level, msg, "job", key.Job, "batch", key.Batch, "part", key.Part,
			"committedBatch", last.Batch, "transactionalId", txnID)
		return w, nil
	}
	if err := cl.BeginTransaction(); err != nil {
		cl.Close()
		return nil, s.wrap("begin transaction", err)
	}
	w.begun, w.began = true, time.Now()
	return w, nil
}

func (w *txnWriter) Write(ctx context.Context, rows []stream.Row) error {
	if skip, err := w.ready(); skip || err != nil {
		return err
	}
	return w.s.produce(ctx, w.cl, &w.recs, w.key.Columns, rows)
}

// ready says whether a write may produce: an error after Commit or Abort
// or once a produce failed, skip (and no error) when the batch is already
// committed.
func (w *txnWriter) ready() (skip bool, err error) {
	switch {
	case w.done:
		return false, errors.New("kafka sink: write after commit or abort")
	case w.skip:
		return true, nil
	}
	if err := w.recs.firstErr(); err != nil {
		return false, w.s.wrap("produce", err)
	}
	return false, nil
}

var _ connectors.EndCommitter = (*txnWriter)(nil)

// Commit adds the commit marker to the transaction, waits for every record
// and commits the transaction. A skipping writer just closes its client.
// The marker stores no end; the driver uses Commit for outputs that span
// partitions.
func (w *txnWriter) Commit(ctx context.Context) error {
	_, err := w.commit(ctx, nil)
	return err
}

// CommitEnd is Commit with end stored in the commit marker. When an earlier
// attempt of the same batch and incarnation committed, it writes nothing
// and returns the end that attempt stored (end itself when it stored none).
func (w *txnWriter) CommitEnd(ctx context.Context, end stream.Position) (stream.Position, error) {
	return w.commit(ctx, end)
}

func (w *txnWriter) commit(ctx context.Context, end stream.Position) (stream.Position, error) {
	if w.done {
		return nil, errors.New("kafka sink: commit after commit or abort")
	}
	w.done = true
	defer w.cl.Close()
	if w.skip {
		if w.storedEnd != nil {
			return w.storedEnd, nil
		}
		return end, nil
	}
	meta, err := w.s.commitsTopic(ctx, w.cl)
	if err != nil {
		w.abort(ctx)
		return nil, w.s.wrap("commit", err)
	}
	val, _ := json.Marshal(marker{Job: string(w.key.Job), Sink: w.s.set.name, Part: w.key.Part,
		Incarnation: w.key.Incarnation, Batch: int64(w.key.Batch), Records: w.recs.n, End: end})
	w.recs.add(1)
	w.cl.Produce(ctx, &kgo.Record{
		Topic: w.s.set.commitsTopic, Partition: markerPartition(w.mkey, meta.partitions),
		Key: []byte(w.mkey), Value: val,
	}, w.recs.promise)
	if err := w.cl.Flush(ctx); err != nil {
		w.abort(ctx)
		return nil, w.s.wrap("flush", err)
	}
	if err := w.recs.firstErr(); err != nil {
		w.abort(ctx)
		return nil, w.s.wrap("produce", err)
	}
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	if err := w.cl.EndTransaction(ectx, kgo.TryCommit); err != nil {
		// Aborted, fenced by a newer attempt, or unknown (the response was
		// lost): the next attempt finds out from the marker.
		_ = w.cl.EndTransaction(ectx, kgo.TryAbort)
		if took := time.Since(w.began); took > w.s.set.txnTimeout {
			err = fmt.Errorf("%w (the task's transaction was open for %s, longer than properties.transaction.timeout.ms %s: "+
				"the coordinator may have aborted it; raise it or lower maxOffsetsPerTrigger)", err, took.Round(time.Second), w.s.set.txnTimeout)
		}
		return nil, w.s.wrap("commit transaction", err)
	}
	return end, nil
}

// Abort aborts the transaction and closes the client. It is safe after
// Commit, when it does nothing.
func (w *txnWriter) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	w.abort(context.Background())
	w.cl.Close()
	return nil
}

// abort aborts the open transaction. A failure is only logged: the
// transaction then stays open, holding back read_committed consumers of its
// partitions, until the task's next attempt fences it or
// transaction.timeout.ms passes. A fenced writer's transaction was already
// aborted by the attempt that fenced it, so that failure is not logged.
func (w *txnWriter) abort(ctx context.Context) {
	if !w.begun {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), endTimeout)
	defer cancel()
	errBuffered := w.cl.AbortBufferedRecords(actx)
	err := errors.Join(errBuffered, w.cl.EndTransaction(actx, kgo.TryAbort))
	if err != nil && !errors.Is(err, kerr.ProducerFenced) && !errors.Is(err, kerr.InvalidProducerEpoch) {
		w.s.log.Warn("kafka sink: abort transaction", "job", w.key.Job, "batch", w.key.Batch, "part", w.key.Part,
			"transactionalId", TransactionalID(w.key.Job, w.s.set.name, w.key.Part), "err", err)
	}
}

// wrap adds what to check to a produce or transaction error, keeping it
// retryable unless retrying cannot help.
func (s *Sink) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed),
		errors.Is(err, kerr.ClusterAuthorizationFailed):
		return connectors.Permanent(fmt.Errorf("kafka sink: %s: %w: the principal lacks ACLs (Write and Describe on the topics; "+
			"with transactional: true also Write and Describe on the transactional ids sluice/<job>/*, and Create, Read "+
			"and Write on the commits topic)", op, err))
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge), errors.Is(err, kerr.InvalidRecord):
		return connectors.Permanent(fmt.Errorf("kafka sink: %s: %w", op, err))
	case errors.Is(err, kerr.InvalidTransactionTimeout):
		return connectors.Permanent(fmt.Errorf("kafka sink: %s: %w: properties.transaction.timeout.ms exceeds the brokers' transaction.max.timeout.ms", op, err))
	}
	return fmt.Errorf("kafka sink: %s: %w", op, hint(err, s.set.client.brokers))
}
