package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The file sink (sink.file): JSON-lines files, one per task output.

type fileSink struct{ cfg file.Config }

func (f fileSink) newSink(io.Writer) (connectors.Sink, error) { return file.New(f.cfg) }

func compileFileSink(k *sluicev1.FileSink, f fieldErrors, _ sinkRole) sinkConfig {
	cfg := file.Config{Path: k.GetPath(), Format: k.GetFormat()}
	if !f.addConfig(cfg.Validate(), fileOption) {
		return nil
	}
	return fileSink{cfg}
}

// fileOption reads the option file.Config.Validate names: it returns no
// typed error but writes the option at the start of its message, always
// under sink.file ("sink.file.path: required"), even for dead letters.
var fileOption = prefixedOption("sink.file.")
