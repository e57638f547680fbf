package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/console"
	"github.com/sluicehq/sluice/pkg/connectors/discard"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

const sinkKinds = "console, file, discard, kinesis, postgres, s3, kafka"

// compileSink validates one sink; it returns nil when s is invalid or absent.
func compileSink(s *sluicev1.Sink, field string, required bool, e *Error) sinkConfig {
	switch k := s.GetKind().(type) {
	case nil:
		if required {
			e.add(field, "is required (one of: %s)", sinkKinds)
		}
	case *sluicev1.Sink_Console:
		if n := k.Console.GetNumRows(); n < 0 {
			e.add(field+".console.numRows", "must not be negative (got %d)", n)
			return nil
		}
		cfg := console.Config{NumRows: int(k.Console.GetNumRows()), Truncate: true}
		if k.Console.Truncate != nil {
			cfg.Truncate = k.Console.GetTruncate()
		}
		return consoleSink{cfg}
	case *sluicev1.Sink_File:
		cfg := file.Config{Path: k.File.GetPath(), Format: k.File.GetFormat()}
		if err := cfg.Validate(); err != nil {
			e.add(field+".file", "%v", err)
			return nil
		}
		return fileSink{cfg}
	case *sluicev1.Sink_Discard:
		return discardSink{}
	case *sluicev1.Sink_Kinesis:
		return compileKinesisSink(k.Kinesis, field+".kinesis", e)
	case *sluicev1.Sink_Postgres:
		return compilePostgresSink(k.Postgres, field+".postgres", e)
	case *sluicev1.Sink_S3:
		return compileS3Sink(k.S3, field+".s3", e)
	case *sluicev1.Sink_Kafka:
		return compileKafkaSink(k.Kafka, field+".kafka", e)
	}
	return nil
}

type consoleSink struct{ cfg console.Config }

func (c consoleSink) newSink(out io.Writer) (connectors.Sink, error) { return console.New(c.cfg, out) }

type fileSink struct{ cfg file.Config }

func (f fileSink) newSink(io.Writer) (connectors.Sink, error) { return file.New(f.cfg) }

type discardSink struct{}

func (discardSink) newSink(io.Writer) (connectors.Sink, error) { return discard.New(), nil }
