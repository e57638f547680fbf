package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/discard"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The discard sink (sink.discard): drops the rows, counting them.

type discardSink struct{}

func (discardSink) newSink(io.Writer) (connectors.Sink, error) { return discard.New(), nil }

func compileDiscardSink(*sluicev1.DiscardSink, fieldErrors, sinkRole) sinkConfig {
	return discardSink{}
}
