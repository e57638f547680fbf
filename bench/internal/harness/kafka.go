package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka is the broker of a run: franz-go's in-process kfake, or the broker
// named by BENCH_KAFKA. The baseline and Sluice read the same topics from
// it, so its own cost weighs on both sides of a ratio alike; with kfake that
// cost is CPU of the harness process, reported as such.
type Kafka struct {
	Brokers []string
	fake    *kfake.Cluster
	admin   *kadm.Client
	cl      *kgo.Client
}

// StartKafka starts kfake, or connects to external brokers when given.
func StartKafka(external []string) (*Kafka, error) {
	k := &Kafka{Brokers: external}
	if len(external) == 0 {
		fake, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return nil, fmt.Errorf("start kfake: %w", err)
		}
		k.fake, k.Brokers = fake, fake.ListenAddrs()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("kafka admin client for %v: %w", k.Brokers, err)
	}
	k.cl, k.admin = cl, kadm.NewClient(cl)
	return k, nil
}

// Close stops kfake (an external broker is left alone).
func (k *Kafka) Close() {
	if k.cl != nil {
		k.cl.Close()
	}
	if k.fake != nil {
		k.fake.Close()
	}
}

// CreateTopic creates topic with the given partitions.
func (k *Kafka) CreateTopic(ctx context.Context, topic string, partitions int) error {
	if _, err := k.admin.CreateTopic(ctx, int32(partitions), 1, nil, topic); err != nil {
		return fmt.Errorf("create topic %s (%d partitions): %w", topic, partitions, err)
	}
	return nil
}

// DeleteTopic deletes topic, freeing kfake's memory.
func (k *Kafka) DeleteTopic(ctx context.Context, topic string) error {
	resp, err := k.admin.DeleteTopics(ctx, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("delete topic %s: %w", topic, err)
	}
	return nil
}

// Records sums the end offsets of topic's partitions: for a topic that was
// only ever appended to, its record count.
func (k *Kafka) Records(ctx context.Context, topic string) (int64, error) {
	ends, err := k.admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n, nil
}

// Sample reads up to n record values of topic from its start, for checking
// what a job wrote.
func (k *Kafka) Sample(ctx context.Context, topic string, n int) ([][]byte, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("sample %s: %w", topic, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out [][]byte
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("sample %s: got %d of %d records: %w", topic, len(out), n, err)
		}
		if err := fs.Err(); err != nil {
			return out, fmt.Errorf("sample %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(out) < n {
				out = append(out, r.Value)
			}
		})
	}
	return out, nil
}

// Workload is what a preloaded topic holds, for checking what consumers
// computed from it.
type Workload struct {
	Topic      string
	Partitions int
	Records    int64
	// Bytes counts record values (there are no keys).
	Bytes int64
	// Groups are the sums and counts of amount by "branch/currency".
	Groups map[string]Group
}

// Group is one (branch, currency) aggregate.
type Group struct {
	Sum   int64 `json:"sum"`
	Count int64 `json:"count"`
}

// Transactions generates the records of the treasury example: bank
// transactions of about 120 bytes of JSON with a branch, a currency and an
// integer amount in [-100, 100]. The sequence is deterministic in seed.
type Transactions struct {
	rng *rand.Rand
	id  int64
	ts  time.Time
}

var (
	branches   = []string{"Kazan", "SPB", "Novosibirsk", "Surgut"}
	currencies = []string{"RUB", "USD", "EUR", "GBP"}
)

// NewTransactions starts a sequence.
func NewTransactions(seed uint64) *Transactions {
	return &Transactions{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), ts: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
}

// Next appends the next transaction's JSON to buf and returns it with its
// group key and amount.
func (t *Transactions) Next(buf []byte) (value []byte, group string, amount int64) {
	t.id++
	t.ts = t.ts.Add(time.Duration(t.rng.IntN(5000)) * time.Microsecond)
	b, c := branches[t.rng.IntN(len(branches))], currencies[t.rng.IntN(len(currencies))]
	amount = int64(t.rng.IntN(201) - 100)
	buf = append(buf, `{"id":`...)
	buf = strconv.AppendInt(buf, t.id, 10)
	buf = append(buf, `,"ts":"`...)
	buf = t.ts.AppendFormat(buf, "2006-01-02T15:04:05.000Z")
	buf = append(buf, `","branch":"`...)
	buf = append(buf, b...)
	buf = append(buf, `","currency":"`...)
	buf = append(buf, c...)
	buf = append(buf, `","amount":`...)
	buf = strconv.AppendInt(buf, amount, 10)
	buf = append(buf, `,"account":"40817810`...)
	acct := strconv.AppendInt(nil, 1_000_000_000_000+t.rng.Int64N(1_000_000_000_000), 10)
	buf = append(buf, acct[1:]...) // 12 digits
	buf = append(buf, `"}`...)
	return buf, b + "/" + c, amount
}

// Preload writes n transactions round-robin over the partitions of topic
// (which must exist, empty) and returns what it wrote.
func (k *Kafka) Preload(ctx context.Context, topic string, partitions, n int, seed uint64) (*Workload, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(50_000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("preload %s: producer: %w", topic, err)
	}
	defer cl.Close()
	w := &Workload{Topic: topic, Partitions: partitions, Groups: map[string]Group{}}
	gen := NewTransactions(seed)
	var produced produceErrs
	for i := range n {
		v, g, amount := gen.Next(nil)
		grp := w.Groups[g]
		grp.Sum += amount
		grp.Count++
		w.Groups[g] = grp
		w.Records++
		w.Bytes += int64(len(v))
		// Produce blocks while MaxBufferedRecords are in flight, which
		// paces the loop to the broker.
		cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: v}, produced.add)
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, fmt.Errorf("preload %s: flush: %w", topic, err)
	}
	if err := produced.first(); err != nil {
		return nil, fmt.Errorf("preload %s: produce: %w", topic, err)
	}
	got, err := k.Records(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("preload %s: %w", topic, err)
	}
	if got != int64(n) {
		return nil, fmt.Errorf("preload %s: topic holds %d records after writing %d: was it not empty?", topic, got, n)
	}
	return w, nil
}

// Trickle produces rate transactions per second to topic until ctx ends or
// Stop is called, for jobs that must never run out of data.
type Trickle struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// StartTrickle starts a producer goroutine owned by the returned Trickle.
func (k *Kafka) StartTrickle(ctx context.Context, topic string, partitions, rate int) (*Trickle, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, fmt.Errorf("trickle producer for %s: %w", topic, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &Trickle{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		defer cl.Close()
		gen := NewTransactions(uint64(rate))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		per := max(rate/10, 1)
		i := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			recs := make([]*kgo.Record, per)
			for j := range recs {
				v, _, _ := gen.Next(nil)
				recs[j] = &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: v}
				i++
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil && !errors.Is(err, context.Canceled) {
				t.err = fmt.Errorf("trickle into %s: %w", topic, err)
				return
			}
		}
	}()
	return t, nil
}

// Stop ends the trickle and returns its error, if it failed.
func (t *Trickle) Stop() error {
	t.cancel()
	<-t.done
	return t.err
}

// produceErrs keeps the first error of asynchronous produce callbacks.
type produceErrs struct {
	mu  sync.Mutex
	err error
}

func (p *produceErrs) add(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *produceErrs) first() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}
