package driver

import (
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/driver/registry"
	"github.com/sluicehq/sluice/internal/driver/statusboard"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// metricsDriver is a driver with only what its metrics read: a status board
// and, while leading, a manager. No store, no cluster.
func metricsDriver(t *testing.T, jobs ...string) *Driver {
	t.Helper()
	d := &Driver{status: statusboard.New(), mgr: &manager{}}
	d.reg = registry.New(slog.Default(), time.Second, time.Second, d.leading, nil)
	d.metrics = newMetrics(d)
	for _, j := range jobs {
		d.status.Update(checkpoint.JobRecord{Name: j, State: "RUNNING"}, nil)
	}
	return d
}

// metricsCommit does for the metrics and the board what loopStatus.BatchDone does.
func metricsCommit(d *Driver, job string, p *sluicev1.BatchProgress) {
	d.metrics.batch(job, p)
	d.status.Batch(job, p)
}

// stateSeries gathers the sluice_state_* and sluice_watermark_seconds
// series as "name{job}" → value.
func stateSeries(t *testing.T, d *Driver) map[string]float64 {
	t.Helper()
	mfs, err := d.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "sluice_state_") && mf.GetName() != "sluice_watermark_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			job := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "job" {
					job = l.GetValue()
				}
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[mf.GetName()+"{"+job+"}"] = v
		}
	}
	return out
}

func statefulBatch(id int64, ops ...*sluicev1.StateOperatorProgress) *sluicev1.BatchProgress {
	return &sluicev1.BatchProgress{BatchId: id, StateOperators: ops}
}

func TestStateMetrics(t *testing.T) {
	op := func(total, updated, dropped, written int64) *sluicev1.StateOperatorProgress {
		return &sluicev1.StateOperatorProgress{OperatorName: "stateStoreSave", NumRowsTotal: total, NumRowsUpdated: updated,
			MemoryUsedBytes: 4096, StateOnDiskBytes: 8192, NumRowsDroppedByWatermark: dropped, CommitTimeMs: 12, RestoreTimeMs: 340,
			NumRestoredPartitions: 2, NumShufflePartitions: 16, CheckpointBytesWritten: written}
	}
	withTime := func(p *sluicev1.BatchProgress, et map[string]string) *sluicev1.BatchProgress {
		p.EventTime = et
		return p
	}
	tests := []struct {
		name    string
		batches []*sluicev1.BatchProgress
		want    map[string]float64
	}{
		{"stateless", []*sluicev1.BatchProgress{{BatchId: 0, NumInputRows: 5}}, map[string]float64{}},
		{"gauges are the last batch's, counters add up", []*sluicev1.BatchProgress{statefulBatch(0, op(100, 100, 3, 1000)), statefulBatch(1, op(150, 60, 4, 500))},
			map[string]float64{
				"sluice_state_rows{j}": 150, "sluice_state_rows_updated{j}": 60, "sluice_state_memory_used_bytes{j}": 4096,
				"sluice_state_on_disk_bytes{j}": 8192, "sluice_state_partitions{j}": 16, "sluice_state_commit_seconds{j}": 0.012,
				"sluice_state_restore_seconds{j}": 0.34, "sluice_state_restored_partitions{j}": 2,
				"sluice_state_rows_dropped_by_watermark_total{j}": 7, "sluice_state_checkpoint_written_bytes_total{j}": 1500,
			}},
		{"several operators are summed", []*sluicev1.BatchProgress{statefulBatch(0, op(100, 10, 1, 100), op(50, 5, 2, 200))},
			map[string]float64{
				"sluice_state_rows{j}": 150, "sluice_state_rows_updated{j}": 15, "sluice_state_memory_used_bytes{j}": 8192,
				"sluice_state_on_disk_bytes{j}": 16384, "sluice_state_partitions{j}": 32, "sluice_state_commit_seconds{j}": 0.024,
				"sluice_state_restore_seconds{j}": 0.68, "sluice_state_restored_partitions{j}": 4,
				"sluice_state_rows_dropped_by_watermark_total{j}": 3, "sluice_state_checkpoint_written_bytes_total{j}": 300,
			}},
		{"watermark", []*sluicev1.BatchProgress{withTime(statefulBatch(0), map[string]string{"max": "2026-12-05T08:00:00Z", "watermark": "2026-12-05T07:59:50.5Z"})},
			map[string]float64{"sluice_watermark_seconds{j}": float64(time.Date(2026, 12, 5, 7, 59, 50, 0, time.UTC).Unix()) + 0.5}},
		{"no watermark yet", []*sluicev1.BatchProgress{withTime(statefulBatch(0), map[string]string{"max": "2026-12-05T08:00:00Z"})}, map[string]float64{}},
		{"an unreadable watermark is left out", []*sluicev1.BatchProgress{withTime(statefulBatch(0), map[string]string{"watermark": "soon"})}, map[string]float64{}},
		{"a stateless batch after stateful ones leaves the counters", []*sluicev1.BatchProgress{statefulBatch(0, op(1, 1, 2, 3)), statefulBatch(1)},
			map[string]float64{"sluice_state_rows_dropped_by_watermark_total{j}": 2, "sluice_state_checkpoint_written_bytes_total{j}": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := metricsDriver(t, "j")
			for _, b := range tt.batches {
				metricsCommit(d, "j", b)
			}
			got := stateSeries(t, d)
			for k, v := range got {
				// The seconds gauges are float64 sums of milliseconds / 1000.
				if w, ok := tt.want[k]; ok && math.Abs(v-w) < 1e-9 {
					got[k] = w
				}
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("series\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestStateMetricsFollowTheBoard: a deleted job's state series go at the
// next scrape, a job created again under its name counts from zero, other
// jobs keep theirs, and a follower serves none.
func TestStateMetricsFollowTheBoard(t *testing.T) {
	d := metricsDriver(t, "a", "b")
	dropped := func(n int64) *sluicev1.BatchProgress {
		return &sluicev1.BatchProgress{StateOperators: []*sluicev1.StateOperatorProgress{{NumRowsTotal: 10, NumRowsDroppedByWatermark: n}},
			EventTime: map[string]string{"watermark": "2026-12-05T07:59:50Z"}}
	}
	metricsCommit(d, "a", dropped(5))
	metricsCommit(d, "b", dropped(7))
	if got := slices.Sorted(maps.Keys(stateSeries(t, d))); len(got) != 2*11 {
		t.Fatalf("%d series for two jobs, want 22: %v", len(got), got)
	}

	d.status.Forget("a") // DeleteJob
	for k := range stateSeries(t, d) {
		if strings.HasSuffix(k, "{a}") {
			t.Errorf("deleted job's %s still served", k)
		}
	}
	d.status.Update(checkpoint.JobRecord{Name: "a", State: "RUNNING"}, nil)
	metricsCommit(d, "a", dropped(1))
	got := stateSeries(t, d)
	if v := got["sluice_state_rows_dropped_by_watermark_total{a}"]; v != 1 {
		t.Errorf("job created again: dropped %v, want 1", v)
	}
	if v := got["sluice_state_rows_dropped_by_watermark_total{b}"]; v != 7 {
		t.Errorf("other job: dropped %v, want 7", v)
	}

	d.mu.Lock()
	d.mgr = nil // lost the lead
	d.mu.Unlock()
	if got := stateSeries(t, d); len(got) != 0 {
		t.Errorf("a follower serves %v", got)
	}
}

// TestStateMetricsConcurrentScrapes runs scrapes against committing batches
// (for -race) and loses no count.
func TestStateMetricsConcurrentScrapes(t *testing.T) {
	d := metricsDriver(t, "j")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			metricsCommit(d, "j", statefulBatch(int64(i), &sluicev1.StateOperatorProgress{NumRowsDroppedByWatermark: 1}))
		}
	}()
	for range 20 {
		if _, err := d.metrics.reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if v := stateSeries(t, d)["sluice_state_rows_dropped_by_watermark_total{j}"]; v != 200 {
		t.Errorf("dropped %v, want 200", v)
	}
}
