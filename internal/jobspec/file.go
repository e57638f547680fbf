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

func compileFileSink(k *sluicev1.FileSink, f fieldErrors, _ string) sinkConfig {
	cfg := file.Config{Path: k.GetPath(), Format: k.GetFormat()}
	if !f.addConfig(cfg.Validate(), fileOption) {
		return nil
	}
	return fileSink{cfg}
}

// fileOption reads the option file.Config.Validate names. It returns no
// typed error but writes the option at the start of its message, always
// under sink.file ("sink.file.path: required"), even for dead letters, so
// a dead-letter problem reads "deadLetter.file: sink.file.path: required".
// prefixedOption("sink.file.") reports it as "deadLetter.file.path:
// required"; it waits for internal/driver's TestSubmitInvalidSpec, which
// expects the field "sink.file", to expect "sink.file.path".
var fileOption = underBlock
