package baseline_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicehq/sluice/bench/internal/baseline"
	"github.com/sluicehq/sluice/bench/internal/harness"
)

// TestBaselines runs the Kafka baselines against kfake: Aggregate must find
// the sums the generator wrote, Count must count every record once, Copy
// must copy every record exactly once.
func TestBaselines(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, err := harness.StartKafka(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	for _, topic := range []string{"in", "out"} {
		if err := k.CreateTopic(ctx, topic, 4); err != nil {
			t.Fatal(err)
		}
	}
	w, err := k.Preload(ctx, "in", 4, 5000, 1)
	if err != nil {
		t.Fatal(err)
	}

	agg, err := baseline.Aggregate(ctx, k.Brokers, "in")
	if err != nil {
		t.Fatal(err)
	}
	if agg.Records != w.Records || agg.Bytes != w.Bytes || agg.Elapsed <= 0 {
		t.Errorf("aggregate read %d records, %d bytes in %s; want %d, %d", agg.Records, agg.Bytes, agg.Elapsed, w.Records, w.Bytes)
	}
	if len(agg.Groups) != len(w.Groups) {
		t.Errorf("aggregate found %d groups, want %d", len(agg.Groups), len(w.Groups))
	}
	for g, want := range w.Groups {
		if got := agg.Groups[g]; got.Sum != want.Sum || got.Count != want.Count {
			t.Errorf("group %s = %+v, want %+v", g, got, want)
		}
	}

	cnt, err := baseline.Count(ctx, k.Brokers, "in")
	if err != nil {
		t.Fatal(err)
	}
	if cnt.Records != w.Records || cnt.Bytes != w.Bytes || cnt.Elapsed <= 0 {
		t.Errorf("count read %d records, %d bytes in %s; want %d, %d", cnt.Records, cnt.Bytes, cnt.Elapsed, w.Records, w.Bytes)
	}

	cp, err := baseline.Copy(ctx, k.Brokers, "in", "out")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Records != w.Records || cp.Produced != w.Records {
		t.Errorf("copy read %d and produced %d records, want %d", cp.Records, cp.Produced, w.Records)
	}
	if n, err := k.Records(ctx, "out"); err != nil || n != w.Records {
		t.Errorf("out holds %d records (%v), want %d", n, err, w.Records)
	}
}

// TestRunningAggregate runs the running-aggregate baseline of scenario 7
// against kfake: it must hold every key once, and sum and count every
// record.
func TestRunningAggregate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	k, err := harness.StartKafka(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if err := k.CreateTopic(ctx, "keyed", 4); err != nil {
		t.Fatal(err)
	}
	w, err := k.ProduceKeyed(ctx, "keyed", 4, 25_000, harness.SpreadKeys(10_000))
	if err != nil {
		t.Fatal(err)
	}
	if w.Keys != 10_000 || w.Records != 25_000 {
		t.Fatalf("produced %d records over %d keys", w.Records, w.Keys)
	}
	r, err := baseline.RunningAggregate(ctx, k.Brokers, "keyed")
	if err != nil {
		t.Fatal(err)
	}
	if r.Records != w.Records || r.Bytes != w.Bytes || r.Keys != w.Keys || r.Total != (baseline.Group{Sum: w.Sum, Count: w.Records}) || r.Elapsed <= 0 {
		t.Errorf("running aggregate: %d records, %d bytes, %d keys, totals %+v in %s; want %d, %d, %d, sum %d",
			r.Records, r.Bytes, r.Keys, r.Total, r.Elapsed, w.Records, w.Bytes, w.Keys, w.Sum)
	}
}
