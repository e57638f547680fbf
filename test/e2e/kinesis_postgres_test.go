package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestKinesisPostgresExactlyOnceExecutorKilled reads a 4-shard Kinesis
// stream into PostgreSQL with two executors and kills one with SIGKILL
// mid-run. Kinesis ranges are open-ended until the driver records a task's
// end, so a retried task may read further than the attempt whose rows
// committed; the sink then writes nothing and reports the end stored with
// those rows, and the rest goes to the next batch. The table must hold every
// record exactly once: the count, the ids and a unique key on (shardId,
// sequenceNumber, subSequenceNumber) are checked in SQL.
func TestKinesisPostgresExactlyOnceExecutorKilled(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	db := pgConn(t, pg)
	kc := startKinesisCluster(t, 2)
	testenv.CreateStream(t, kc.admin, "events", 4)
	putEvents(t, kc.admin, "events", 0, 1500)

	src := kc.source("events")
	src.MaxRecordsPerFetch = 200
	src.FetchBufferSize = "4kb" // several batches per shard
	spec := copySpec("kpg", src, "")
	spec.Sink = &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
		Url: pg.URL, Table: "kevents", CreateTable: true,
	}}}
	kc.submit(t, spec)
	killSinkExecutorMidBatch(t, kc.c, "kpg", 2, kc.execs[0])
	putEvents(t, kc.admin, "events", 1500, 3000)

	const n = 3000
	eventually(t, 3*time.Minute, fmt.Sprintf("the table holds all %d ids", n), func() error {
		if _, st, err := lastBatch(ctx, kc.c, "kpg"); err == nil && st == sluicev1.JobState_JOB_STATE_FAILED {
			j, _ := kc.c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "kpg"})
			t.Fatalf("job failed: %s", j.GetLastError())
		}
		d, err := pgInt(db, `SELECT count(DISTINCT id) FROM kevents`)
		if err != nil || d < n {
			return fmt.Errorf("%d of %d ids so far (err %v)", d, n, err)
		}
		return nil
	})
	var rows, distinct, lo, hi int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), min(id), max(id) FROM kevents`).Scan(&rows, &distinct, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n || lo != 0 || hi != n-1 {
		dups, err := pgInt(db, `SELECT count(*) FROM (SELECT id FROM kevents GROUP BY id HAVING count(*) > 1) d`)
		t.Fatalf("kevents holds %d rows, %d distinct ids in [%d, %d]; want %d once each (%d ids more than once, err %v)",
			rows, distinct, lo, hi, n, dups, err)
	}
	// Each Kinesis record once: its shard, sequence number and (for KPL
	// aggregates) sub-sequence number are unique.
	if _, err := db.Exec(ctx, `ALTER TABLE kevents ADD UNIQUE ("shardId", "sequenceNumber", "subSequenceNumber")`); err != nil {
		t.Fatalf("(shardId, sequenceNumber, subSequenceNumber) is not unique: %v", err)
	}
	// Each shard's row in the positions table holds this job's incarnation
	// and the end stored with its last rows.
	parts, err := pgInt(db, `SELECT count(*) FROM sluice_positions
		WHERE job = 'kpg' AND incarnation <> '' AND end_position IS NOT NULL AND batch >= 0`)
	if err != nil || parts != 4 {
		t.Fatalf("positions rows of job kpg with an incarnation and an end: %d (err %v), want one per shard", parts, err)
	}
	j, err := kc.c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "kpg"})
	if err != nil {
		t.Fatal(err)
	}
	if j.GetState() != sluicev1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job state %s (%s), want RUNNING", j.GetState(), j.GetLastError())
	}
	t.Logf("%d records once each; last committed batch %d", n, j.GetLastCommittedBatch())
}
