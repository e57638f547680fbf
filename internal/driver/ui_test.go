package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/executor"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestWebUIAgainstARunningJob opens the web UI of a real driver, with two
// executors running a Kafka job whose topic keeps growing, in headless
// Chromium: the job, its charts, partitions and tasks, and the executors
// appear with numbers that move by themselves, and Stop on the page stops
// the job. Screenshots go to $SLUICE_ARTIFACTS/ui (testenv.ArtifactDir).
func TestWebUIAgainstARunningJob(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := l.Addr().String()
	l.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := New(Config{Listen: "127.0.0.1:0", HTTP: httpAddr, Advertise: "127.0.0.1:0", Checkpoint: t.TempDir(), Logger: log, Stdout: io.Discard,
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTimeout: time.Second, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(ctx) }()
	for i := range 2 {
		e, err := executor.New(executor.Config{Driver: d.Addr(), Slots: 2, ID: fmt.Sprintf("e%d", i+1), Logger: log, Stdout: io.Discard, DrainTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); e.Run(ctx) }()
	}
	conn, err := rpc.Dial(d.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	api := sluicev1.NewDriverServiceClient(conn)
	waitFor(t, "driver leads", func() error {
		_, err := api.ListJobs(ctx, &sluicev1.ListJobsRequest{})
		return err
	})

	// A topic that keeps growing while the test looks, so every page has
	// numbers to move.
	_, brokers := kafkaWith(t, "clicks", 4, 200)
	wg.Add(1)
	go func() {
		defer wg.Done()
		produceUntil(ctx, t, brokers, "clicks")
	}()
	s := spec("ui", brokers, "clicks", filepath.Join(t.TempDir(), "out"), &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "200ms"}})
	if _, err := api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}

	b := testenv.NewBrowser(t)
	base := "http://" + httpAddr
	run := func(actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(b, actions...); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(expr, what string) {
		t.Helper()
		testenv.WaitJS(t, b, expr, what, 45*time.Second)
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(b, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}

	// The driver's root sends browsers to the UI.
	run(chromedp.Navigate(base + "/"))
	wait(`location.pathname === '/ui/'`, "the redirect from / to /ui/")

	// Jobs: the job, running, with a committed batch and its source.
	row := `document.querySelector('[data-testid=job-row][data-job="ui"]')`
	wait(row+` && `+row+`.dataset.state === 'RUNNING'`, "the job listed as RUNNING")
	wait(row+`.querySelector('[data-testid=job-last-batch]').textContent.includes('#')`, "the job's last batch")
	if got := eval(row + `.querySelector('[data-testid=job-source]').textContent`); got != "Kafkaclicks" {
		t.Errorf("source %q, want Kafkaclicks", got)
	}
	testenv.Screenshot(t, b, "e2e-jobs")

	// The job: charts over several batches that keep coming, partitions
	// with lag in records and milliseconds, tasks with their executors.
	run(chromedp.Navigate(base + "/ui/#/jobs/ui"))
	points := `[...document.querySelectorAll('#chart-input-rows [data-testid=point]')]`
	wait(points+`.length >= 3`, "three batches in the input rows chart")
	last := eval(points + `.map(p => p.dataset.batch).pop()`)
	wait(fmt.Sprintf(`%s.some(p => +p.dataset.batch > %s)`, points, last), "a newer batch drawn without a reload")
	for _, id := range []string{"chart-input-rate", "chart-process-rate", "chart-duration"} {
		wait(fmt.Sprintf(`document.querySelectorAll('#%s [data-testid=point]').length >= 2`, id), id+" drawn")
	}
	wait(`document.querySelectorAll('[data-testid=partition-row]').length >= 1`, "partitions with lag")
	wait(`[...document.querySelectorAll('[data-testid=partition-row]')].some(r => r.dataset.ms !== undefined && r.dataset.ms !== '')`,
		"a partition's lag in milliseconds (Kafka msBehindLatest)")
	wait(`[...document.querySelectorAll('[data-testid=task-row]')].some(r => ['e1', 'e2'].includes(r.cells[2].textContent))`, "tasks with their executors")
	if spec := eval(`document.querySelector('[data-testid=job-spec]').textContent`); !json.Valid([]byte(spec)) {
		t.Errorf("the spec shown is not JSON: %.200s", spec)
	}
	testenv.Screenshot(t, b, "e2e-job")

	// Executors: both, with slots.
	run(chromedp.Navigate(base + "/ui/#/executors"))
	wait(`document.querySelectorAll('[data-testid=executor-row]').length === 2`, "both executors")
	if got := eval(`[...document.querySelectorAll('[data-testid=executor-slots]')].map(e => e.textContent.trim()).join(',')`); got != "2,2" {
		t.Errorf("slots %q, want 2,2", got)
	}
	testenv.Screenshot(t, b, "e2e-executors")

	// Stop from the jobs page.
	run(chromedp.Navigate(base + "/ui/#/"))
	stop := row + `.querySelector('button[data-action=stop]')`
	wait(row+` && !!`+stop, "the job's Stop button")
	eval(`(() => { ` + stop + `.click(); return '' })()`)
	wait(row+` && `+row+`.dataset.state === 'STOPPED'`, "the job shown STOPPED")
	j, err := api.GetJob(ctx, &sluicev1.GetJobRequest{Name: "ui"})
	if err != nil || j.GetState() != sluicev1.JobState_JOB_STATE_STOPPED {
		t.Fatalf("after Stop on the page the driver says %s (%v)", j.GetState(), err)
	}
	wait(row+`.querySelector('button[data-action=resume]') !== null`, "a Resume button for the stopped job")
	testenv.Screenshot(t, b, "e2e-stopped")
}

// produceUntil adds a few records to every partition of topic every 100 ms
// until ctx ends.
func produceUntil(ctx context.Context, t *testing.T, brokers []string, topic string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var recs []*kgo.Record
		for k := range 20 {
			v, _ := json.Marshal(map[string]any{"id": 1_000_000 + i*20 + k, "amount": k % 5})
			recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint(k)), Value: v})
		}
		// Errors once ctx ends (the cluster closes) are expected.
		_ = cl.ProduceSync(ctx, recs...).FirstErr()
	}
}
