package sluicecmd

import (
	"runtime"
	"testing"
)

func TestTaskSQLThreads(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	for _, tc := range []struct {
		threads, slots, want int
	}{
		{3, 8, 3},         // given
		{0, procs, 1},     // one slot a core: the tasks' own threads
		{0, 2 * procs, 1}, // more slots than cores
		{0, 1, procs},     // one task at a time may use every core
		{0, 0, procs},     // no slots given: as one
		{0, max(procs/2, 1), procs / max(procs/2, 1)},
	} {
		if got := taskSQLThreads(tc.threads, tc.slots); got != tc.want {
			t.Errorf("taskSQLThreads(%d, %d) = %d, want %d (GOMAXPROCS %d)", tc.threads, tc.slots, got, tc.want, procs)
		}
	}
}
