package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/jobspec"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// clicksPerMinuteJob counts records per minute of Kafka's timestamp with a
// 10-second watermark, in append mode: each minute is written once, when
// the watermark has passed its end.
const clicksPerMinuteJob = `
name: clicks-per-minute
source:
  kafka: {bootstrapServers: "BROKERS", subscribe: [clicks], startingOffsets: earliest, maxOffsetsPerTrigger: 150}
transforms:
  - sql:
      view: clicks
      query: >
        select window(timestamp, '1 minute').start as minute, count(*) as clicks
        from clicks group by window(timestamp, '1 minute')
outputMode: append
watermark: {column: timestamp, delay: 10 seconds}
state: {partitions: 3, snapshotInterval: 4}
checkpoint: {state: "STATE"}
sink:
  file: {path: "OUT", format: jsonl}
trigger: {processingTime: 200ms}
`

// TestWindowedCountAppend runs a tumbling-window count with a watermark in
// append mode into files, with an executor SIGKILLed mid-run: every minute
// the watermark passed is written exactly once with its exact count, the
// minute still open is not written, and records that arrive after their
// minute was written are dropped and counted as such.
func TestWindowedCountAppend(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t, 2, "clicks")
	c, victim := startSinkCluster(t)
	out := t.TempDir()
	yaml := strings.NewReplacer("BROKERS", strings.Join(brokers, ","), "STATE", t.TempDir(), "OUT", out).Replace(clicksPerMinuteJob)
	spec, err := jobspec.ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	base := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	counted := map[string]int64{} // minute → records that count
	var late int64
	// send produces a click at each offset from base (seconds), spread
	// over the partitions by key.
	send := func(secs []int, isLate bool) {
		recs := make([]*kgo.Record, len(secs))
		for i, s := range secs {
			ts := base.Add(time.Duration(s) * time.Second)
			recs[i] = &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte("click"), Timestamp: ts}
			if isLate {
				late++
			} else {
				counted[ts.Truncate(time.Minute).Format(time.RFC3339)]++
			}
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := producer.ProduceSync(pctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	waitMax := func(want time.Time) {
		eventually(t, time.Minute, "the job has seen event time "+want.Format(time.TimeOnly), func() error {
			j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "clicks-per-minute"})
			if err != nil {
				return err
			}
			got := j.GetLastProgress().GetEventTime()["max"]
			if got != want.Format(time.RFC3339Nano) {
				return fmt.Errorf("event time max %q", got)
			}
			return nil
		})
	}

	// Minutes 0 to 4, a little out of order within each minute.
	var secs []int
	for m := range 5 {
		for i := range 120 {
			secs = append(secs, m*60+(i*37)%60)
		}
	}
	send(secs, false)
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	killSinkExecutorMidBatch(t, c, "clicks-per-minute", 1, victim)
	waitMax(base.Add(299 * time.Second))
	// The watermark is now 4:49: minutes 0 to 3 are written. Records of
	// minute 1 are late; records of minute 4 (open) still count.
	send([]int{65, 70, 119}, true)
	send([]int{250, 289}, false)
	// Minute 10 closes minutes 4 to 9 (only 4 has records) and stays open.
	send([]int{600, 601}, false)
	waitMax(base.Add(601 * time.Second))

	want := map[string]int64{}
	for minute, n := range counted {
		if minute != base.Add(10*time.Minute).Format(time.RFC3339) {
			want[minute] = n
		}
	}
	eventually(t, time.Minute, "every complete minute is written", func() error {
		rows, err := fileRows(out, "clicks-per-minute")
		if err != nil {
			return err
		}
		got := map[string]int64{}
		for _, r := range rows {
			m, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["minute"]))
			if err != nil {
				return fmt.Errorf("minute %v: %v", r["minute"], err)
			}
			key := m.UTC().Format(time.RFC3339)
			if _, dup := got[key]; dup {
				t.Fatalf("minute %s written twice: %v", key, rows)
			}
			got[key] = toInt(r["clicks"])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("clicks per minute (-want +written):\n%s", diff)
		}
		return nil
	})
	recent, err := c.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "clicks-per-minute"})
	if err != nil {
		t.Fatal(err)
	}
	var dropped int64
	for _, p := range recent.GetProgress() {
		for _, op := range p.GetStateOperators() {
			dropped += op.GetNumRowsDroppedByWatermark()
		}
	}
	if dropped != late {
		t.Errorf("numRowsDroppedByWatermark adds up to %d, want the %d late records", dropped, late)
	}
}
