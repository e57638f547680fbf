package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestExecutorKilledMidRun kills one of two executors with SIGKILL while a
// job runs; its tasks move to the other executor and the sink still holds
// every record exactly once.
func TestExecutorKilledMidRun(t *testing.T) {
	ctx := context.Background()
	etcd := testenv.StartEtcd(t)
	brokers := startKafka(t, 4, "events")
	produce(t, brokers, "events", 0, 4000)
	_, addr := startDriver(t, "driver", etcd)
	victim := startExecutor(t, "exec-1", addr)
	startExecutor(t, "exec-2", addr)
	c := client(t, addr)

	out := t.TempDir()
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
	if _, err := c.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: passThroughSpec("copy", brokers, "events", out, 200)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "a few batches commit", func() error {
		b, _, err := lastBatch(ctx, c, "copy")
		if err != nil || b < 3 {
			return fmt.Errorf("last batch %d, err %v", b, err)
		}
		return nil
	})
	victim.kill()
	produce(t, brokers, "events", 4000, 6000)
	exactlyOnce(t, out, "copy", 6000)

	j, err := c.GetJob(ctx, &sluicev1.GetJobRequest{Name: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	if j.GetState() != sluicev1.JobState_JOB_STATE_RUNNING {
		t.Fatalf("job state %s (%s), want RUNNING", j.GetState(), j.GetLastError())
	}
}

// TestLeaderFailover runs two drivers on one etcd: exactly one leads, the
// follower names the leader, and after the leader is killed with SIGKILL the
// follower takes over and resumes the job from its last commit, with every
// record in the sink exactly once.
// TestLeaderFailover kills the leading driver mid-stream and checks that the
// follower takes over and the output is exactly once, with the checkpoints
// in each kind of store: etcd (the default), DynamoDB as the drivers' store
// (--store), and S3 as the job's own store (checkpoint: s3).
func TestLeaderFailover(t *testing.T) {
	t.Run("etcd", func(t *testing.T) { leaderFailover(t, nil, nil) })
	t.Run("dynamodb driver store", func(t *testing.T) {
		db := testenv.StartDynalite(t)
		setAWSEnv(t, db.AccessKey, db.SecretKey, db.Region)
		leaderFailover(t, []string{"--store", "dynamodb://sluice_e2e?region=" + db.Region + "&endpoint=" + db.Endpoint}, nil)
	})
	t.Run("s3 job store", func(t *testing.T) {
		m := testenv.StartMinIO(t)
		createBucket(t, m, "checkpoints")
		leaderFailover(t, nil, func(spec *sluicev1.JobSpec) {
			spec.Checkpoint = &sluicev1.Checkpoint{Kind: &sluicev1.Checkpoint_S3{S3: &sluicev1.S3Checkpoint{
				Bucket: "checkpoints", Prefix: "e2e", Region: m.Region, Endpoint: m.Endpoint,
				Auth: &sluicev1.AwsAuth{AwsAccessKey: m.AccessKey, AwsSecretKey: m.SecretKey},
			}}}
		})
	})
}

func leaderFailover(t *testing.T, driverArgs []string, editSpec func(*sluicev1.JobSpec)) {
	ctx := context.Background()
	etcd := testenv.StartEtcd(t)
	brokers := startKafka(t, 4, "events")
	produce(t, brokers, "events", 0, 3000)
	dA, addrA := startDriver(t, "driver-a", etcd, driverArgs...)
	dB, addrB := startDriver(t, "driver-b", etcd, driverArgs...)
	startExecutor(t, "exec-1", addrA, addrB)
	startExecutor(t, "exec-2", addrB, addrA)
	cA, cB := client(t, addrA), client(t, addrB)

	var leader, follower sluicev1.DriverServiceClient
	var leaderProc *proc
	var leaderAddr string
	eventually(t, 30*time.Second, "one driver leads", func() error {
		_, errA := cA.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		_, errB := cB.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		switch {
		case errA == nil && errB == nil:
			t.Fatal("both drivers answer as leader")
		case errA == nil:
			if l, ok := rpc.LeaderFrom(errB); !ok || l != addrA {
				return fmt.Errorf("follower B names leader %q (%v), want %s", l, errB, addrA)
			}
			leader, follower, leaderProc, leaderAddr = cA, cB, dA, addrA
		case errB == nil:
			if l, ok := rpc.LeaderFrom(errA); !ok || l != addrB {
				return fmt.Errorf("follower A names leader %q (%v), want %s", l, errA, addrB)
			}
			leader, follower, leaderProc, leaderAddr = cB, cA, dB, addrB
		default:
			return fmt.Errorf("no leader yet: %v / %v", errA, errB)
		}
		return nil
	})
	out := t.TempDir()
	spec := passThroughSpec("copy", brokers, "events", out, 150)
	if editSpec != nil {
		editSpec(spec)
	}
	// Submitting to the follower is refused with the leader's address.
	_, err := follower.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec})
	if l, ok := rpc.LeaderFrom(err); !ok || l != leaderAddr {
		t.Fatalf("submit to follower: %v, want a redirect to %s", err, leaderAddr)
	}
	if _, err := leader.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var before int64
	eventually(t, time.Minute, "a few batches commit", func() error {
		b, _, err := lastBatch(ctx, leader, "copy")
		if err != nil || b < 2 {
			return fmt.Errorf("last batch %d, err %v", b, err)
		}
		before = b
		return nil
	})
	leaderProc.kill()
	produce(t, brokers, "events", 3000, 6000)
	eventually(t, 30*time.Second, "the follower takes over and commits", func() error {
		b, st, err := lastBatch(ctx, follower, "copy")
		if err != nil {
			return err
		}
		if st != sluicev1.JobState_JOB_STATE_RUNNING || b <= before {
			return fmt.Errorf("state %s, last batch %d (before failover %d)", st, b, before)
		}
		return nil
	})
	exactlyOnce(t, out, "copy", 6000)
}

// TestCLI drives a standalone driver with the sluice CLI: a bad job file is
// refused naming the field, a good one runs to FINISHED with availableNow,
// and the job shows in `jobs` and `status`.
func TestCLI(t *testing.T) {
	brokers := startKafka(t, 2, "tx")
	produce(t, brokers, "tx", 0, 500)
	addr := freeAddr(t)
	start(t, "driver", "driver", "--listen", addr, "--advertise", addr, "--http", "", "--checkpoint", filepath.Join(t.TempDir(), "ckpt"))
	startExecutor(t, "exec", addr)
	dir := t.TempDir()
	sluice := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "sluice"), append([]string{"--driver", addr}, args...)...)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`name: bad
source: {kafka: {bootstrapServers: "`+brokers[0]+`", subscribe: [tx]}}
transforms:
  - decode: {format: json, schema: "id BIGINT, amount BIGINT"}
  - filter: "amount >"
sink: {console: {}}
trigger: {processingTime: 2 seconds}
`), 0o644)
	var out string
	var err error
	eventually(t, 30*time.Second, "driver answers", func() error {
		out, err = sluice("submit", bad)
		if strings.Contains(out, "cannot reach") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	if err == nil || !strings.Contains(out, "transforms[1].filter") || !strings.Contains(out, "trigger.processingTime") {
		t.Fatalf("bad spec: err %v, output:\n%s", err, out)
	}
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("name: x\nsauce: {}\n"), 0o644)
	if out, err := sluice("submit", unknown); err == nil || !strings.Contains(out, "sauce") {
		t.Fatalf("unknown field: err %v, output:\n%s", err, out)
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(`name: totals
source: {kafka: {bootstrapServers: "`+brokers[0]+`", subscribe: [tx], startingOffsets: earliest, maxOffsetsPerTrigger: 100}}
transforms:
  - decode: {format: json, schema: "id BIGINT, amount BIGINT"}
  - aggregate: {groupBy: [amount], aggregations: [{fn: count, as: n}]}
sink: {file: {path: "`+filepath.Join(dir, "out")+`"}}
trigger: {availableNow: true}
`), 0o644)
	if out, err := sluice("submit", good); err != nil {
		t.Fatalf("submit: %v\n%s", err, out)
	}
	if out, err := sluice("watch", "totals"); err != nil || !strings.Contains(out, "FINISHED") {
		t.Fatalf("watch: %v\n%s", err, out)
	}
	out, err = sluice("jobs")
	if err != nil || !strings.Contains(out, "totals") || !strings.Contains(out, "FINISHED") {
		t.Fatalf("jobs: %v\n%s", err, out)
	}
	rows, _ := countOutput(t, filepath.Join(dir, "out"), "totals")
	if rows == 0 {
		t.Fatal("no aggregate rows written")
	}
	var n int64
	all, _ := fileRows(filepath.Join(dir, "out"), "totals")
	for _, r := range all {
		n += toInt(r["n"])
	}
	if n != 500 {
		t.Fatalf("aggregate counts add up to %d, want 500", n)
	}
	if out, err := sluice("status", "totals"); err != nil || !strings.Contains(out, "availableNow") {
		t.Fatalf("status: %v\n%s", err, out)
	}
}
