package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/jobspec"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

const dedupJob = `
name: orders-once
source:
  kafka: {bootstrapServers: "BROKERS", subscribe: [orders], startingOffsets: earliest, maxOffsetsPerTrigger: 400}
transforms:
  - decode: {format: json, schema: "id BIGINT, amount BIGINT"}
  - sql: {view: orders, query: "select id, amount from orders"}
dropDuplicates: {columns: [id]}
state: {partitions: 4, snapshotInterval: 3}
checkpoint: {state: "STATE"}
sink:
  file: {path: "OUT", format: jsonl}
trigger: {processingTime: 200ms}
`

// TestDropDuplicates deduplicates a stream with injected duplicates (the
// same ids sent again in later batches, and twice within one) across an
// executor SIGKILL: the files hold every id exactly once, and the batches
// count the duplicates they dropped.
func TestDropDuplicates(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t, 3, "orders")
	c, victim := startSinkCluster(t)
	out := t.TempDir()
	yaml := strings.NewReplacer("BROKERS", strings.Join(brokers, ","), "STATE", t.TempDir(), "OUT", out).Replace(dedupJob)
	spec, err := jobspec.ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	produce(t, brokers, "orders", 0, 3000)
	produce(t, brokers, "orders", 1000, 1500) // duplicates, read in later batches
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	killSinkExecutorMidBatch(t, c, "orders-once", 1, victim)
	produce(t, brokers, "orders", 2000, 2600)
	produce(t, brokers, "orders", 2000, 2100)
	const sent, dups = 3000 + 500 + 600 + 100, 500 + 600 + 100
	eventually(t, 2*time.Minute, "every record is read", func() error {
		p, err := c.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "orders-once"})
		if err != nil {
			return err
		}
		var n, dropped int64
		for _, b := range p.GetProgress() {
			n += b.GetNumInputRows()
			for _, op := range b.GetStateOperators() {
				dropped += op.GetNumDroppedDuplicateRows()
			}
		}
		if n != sent || dropped != dups {
			return fmt.Errorf("read %d of %d records, dropped %d of %d duplicates", n, sent, dropped, dups)
		}
		return nil
	})
	exactlyOnce(t, out, "orders-once", 3000)
}
