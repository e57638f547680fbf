package jobspec

import (
	"github.com/sluicehq/sluice/pkg/scheduler"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// compileSpeculation turns speculation into the scheduler's settings,
// starting from Spark's defaults (off, 0.75, 1.5, 100ms).
func compileSpeculation(spec *sluicev1.JobSpec, e *Error) scheduler.Speculation {
	sp := scheduler.DefaultSpeculation
	s := spec.GetSpeculation()
	if s == nil {
		return sp
	}
	const field = "speculation"
	sp.Enabled = s.GetEnabled()
	switch q := s.GetQuantile(); {
	case q < 0 || q > 1:
		e.add(field+".quantile", "must be between 0 and 1 (got %g)", q)
	case q > 0:
		sp.Quantile = q
	}
	switch m := s.GetMultiplier(); {
	case m == 0:
	case m < 1:
		e.add(field+".multiplier", "must be at least 1 (got %g): a straggler is slower than the median", m)
	default:
		sp.Multiplier = m
	}
	if v := s.GetMinTaskRuntime(); v != "" {
		d, err := parseDuration(v)
		switch {
		case err != nil:
			e.add(field+".minTaskRuntime", "%q is not a duration like 100ms or 2s", v)
		case d < 0:
			e.add(field+".minTaskRuntime", "must not be negative (got %s)", v)
		default:
			sp.MinTaskRuntime = d
		}
	}
	if sp.Enabled && spec.GetSource().GetKinesis() != nil {
		// A Kinesis range ends where its reader stops on the first run, so
		// two attempts of one range would read different records, and the
		// loser's output could not be told apart from the winner's.
		e.add(field+".enabled", "speculation needs ranges with a planned end; a Kinesis source's ranges end where the reader stops")
	}
	return sp
}
