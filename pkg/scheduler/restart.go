package scheduler

import (
	"math/rand/v2"
	"time"
)

// Restart strategy kinds, with Flink's names.
const (
	RestartExponentialDelay = "exponentialDelay"
	RestartFixedDelay       = "fixedDelay"
	RestartNone             = "none"
)

// RestartPolicy decides whether and when a job whose batch could not finish
// runs again. Tasks retry inside a batch under RetryPolicy; RestartPolicy
// takes over when the batch itself fails for a cause that may go away (a
// sink or store outage outlasting the task retries), so such an outage never
// ends a job. Permanent causes never reach it.
type RestartPolicy struct {
	// Kind is RestartExponentialDelay, RestartFixedDelay or RestartNone.
	Kind string
	// InitialBackoff is the first delay (exponentialDelay) or every delay
	// (fixedDelay).
	InitialBackoff time.Duration
	// MaxBackoff caps an exponential delay.
	MaxBackoff time.Duration
	// Multiplier grows an exponential delay per restart (at least 1).
	Multiplier float64
	// Jitter spreads each delay by up to ± this fraction of it (0 to 1), so
	// jobs failing together do not hammer a recovering service together.
	Jitter float64
	// Attempts is how many restarts in a row (without a committed batch in
	// between) are allowed before the job fails; 0 means forever.
	Attempts int
}

// DefaultRestartPolicy keeps retrying: 1s, 2s, 4s, … up to 5 minutes.
var DefaultRestartPolicy = RestartPolicy{
	Kind: RestartExponentialDelay, InitialBackoff: time.Second, MaxBackoff: 5 * time.Minute, Multiplier: 2, Jitter: 0.1,
}

// Allows reports whether restart number attempt (1 = the first restart since
// the last committed batch) may happen.
func (p RestartPolicy) Allows(attempt int) bool {
	if p.Kind == RestartNone {
		return false
	}
	return p.Attempts <= 0 || attempt <= p.Attempts
}

// Delay is the back-off before restart number attempt (1-based). rnd is a
// uniform number in [0, 1) (DelayRand draws one); it is a parameter so tests
// are deterministic.
func (p RestartPolicy) Delay(attempt int, rnd float64) time.Duration {
	d := p.InitialBackoff
	if p.Kind == RestartExponentialDelay {
		f := float64(p.InitialBackoff)
		for i := 1; i < attempt && f < float64(p.MaxBackoff); i++ {
			f *= max(p.Multiplier, 1)
		}
		d = time.Duration(min(f, float64(p.MaxBackoff)))
	}
	if p.Jitter > 0 {
		d += time.Duration((rnd*2 - 1) * p.Jitter * float64(d))
	}
	return max(d, 0)
}

// DelayRand is Delay with a random jitter.
func (p RestartPolicy) DelayRand(attempt int) time.Duration { return p.Delay(attempt, rand.Float64()) }
