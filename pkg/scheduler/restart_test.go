package scheduler

import (
	"testing"
	"time"
)

func TestRestartPolicy(t *testing.T) {
	exp := RestartPolicy{Kind: RestartExponentialDelay, InitialBackoff: time.Second, MaxBackoff: 5 * time.Second, Multiplier: 2}
	fixed := RestartPolicy{Kind: RestartFixedDelay, InitialBackoff: 3 * time.Second, Attempts: 2}
	tests := []struct {
		name    string
		p       RestartPolicy
		attempt int
		rnd     float64
		want    time.Duration
		allowed bool
	}{
		{"exponential first", exp, 1, 0.5, time.Second, true},
		{"exponential grows", exp, 3, 0.5, 4 * time.Second, true},
		{"exponential capped", exp, 10, 0.5, 5 * time.Second, true},
		{"exponential forever", exp, 1000, 0.5, 5 * time.Second, true},
		{"fixed", fixed, 2, 0.5, 3 * time.Second, true},
		{"fixed past attempts", fixed, 3, 0.5, 3 * time.Second, false},
		{"none", RestartPolicy{Kind: RestartNone}, 1, 0.5, 0, false},
		{"jitter low", RestartPolicy{Kind: RestartFixedDelay, InitialBackoff: 10 * time.Second, Jitter: 0.1}, 1, 0, 9 * time.Second, true},
		{"jitter high", RestartPolicy{Kind: RestartFixedDelay, InitialBackoff: 10 * time.Second, Jitter: 0.1}, 1, 1, 11 * time.Second, true},
		{"default: 1s to 5m, forever", DefaultRestartPolicy, 20, 0.5, 5 * time.Minute, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Allows(tc.attempt); got != tc.allowed {
				t.Errorf("Allows(%d) = %v, want %v", tc.attempt, got, tc.allowed)
			}
			if !tc.allowed {
				return
			}
			if got := tc.p.Delay(tc.attempt, tc.rnd); got != tc.want {
				t.Errorf("Delay(%d) = %s, want %s", tc.attempt, got, tc.want)
			}
		})
	}
}

func TestRetryBackoffJitter(t *testing.T) {
	p := RetryPolicy{BaseBackoff: time.Second, MaxBackoff: 8 * time.Second, Jitter: 0.2}
	for range 200 {
		d := p.backoff(3) // 4s ± 20%
		if d < 3200*time.Millisecond || d > 4800*time.Millisecond {
			t.Fatalf("backoff(3) = %s, want 4s ± 20%%", d)
		}
	}
}
