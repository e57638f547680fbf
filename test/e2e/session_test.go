package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/jobspec"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

const sessionsJob = `
name: sessions
source:
  kafka: {bootstrapServers: "BROKERS", subscribe: [clicks], startingOffsets: earliest, maxOffsetsPerTrigger: 7}
transforms:
  - decode: {format: json, schema: "user STRING"}
  - sql:
      view: clicks
      query: >
        select user, session_window(timestamp, '5 minutes') as session, count(*) as clicks
        from clicks group by user, session_window(timestamp, '5 minutes')
outputMode: append
watermark: {column: timestamp, delay: 10 minutes}
state: {partitions: 3}
checkpoint: {state: "STATE"}
sink:
  file: {path: "OUT", format: jsonl}
trigger: {processingTime: 200ms}
`

// TestSessionWindowsAppend counts clicks per user session (a 5-minute gap)
// in append mode, reading a few records per batch so that every session
// is spread over batches and partitions: each session is written once,
// whole, when the watermark passes its end.
func TestSessionWindowsAppend(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t, 3, "clicks")
	c, _ := startSinkCluster(t)
	out := t.TempDir()
	yaml := strings.NewReplacer("BROKERS", strings.Join(brokers, ","), "STATE", t.TempDir(), "OUT", out).Replace(sessionsJob)
	spec, err := jobspec.ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("clicks"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	var recs []*kgo.Record
	click := func(user string, min int) {
		v, _ := json.Marshal(map[string]string{"user": user})
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(len(recs))), Value: v, Timestamp: base.Add(time.Duration(min) * time.Minute)})
	}
	// send produces the clicks so far, spread over the partitions, and waits
	// until the job has read them (its largest event time is max): a
	// partition read ahead of another must not make the other's clicks late.
	send := func(max int) {
		if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		recs = nil
		want := base.Add(time.Duration(max) * time.Minute).Format(time.RFC3339Nano)
		eventually(t, time.Minute, "the job reads up to "+want, func() error {
			j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "sessions"})
			if err != nil {
				return err
			}
			if got := j.GetLastProgress().GetEventTime()["max"]; got != want {
				return fmt.Errorf("event time max %q", got)
			}
			return nil
		})
	}
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{}
	session := func(u string, start, end int, n int64) {
		want[fmt.Sprintf("%s %s-%s", u, base.Add(time.Duration(start)*time.Minute).Format(time.TimeOnly),
			base.Add(time.Duration(end)*time.Minute).Format(time.TimeOnly))] = n
	}
	for _, m := range []int{0, 2, 4} { // user i: one session [i, i+9)
		for i := range 5 {
			click(fmt.Sprintf("u%d", i), i+m)
		}
	}
	for i := range 5 {
		session(fmt.Sprintf("u%d", i), i, i+9, 3)
	}
	send(8)
	for _, m := range []int{30, 31} { // and another [30+i, 36+i)
		for i := range 5 {
			click(fmt.Sprintf("u%d", i), i+m)
		}
	}
	for i := range 5 {
		session(fmt.Sprintf("u%d", i), 30+i, 36+i, 2)
	}
	send(35)
	click("closer", 60) // moves the watermark past every session above; its own stays open
	send(60)
	eventually(t, 2*time.Minute, "every closed session is written once", func() error {
		rows, err := fileRows(out, "sessions")
		if err != nil {
			return err
		}
		got := map[string]int64{}
		for _, r := range rows {
			s, _ := r["session"].(map[string]any)
			start, err1 := time.Parse(time.RFC3339Nano, fmt.Sprint(s["start"]))
			end, err2 := time.Parse(time.RFC3339Nano, fmt.Sprint(s["end"]))
			if err1 != nil || err2 != nil {
				return fmt.Errorf("session %v: %v %v", r["session"], err1, err2)
			}
			k := fmt.Sprintf("%v %s-%s", r["user"], start.UTC().Format(time.TimeOnly), end.UTC().Format(time.TimeOnly))
			if _, dup := got[k]; dup {
				t.Fatalf("session %s written twice", k)
			}
			got[k] = toInt(r["clicks"])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			return fmt.Errorf("sessions (-want +written):\n%s", diff)
		}
		return nil
	})
}
