package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/internal/driver"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// watchNow is the clock of the rendering tests; UTC, so that the times on
// screen do not depend on the machine's zone.
var watchNow = time.Date(2026, 5, 4, 12, 0, 7, 0, time.UTC)

func ago(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(watchNow.Add(-d)) }

// kinesisBatch is a committed batch of a Kinesis job: lag in milliseconds,
// per shard too.
func kinesisBatch() *sluicev1.BatchProgress {
	return &sluicev1.BatchProgress{
		BatchId: 42, Timestamp: ago(6 * time.Second), NumInputRows: 250000, NumTasks: 4,
		InputRowsPerSecond: 5000, ProcessedRowsPerSecond: 4900.4,
		DurationMs: map[string]int64{"total": 5100, "plan": 120, "record": 15, "dispatch": 40, "execute": 4800, "commit": 125},
		Metrics:    map[string]float64{"maxMsBehindLatest": 4200, "avgMsBehindLatest": 1100, "minMsBehindLatest": 0},
		Partitions: []*sluicev1.PartitionProgress{
			{Partition: "orders/shardId-000000000000", Records: 60000, Metrics: map[string]float64{"millisBehindLatest": 0}},
			{Partition: "orders/shardId-000000000001", Records: 70000, Metrics: map[string]float64{"millisBehindLatest": 4200}},
			{Partition: "orders/shardId-000000000002", Records: 55000, Metrics: map[string]float64{"millisBehindLatest": 300}},
			{Partition: "orders/shardId-000000000003", Records: 65000, Metrics: map[string]float64{"millisBehindLatest": 1900}},
		},
	}
}

// kafkaBatch is a committed batch of a Kafka job: lag in offsets, and in
// milliseconds where the brokers give the newest timestamps, per partition
// too.
func kafkaBatch() *sluicev1.BatchProgress {
	return &sluicev1.BatchProgress{
		BatchId: 7, Timestamp: ago(90 * time.Second), NumInputRows: 1000, TaskRetries: 2,
		DurationMs: map[string]int64{"plan": 20, "record": 3, "execute": 900},
		Metrics: map[string]float64{"maxOffsetsBehindLatest": 123456, "avgOffsetsBehindLatest": 40000.4, "dataLoss": 0,
			"maxMsBehindLatest": 61000, "avgMsBehindLatest": 20500},
		Partitions: []*sluicev1.PartitionProgress{
			{Partition: "payments/0", Records: 400, Metrics: map[string]float64{"msBehindLatest": 61000, "offsetsBehindLatest": 123456}},
			{Partition: "payments/1", Records: 300, Metrics: map[string]float64{"msBehindLatest": 500, "offsetsBehindLatest": 40}},
			{Partition: "payments/2", Records: 300, Metrics: map[string]float64{"msBehindLatest": 0, "offsetsBehindLatest": 0}},
		},
	}
}

// stateBatch is a committed batch of a stateful job (outputMode update)
// with a watermark: state figures and event time.
func stateBatch() *sluicev1.BatchProgress {
	return &sluicev1.BatchProgress{
		BatchId: 12, Timestamp: ago(3 * time.Second), NumInputRows: 5000, NumOutputRows: 56, NumTasks: 4,
		DurationMs: map[string]int64{"plan": 10, "execute": 400, "commit": 30},
		StateOperators: []*sluicev1.StateOperatorProgress{{OperatorName: "stateStoreSave", NumRowsTotal: 1234, NumRowsUpdated: 56,
			MemoryUsedBytes: 12_897_485, StateOnDiskBytes: 47_815_065, NumRowsDroppedByWatermark: 17, CommitTimeMs: 12,
			RestoreTimeMs: 340, NumRestoredPartitions: 2, NumShufflePartitions: 16}},
		EventTime: map[string]string{"max": "2026-05-04T11:59:58Z", "watermark": "2026-05-04T11:59:48Z"},
	}
}

const sinkDown = "batch 8: commit: sink postgres: dial tcp 10.0.0.7:5432: connect: connection refused: " +
	"is the database up and does the DSN name the right host?"

func runningJob() *sluicev1.Job {
	return &sluicev1.Job{Name: "orders", State: sluicev1.JobState_JOB_STATE_RUNNING, LastProgress: kinesisBatch(),
		Current: &sluicev1.BatchRun{BatchId: 43, StartTime: ago(12 * time.Second), Phase: "execute",
			TasksTotal: 16, TasksDone: 9, TasksRunning: 4, InputRows: 120000, TaskRetries: 1}}
}

func retryingJob() *sluicev1.Job {
	return &sluicev1.Job{Name: "payments-to-postgres", State: sluicev1.JobState_JOB_STATE_RETRYING,
		LastProgress: kafkaBatch(), LastError: sinkDown,
		Restart: &sluicev1.RestartInfo{Attempt: 3, NextAttemptTime: timestamppb.New(watchNow.Add(4 * time.Second)), Cause: sinkDown}}
}

func TestWatchRender(t *testing.T) {
	tests := []struct {
		name  string
		job   *sluicev1.Job
		width int
		want  string
	}{
		{"batch in flight", runningJob(), 80, `
job orders  RUNNING                                                     12:00:07

batch 43 in flight  executing  12s
  [===========================>                      ]  9/16 tasks
  4 running  1 retry  120,000 rows so far

last batch 42  started 12:00:01, 6s ago  took 5.1s
  rows  250,000 in  5,000/s in  4,900/s processed
  time  plan 120ms  record 15ms  dispatch 40ms  execute 4.8s  commit 125ms
  lag   max 4.2s  avg 1.1s

partitions most behind
  orders/shardId-000000000001   4.2s  70,000 rows
  orders/shardId-000000000003   1.9s  65,000 rows
  orders/shardId-000000000002  300ms  55,000 rows
`},
		{"narrow", runningJob(), 40, `
job orders  RUNNING             12:00:07

batch 43 in flight  executing  12s
  [============>           ]  9/16 tasks
  4 running  1 retry
  120,000 rows so far

last batch 42  started 12:00:01, 6s ago
  took 5.1s
  rows  250,000 in  5,000/s in
        4,900/s processed
  time  plan 120ms  record 15ms
        dispatch 40ms  execute 4.8s
        commit 125ms
  lag   max 4.2s  avg 1.1s

partitions most behind
  ...Id-000000000001   4.2s  70,000 rows
  ...Id-000000000003   1.9s  65,000 rows
  ...Id-000000000002  300ms  55,000 rows
`},
		{"retrying", retryingJob(), 80, `
job payments-to-postgres  RETRYING  attempt 3, next in 4s               12:00:07
  cause  batch 8: commit: sink postgres: dial tcp 10.0.0.7:5432: connect:
         connection refused: is the database up and does the DSN name the rig...

no batch in flight

last batch 7  started 11:58:37, 1m30s ago
  rows  1,000 in  2 task retries
  time  plan 20ms  record 3ms  execute 900ms
  lag   max 1m1s  avg 20.5s  max 123,456 records  avg 40,000 records

partitions most behind
  payments/0   1m1s  123,456 records  400 rows
  payments/1  500ms       40 records  300 rows
`},
		{"retrying, very narrow", retryingJob(), 30, `
job payments-to-postgres
  RETRYING
  attempt 3, next in 4s
  cause  batch 8: commit: sink
         postgres: dial tcp...

no batch in flight

last batch 7
  started 11:58:37, 1m30s ago
  rows  1,000 in
        2 task retries
  time  plan 20ms  record 3ms
        execute 900ms
  lag   max 1m1s  avg 20.5s
        max 123,456 records
        avg 40,000 records

partitions most behind
  payments/0   1m1s
  payments/1  500ms
`},
		{"no progress yet", &sluicev1.Job{Name: "fresh", State: sluicev1.JobState_JOB_STATE_PENDING}, 80, `
job fresh  PENDING                                                      12:00:07

no batch in flight

no batch committed yet
`},
		{"planning after a restart", &sluicev1.Job{Name: "orders", State: sluicev1.JobState_JOB_STATE_RUNNING,
			LastProgress: kafkaBatch(), Restart: &sluicev1.RestartInfo{Attempt: 1},
			Current: &sluicev1.BatchRun{BatchId: 8, StartTime: ago(time.Second), Phase: "plan"}}, 80, `
job orders  RUNNING  after restart 1                                    12:00:07

batch 8 in flight  planning  1s

last batch 7  started 11:58:37, 1m30s ago
  rows  1,000 in  2 task retries
  time  plan 20ms  record 3ms  execute 900ms
  lag   max 1m1s  avg 20.5s  max 123,456 records  avg 40,000 records

partitions most behind
  payments/0   1m1s  123,456 records  400 rows
  payments/1  500ms       40 records  300 rows
`},
		{"stateful", &sluicev1.Job{Name: "counts", State: sluicev1.JobState_JOB_STATE_RUNNING, LastProgress: stateBatch()}, 80, `
job counts  RUNNING                                                     12:00:07

no batch in flight

last batch 12  started 12:00:04, 3s ago
  rows  5,000 in
  time  plan 10ms  execute 400ms  commit 30ms
  state 1,234 groups (56 updated) in 16 partitions  12.3 MiB in memory
        45.6 MiB on disk  commit 12ms  restored 2 partitions in 340ms
        17 late rows dropped
  event max 11:59:58  watermark 11:59:48
`},
		{"failed", &sluicev1.Job{Name: "fresh", State: sluicev1.JobState_JOB_STATE_FAILED,
			LastError: "plan batch 0: list end offsets: UNKNOWN_TOPIC_OR_PARTITION"}, 40, `
job fresh  FAILED               12:00:07
  error  plan batch 0: list end offsets:
         UNKNOWN_TOPIC_OR_PARTITION

no batch committed yet
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			render(&b, tt.width, tt.job, watchNow)
			if diff := cmp.Diff(strings.TrimPrefix(tt.want, "\n"), b.String()); diff != "" {
				t.Errorf("render at width %d (-want +got):\n%s\ngot:\n%s", tt.width, diff, b.String())
			}
		})
	}
}

// TestWatchRenderFits renders every kind of screen at every width from far
// too narrow to wide: no line passes the width (24 at the least).
func TestWatchRenderFits(t *testing.T) {
	long := retryingJob()
	long.Name = strings.Repeat("a-very-long-job-name-", 5)
	long.Current = runningJob().GetCurrent()
	long.LastProgress = kinesisBatch()
	long.LastProgress.Partitions[1].Partition = strings.Repeat("p", 120)
	stateful := runningJob()
	stateful.LastProgress = stateBatch()
	for _, j := range []*sluicev1.Job{runningJob(), retryingJob(), long, stateful, {Name: "fresh"}} {
		for width := 1; width <= 140; width++ {
			var b bytes.Buffer
			render(&b, width, j, watchNow)
			for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
				if n := runes(l); n > max(width, 24) {
					t.Fatalf("job %.20s at width %d: line of %d: %q", j.GetName(), width, n, l)
				}
			}
		}
	}
}

func TestWatchFormat(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{count(0), "0"}, {count(999), "999"}, {count(1000), "1,000"}, {count(-1234567), "-1,234,567"},
		{rate(4.25), "4.2"}, {rate(4900.5), "4,901"},
		{millis(0), "0ms"}, {millis(999), "999ms"}, {millis(4200), "4.2s"}, {millis(125000), "2m5s"},
		{progressBar(10, 0, 4), "          "}, {progressBar(10, 1, 4), "=>        "}, {progressBar(10, 4, 4), "=========="},
		{truncate("abcdefgh", 5), "ab..."}, {truncateLeft("abcdefgh", 5), "...gh"}, {truncate("abc", 2), "ab"},
		{bytesIEC(0), "0 B"}, {bytesIEC(1023), "1023 B"}, {bytesIEC(1024), "1.0 KiB"}, {bytesIEC(12_897_485), "12.3 MiB"}, {bytesIEC(5 << 40), "5.0 TiB"},
		{eventClock("2026-05-04T11:59:48Z", watchNow), "11:59:48"}, {eventClock("2026-05-01T08:00:00.5Z", watchNow), "2026-05-01 08:00:00"},
		{eventClock("later", watchNow), "later"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// event is what the driver sends for job j, with b when a batch committed.
func event(j *sluicev1.Job, b *sluicev1.BatchProgress) *sluicev1.JobEvent {
	return &sluicev1.JobEvent{Job: j, Batch: b}
}

// TestWatchPlain: piped, the watch writes a line per state, error or
// restart attempt change and per committed batch, none for the batch in
// flight, and a batch whose event the driver dropped still gets its line
// from the next event.
func TestWatchPlain(t *testing.T) {
	running := func(last *sluicev1.BatchProgress, cur *sluicev1.BatchRun) *sluicev1.Job {
		return &sluicev1.Job{Name: "orders", State: sluicev1.JobState_JOB_STATE_RUNNING, LastProgress: last, Current: cur}
	}
	b41 := &sluicev1.BatchProgress{BatchId: 41, Timestamp: ago(time.Minute)}
	b42 := &sluicev1.BatchProgress{BatchId: 42, Timestamp: ago(10 * time.Second), NumInputRows: 10}
	b43 := &sluicev1.BatchProgress{BatchId: 43, Timestamp: ago(5 * time.Second), NumInputRows: 20}
	retrying := retryingJob()
	retrying.Name, retrying.LastProgress = "orders", b42
	again := retryingJob()
	again.Name, again.LastProgress = "orders", b42
	again.Restart.Attempt = 4
	finished := &sluicev1.Job{Name: "orders", State: sluicev1.JobState_JOB_STATE_FINISHED, LastProgress: b43}
	events := []*sluicev1.JobEvent{
		event(running(b41, nil), nil),
		event(running(b41, &sluicev1.BatchRun{BatchId: 42, Phase: "plan"}), nil),
		event(running(b41, &sluicev1.BatchRun{BatchId: 42, Phase: "execute", TasksTotal: 2, TasksDone: 1}), nil),
		event(running(b42, nil), b42),
		event(retrying, nil),
		event(retrying, nil),
		event(again, nil),
		event(running(b42, &sluicev1.BatchRun{BatchId: 43, Phase: "execute"}), nil),
		// The event of batch 43 was dropped; the job's next view has it.
		event(running(b43, &sluicev1.BatchRun{BatchId: 44, Phase: "plan"}), nil),
		event(finished, nil),
		event(running(b43, nil), nil), // after the end: never read
	}
	var out bytes.Buffer
	ctx := context.Background()
	if err := follow(ctx, func() {}, fakeStream(ctx, events, nil), &plainView{out: &out}, nil, func() time.Time { return watchNow }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"12:00:07  job orders RUNNING",
		progressLine(b42),
		"12:00:07  job orders RETRYING (3, next in 4s): " + sinkDown,
		"12:00:07  job orders RETRYING (4, next in 4s): " + sinkDown,
		"12:00:07  job orders RUNNING",
		progressLine(b43),
		"12:00:07  job orders FINISHED",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestProgressDetails(t *testing.T) {
	op := func(total, updated int64) *sluicev1.StateOperatorProgress {
		return &sluicev1.StateOperatorProgress{OperatorName: "stateStoreSave", NumRowsTotal: total, NumRowsUpdated: updated,
			MemoryUsedBytes: 2048, CommitTimeMs: 5, NumShufflePartitions: 1}
	}
	tests := []struct {
		name string
		b    *sluicev1.BatchProgress
		want []string
	}{
		{"stateless", kafkaBatch(), nil},
		{"everything", stateBatch(), []string{
			"state: 1,234 groups (56 updated) in 16 partitions, 12.3 MiB in memory, 45.6 MiB on disk, commit 12ms, restored 2 partitions in 340ms, 17 late rows dropped",
			"event time: max 2026-05-04T11:59:58Z, watermark 2026-05-04T11:59:48Z",
		}},
		{"warm in-memory state, no watermark", &sluicev1.BatchProgress{StateOperators: []*sluicev1.StateOperatorProgress{op(1, 0)}},
			[]string{"state: 1 group (0 updated) in 1 partition, 2.0 KiB in memory, commit 5ms"}},
		{"one of each", &sluicev1.BatchProgress{StateOperators: []*sluicev1.StateOperatorProgress{{NumRowsTotal: 3, NumRowsUpdated: 1,
			MemoryUsedBytes: 100, CheckpointBytesWritten: 3 << 20, NumRestoredPartitions: 1, RestoreTimeMs: 1500, NumRowsDroppedByWatermark: 1}}},
			[]string{"state: 3 groups (1 updated), 100 B in memory, 3.0 MiB checkpointed, commit 0ms, restored 1 partition in 1.5s, 1 late row dropped"}},
		{"several operators are summed", &sluicev1.BatchProgress{StateOperators: []*sluicev1.StateOperatorProgress{op(1000, 10), op(500, 5)}},
			[]string{"state: 1,500 groups (15 updated) in 2 partitions, 4.0 KiB in memory, commit 10ms"}},
		{"max before the first watermark", &sluicev1.BatchProgress{StateOperators: []*sluicev1.StateOperatorProgress{op(1, 1)},
			EventTime: map[string]string{"max": "2026-12-05T08:00:00Z"}},
			[]string{"state: 1 group (1 updated) in 1 partition, 2.0 KiB in memory, commit 5ms", "event time: max 2026-12-05T08:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, progressDetails(tt.b)); diff != "" {
				t.Errorf("details (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWatchPlainState: piped, a stateful job's batch line is followed by
// its state and event time, indented under the batch line's text.
func TestWatchPlainState(t *testing.T) {
	b := stateBatch()
	j := &sluicev1.Job{Name: "counts", State: sluicev1.JobState_JOB_STATE_RUNNING}
	events := []*sluicev1.JobEvent{event(j, nil), event(&sluicev1.Job{Name: "counts", State: sluicev1.JobState_JOB_STATE_RUNNING, LastProgress: b}, b)}
	var out bytes.Buffer
	ctx := context.Background()
	if err := follow(ctx, func() {}, fakeStream(ctx, events, io.EOF), &plainView{out: &out}, nil, func() time.Time { return watchNow }); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"12:00:07  job counts RUNNING",
		progressLine(b),
		"          state: 1,234 groups (56 updated) in 16 partitions, 12.3 MiB in memory, 45.6 MiB on disk, commit 12ms, restored 2 partitions in 340ms, 17 late rows dropped",
		"          event time: max 2026-05-04T11:59:58Z, watermark 2026-05-04T11:59:48Z",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

// TestStatusState: sluice status shows a stateful job's state and event
// time under its last progress, and nothing of the kind for other jobs.
func TestStatusState(t *testing.T) {
	tests := []struct {
		name string
		last *sluicev1.BatchProgress
		want []string
	}{
		{"stateful", stateBatch(), []string{
			"  state: 1,234 groups (56 updated) in 16 partitions, 12.3 MiB in memory, 45.6 MiB on disk, commit 12ms, restored 2 partitions in 340ms, 17 late rows dropped",
			"  event time: max 2026-05-04T11:59:58Z, watermark 2026-05-04T11:59:48Z",
		}},
		{"stateless", kinesisBatch(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			printStatus(&out, &sluicev1.Job{Name: "counts", State: sluicev1.JobState_JOB_STATE_RUNNING, LastProgress: tt.last})
			lines := strings.Split(out.String(), "\n")
			i := slices.Index(lines, "Last progress:")
			if i < 0 || i+2 > len(lines) || lines[i+1] != "  "+progressLine(tt.last) {
				t.Fatalf("no last progress:\n%s", out.String())
			}
			var got []string
			for _, l := range lines[i+2:] {
				if strings.HasPrefix(l, "  state: ") || strings.HasPrefix(l, "  event time: ") {
					got = append(got, l)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("state lines (-want +got):\n%s\nstatus:\n%s", diff, out.String())
			}
			if tt.want != nil && lines[i+2] != tt.want[0] {
				t.Errorf("the state does not follow the progress line:\n%s", out.String())
			}
		})
	}
}

// fakeStream returns events one by one, then err, then blocks until ctx is
// done (a driver that keeps the stream open).
func fakeStream(ctx context.Context, events []*sluicev1.JobEvent, err error) func() (*sluicev1.JobEvent, error) {
	return func() (*sluicev1.JobEvent, error) {
		if len(events) > 0 {
			ev := events[0]
			events = events[1:]
			return ev, nil
		}
		if err != nil {
			return nil, err
		}
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// TestWatchLive: on a terminal the watch takes the screen on the first
// event, redraws from the top on each event and tick within the terminal's
// height, and shows the cursor again when the user presses Ctrl-C.
func TestWatchLive(t *testing.T) {
	var out bytes.Buffer
	drawn := make(chan struct{}, 2)
	v := &liveView{out: &out, size: func() (int, int, error) { drawn <- struct{}{}; return 80, 6, nil }}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan error, 1)
	ev := event(runningJob(), nil)
	go func() {
		err := follow(ctx, cancel, fakeStream(ctx, []*sluicev1.JobEvent{ev}, nil), v, tick, func() time.Time { return watchNow })
		v.close()
		done <- err
	}()
	<-drawn
	tick <- watchNow.Add(time.Second)
	<-drawn
	cancel() // Ctrl-C
	if err := <-done; err != nil {
		t.Fatalf("Ctrl-C: %v, want nil", err)
	}
	screens := strings.Split(out.String(), ansiHome)
	if len(screens) != 3 || screens[0] != ansiHideCursor+ansiClear {
		t.Fatalf("want the screen taken, then two draws from the top; got %q", out.String())
	}
	if !strings.HasSuffix(out.String(), ansiClearBelow+ansiShowCursor) {
		t.Errorf("the cursor is not shown again at the end: %q", out.String())
	}
	first := strings.Split(screens[1], "\n")
	if len(first) != 6 { // 5 lines and what follows the last newline
		t.Errorf("a screen of height 6 got %d lines, want 5: %q", len(first)-1, screens[1])
	}
	if !strings.HasPrefix(first[3], "  [=") || !strings.Contains(screens[2], "batch 43 in flight  executing  13s") {
		t.Errorf("want the bar on the fourth line and the elapsed time moved by the tick:\n%q\n%q", screens[1], screens[2])
	}
}

// TestWatchEnds: the watch returns at the job's terminal state without
// waiting for the stream to close, returns nil when the stream ends, and
// returns a stream error as it is (a follower's redirect needs it), drawing
// nothing before the first event.
func TestWatchEnds(t *testing.T) {
	ctx := context.Background()
	stopped := event(&sluicev1.Job{Name: "j", State: sluicev1.JobState_JOB_STATE_STOPPED}, nil)
	notLeader := status.Error(codes.FailedPrecondition, "not the leader")
	for _, tt := range []struct {
		name   string
		events []*sluicev1.JobEvent
		err    error
		want   error
	}{
		{"terminal state", []*sluicev1.JobEvent{stopped}, nil, nil},
		{"end of stream", nil, io.EOF, nil},
		{"error", nil, notLeader, notLeader},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			v := &liveView{out: &out, size: func() (int, int, error) { return 0, 0, errors.New("not a terminal") }}
			sctx, cancel := context.WithCancel(ctx)
			err := follow(sctx, cancel, fakeStream(sctx, tt.events, tt.err), v, nil, time.Now)
			v.close()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if drew := out.Len() > 0; drew != (len(tt.events) > 0) {
				t.Errorf("drew %q for %d events", out.String(), len(tt.events))
			}
		})
	}
}

// TestWatchCLI runs `sluice watch` against a driver in process, its output
// piped: it writes the job's state, and returns when the job is stopped.
func TestWatchCLI(t *testing.T) {
	dir := t.TempDir()
	job := filepath.Join(dir, "job.yaml")
	if err := os.WriteFile(job, []byte("name: j\nsource:\n  kafka: {bootstrapServers: \"127.0.0.1:1\", subscribe: [t]}\nsink:\n  console: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := driver.New(driver.Config{Listen: "127.0.0.1:0", Advertise: "127.0.0.1:0", Checkpoint: filepath.Join(dir, "ckpt"),
		Logger: slog.New(slog.DiscardHandler), Stdout: io.Discard, ShutdownTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cli := func(out io.Writer, args ...string) error {
		return run(ctx, append([]string{"--driver", d.Addr()}, args...), out)
	}
	for cli(io.Discard, "submit", job) != nil && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	var out bytes.Buffer
	watched := make(chan error, 1)
	go func() { watched <- cli(&out, "watch", "j") }()
	if err := cli(io.Discard, "stop", "j"); err != nil {
		t.Fatal(err)
	}
	if err := <-watched; err != nil {
		t.Fatalf("watch: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if !strings.HasSuffix(lines[len(lines)-1], "job j STOPPED") || strings.Contains(out.String(), "\x1b[") {
		t.Errorf("want plain lines ending with the stop, got:\n%s", out.String())
	}

	// resume runs the stopped job again; a running job cannot be resumed.
	out.Reset()
	if err := cli(&out, "resume", "j"); err != nil || !strings.HasPrefix(out.String(), "job j ") {
		t.Fatalf("resume: %v, printed %q", err, out.String())
	}
	if err := cli(io.Discard, "resume", "j"); err == nil || !strings.Contains(err.Error(), "only a stopped, finished or failed job can be resumed") {
		t.Fatalf("resume a resumed job: %v", err)
	}
	if err := cli(io.Discard, "resume", "nope"); err == nil {
		t.Fatal("resume an unknown job: no error")
	}
}
