package local

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/pkg/checkpoint"
)

// One truncated catalog file used to fail ListJobs as a whole, so an
// elected driver could start none of the jobs and exited. The bad entry
// must be listed by name with Unreadable set, the others as usual, and
// DeleteJob must remove it.
func TestListJobsUnreadableEntry(t *testing.T) {
	for _, tt := range []struct{ name, content string }{
		{"truncated", `{"name":"team/bad","spec":"CgN`},
		{"empty", ``},
		{"wrong type", `{"name":42}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			f := checkpoint.Fence{}
			mustDo(t, s.PutJob(ctx, f, checkpoint.JobRecord{Name: "a-good", State: "RUNNING"}))
			mustDo(t, s.PutJob(ctx, f, checkpoint.JobRecord{Name: "team/bad", State: "RUNNING"}))
			mustDo(t, s.PutJob(ctx, f, checkpoint.JobRecord{Name: "z-good", State: "STOPPED"}))
			if err := os.WriteFile(filepath.Join(dir, "jobs", "team%2Fbad.json"), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}

			jobs, err := s.ListJobs(ctx)
			if err != nil {
				t.Fatalf("ListJobs with one bad entry: %v", err)
			}
			if len(jobs) != 3 || jobs[0].Name != "a-good" || jobs[1].Name != "team/bad" || jobs[2].Name != "z-good" {
				t.Fatalf("ListJobs = %+v, want a-good, team/bad, z-good", jobs)
			}
			if jobs[0].Unreadable != nil || jobs[2].Unreadable != nil || jobs[0].State != "RUNNING" {
				t.Fatalf("good entries: %+v", jobs)
			}
			if jobs[1].Unreadable == nil {
				t.Fatalf("bad entry listed without Unreadable: %+v", jobs[1])
			}

			mustDo(t, s.DeleteJob(ctx, f, "team/bad"))
			jobs, err = s.ListJobs(ctx)
			if err != nil || len(jobs) != 2 {
				t.Fatalf("after DeleteJob: %+v, %v", jobs, err)
			}
		})
	}
}
