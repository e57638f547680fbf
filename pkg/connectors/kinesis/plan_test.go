package kinesis

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// shorthand positions for the tables
func seqPos(seq string) position { return position{Seq: seq} }
func endPos(seq string) position { return position{Seq: seq, End: true} }

func sh(id string, closed bool, parents ...string) shardInfo {
	return shardInfo{id: id, closed: closed, parents: parents}
}

// summary renders a plan as "shard:from" per task and "shard=start" per
// carried position, sorted, for compact expectations.
func summary(t *testing.T, sp streamPlan) (tasks, carried []string) {
	t.Helper()
	inTask := map[stream.PartitionID]bool{}
	for _, r := range sp.ranges {
		inTask[r.Partition] = true
		_, shard, _ := splitPartitionID(r.Partition)
		tasks = append(tasks, shard+":"+string(r.From))
	}
	for id, p := range sp.start {
		if !inTask[id] {
			_, shard, _ := splitPartitionID(id)
			carried = append(carried, shard+"="+string(p))
		}
	}
	sort.Strings(tasks)
	sort.Strings(carried)
	return tasks, carried
}

func TestPlanStream(t *testing.T) {
	ident := &identityPos{ARN: "arn", Created: 1}
	// A split of s0 into s2 and s3, then a merge of s2 and s1 into s4.
	resharded := []shardInfo{sh("s0", true), sh("s1", true), sh("s2", true, "s0"), sh("s3", false, "s0"), sh("s4", false, "s2", "s1")}
	tests := []struct {
		name        string
		shards      []shardInfo
		committed   map[string]position
		identity    *identityPos
		init        initialSpec
		cutoff      int64
		wantTasks   []string
		wantCarried []string
		wantLoss    []string
	}{
		{
			name:      "new job, trim_horizon: only shards without a listed parent",
			shards:    resharded,
			init:      initialSpec{kind: initialTrimHorizon},
			wantTasks: []string{`s0:{"start":"TRIM_HORIZON"}`, `s1:{"start":"TRIM_HORIZON"}`},
		},
		{
			name:      "new job, at_timestamp",
			shards:    []shardInfo{sh("s0", false)},
			init:      initialSpec{kind: initialAtTimestamp, ts: 77},
			wantTasks: []string{`s0:{"start":"AT_TIMESTAMP","ts":77}`},
		},
		{
			name:        "new job, latest: closed shards end at once, open ones start now",
			shards:      resharded,
			init:        initialSpec{kind: initialLatest, ts: 99},
			wantTasks:   []string{`s3:{"start":"AT_TIMESTAMP","ts":99}`, `s4:{"start":"AT_TIMESTAMP","ts":99}`},
			wantCarried: []string{`s0={"end":true}`, `s1={"end":true}`, `s2={"end":true}`},
		},
		{
			name:      "children wait while a parent is being read",
			shards:    resharded,
			committed: map[string]position{"s0": seqPos("5"), "s1": seqPos("7")},
			identity:  ident,
			init:      initialSpec{kind: initialTrimHorizon},
			wantTasks: []string{`s0:{"seq":"5"}`, `s1:{"seq":"7"}`},
		},
		{
			name:        "children start at TRIM_HORIZON once the parent's end is committed",
			shards:      resharded,
			committed:   map[string]position{"s0": endPos("5"), "s1": seqPos("7")},
			identity:    ident,
			init:        initialSpec{kind: initialLatest, ts: 99},
			wantTasks:   []string{`s1:{"seq":"7"}`, `s2:{"start":"TRIM_HORIZON"}`, `s3:{"start":"TRIM_HORIZON"}`},
			wantCarried: []string{`s0={"seq":"5","end":true}`},
		},
		{
			name:        "a merge waits for both parents",
			shards:      resharded,
			committed:   map[string]position{"s0": endPos("5"), "s1": seqPos("7"), "s2": endPos("9"), "s3": seqPos("11")},
			identity:    ident,
			init:        initialSpec{kind: initialTrimHorizon},
			wantTasks:   []string{`s1:{"seq":"7"}`, `s3:{"seq":"11"}`},
			wantCarried: []string{`s0={"seq":"5","end":true}`, `s2={"seq":"9","end":true}`},
		},
		{
			name:        "with at_timestamp children start at the timestamp",
			shards:      resharded,
			committed:   map[string]position{"s0": endPos("5"), "s1": endPos("7"), "s2": endPos("9"), "s3": seqPos("11")},
			identity:    ident,
			init:        initialSpec{kind: initialAtTimestamp, ts: 42},
			wantTasks:   []string{`s3:{"seq":"11"}`, `s4:{"start":"AT_TIMESTAMP","ts":42}`},
			wantCarried: []string{`s0={"seq":"5","end":true}`, `s1={"seq":"7","end":true}`, `s2={"seq":"9","end":true}`},
		},
		{
			name:      "an ended shard that expired is dropped; its child is read",
			shards:    []shardInfo{sh("s3", false, "s0")},
			committed: map[string]position{"s0": endPos("5")},
			identity:  ident,
			init:      initialSpec{kind: initialTrimHorizon},
			wantTasks: []string{`s3:{"start":"TRIM_HORIZON"}`},
		},
		{
			name:      "a shard that expired before it was read to its end is data loss",
			shards:    []shardInfo{sh("s3", false, "s0")},
			committed: map[string]position{"s0": seqPos("5")},
			identity:  ident,
			init:      initialSpec{kind: initialTrimHorizon},
			wantTasks: []string{`s3:{"start":"TRIM_HORIZON"}`},
			wantLoss:  []string{"s/s0"},
		},
		{
			name:      "a parent that expired unread is data loss",
			shards:    []shardInfo{sh("s1", false), sh("s5", false, "s4")},
			committed: map[string]position{"s1": seqPos("5")},
			identity:  ident,
			init:      initialSpec{kind: initialTrimHorizon},
			wantTasks: []string{`s1:{"seq":"5"}`, `s5:{"start":"TRIM_HORIZON"}`},
			wantLoss:  []string{"s/s5"},
		},
		{
			name:      "a new job ignores parents that expired before it began",
			shards:    []shardInfo{sh("s5", false, "s4")},
			init:      initialSpec{kind: initialTrimHorizon},
			wantTasks: []string{`s5:{"start":"TRIM_HORIZON"}`},
		},
		{
			name:        "availableNow: shards read past the cutoff get no task; others carry it",
			shards:      []shardInfo{sh("s0", false), sh("s1", false)},
			committed:   map[string]position{"s0": {Seq: "5", CutDone: 100}, "s1": seqPos("6")},
			identity:    ident,
			init:        initialSpec{kind: initialTrimHorizon},
			cutoff:      100,
			wantTasks:   []string{`s1:{"seq":"6","cut":100}`},
			wantCarried: []string{`s0={"seq":"5","cutDone":100}`},
		},
		{
			name:      "availableNow after a new leader took a later cutoff",
			shards:    []shardInfo{sh("s0", false)},
			committed: map[string]position{"s0": {Seq: "5", CutDone: 100}},
			identity:  ident,
			init:      initialSpec{kind: initialTrimHorizon},
			cutoff:    200,
			wantTasks: []string{`s0:{"seq":"5","cut":200}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			committed := tt.committed
			if committed == nil {
				committed = map[string]position{}
			}
			sp := planStream("s", tt.shards, &streamCommitted{identity: tt.identity, shards: committed}, tt.init, tt.cutoff, 0)
			tasks, carried := summary(t, sp)
			if diff := cmp.Diff(tt.wantTasks, tasks); diff != "" {
				t.Errorf("tasks (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCarried, carried); diff != "" {
				t.Errorf("carried positions (-want +got):\n%s", diff)
			}
			var losses []string
			for _, l := range sp.losses {
				losses = append(losses, string(l.Partition))
				if !errors.Is(l, connectors.ErrDataLoss) || !strings.Contains(l.Error(), "expired") {
					t.Errorf("loss %v: want a data loss that says the shard expired", l)
				}
			}
			if diff := cmp.Diff(tt.wantLoss, losses); diff != "" {
				t.Errorf("losses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckIdentity(t *testing.T) {
	live := identityPos{ARN: "arn:aws:kinesis:us-east-1:000000000000:stream/s", Created: 2000}
	if err := checkIdentity("s", nil, live); err != nil {
		t.Fatal(err)
	}
	if err := checkIdentity("s", &live, live); err != nil {
		t.Fatal(err)
	}
	old := live
	old.Created = 1000
	err := checkIdentity("s", &old, live)
	if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), "deleted and recreated") || !strings.Contains(err.Error(), "new name") {
		t.Fatalf("err = %v, want a permanent error saying the stream was recreated and what to do", err)
	}
	other := live
	other.ARN = "arn:aws:kinesis:us-east-1:111111111111:stream/s"
	if err := checkIdentity("s", &other, live); !connectors.IsPermanent(err) || !strings.Contains(err.Error(), "account") {
		t.Fatalf("err = %v, want a permanent error about another account", err)
	}
}

func TestSummarizeTaskMetrics(t *testing.T) {
	s := &Source{}
	got := s.SummarizeTaskMetrics(map[stream.PartitionID]map[string]float64{
		"s/a": {MetricMillisBehindLatest: 0}, "s/b": {MetricMillisBehindLatest: 3000}, "s/c": {MetricMillisBehindLatest: 600}, "s/d": {},
	})
	want := map[string]float64{MetricAvgMsBehindLatest: 1200, MetricMaxMsBehindLatest: 3000, MetricMinMsBehindLatest: 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("summary (-want +got):\n%s", diff)
	}
	if s.SummarizeTaskMetrics(map[stream.PartitionID]map[string]float64{"s/a": {}}) != nil {
		t.Fatal("summary of nothing is not nil")
	}
}

func TestPositionCodec(t *testing.T) {
	three := int64(3)
	for _, p := range []position{
		{Start: startTrimHorizon}, {Start: startAtTimestamp, TS: 5}, {Seq: "1"}, {Seq: "49", Sub: &three},
		{Seq: "49", End: true}, {End: true}, {Seq: "7", Cut: 9, CutDone: 9, Created: 11},
	} {
		got, err := decodePosition(p.encode())
		if err != nil {
			t.Fatalf("%s: %v", p.encode(), err)
		}
		if !got.at(p) || got.Cut != p.Cut || got.CutDone != p.CutDone || got.Created != p.Created {
			t.Fatalf("round trip of %s gave %s", p.encode(), got.encode())
		}
	}
	for _, bad := range []string{``, `{}`, `{"seq":"01"}`, `{"seq":"x"}`, `{"sub":1}`, `{"seq":"1","start":"TRIM_HORIZON"}`,
		`{"start":"AT_TIMESTAMP"}`, `{"start":"LATEST"}`, `{"seq":"1","sub":-1}`, `{"seq":"1","extra":1}`, `{"seq":"1"} {}`} {
		if _, err := decodePosition(stream.Position(bad)); err == nil {
			t.Errorf("decodePosition(%s) succeeded", bad)
		}
	}
}

// FuzzPosition: decodePosition never panics, and whatever it accepts
// encodes to a position it decodes to the same point.
func FuzzPosition(f *testing.F) {
	for _, s := range []string{`{"seq":"49","sub":2}`, `{"start":"TRIM_HORIZON"}`, `{"end":true}`, `{"start":"AT_TIMESTAMP","ts":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decodePosition(stream.Position(s))
		if err != nil {
			return
		}
		q, err := decodePosition(p.encode())
		if err != nil || !q.at(p) || q.Cut != p.Cut || q.CutDone != p.CutDone {
			t.Fatalf("%s re-encoded as %s: %v", s, p.encode(), err)
		}
	})
}
