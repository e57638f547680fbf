package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/console"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The console sink (sink.console): a table of each batch on the driver.

type consoleSink struct{ cfg console.Config }

func (c consoleSink) newSink(out io.Writer) (connectors.Sink, error) { return console.New(c.cfg, out) }

func compileConsoleSink(k *sluicev1.ConsoleSink, f fieldErrors, _ sinkRole) sinkConfig {
	if n := k.GetNumRows(); n < 0 {
		f.add("numRows", "must not be negative (got %d)", n)
		return nil
	}
	cfg := console.Config{NumRows: int(k.GetNumRows()), Truncate: true}
	if k.Truncate != nil {
		cfg.Truncate = k.GetTruncate()
	}
	return consoleSink{cfg}
}
