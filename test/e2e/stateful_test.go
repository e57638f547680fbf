package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// openPositionJob is the treasury's open currency position as the stateful
// streaming issue writes it: a running total per branch and currency, in
// update mode, upserted into PostgreSQL.
const openPositionJob = `
name: open-position
source:
  kafka: {bootstrapServers: "BROKERS", subscribe: [transaction], startingOffsets: earliest, maxOffsetsPerTrigger: 600}
transforms:
  - decode: {format: json, schema: "branch STRING, currency STRING, amount BIGINT"}
  - sql:
      view: tx
      query: select branch, currency, sum(amount) as position, count(*) as n from tx group by branch, currency
outputMode: update
state: {partitions: 4, snapshotInterval: 3}
checkpoint: {state: "STATE", minBatchesToRetain: 5}
sink:
  postgres: {url: "PGURL", table: open_position, mode: upsert, keyColumns: [branch, currency], createTable: true}
trigger: {processingTime: 200ms}
`

// TestStatefulRunningTotal runs the open-position job across an executor
// SIGKILLed mid-run, a new executor joining (state partitions move and are
// restored from checkpoint.state), and the leading driver SIGKILLed: at the
// end the upsert table holds exactly the sums and counts of everything
// produced.
func TestStatefulRunningTotal(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	db := pgConn(t, pg)
	brokers := startKafka(t, 3, "transaction")
	etcd := testenv.StartEtcd(t)
	dA, addrA := startDriver(t, "driver-a", etcd)
	dB, addrB := startDriver(t, "driver-b", etcd)
	victim := startExecutor(t, "exec-1", addrA, addrB)
	startExecutor(t, "exec-2", addrB, addrA)
	cA, cB := client(t, addrA), client(t, addrB)
	var leader, follower sluicev1.DriverServiceClient
	var leaderProc *proc
	eventually(t, 30*time.Second, "one driver leads", func() error {
		_, errA := cA.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		_, errB := cB.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		switch {
		case errA == nil && errB == nil:
			return errors.New("both drivers answer as leader")
		case errA == nil:
			if _, ok := rpc.LeaderFrom(errB); !ok {
				return fmt.Errorf("follower B: %v", errB)
			}
			leader, follower, leaderProc = cA, cB, dA
		case errB == nil:
			if _, ok := rpc.LeaderFrom(errA); !ok {
				return fmt.Errorf("follower A: %v", errA)
			}
			leader, follower, leaderProc = cB, cA, dB
		default:
			return fmt.Errorf("no leader yet: %v / %v", errA, errB)
		}
		return nil
	})

	yaml := strings.NewReplacer("BROKERS", strings.Join(brokers, ","), "STATE", t.TempDir(), "PGURL", pg.URL).Replace(openPositionJob)
	spec, err := jobspec.ParseYAML([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}

	type total struct{ position, n int64 }
	want := map[treasuryKey]total{}
	rng := rand.New(rand.NewPCG(14, 3))
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transaction"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produceTx := func(n int) {
		branches := []string{"Kazan", "SPB", "Novosibirsk", "Surgut", "Omsk"}
		currencies := []string{"RUB", "USD", "EUR", "GBP"}
		recs := make([]*kgo.Record, n)
		for i := range recs {
			b, c, a := branches[rng.IntN(len(branches))], currencies[rng.IntN(len(currencies))], rng.IntN(201)-100
			v, _ := json.Marshal(map[string]any{"branch": b, "currency": c, "amount": a})
			recs[i] = &kgo.Record{Value: v}
			tot := want[treasuryKey{b, c}]
			want[treasuryKey{b, c}] = total{tot.position + int64(a), tot.n + 1}
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := producer.ProduceSync(pctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	produceTx(2000)
	if _, err := leader.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	produceTx(1500)
	killSinkExecutorMidBatch(t, leader, "open-position", 1, victim)
	// A new executor: state partitions that lived on the killed one are
	// restored here, or on exec-2, from checkpoint.state.
	startExecutor(t, "exec-3", addrA, addrB)
	produceTx(1500)
	killSinkExecutorMidBatch(t, leader, "open-position", 5, leaderProc)
	produceTx(1000)

	table := func() (map[treasuryKey]total, error) {
		rows, err := db.Query(ctx, `SELECT branch, currency, position, n FROM open_position`)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		got := map[treasuryKey]total{}
		for rows.Next() {
			var k treasuryKey
			var tot total
			if err := rows.Scan(&k.branch, &k.currency, &tot.position, &tot.n); err != nil {
				return nil, err
			}
			got[k] = tot
		}
		return got, rows.Err()
	}
	eventually(t, 2*time.Minute, "the table holds the running totals of everything produced", func() error {
		got, err := table()
		if err != nil {
			return err
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(treasuryKey{}, total{})); diff != "" {
			return fmt.Errorf("open positions (-produced +table):\n%s", diff)
		}
		return nil
	})

	// The state's figures, as Spark reports a stateful operator's.
	j, err := follower.GetJob(ctx, &sluicev1.GetJobRequest{Name: "open-position"})
	if err != nil {
		t.Fatal(err)
	}
	ops := j.GetLastProgress().GetStateOperators()
	if len(ops) != 1 || ops[0].GetNumRowsTotal() != int64(len(want)) || ops[0].GetNumShufflePartitions() != 4 {
		t.Fatalf("state operators of the last batch: %v; want numRowsTotal %d over 4 partitions", ops, len(want))
	}
	// The killed executor's partitions were restored elsewhere.
	recent, err := follower.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "open-position"})
	if err != nil {
		t.Fatal(err)
	}
	var restored int32
	for _, p := range recent.GetProgress() {
		for _, op := range p.GetStateOperators() {
			restored += op.GetNumRestoredPartitions()
		}
	}
	if restored == 0 {
		t.Error("no batch restored a state partition from checkpoint.state, though an executor holding some was killed")
	}
}

// TestStatefulResumeRefusesAnotherLayout stops a stateful job after it kept
// state, and resubmits it under the same name with another partition count,
// then with another query: each fails at once, naming what changed, rather
// than reading the state it left as something else.
func TestStatefulResumeRefusesAnotherLayout(t *testing.T) {
	ctx := context.Background()
	brokers := startKafka(t, 2, "transaction")
	c, _ := startSinkCluster(t)
	state, out := t.TempDir(), t.TempDir()
	yaml := strings.NewReplacer("BROKERS", strings.Join(brokers, ","), "STATE", state).Replace(openPositionJob)
	spec := func(edit func(*sluicev1.JobSpec)) *sluicev1.JobSpec {
		s, err := jobspec.ParseYAML([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		s.Sink = &sluicev1.Sink{Kind: &sluicev1.Sink_File{File: &sluicev1.FileSink{Path: out}}}
		if edit != nil {
			edit(s)
		}
		return s
	}
	produce(t, brokers, "transaction", 0, 100)
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec(nil)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "a batch commits", func() error {
		b, _, err := lastBatch(ctx, c, "open-position")
		if err != nil || b < 0 {
			return fmt.Errorf("last batch %d, err %v", b, err)
		}
		return nil
	})
	for _, tc := range []struct {
		name string
		edit func(*sluicev1.JobSpec)
		want string
	}{
		{"another partition count", func(s *sluicev1.JobSpec) { s.State.Partitions = 8 }, "was written with 4 partitions"},
		{"another query", func(s *sluicev1.JobSpec) {
			s.Transforms[1].GetSql().Query = "select branch, currency, sum(amount) as position, max(amount) as top from tx group by branch, currency"
		}, "a changed query cannot read it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.StopJob(ctx, &sluicev1.StopJobRequest{Name: "open-position"}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "the job stops", func() error {
				j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "open-position"})
				if err != nil {
					return err
				}
				if s := j.GetState(); s == sluicev1.JobState_JOB_STATE_RUNNING || s == sluicev1.JobState_JOB_STATE_STOPPING {
					return fmt.Errorf("state %s", s)
				}
				return nil
			})
			produce(t, brokers, "transaction", 100, 110)
			if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec(tc.edit)}); err != nil {
				t.Fatal(err)
			}
			eventually(t, time.Minute, "the job fails naming the change", func() error {
				j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "open-position"})
				if err != nil {
					return err
				}
				if j.GetState() != sluicev1.JobState_JOB_STATE_FAILED || !strings.Contains(j.GetLastError(), tc.want) {
					return fmt.Errorf("state %s, last error %q", j.GetState(), j.GetLastError())
				}
				return nil
			})
		})
	}
}
