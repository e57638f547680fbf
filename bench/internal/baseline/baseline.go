// Package baseline holds the hand-written franz-go programs Sluice is
// compared with: what a competent engineer would write without an engine.
// They run as `sluicebench baseline <kind>` in a process of their own, so
// that their CPU and peak memory are measured the way the Sluice processes'
// are, and print a Result as JSON on stdout.
//
// Every Kafka baseline (aggregate, copy, count, running) reads every
// partition of a topic from its start to the end offsets listed when it
// starts, with franz-go's default fetch settings, through the same consume
// loop; they differ only in what they do with the records. Aggregate and
// RunningAggregate use every core (GOMAXPROCS workers), as Sluice's
// executors do.
package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Result is what a baseline run reports.
type Result struct {
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"`
	// Elapsed runs from creating the client to the last record processed
	// (and, for copy, acknowledged by the broker).
	Elapsed time.Duration `json:"elapsedNs"`
	// Groups are amount sums and counts by "branch/currency" (aggregate).
	Groups map[string]Group `json:"groups,omitempty"`
	// Produced counts acknowledged records (copy).
	Produced int64 `json:"produced,omitempty"`
	// Keys counts the distinct keys held at the end (running aggregate).
	Keys int64 `json:"keys,omitempty"`
	// Total sums v and counts records over every key (running aggregate).
	Total Group `json:"total,omitzero"`
	// MarkElapsed runs from creating the client to the moment the run had
	// handed MarkRecords records on (to its decoders, its count or its
	// producer), with WithMark: the start of its steady state, as the end
	// of a streaming engine's first batch is of its own.
	MarkRecords int64         `json:"markRecords,omitempty"`
	MarkElapsed time.Duration `json:"markElapsedNs,omitempty"`
}

// Option changes a Kafka baseline run.
type Option func(*loop)

// WithMark makes the run note when it has handed on n records
// (Result.MarkElapsed).
func WithMark(n int64) Option { return func(l *loop) { l.mark = n } }

// Group is one (branch, currency) aggregate.
type Group struct {
	Sum   int64 `json:"sum"`
	Count int64 `json:"count"`
}

// transaction is the part of a record the aggregate needs.
type transaction struct {
	Branch   string `json:"branch"`
	Currency string `json:"currency"`
	Amount   int64  `json:"amount"`
}

type groupKey struct{ branch, currency string }

// Aggregate decodes every record of topic as JSON and sums amount by
// (branch, currency), as the treasury example job does. Records are
// decoded by GOMAXPROCS workers, each with its own sums, merged at the end.
func Aggregate(ctx context.Context, brokers []string, topic string, opts ...Option) (Result, error) {
	workers := runtime.GOMAXPROCS(0)
	sums := make([]map[groupKey]*Group, workers)
	for w := range sums {
		sums[w] = map[groupKey]*Group{}
	}
	res, err := decodeInParallel(ctx, brokers, topic, workers, func(w int, r *kgo.Record) error {
		var t transaction
		if err := json.Unmarshal(r.Value, &t); err != nil {
			return err
		}
		g := sums[w][groupKey{t.Branch, t.Currency}]
		if g == nil {
			g = &Group{}
			sums[w][groupKey{t.Branch, t.Currency}] = g
		}
		g.Sum += t.Amount
		g.Count++
		return nil
	}, nil, opts...)
	if err != nil {
		return res, err
	}
	res.Groups = map[string]Group{}
	for _, m := range sums {
		for k, g := range m {
			t := res.Groups[k.branch+"/"+k.currency]
			t.Sum += g.Sum
			t.Count += g.Count
			res.Groups[k.branch+"/"+k.currency] = t
		}
	}
	return res, nil
}

// Count reads every record of topic and counts them, doing nothing else: the
// floor under any engine's read path (consume loop and franz-go's decoding
// of fetch responses), which a count-only Sluice job is compared with.
func Count(ctx context.Context, brokers []string, topic string, opts ...Option) (Result, error) {
	var n int64
	res, err := consume(ctx, brokers, topic, loop{
		handle: func(_ *kgo.Client, recs []*kgo.Record) error {
			n += int64(len(recs))
			return nil
		},
		finish: func(*kgo.Client) error { return nil },
	}, opts...)
	if err == nil && n != res.Records {
		err = fmt.Errorf("counted %d records, the consume loop read %d", n, res.Records)
	}
	return res, err
}

// Copy produces every record of topic, unchanged, to out with the client's
// default partitioner, and waits until the broker acknowledged them all.
func Copy(ctx context.Context, brokers []string, topic, out string, opts ...Option) (Result, error) {
	var mu sync.Mutex
	var produceErr error
	var produced int64
	res, err := consume(ctx, brokers, topic, loop{
		opts: []kgo.Opt{kgo.DefaultProduceTopic(out)},
		handle: func(cl *kgo.Client, recs []*kgo.Record) error {
			for _, r := range recs {
				cl.Produce(ctx, &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}, func(_ *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						if produceErr == nil {
							produceErr = err
						}
						return
					}
					produced++
				})
			}
			return nil
		},
		finish: func(cl *kgo.Client) error {
			if err := cl.Flush(ctx); err != nil {
				return fmt.Errorf("flush: %w", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if produceErr != nil {
				return fmt.Errorf("produce to %s: %w", out, produceErr)
			}
			return nil
		},
	}, opts...)
	res.Produced = produced
	return res, err
}

// loop is what a baseline does with the records consume reads.
type loop struct {
	// opts are extra client options (a producer's default topic).
	opts []kgo.Opt
	// handle gets each fetched partition's records, from the polling
	// goroutine; an error stops the run.
	handle func(*kgo.Client, []*kgo.Record) error
	// finish runs after the last record was handled, before the clock stops.
	finish func(*kgo.Client) error
	// mark is when to note the time (WithMark); 0 never.
	mark int64
}

// consume reads every partition of topic up to the end offsets listed at
// the start and hands the records to l.
func consume(ctx context.Context, brokers []string, topic string, l loop, opts ...Option) (Result, error) {
	for _, o := range opts {
		o(&l)
	}
	var res Result
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return res, err
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, topic)
	admin.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return res, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	start := map[string]map[int32]kgo.Offset{topic: {}}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
			start[topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})

	began := time.Now()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(start)}, l.opts...)...)
	if err != nil {
		return res, err
	}
	defer cl.Close()
	for len(want) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return res, ferr
		}
		var herr error
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 || herr != nil {
				return
			}
			end, ok := want[p.Partition]
			if !ok {
				return
			}
			recs := p.Records
			// Past the end listed at the start: not ours to count.
			for len(recs) > 0 && recs[len(recs)-1].Offset >= end {
				recs = recs[:len(recs)-1]
			}
			for _, r := range recs {
				res.Bytes += int64(len(r.Key) + len(r.Value))
			}
			res.Records += int64(len(recs))
			if len(recs) > 0 {
				herr = l.handle(cl, recs)
			}
			if l.mark > 0 && res.MarkRecords == 0 && res.Records >= l.mark {
				res.MarkRecords, res.MarkElapsed = res.Records, time.Since(began)
			}
			if p.Records[len(p.Records)-1].Offset+1 >= end {
				delete(want, p.Partition)
			}
		})
		if herr != nil {
			return res, herr
		}
	}
	if err := l.finish(cl); err != nil {
		return res, err
	}
	res.Elapsed = time.Since(began)
	return res, nil
}

// keyedRecord is a record of the running-aggregate workload (scenario 7).
type keyedRecord struct {
	K string `json:"k"`
	V int64  `json:"v"`
}

// keyedGroup is one key's running aggregate.
type keyedGroup struct{ sum, n int64 }

// RunningAggregate decodes every record of topic as JSON {"k": ..., "v": ...}
// and keeps sum(v) and count(*) by k in memory, as a stateful job's running
// aggregate does, without making anything durable. GOMAXPROCS workers decode
// and sum into maps of their own, merged into one map of every key at the
// end (before the clock stops). It reports the number of keys and the sum of
// v and count over them, for checking against the workload.
func RunningAggregate(ctx context.Context, brokers []string, topic string, opts ...Option) (Result, error) {
	workers := runtime.GOMAXPROCS(0)
	local := make([]map[string]keyedGroup, workers)
	for w := range local {
		local[w] = map[string]keyedGroup{}
	}
	var state map[string]keyedGroup
	res, err := decodeInParallel(ctx, brokers, topic, workers, func(w int, r *kgo.Record) error {
		var t keyedRecord
		if err := json.Unmarshal(r.Value, &t); err != nil {
			return err
		}
		g := local[w][t.K]
		g.sum += t.V
		g.n++
		local[w][t.K] = g
		return nil
	}, func() {
		// One map of every key, as the state of a single process.
		state = local[0]
		for _, m := range local[1:] {
			for k, g := range m {
				s := state[k]
				s.sum += g.sum
				s.n += g.n
				state[k] = s
			}
		}
	}, opts...)
	if err != nil {
		return res, err
	}
	res.Keys = int64(len(state))
	for _, g := range state {
		res.Total.Sum += g.sum
		res.Total.Count += g.n
	}
	return res, nil
}

// decodeInParallel consumes topic as consume does, handing each fetched
// slice of records to one of workers goroutines, which call decode(w, r)
// for every record (so state indexed by w needs no lock). A worker's first
// decode error, naming the record, fails the run. merge, if set, runs after
// the last record and before the clock stops.
func decodeInParallel(ctx context.Context, brokers []string, topic string, workers int, decode func(w int, r *kgo.Record) error, merge func(), opts ...Option) (Result, error) {
	work := make(chan []*kgo.Record, 2*workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for recs := range work {
				for _, r := range recs {
					if err := decode(w, r); err != nil && errs[w] == nil {
						errs[w] = fmt.Errorf("decode %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
					}
				}
			}
		}()
	}
	// The workers end with the run, whether consume reaches finish or
	// returns early with an error.
	var once sync.Once
	stop := func() {
		once.Do(func() { close(work) })
		wg.Wait()
	}
	defer stop()
	return consume(ctx, brokers, topic, loop{
		handle: func(_ *kgo.Client, recs []*kgo.Record) error {
			select {
			case work <- recs:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		finish: func(*kgo.Client) error {
			stop()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			if merge != nil {
				merge()
			}
			return nil
		},
	}, opts...)
}
