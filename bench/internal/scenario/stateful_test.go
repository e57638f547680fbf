package scenario

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/bench/internal/baseline"
	"github.com/sluicehq/sluice/bench/internal/harness"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

func TestStatefulFigures(t *testing.T) {
	start := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	batch := func(id, commitMs, total, written int64) *sluicev1.BatchProgress {
		return &sluicev1.BatchProgress{
			BatchId: id, Timestamp: timestamppb.New(start.Add(time.Duration(id) * time.Second)), NumInputRows: 100,
			DurationMs: map[string]int64{"total": 250, "execute": 200},
			StateOperators: []*sluicev1.StateOperatorProgress{{
				NumRowsTotal: total, CommitTimeMs: commitMs, CheckpointBytesWritten: written,
				StateOnDiskBytes: 1 << 20 * id, MemoryUsedBytes: 2 << 20,
			}},
		}
	}
	bs := []*sluicev1.BatchProgress{batch(0, 10, 100, 1000), batch(1, 30, 150, 2000), batch(2, 20, 200, 3000)}
	st, err := summarizeState(bs)
	if err != nil {
		t.Fatal(err)
	}
	if st.groups != 200 || st.written != 6000 || st.onDisk != 2<<20 || len(st.commitMs) != 3 {
		t.Errorf("summary %+v", st)
	}
	if got := batchEnd(bs[2]); !got.Equal(start.Add(2*time.Second + 250*time.Millisecond)) {
		t.Errorf("batch end %s", got)
	}
	if _, err := summarizeState([]*sluicev1.BatchProgress{{BatchId: 4}}); err == nil || !strings.Contains(err.Error(), "batch 4 reports no state operator") {
		t.Errorf("a batch without state: %v", err)
	}

	w := &harness.KeyedWorkload{Records: 2_000_000, Keys: 1_000_000}
	b := baselineRun{res: baseline.Result{Elapsed: 2 * time.Second}}
	s := sluiceRun{elapsed: 20 * time.Second, batches: 3, executors: []harness.Usage{{}, {}}}
	row := statefulRow(w, b, s, st, restoreFigures{victim: "executor-0", batch: 3, timeMs: 120, partitions: 8, totalMs: 400, records: 10000})
	if row.ID != "7" || row.Met != nil || row.Ratio != 0.1 || !strings.Contains(row.Name, "1M keys") ||
		!strings.Contains(row.Target, "no target") || !strings.Contains(row.Notes, "restored 8 of 16 partitions, restore_time_ms 120 ms") ||
		!strings.Contains(row.Notes, "state commit p50 20 ms, max 30 ms") {
		t.Errorf("row %+v", row)
	}
	for n, want := range map[int64]string{1_000_000: "1M", 250_000: "250k", 1234: "1234"} {
		if got := keyCount(n); got != want {
			t.Errorf("keyCount(%d) = %s, want %s", n, got, want)
		}
	}
}
