package e2e

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestSpeculationAroundAFrozenExecutor freezes one of two executors
// (SIGSTOP) for a few seconds, three times, while a job with speculation
// writes to PostgreSQL and another to files. The heartbeat timeout is long
// (20 s), so the frozen executor is never declared lost: only speculation
// can finish its batches, on copies run by the other executor. When it
// thaws, its attempts go on and may write; the sinks' (job, batch, part)
// keys must discard that, so each table and file holds every record once.
func TestSpeculationAroundAFrozenExecutor(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	db := pgConn(t, pg)
	brokers := startKafka(t, 6, "events")
	produce(t, brokers, "events", 0, 3000)

	etcd := testenv.StartEtcd(t)
	_, addr := startDriver(t, "driver", etcd, "--heartbeat-interval", "1s", "--heartbeat-timeout", "20s")
	frozen := startExecutor(t, "exec-1", addr)
	startExecutor(t, "exec-2", addr)
	c := client(t, addr)
	eventually(t, 30*time.Second, "driver leads and both executors connect", func() error {
		r, err := c.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		if len(r.GetExecutors()) != 2 {
			return fmt.Errorf("%d executors", len(r.GetExecutors()))
		}
		return nil
	})

	speculate := &sluicev1.Speculation{Enabled: true, Quantile: 0.5, MinTaskRuntime: "300ms"}
	toPG := passThroughSpec("to-pg", brokers, "events", "", 300)
	toPG.Sink = &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{Url: pg.URL, Table: "events", CreateTable: true}}}
	toPG.Speculation = speculate
	out := t.TempDir()
	toFiles := passThroughSpec("to-files", brokers, "events", out, 300)
	toFiles.Speculation = speculate
	for _, s := range []*sluicev1.JobSpec{toPG, toFiles} {
		if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
			t.Fatal(err)
		}
	}

	// Freeze exec-1 three times, each time once both jobs committed another
	// batch, and let new records arrive meanwhile.
	var after [2]int64
	for round := range 3 {
		eventually(t, time.Minute, "both jobs commit a batch", func() error {
			for i, job := range []string{"to-pg", "to-files"} {
				b, _, err := lastBatch(ctx, c, job)
				if err != nil || b <= after[i] {
					return fmt.Errorf("%s at batch %d (err %v)", job, b, err)
				}
				after[i] = b
			}
			return nil
		})
		if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		produce(t, brokers, "events", 3000+round*1000, 4000+round*1000)
		time.Sleep(3 * time.Second) // the freeze itself, not a wait for a result
		if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}

	const n = 6000
	eventually(t, 2*time.Minute, fmt.Sprintf("the table holds all %d ids", n), func() error {
		d, err := pgInt(db, `SELECT count(DISTINCT id) FROM events`)
		if err != nil || d < n {
			return fmt.Errorf("%d of %d ids so far (err %v)", d, n, err)
		}
		return nil
	})
	var rows, distinct int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM events`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n {
		t.Fatalf("events holds %d rows, %d distinct ids; want %d once each (duplicates: %s)", rows, distinct, n, dupIDs(t, db))
	}
	exactlyOnce(t, out, "to-files", n)

	// Speculation did the work: copies ran while exec-1 was frozen. Which
	// job had tasks on exec-1 when it froze is up to timing (a frozen
	// executor's slots stay taken, so new tasks go to exec-2), so the
	// copies are counted over both.
	copies := map[string]int32{}
	for _, job := range []string{"to-pg", "to-files"} {
		rp, err := c.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: job})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rp.GetProgress() {
			copies[job] += p.GetSpeculativeTasks()
		}
		if j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: job}); err != nil || j.GetState() != sluicev1.JobState_JOB_STATE_RUNNING {
			t.Errorf("%s: %s (%s, %v), want RUNNING", job, j.GetState(), j.GetLastError(), err)
		}
	}
	if copies["to-pg"]+copies["to-files"] == 0 {
		t.Errorf("no speculative copies in either job: %v", copies)
	}
	t.Logf("speculative copies: %v", copies)
}
