package kinesis

import (
	"fmt"

	"github.com/sluicehq/sluice/pkg/connectors/kinesis/efo"
	"github.com/sluicehq/sluice/pkg/stream"
)

// CheckEnd implements connectors.EndChecker: the driver refuses a task result
// whose end precedes its range's start, which no reader of that range can
// report, so committing it would read records twice.
func (s *Source) CheckEnd(r stream.Range, end stream.Position) error {
	from, err := decodePosition(r.From)
	if err != nil {
		return fmt.Errorf("range start: %w", err)
	}
	to, err := decodePosition(end)
	if err != nil {
		return fmt.Errorf("end: %w", err)
	}
	if before(to, from) {
		return fmt.Errorf("end %s precedes the range's start %s", end, r.From)
	}
	return nil
}

// before reports whether end names a point before from. Without sequence
// numbers on both sides there is nothing to compare, except that a range
// that starts after a sequence number cannot end at a start marker.
func before(end, from position) bool {
	if from.Seq == "" {
		return false
	}
	if end.Seq == "" {
		return !end.End
	}
	switch c := efo.CompareSequence(end.Seq, from.Seq); {
	case c != 0:
		return c < 0
	case end.Sub == nil:
		// All of the aggregate read is never before any part of it.
		return false
	case from.Sub == nil:
		// from is past the whole aggregate, end inside it.
		return true
	default:
		return *end.Sub < *from.Sub
	}
}
