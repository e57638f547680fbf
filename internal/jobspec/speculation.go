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
	if fd, _, ok := kindOf(spec.GetSource()); ok && sp.Enabled {
		// Each source says whether a range can run twice side by side
		// (sourceAdapter.noSpeculation).
		if why := sourceAdapters[fd.Name()].noSpeculation; why != "" {
			e.add(field+".enabled", "speculation needs ranges with a planned end; %s", why)
		}
	}
	return sp
}
