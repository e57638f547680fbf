package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// pgConn connects to the throwaway cluster for the test's checks.
func pgConn(t *testing.T, pg testenv.Postgres) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), pg.URL)
	if err != nil {
		t.Fatalf("connect to postgres: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// pgInt runs a query returning one integer.
func pgInt(conn *pgx.Conn, sql string, args ...any) (int64, error) {
	var n int64
	err := conn.QueryRow(context.Background(), sql, args...).Scan(&n)
	return n, err
}

// startSinkCluster starts etcd, a driver and two executors, and waits until
// both executors are connected.
func startSinkCluster(t *testing.T) (driver sluicev1.DriverServiceClient, victim *proc) {
	t.Helper()
	etcd := testenv.StartEtcd(t)
	_, addr := startDriver(t, "driver", etcd)
	victim = startExecutor(t, "exec-1", addr)
	startExecutor(t, "exec-2", addr)
	c := client(t, addr)
	eventually(t, 30*time.Second, "driver leads and both executors connect", func() error {
		r, err := c.ListExecutors(context.Background(), &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return err
		}
		if len(r.GetExecutors()) != 2 {
			return fmt.Errorf("%d executors", len(r.GetExecutors()))
		}
		return nil
	})
	return c, victim
}

// killSinkExecutorMidBatch kills p right after job commits a batch later
// than after, when the next batch's tasks are being dispatched or run.
func killSinkExecutorMidBatch(t *testing.T, c sluicev1.DriverServiceClient, job string, after int64, p *proc) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		b, _, err := lastBatch(context.Background(), c, job)
		if err == nil && b > after {
			p.kill()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s did not commit batch %d within a minute", job, after+1)
}

type treasuryKey struct{ branch, currency string }

// TestPostgresTreasury runs the treasury job as a Spark user writes it
// (Kafka topic "transaction" with {branch, currency, amount} transactions,
// a Spark SQL query summing amount by branch and currency per batch) into
// the PostgreSQL table transaction_flow, kills one of the two executors
// while it runs, and checks the sums in SQL against what was produced.
func TestPostgresTreasury(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	db := pgConn(t, pg)
	// The table, as the query's columns: the batch's time as
	// from_unixtime prints it, the group and its sum.
	if _, err := db.Exec(ctx, `CREATE TABLE transaction_flow (curr_time text NOT NULL,
		branch_name text NOT NULL, currency_code text NOT NULL, batch_value bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	brokers := startKafka(t, 3, "transaction")
	c, victim := startSinkCluster(t)

	data, err := os.ReadFile("../../examples/treasury/treasury.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := jobspec.ParseYAML(data)
	if err != nil {
		t.Fatal(err)
	}
	spec.GetSource().GetKafka().BootstrapServers = strings.Join(brokers, ",")
	spec.GetSource().GetKafka().MaxOffsetsPerTrigger = 700
	spec.Trigger = &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "200ms"}}
	spec.Sink = &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{Url: pg.URL, Table: "transaction_flow", CreateTable: true}}}

	// The generator: random branch, currency and amount in [-100, 100].
	want := map[treasuryKey]int64{}
	var wantN int64
	rng := rand.New(rand.NewPCG(3, 60))
	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("transaction"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produceTx := func(n int) {
		branches := []string{"Kazan", "SPB", "Novosibirsk", "Surgut"}
		currencies := []string{"RUB", "USD", "EUR", "GBP"}
		recs := make([]*kgo.Record, n)
		for i := range recs {
			tx := map[string]any{"branch": branches[rng.IntN(4)], "currency": currencies[rng.IntN(4)], "amount": rng.IntN(201) - 100}
			v, _ := json.Marshal(tx)
			recs[i] = &kgo.Record{Value: v}
			want[treasuryKey{tx["branch"].(string), tx["currency"].(string)}] += int64(tx["amount"].(int))
			wantN++
		}
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := producer.ProduceSync(pctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	produceTx(2000)
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	produceTx(1500) // more arrives while the job runs
	killSinkExecutorMidBatch(t, c, "treasury", 1, victim)
	produceTx(1500)

	eventually(t, 2*time.Minute, "the job read every transaction", func() error {
		p, err := c.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "treasury"})
		if err != nil {
			return err
		}
		var n int64
		for _, b := range p.GetProgress() {
			n += b.GetNumInputRows()
		}
		if n != wantN {
			return fmt.Errorf("read %d of %d", n, wantN)
		}
		return nil
	})
	rows, err := db.Query(ctx, `SELECT branch_name, currency_code, sum(batch_value)::bigint FROM transaction_flow GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[treasuryKey]int64{}
	for rows.Next() {
		var k treasuryKey
		var sum int64
		if err := rows.Scan(&k.branch, &k.currency, &sum); err != nil {
			t.Fatal(err)
		}
		got[k] = sum
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(treasuryKey{})); diff != "" {
		t.Fatalf("sums by branch and currency in SQL (-produced +table):\n%s", diff)
	}
	// The positions table holds the last batch the table received.
	last, _, err := lastBatch(ctx, c, "treasury")
	if err != nil {
		t.Fatal(err)
	}
	pos, err := pgInt(db, `SELECT batch FROM sluice_positions WHERE job = 'treasury' AND sink = 'sink' AND part = 'aggregate'`)
	if err != nil || pos < 1 || pos > last {
		t.Fatalf("positions row holds batch %d (err %v); the job's last batch is %d", pos, err, last)
	}
	bad, err := pgInt(db, `SELECT count(*) FROM transaction_flow WHERE curr_time !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$'`)
	if err != nil || bad != 0 {
		t.Fatalf("%d rows with a curr_time that is not from_unixtime's (err %v)", bad, err)
	}
	t.Logf("%d transactions, %d groups; last batch %d", wantN, len(got), last)
}

// TestPostgresExactlyOnceExecutorKilled kills one of two executors with
// SIGKILL while a pass-through job writes to PostgreSQL: its tasks are
// retried on the other executor, and the table holds every source record
// exactly once (count and a unique key), because each task's rows commit
// in one transaction with its position.
func TestPostgresExactlyOnceExecutorKilled(t *testing.T) {
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	db := pgConn(t, pg)
	brokers := startKafka(t, 4, "events")
	produce(t, brokers, "events", 0, 4000)
	c, victim := startSinkCluster(t)

	spec := passThroughSpec("copy", brokers, "events", "", 200)
	spec.Sink = &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
		Url: pg.URL, Table: "events", CreateTable: true,
	}}}
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	killSinkExecutorMidBatch(t, c, "copy", 3, victim)
	produce(t, brokers, "events", 4000, 6000)

	const n = 6000
	eventually(t, 2*time.Minute, fmt.Sprintf("the table holds all %d ids", n), func() error {
		d, err := pgInt(db, `SELECT count(DISTINCT id) FROM events`)
		if err != nil || d < n {
			return fmt.Errorf("%d of %d ids so far (err %v)", d, n, err)
		}
		return nil
	})
	var rows, distinct, lo, hi int64
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), min(id), max(id) FROM events`).Scan(&rows, &distinct, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if rows != n || distinct != n || lo != 0 || hi != n-1 {
		dups := dupIDs(t, db)
		t.Fatalf("events holds %d rows, %d distinct ids in [%d, %d]; want %d once each (duplicates: %s)", rows, distinct, lo, hi, n, dups)
	}
	// A unique key on (partition, offset) proves the same: each source
	// record once.
	if _, err := db.Exec(ctx, `ALTER TABLE events ADD UNIQUE ("partition", "offset")`); err != nil {
		t.Fatalf("(partition, offset) is not unique: %v", err)
	}
	j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if j.GetState() != sluicev1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job state %s (%s), want RUNNING", j.GetState(), j.GetLastError())
	}
	parts, err := pgInt(db, `SELECT count(*) FROM sluice_positions WHERE job = 'copy'`)
	if err != nil || parts != 4 {
		t.Fatalf("positions rows for job copy: %d (err %v), want one per partition", parts, err)
	}
}

func dupIDs(t *testing.T, db *pgx.Conn) string {
	rows, err := db.Query(context.Background(), `SELECT id, count(*) FROM events GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 10`)
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, c int64
		if err := rows.Scan(&id, &c); err == nil {
			out = append(out, fmt.Sprintf("id %d ×%d", id, c))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
