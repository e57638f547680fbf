package jobspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/scheduler"
)

func TestCompileRestartStrategy(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  scheduler.RestartPolicy
		field string // of the expected error, "" for none
		err   string
	}{
		{name: "default", yaml: "", want: scheduler.DefaultRestartPolicy},
		{name: "exponential", yaml: "restartStrategy: {type: exponentialDelay, initialBackoff: 2s, maxBackoff: 1m, backoffMultiplier: 1.5, jitter: 0.2, attempts: 10}",
			want: scheduler.RestartPolicy{Kind: "exponentialDelay", InitialBackoff: 2 * time.Second, MaxBackoff: time.Minute, Multiplier: 1.5, Jitter: 0.2, Attempts: 10}},
		{name: "fixed", yaml: "restartStrategy: {type: fixedDelay, delay: 5s, attempts: 3}",
			want: scheduler.RestartPolicy{Kind: "fixedDelay", InitialBackoff: 5 * time.Second, MaxBackoff: 5 * time.Minute, Multiplier: 2, Jitter: 0.1, Attempts: 3}},
		{name: "flink spelling", yaml: "restartStrategy: {type: fixed-delay}",
			want: scheduler.RestartPolicy{Kind: "fixedDelay", InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute, Multiplier: 2, Jitter: 0.1}},
		{name: "none", yaml: "restartStrategy: {type: none}",
			want: scheduler.RestartPolicy{Kind: "none", InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute, Multiplier: 2, Jitter: 0.1}},
		{name: "bad type", yaml: "restartStrategy: {type: sometimes}", field: "restartStrategy.type", err: "not one of"},
		{name: "bad duration", yaml: "restartStrategy: {initialBackoff: soon}", field: "restartStrategy.initialBackoff", err: "duration"},
		{name: "max below initial", yaml: "restartStrategy: {initialBackoff: 1m, maxBackoff: 1s}", field: "restartStrategy.maxBackoff", err: "less than"},
		{name: "multiplier below 1", yaml: "restartStrategy: {backoffMultiplier: 0.5}", field: "restartStrategy.backoffMultiplier", err: "at least 1"},
		{name: "jitter above 1", yaml: "restartStrategy: {jitter: 2}", field: "restartStrategy.jitter", err: "between 0 and 1"},
		{name: "negative attempts", yaml: "restartStrategy: {attempts: -1}", field: "restartStrategy.attempts", err: "negative"},
		{name: "delay on exponential", yaml: "restartStrategy: {delay: 1s}", field: "restartStrategy.delay", err: "fixedDelay"},
		{name: "backoff on fixed", yaml: "restartStrategy: {type: fixedDelay, maxBackoff: 1m}", field: "restartStrategy", err: "exponentialDelay"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(good + tc.yaml + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			j, err := Compile(spec)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if j.Restart != tc.want {
					t.Fatalf("policy %+v, want %+v", j.Restart, tc.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || len(e.List) != 1 || e.List[0].Field != tc.field || !strings.Contains(e.List[0].Description, tc.err) {
				t.Fatalf("error %v, want one on %s containing %q", err, tc.field, tc.err)
			}
		})
	}
}
