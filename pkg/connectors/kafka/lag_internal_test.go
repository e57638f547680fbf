package kafka

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

// The arithmetic of SummarizeTaskMetrics, without a cluster: the figures a
// plan remembered, what the readers reported, and what the source already
// knew of the partitions' last records.
func TestSummarizeLag(t *testing.T) {
	var (
		tp0 = topicPartition{topic: "t", partition: 0}
		tp1 = topicPartition{topic: "t", partition: 1}
		tp2 = topicPartition{topic: "t", partition: 2}
	)
	report := func(off, ts int64) map[string]float64 {
		return map[string]float64{MetricLastRecordOffset: float64(off), MetricLastRecordTimestampMs: float64(ts)}
	}
	// shown is a reader's report with the figures the summary adds.
	shown := func(off, ts, offsetsBehind int64, msBehind ...int64) map[string]float64 {
		m := report(off, ts)
		m[MetricOffsetsBehindLatest] = float64(offsetsBehind)
		if len(msBehind) > 0 {
			m[MetricMsBehindLatest] = float64(msBehind[0])
		}
		return m
	}
	summary := func(avg, maxV, minV float64) map[string]float64 {
		return map[string]float64{MetricAvgMsBehindLatest: avg, MetricMaxMsBehindLatest: maxV, MetricMinMsBehindLatest: minV}
	}
	plan := func(parts map[topicPartition]partLag) *lagPlan { return &lagPlan{parts: parts, newestKnown: true} }

	tests := []struct {
		name     string
		plan     *lagPlan
		last     map[topicPartition]lastRecord // before
		reports  map[stream.PartitionID]map[string]float64
		want     map[string]float64
		wantMaps map[stream.PartitionID]map[string]float64
		wantLast map[topicPartition]lastRecord
	}{
		{
			name: "behind by the newest timestamp minus the last read one",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 12, lastSplit: 0, latest: 20, newestTs: 19_000},
			}),
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(11, 11_000)},
			want:     summary(8000, 8000, 8000),
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": shown(11, 11_000, 8, 8000)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 11, ts: 11_000, through: 12}},
		},
		{
			name: "read to the latest offset is 0, with or without a report",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 20, latest: 20, newestTs: 99_000},
				tp1: {start: 7, until: 7, latest: 7, newestTs: 99_000},
			}),
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(19, 19_000)},
			want:     summary(0, 0, 0),
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": shown(19, 19_000, 0, 0)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 19, ts: 19_000, through: 20}},
		},
		{
			name: "never negative: a record timestamped after the newest one",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 5, latest: 9, newestTs: 5_000},
			}),
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(4, 7_000)},
			want:     summary(0, 0, 0),
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": shown(4, 7_000, 4, 0)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 4, ts: 7_000, through: 5}},
		},
		{
			name: "a partition without a range this batch keeps its last record",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 5, until: 5, lastSplit: 5, latest: 10, newestTs: 9_000},
				tp1: {start: 0, until: 1, lastSplit: 0, latest: 5, newestTs: 8_000},
			}),
			last:     map[topicPartition]lastRecord{tp0: {offset: 4, ts: 4_000, through: 5}},
			reports:  map[stream.PartitionID]map[string]float64{"t/1": report(0, 0)},
			want:     summary(6500, 8000, 5000),
			wantMaps: map[stream.PartitionID]map[string]float64{"t/1": shown(0, 0, 4, 8000)},
			wantLast: map[topicPartition]lastRecord{
				tp0: {offset: 4, ts: 4_000, through: 5},
				tp1: {offset: 0, ts: 0, through: 1},
			},
		},
		{
			name: "a remembered record is not the last one once a range was read without a report",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 5, until: 8, lastSplit: 5, latest: 10, newestTs: 9_000},
				tp1: {start: 0, until: 2, lastSplit: 0, latest: 2, newestTs: 8_000},
			}),
			last:     map[topicPartition]lastRecord{tp0: {offset: 4, ts: 4_000, through: 5}},
			reports:  map[stream.PartitionID]map[string]float64{"t/1": report(1, 1_000)},
			want:     summary(0, 0, 0), // t/0 is left out
			wantMaps: map[stream.PartitionID]map[string]float64{"t/1": shown(1, 1_000, 0, 0)},
			wantLast: map[topicPartition]lastRecord{
				tp0: {offset: 4, ts: 4_000, through: 5},
				tp1: {offset: 1, ts: 1_000, through: 2},
			},
		},
		{
			name: "the report of a split before the last one says nothing of the last record",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 10, lastSplit: 5, latest: 20, newestTs: 19_000},
			}),
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(4, 4_000)},
			want:     nil,
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": shown(4, 4_000, 10)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 4, ts: 4_000, through: 5}},
		},
		{
			name: "the last split's report covers the range",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 10, lastSplit: 5, latest: 20, newestTs: 19_000},
			}),
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(8, 8_000)},
			want:     summary(11000, 11000, 11000),
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": shown(8, 8_000, 10, 11000)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 8, ts: 8_000, through: 10}},
		},
		{
			name:     "no plan in this process (a replay after a restart): nothing, but the record is kept",
			plan:     nil,
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(11, 11_000)},
			want:     nil,
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": report(11, 11_000)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 11, ts: 11_000, through: 12}},
		},
		{
			name: "a report outside the plan's ranges is from another batch: nothing",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 12, until: 20, lastSplit: 12, latest: 20, newestTs: 19_000},
				tp1: {start: 3, until: 3, lastSplit: 3, latest: 3, newestTs: 2_000},
			}),
			reports:  map[stream.PartitionID]map[string]float64{"t/0": report(11, 11_000)},
			want:     nil,
			wantMaps: map[stream.PartitionID]map[string]float64{"t/0": report(11, 11_000)},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 11, ts: 11_000, through: 12}},
		},
		{
			name: "a report of a partition the plan does not have: nothing",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 12, lastSplit: 0, latest: 12, newestTs: 11_000},
			}),
			reports: map[stream.PartitionID]map[string]float64{
				"t/0": report(11, 11_000), "t/2": report(3, 3_000),
			},
			want: nil,
			wantMaps: map[stream.PartitionID]map[string]float64{
				"t/0": report(11, 11_000), "t/2": report(3, 3_000),
			},
			wantLast: map[topicPartition]lastRecord{
				tp0: {offset: 11, ts: 11_000, through: 12},
				tp2: {offset: 3, ts: 3_000, through: 4},
			},
		},
		{
			name: "a plan without newest timestamps has no ms figures, not even zeros",
			plan: &lagPlan{parts: map[topicPartition]partLag{
				tp0: {start: 0, until: 12, lastSplit: 0, latest: 20, newestTs: -1},
				tp1: {start: 0, until: 5, lastSplit: 0, latest: 5, newestTs: -1},
			}},
			reports: map[stream.PartitionID]map[string]float64{
				"t/0": report(11, 11_000), "t/1": report(4, 4_000),
			},
			want: nil,
			wantMaps: map[stream.PartitionID]map[string]float64{
				"t/0": shown(11, 11_000, 8), "t/1": shown(4, 4_000, 0),
			},
			wantLast: map[topicPartition]lastRecord{
				tp0: {offset: 11, ts: 11_000, through: 12},
				tp1: {offset: 4, ts: 4_000, through: 5},
			},
		},
		{
			name: "a partition without a newest timestamp is left out",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 12, lastSplit: 0, latest: 20, newestTs: -1},
				tp1: {start: 0, until: 3, lastSplit: 0, latest: 5, newestTs: 6_000},
			}),
			reports: map[stream.PartitionID]map[string]float64{
				"t/0": report(11, 11_000), "t/1": report(2, 2_000),
			},
			want: summary(4000, 4000, 4000),
			wantMaps: map[stream.PartitionID]map[string]float64{
				"t/0": shown(11, 11_000, 8), "t/1": shown(2, 2_000, 2, 4000),
			},
			wantLast: map[topicPartition]lastRecord{
				tp0: {offset: 11, ts: 11_000, through: 12},
				tp1: {offset: 2, ts: 2_000, through: 3},
			},
		},
		{
			name: "a remembered record beyond until predates a recreated topic",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 0, lastSplit: 0, latest: 5, newestTs: 9_000},
			}),
			last:     map[topicPartition]lastRecord{tp0: {offset: 40, ts: 1_000, through: 41}},
			want:     nil,
			wantMaps: map[stream.PartitionID]map[string]float64{},
			wantLast: map[topicPartition]lastRecord{tp0: {offset: 40, ts: 1_000, through: 41}},
		},
		{
			name: "min, max and average over three partitions",
			plan: plan(map[topicPartition]partLag{
				tp0: {start: 0, until: 12, lastSplit: 0, latest: 20, newestTs: 1_700_000_019_000},
				tp1: {start: 0, until: 6, lastSplit: 0, latest: 10, newestTs: 1_700_000_009_000},
				tp2: {start: 0, until: 1, lastSplit: 0, latest: 1, newestTs: 1_700_000_000_000},
			}),
			reports: map[stream.PartitionID]map[string]float64{
				"t/0": report(11, 1_700_000_011_000), "t/1": report(5, 1_700_000_005_000), "t/2": report(0, 1_700_000_000_000),
			},
			want: summary(4000, 8000, 0),
			wantMaps: map[stream.PartitionID]map[string]float64{
				"t/0": shown(11, 1_700_000_011_000, 8, 8000),
				"t/1": shown(5, 1_700_000_005_000, 4, 4000),
				"t/2": shown(0, 1_700_000_000_000, 0, 0),
			},
			wantLast: map[topicPartition]lastRecord{
				tp0: {offset: 11, ts: 1_700_000_011_000, through: 12},
				tp1: {offset: 5, ts: 1_700_000_005_000, through: 6},
				tp2: {offset: 0, ts: 1_700_000_000_000, through: 1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			last := map[topicPartition]lastRecord{}
			for k, v := range tc.last {
				last[k] = v
			}
			reports := tc.reports
			if reports == nil {
				reports = map[stream.PartitionID]map[string]float64{}
			}
			got := summarizeLag(tc.plan, last, reports)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("summary (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantMaps, reports); diff != "" {
				t.Errorf("per-partition figures (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantLast, last, cmp.AllowUnexported(lastRecord{}, topicPartition{})); diff != "" {
				t.Errorf("remembered last records (-want +got):\n%s", diff)
			}
		})
	}
}

// A Source that never planned (a batch replayed after a driver restart)
// summarises without panicking and reports nothing.
func TestSummarizeTaskMetricsBeforePlan(t *testing.T) {
	var s Source
	if got := s.SummarizeTaskMetrics(map[stream.PartitionID]map[string]float64{"t/0": {MetricLastRecordOffset: 3, MetricLastRecordTimestampMs: 3000}}); got != nil {
		t.Fatalf("SummarizeTaskMetrics before any plan = %v, want nil", got)
	}
}
