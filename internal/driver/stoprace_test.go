package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestStopRightAfterSubmitStaysStopped: a stop that comes while the job's
// loop is starting must not be overwritten by the loop's RUNNING. Before
// the loop's state writes were ordered against the stop's, the catalog
// could read STOPPING, then RUNNING, then STOPPED: a leader taking over in
// between would have run the job the user stopped.
func TestStopRightAfterSubmitStaysStopped(t *testing.T) {
	c := startCluster(t, t.TempDir())
	_, brokers := kafkaWith(t, "ev", 1, 10)
	ctx := context.Background()
	for i := range 10 {
		name := fmt.Sprintf("quick-%d", i)
		events, unwatch := c.d.status.Watch(name)
		if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec(name, brokers, "ev", filepath.Join(t.TempDir(), "out"), fast)}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.api.StopJob(ctx, &sluicev1.StopJobRequest{Name: name}); err != nil {
			t.Fatal(err)
		}
		var states []sluicev1.JobState
		timeout := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case ev := <-events:
				st := ev.GetJob().GetState()
				if n := len(states); n == 0 || states[n-1] != st {
					states = append(states, st)
				}
				done = st == sluicev1.JobState_JOB_STATE_STOPPED
			case <-timeout:
				t.Fatalf("%s: no STOPPED after %v", name, states)
			}
		}
		unwatch()
		stopping := false
		for _, st := range states {
			if st == sluicev1.JobState_JOB_STATE_STOPPING {
				stopping = true
			}
			if stopping && (st == sluicev1.JobState_JOB_STATE_RUNNING || st == sluicev1.JobState_JOB_STATE_RETRYING) {
				t.Fatalf("%s: states %v: %s after STOPPING", name, states, st)
			}
		}
	}
}
