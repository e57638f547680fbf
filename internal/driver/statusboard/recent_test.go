package statusboard

import (
	"testing"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestRecentProgressKeepsTasksOfTheLastBatches checks that the recent
// batches' progress keeps the per-task entries of the newest numRecentTasks
// batches only, every batch's figures, and leaves the messages handed out
// unchanged.
func TestRecentProgressKeepsTasksOfTheLastBatches(t *testing.T) {
	js := &jobStatus{}
	var all []*sluicev1.BatchProgress
	for i := range numRecentProgress + 10 {
		p := &sluicev1.BatchProgress{BatchId: int64(i), NumInputRows: int64(10 * i), DurationMs: map[string]int64{"total": int64(i)},
			Partitions: []*sluicev1.PartitionProgress{{Partition: "0", Records: 1}, {Partition: "1", Records: 2}}}
		all = append(all, p)
		js.addRecent(p)
	}
	if len(js.recent) != numRecentProgress {
		t.Fatalf("%d recent batches, want %d", len(js.recent), numRecentProgress)
	}
	for i, p := range js.recent {
		id := int64(10 + i)
		withTasks := i >= numRecentProgress-numRecentTasks
		if p.GetBatchId() != id || p.GetNumInputRows() != 10*id || p.GetDurationMs()["total"] != id {
			t.Errorf("recent[%d] = %v, want batch %d's figures", i, p, id)
		}
		if got := len(p.GetPartitions()) > 0; got != withTasks {
			t.Errorf("batch %d has per-task entries: %v, want %v", id, got, withTasks)
		}
	}
	for _, p := range all {
		if len(p.GetPartitions()) != 2 {
			t.Fatalf("batch %d's progress as handed out lost its tasks: %v", p.GetBatchId(), p)
		}
	}
	if want := proto.Clone(all[len(all)-1]); !proto.Equal(js.recent[numRecentProgress-1], want) {
		t.Errorf("the newest batch's progress changed")
	}
}
