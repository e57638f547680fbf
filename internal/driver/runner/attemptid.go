package runner

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/pkg/stream"
)

// AttemptID names one attempt of one task, and is the only place attempt
// ids are made and read: job/batch/task/epoch.loop.n, for example
// "orders/42/orders/3#1/7.2.1093". The epoch (the leader's fence) makes it
// unique across leaders, the loop across a job's batch loops on one
// leader, n across the loop's attempts; job, batch and task make it
// readable in logs. Executors treat it as an opaque string.
type AttemptID struct {
	Job   string
	Batch stream.BatchID
	Task  string // the task's key: a range's (partition and split) or a state partition's
	Epoch int64
	Loop  int64
	N     int64
}

func (a AttemptID) String() string {
	return a.Job + "/" + strconv.FormatInt(int64(a.Batch), 10) + "/" + a.Task + "/" +
		strconv.FormatInt(a.Epoch, 10) + "." + strconv.FormatInt(a.Loop, 10) + "." + strconv.FormatInt(a.N, 10)
}

// ParseAttemptID reads an id String made. Job names have no '/' (the job
// spec refuses them) and the counters none either, so the task is what lies
// between the batch and the last '/', whatever it holds.
func ParseAttemptID(s string) (AttemptID, error) {
	var a AttemptID
	job, rest, ok := strings.Cut(s, "/")
	batch, rest, ok2 := strings.Cut(rest, "/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || !ok2 || i < 0 || job == "" {
		return a, fmt.Errorf("attempt id %q: want job/batch/task/epoch.loop.n", s)
	}
	a.Job, a.Task = job, rest[:i]
	b, err := strconv.ParseInt(batch, 10, 64)
	if err != nil || b < 0 || a.Task == "" {
		return a, fmt.Errorf("attempt id %q: want job/batch/task/epoch.loop.n", s)
	}
	a.Batch = stream.BatchID(b)
	nums := strings.Split(rest[i+1:], ".")
	if len(nums) != 3 {
		return a, fmt.Errorf("attempt id %q: want epoch.loop.n at its end", s)
	}
	for j, p := range []*int64{&a.Epoch, &a.Loop, &a.N} {
		if *p, err = strconv.ParseInt(nums[j], 10, 64); err != nil || *p < 0 {
			return a, fmt.Errorf("attempt id %q: want epoch.loop.n at its end", s)
		}
	}
	return a, nil
}
