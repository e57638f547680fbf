package scenario

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/bench/internal/harness"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Scenario 5: how long a failure holds a job up, on a cluster of two drivers
// and BENCH_EXECUTORS executors running a decode-and-aggregate job with
// processingTime 0 (batches back to back) over a preloaded topic that a
// producer keeps feeding, so the job never idles:
//
//	5a SIGKILL an executor while it runs tasks: time to the commit of the
//	   batch it was running. The kernel closes its connection, so the driver
//	   learns at once; the heartbeat timeout bounds the case where it does not.
//	5b SIGSTOP an executor while it runs tasks (a hung process or a network
//	   partition: the connection stays open): time to the commit of that
//	   batch, which needs the heartbeat timeout to pass first.
//	5c SIGKILL the leading driver while a batch runs: time to the first
//	   commit by its successor, which has to wait for the lease to expire.
//
// A commit's time is the batch's start plus its total duration, both
// reported by the driver, so polling does not add to the figures.

const recoveryPartitions = 8

// commit is one batch event with the driver that reported it.
type commit struct {
	driver   string
	batch    int64
	start    time.Time
	at       time.Time // start + total
	retries  int32
	execute  time.Duration
	received time.Time
}

// commitLog collects the batch events of every driver while they lead.
type commitLog struct {
	mu      sync.Mutex
	commits []commit
	changed chan struct{}
}

func (l *commitLog) add(c commit) {
	l.mu.Lock()
	l.commits = append(l.commits, c)
	ch := l.changed
	l.changed = make(chan struct{})
	l.mu.Unlock()
	close(ch)
}

// await returns the first commit after t that match accepts, waiting up to
// timeout.
func (l *commitLog) await(ctx context.Context, timeout time.Duration, t time.Time, match func(commit) bool) (commit, error) {
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		for _, c := range l.commits {
			if c.at.After(t) && match(c) {
				l.mu.Unlock()
				return c, nil
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return commit{}, fmt.Errorf("no commit within %s", timeout)
		case <-ctx.Done():
			return commit{}, ctx.Err()
		}
	}
}

func (l *commitLog) last() (commit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.commits) == 0 {
		return commit{}, false
	}
	return l.commits[len(l.commits)-1], true
}

// executes returns the execute phase of the last n commits.
func (l *commitLog) executes(n int) []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []float64
	for i := len(l.commits) - 1; i >= 0 && len(out) < n; i-- {
		out = append(out, float64(l.commits[i].execute)/float64(time.Millisecond))
	}
	return out
}

func runRecovery(ctx context.Context, env *harness.Env, rep *harness.Report) error {
	cfg := env.Cfg
	k, err := env.Kafka()
	if err != nil {
		return err
	}
	topic := env.Topic("recovery")
	if err := k.CreateTopic(ctx, topic, recoveryPartitions); err != nil {
		return err
	}
	defer k.DeleteTopic(context.WithoutCancel(ctx), topic)
	if _, err := k.Preload(ctx, topic, recoveryPartitions, 30*cfg.RecoveryBatch, 5); err != nil {
		return err
	}
	trickle, err := k.StartTrickle(ctx, topic, recoveryPartitions, 2000)
	if err != nil {
		return err
	}
	defer trickle.Stop()

	c, err := env.StartCluster(ctx, "s5", 2)
	if err != nil {
		return err
	}
	defer c.Close()
	name := "recovery-" + env.Run
	spec := &sluicev1.JobSpec{
		Name:   name,
		Source: kafkaSource(k.Brokers, topic, int64(cfg.RecoveryBatch)),
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: treasurySchema}}},
			{Kind: &sluicev1.Transform_Aggregate{Aggregate: &sluicev1.Aggregate{
				GroupBy:      []string{"branch", "currency"},
				Aggregations: []*sluicev1.Aggregation{{Fn: "sum", Field: "amount", As: "total"}},
			}}},
		},
		Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
		Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "0"}},
	}
	leader := c.Drivers[0]
	if err := harness.Submit(ctx, leader, spec); err != nil {
		return err
	}

	wctx, stopWatch := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	defer func() { stopWatch(); watchers.Wait() }()
	log := &commitLog{changed: make(chan struct{})}
	for _, d := range c.Drivers {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			// Watch retries while the driver follows and returns when it
			// exits or wctx ends; either way there is nothing more to log.
			_ = harness.Watch(wctx, d, name, func(ev *sluicev1.JobEvent) bool {
				b := ev.GetBatch()
				if b == nil {
					return false
				}
				start := b.GetTimestamp().AsTime()
				log.add(commit{
					driver: d.Name, batch: b.GetBatchId(), start: start,
					at:      start.Add(time.Duration(b.GetDurationMs()["total"]) * time.Millisecond),
					retries: b.GetTaskRetries(), execute: time.Duration(b.GetDurationMs()["execute"]+b.GetDurationMs()["dispatch"]) * time.Millisecond,
					received: time.Now(),
				})
				return false
			})
		}()
	}
	// Steady state first: a few batches with warm readers on every executor.
	if _, err := log.await(ctx, time.Minute, time.Time{}, func(c commit) bool { return c.batch >= 3 }); err != nil {
		return fmt.Errorf("job %s does not get going: %w", name, err)
	}
	settings := fmt.Sprintf("heartbeat %s/%s, lease %s", cfg.HeartbeatInterval, cfg.HeartbeatTimeout, cfg.LeaseTTL)
	bound := cfg.HeartbeatTimeout + 30*time.Second

	// 5a and 5b take executor-0 and executor-1; replacements keep the
	// cluster at full strength for what follows.
	for i, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		victim := c.Executors[i]
		taskTime := harness.Percentile(log.executes(5), 50)
		killed, err := signalBusy(ctx, leader, victim, sig)
		if err != nil {
			return err
		}
		got, err := log.await(ctx, bound, killed, func(commit) bool { return true })
		if sig == syscall.SIGSTOP {
			victim.Kill() // a stopped process still dies of SIGKILL
		}
		if err != nil {
			return fmt.Errorf("after %s of %s: %w", sig, victim.Name, err)
		}
		rec := got.at.Sub(killed)
		targetD := cfg.HeartbeatTimeout + time.Duration(taskTime*float64(time.Millisecond))
		row := harness.Row{
			ID: "5" + string(rune('a'+i)), Name: fmt.Sprintf("executor %s mid-batch → its batch commits", sigName(sig)),
			Sluice:   fmt.Sprintf("%s (batch %d, %d task retries)", harness.Ms(ms(rec)), got.batch, got.retries),
			Baseline: settings,
			Ratio:    rec.Seconds() / targetD.Seconds(), RatioNote: "time/target bound",
			Target: fmt.Sprintf("≤ heartbeat timeout + one task time = %s", harness.Ms(ms(targetD))),
			Met:    harness.Bool(rec <= targetD),
			Notes: fmt.Sprintf("task time taken as the p50 execute phase of the last batches before (%s); the batch started %s before the signal",
				harness.Ms(taskTime), harness.Ms(ms(killed.Sub(got.start)))),
			Data: map[string]any{
				"signal": sigName(sig), "recoveryMs": ms(rec), "batch": got.batch, "taskRetries": got.retries,
				"taskTimeMs": taskTime, "targetMs": ms(targetD), "heartbeatInterval": cfg.HeartbeatInterval.String(),
				"heartbeatTimeout": cfg.HeartbeatTimeout.String(), "leaseTTL": cfg.LeaseTTL.String(),
			},
		}
		if got.retries == 0 {
			row.Notes = "the victim's tasks had finished before the signal landed (no retries); " + row.Notes
			row.Met = nil
		}
		if err := rep.Add(row); err != nil {
			return err
		}
		if _, err := c.AddExecutor(ctx); err != nil {
			return err
		}
	}

	// 5c: the leader dies; the follower must wait out the lease.
	before, _ := log.last()
	killed, err := signalBusy(ctx, leader, leader.Proc, syscall.SIGKILL)
	if err != nil {
		return err
	}
	successor := c.Drivers[1]
	var led time.Time
	ledCtx, stopLed := context.WithCancel(ctx)
	ledDone := make(chan struct{})
	go func() {
		defer close(ledDone)
		for ledCtx.Err() == nil {
			if successor.Ready(ledCtx) {
				led = time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	got, err := log.await(ctx, cfg.LeaseTTL+time.Minute, killed, func(c commit) bool { return c.driver == successor.Name })
	stopLed()
	<-ledDone
	if err != nil {
		return fmt.Errorf("after SIGKILL of the leader: %w", err)
	}
	rec := got.at.Sub(killed)
	targetD := cfg.LeaseTTL + 2*time.Second
	notes := fmt.Sprintf("successor's first batch %d (last by the old leader %d)", got.batch, before.batch)
	data := map[string]any{
		"recoveryMs": ms(rec), "batch": got.batch, "lastBatchBefore": before.batch, "targetMs": ms(targetD),
		"leaseTTL": cfg.LeaseTTL.String(), "heartbeatInterval": cfg.HeartbeatInterval.String(), "heartbeatTimeout": cfg.HeartbeatTimeout.String(),
	}
	if !led.IsZero() {
		notes = fmt.Sprintf("successor leads after %s, then commits after %s more; ", harness.Ms(ms(led.Sub(killed))), harness.Ms(ms(got.at.Sub(led)))) + notes
		data["leadsAfterMs"] = ms(led.Sub(killed))
	}
	if got.batch > before.batch+1 {
		notes += fmt.Sprintf("; %d batch(es) of the successor were not seen", got.batch-before.batch-1)
	}
	if err := rep.Add(harness.Row{
		ID: "5c", Name: "leader driver SIGKILL → successor's first commit",
		Sluice:   harness.Ms(ms(rec)),
		Baseline: settings,
		Ratio:    rec.Seconds() / targetD.Seconds(), RatioNote: "time/target bound",
		Target: fmt.Sprintf("≤ lease TTL + 2s = %s", targetD), Met: harness.Bool(rec <= targetD),
		Notes: notes, Data: data,
	}); err != nil {
		return err
	}
	if err := trickle.Stop(); err != nil {
		return err
	}
	return nil
}

// signalBusy sends sig to victim as soon as the leader lists executors with
// running tasks (the victim's own, when it is an executor), and returns when
// it did.
func signalBusy(ctx context.Context, leader *harness.Driver, victim *harness.Proc, sig syscall.Signal) (time.Time, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		r, err := leader.API.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
		if err != nil {
			return time.Time{}, fmt.Errorf("list executors: %w", err)
		}
		for _, e := range r.GetExecutors() {
			if e.GetRunning() > 0 && (victim == leader.Proc || e.GetId() == victim.Name) {
				if err := victim.Signal(sig); err != nil {
					return time.Time{}, err
				}
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return time.Time{}, errors.New("no executor ran a task for a minute")
}

func sigName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGSTOP:
		return "SIGSTOP"
	}
	return s.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
