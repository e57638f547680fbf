package statusboard

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

func TestRecentErrors(t *testing.T) {
	at := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		msgs      []string
		want      []string
		wantCount []int32
	}{
		{"none", nil, nil, nil},
		{"empty is no error", []string{""}, nil, nil},
		{"repeats count up", []string{"a", "a", "a", "b"}, []string{"a", "b"}, []int32{3, 1}},
		{"a repeat after another is new", []string{"a", "b", "a"}, []string{"a", "b", "a"}, []int32{1, 1, 1}},
		{"the oldest go", func() []string {
			var m []string
			for i := range 12 {
				m = append(m, fmt.Sprint(i))
			}
			return m
		}(), []string{"2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}, []int32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := &jobStatus{}
			for i, m := range tt.msgs {
				js.noteError(m, at.Add(time.Duration(i)*time.Second))
			}
			if len(js.errors) != len(tt.want) {
				t.Fatalf("%d errors, want %d: %v", len(js.errors), len(tt.want), js.errors)
			}
			for i, e := range js.errors {
				if e.GetMessage() != tt.want[i] || e.GetCount() != tt.wantCount[i] {
					t.Errorf("error %d = %q ×%d, want %q ×%d", i, e.GetMessage(), e.GetCount(), tt.want[i], tt.wantCount[i])
				}
			}
		})
	}
}

func TestStatusBoardKeepsRecentProgressAndCurrent(t *testing.T) {
	s := New()
	s.Update(checkpoint.JobRecord{Name: "j", State: "RUNNING"}, nil)
	ch, stop := s.Watch("j")
	defer stop()

	for i := range numRecentProgress + 5 {
		s.Batch("j", &sluicev1.BatchProgress{BatchId: int64(i)})
	}
	all, ok := s.RecentProgress("j", 0)
	if !ok || len(all) != numRecentProgress || all[0].GetBatchId() != 5 || all[len(all)-1].GetBatchId() != numRecentProgress+4 {
		t.Fatalf("kept %d batches, %d..%d", len(all), all[0].GetBatchId(), all[len(all)-1].GetBatchId())
	}
	if last, _ := s.RecentProgress("j", 3); len(last) != 3 || last[0].GetBatchId() != numRecentProgress+2 {
		t.Fatalf("limit 3: %v", last)
	}
	if _, ok := s.RecentProgress("nope", 0); ok {
		t.Fatal("an unknown job has progress")
	}
	for len(ch) > 0 {
		<-ch
	}

	// A forced change is published at once; unforced ones within
	// currentEvery of it are kept but not sent.
	run := &sluicev1.BatchRun{BatchId: 7, Phase: "execute", TasksTotal: 4}
	s.SetCurrent("j", run, true)
	run.TasksDone = 1
	s.SetCurrent("j", run, false)
	if n := len(ch); n != 1 {
		t.Fatalf("%d events, want 1 (the forced one)", n)
	}
	if ev := <-ch; ev.GetJob().GetCurrent().GetTasksDone() != 0 {
		t.Fatalf("the event shows %v", ev.GetJob().GetCurrent())
	}
	if got := s.Get("j").GetCurrent(); got.GetTasksDone() != 1 {
		t.Fatalf("the view shows %v, want the latest (1 task done)", got)
	}
	run.TasksDone = 2 // the board copied run: changing it changes nothing shown
	if got := s.Get("j").GetCurrent(); got.GetTasksDone() != 1 {
		t.Fatalf("the view follows the caller's struct: %v", got)
	}
	s.Batch("j", &sluicev1.BatchProgress{BatchId: 200})
	if s.Get("j").GetCurrent() != nil {
		t.Fatal("a committed batch is still in flight")
	}
}
