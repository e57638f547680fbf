package runner

import (
	"strings"
	"testing"
)

func TestAttemptIDCodec(t *testing.T) {
	for _, a := range []AttemptID{
		{Job: "orders", Batch: 42, Task: "orders/3#1", Epoch: 7, Loop: 2, N: 1093},
		{Job: "j.1_x-y", Batch: 0, Task: "state/15", Epoch: 1, Loop: 1, N: 1},
		{Job: "k", Batch: 9, Task: "stream/shardId-000000000004", Epoch: 12, Loop: 3, N: 4},
	} {
		got, err := ParseAttemptID(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAttemptID(%q) = %+v, %v; want %+v", a.String(), got, err, a)
		}
	}
	for _, s := range []string{"", "job", "job/1", "job/x/t/1.1.1", "job/1/t/1.1", "job/1/t/1.x.1", "/1/t/1.1.1", "job/1//1.1.1", "job/-1/t/1.1.1"} {
		if _, err := ParseAttemptID(s); err == nil || !strings.Contains(err.Error(), "attempt id") {
			t.Errorf("ParseAttemptID(%q) = %v, want an error naming the id", s, err)
		}
	}
}
