package jobspec

import (
	"time"

	"github.com/sluicehq/sluice/pkg/scheduler"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// compileRestart turns restartStrategy into a scheduler.RestartPolicy,
// starting from the default (exponentialDelay, 1s to 5m, forever).
func compileRestart(rs *sluicev1.RestartStrategy, field string, e *Error) scheduler.RestartPolicy {
	p := scheduler.DefaultRestartPolicy
	if rs == nil {
		return p
	}
	switch rs.GetType() {
	case "", scheduler.RestartExponentialDelay, "exponential-delay":
		p.Kind = scheduler.RestartExponentialDelay
	case scheduler.RestartFixedDelay, "fixed-delay":
		p.Kind = scheduler.RestartFixedDelay
	case scheduler.RestartNone, "disable", "off":
		p.Kind = scheduler.RestartNone
	default:
		e.add(field+".type", "%q is not one of exponentialDelay, fixedDelay, none", rs.GetType())
	}
	dur := func(name, s string, into *scheduler.RestartPolicy, set func(*scheduler.RestartPolicy, time.Duration)) {
		if s == "" {
			return
		}
		d, err := parseDuration(s)
		switch {
		case err != nil:
			e.add(field+"."+name, "%q is not a duration like 1s or 5m", s)
		case d <= 0:
			e.add(field+"."+name, "must be positive (got %s)", s)
		default:
			set(into, d)
		}
	}
	if p.Kind == scheduler.RestartFixedDelay {
		// Flink's fixed-delay default delay is 1s, as is the initial back-off.
		dur("delay", rs.GetDelay(), &p, func(p *scheduler.RestartPolicy, d time.Duration) { p.InitialBackoff = d })
		if rs.GetInitialBackoff() != "" || rs.GetMaxBackoff() != "" || rs.GetBackoffMultiplier() != 0 {
			e.add(field, "initialBackoff, maxBackoff and backoffMultiplier belong to exponentialDelay; fixedDelay takes delay")
		}
	} else {
		if rs.GetDelay() != "" {
			e.add(field+".delay", "belongs to fixedDelay; exponentialDelay takes initialBackoff and maxBackoff")
		}
		dur("initialBackoff", rs.GetInitialBackoff(), &p, func(p *scheduler.RestartPolicy, d time.Duration) { p.InitialBackoff = d })
		dur("maxBackoff", rs.GetMaxBackoff(), &p, func(p *scheduler.RestartPolicy, d time.Duration) { p.MaxBackoff = d })
		if p.MaxBackoff < p.InitialBackoff {
			e.add(field+".maxBackoff", "(%s) must not be less than initialBackoff (%s)", p.MaxBackoff, p.InitialBackoff)
		}
		switch m := rs.GetBackoffMultiplier(); {
		case m == 0:
		case m < 1:
			e.add(field+".backoffMultiplier", "must be at least 1 (got %g)", m)
		default:
			p.Multiplier = m
		}
	}
	switch j := rs.GetJitter(); {
	case j < 0 || j > 1:
		e.add(field+".jitter", "must be between 0 and 1 (got %g)", j)
	case j > 0:
		p.Jitter = j
	}
	switch n := rs.GetAttempts(); {
	case n < 0:
		e.add(field+".attempts", "must not be negative (got %d); 0 retries forever", n)
	default:
		p.Attempts = int(n)
	}
	return p
}
