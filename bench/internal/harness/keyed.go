package harness

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// KeyedWorkload is what ProduceKeyed wrote: records {"k": "key-0000042",
// "v": 7} of the running-aggregate scenario (7).
type KeyedWorkload struct {
	Topic      string
	Partitions int
	Records    int64
	// Bytes counts record values (there are no keys).
	Bytes int64
	// Keys is the number of distinct keys written.
	Keys int64
	// Sum is the sum of v over every record.
	Sum int64
}

// KeyName is the k of key index i: "key-" and seven digits at least, so
// that records are about the same size whatever the key count.
func KeyName(buf []byte, i int) []byte {
	buf = append(buf, "key-"...)
	s := strconv.Itoa(i)
	for range 7 - len(s) {
		buf = append(buf, '0')
	}
	return append(buf, s...)
}

// KeyedRecord appends {"k":"key-…","v":v} to buf.
func KeyedRecord(buf []byte, key int, v int64) []byte {
	buf = append(buf, `{"k":"`...)
	buf = KeyName(buf, key)
	buf = append(buf, `","v":`...)
	buf = strconv.AppendInt(buf, v, 10)
	return append(buf, '}')
}

// SpreadKeys returns the key of record i of n over keys distinct keys
// such that the records cover every key once before any key comes again,
// in an order that is not the keys' own (a multiplicative permutation), so
// that a batch's keys are spread over the whole key space as arriving
// traffic would be. v is in [1, 100], deterministic in i.
func SpreadKeys(keys int) func(i int) (int, int64) {
	// A multiplier coprime with keys makes x → x·a mod keys a permutation.
	a := 7919
	for gcd(a, keys) != 1 {
		a += 2
	}
	return func(i int) (int, int64) {
		x := i % keys
		return int((int64(x)*int64(a) + 12345) % int64(keys)), int64(i%100) + 1
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ProduceKeyed writes n records round-robin over the partitions of topic,
// record i with the key and value record(i) returns, and returns what it
// wrote. It does not check that the topic was empty: call it again to add
// records.
func (k *Kafka) ProduceKeyed(ctx context.Context, topic string, partitions, n int, record func(i int) (int, int64)) (*KeyedWorkload, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxBufferedRecords(50_000), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	defer cl.Close()
	w := &KeyedWorkload{Topic: topic, Partitions: partitions}
	seen := make([]bool, 0)
	var produced produceErrs
	for i := range n {
		key, v := record(i)
		if key >= len(seen) {
			seen = append(seen, make([]bool, key+1-len(seen))...)
		}
		if !seen[key] {
			seen[key] = true
			w.Keys++
		}
		val := KeyedRecord(make([]byte, 0, 32), key, v)
		w.Records++
		w.Bytes += int64(len(val))
		w.Sum += v
		cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(i % partitions), Value: val}, produced.add)
	}
	if err := cl.Flush(ctx); err != nil {
		return nil, fmt.Errorf("produce to %s: flush: %w", topic, err)
	}
	if err := produced.first(); err != nil {
		return nil, fmt.Errorf("produce to %s: %w", topic, err)
	}
	return w, nil
}
