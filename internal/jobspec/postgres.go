package jobspec

import (
	"errors"
	"io"
	"strings"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/connectors/postgres"
	"github.com/sluicehq/sluice/pkg/connectors/s3"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

type postgresSink struct{ cfg postgres.Config }

func (p postgresSink) newSink(io.Writer) (connectors.Sink, error) { return postgres.New(p.cfg) }

// compilePostgresSink validates sink.postgres (or deadLetter.postgres).
func compilePostgresSink(k *sluicev1.PostgresSink, field string, e *Error) sinkConfig {
	cfg := PostgresConfig(k, sinkRole(field))
	if s := k.GetLockTimeout(); s != "" {
		d, err := parseDuration(s)
		switch {
		case err != nil:
			e.add(field+".lockTimeout", "%q is not a duration like 10s", s)
			return nil
		case d <= 0:
			e.add(field+".lockTimeout", "must be positive (got %s)", s)
			return nil
		}
		cfg.LockTimeout = d
	}
	if err := cfg.Validate(); err != nil {
		addConfigError(e, field, err)
		return nil
	}
	return postgresSink{cfg: cfg}
}

// PostgresConfig converts the proto options. role is "sink" or
// "deadLetter": it keeps the two sinks' rows apart in the positions table.
func PostgresConfig(k *sluicev1.PostgresSink, role string) postgres.Config {
	cfg := postgres.Config{
		URL:            k.GetUrl(),
		Table:          k.GetTable(),
		Mode:           k.GetMode(),
		KeyColumns:     k.GetKeyColumns(),
		CreateTable:    k.GetCreateTable(),
		WriteMethod:    k.GetWriteMethod(),
		PositionsTable: k.GetPositionsTable(),
		SinkName:       role,
	}
	for _, c := range k.GetColumns() {
		cfg.Columns = append(cfg.Columns, postgres.Column{Name: c.GetName(), Field: c.GetField(), Type: c.GetType()})
	}
	return cfg
}

// sinkRole is the first element of a sink's field path: "sink" or
// "deadLetter". (Shared by the production sinks: postgres.go, s3.go,
// kafkasink.go.)
func sinkRole(field string) string {
	role, _, _ := strings.Cut(field, ".")
	return role
}

// addConfigError adds a production sink's Config.Validate error under field
// plus the option path the connector names, so a problem reads
// "deadLetter.postgres.columns[1].type: ..." wherever the sink sits in the
// spec.
func addConfigError(e *Error, field string, err error) {
	var pe *postgres.ConfigError
	var se *s3.ConfigError
	var ke *kafka.SinkConfigError
	switch {
	case errors.As(err, &pe):
		e.add(field+"."+pe.Field, "%s", pe.Reason)
	case errors.As(err, &se):
		e.add(field+"."+se.Field, "%s", se.Reason)
	case errors.As(err, &ke):
		e.add(field+"."+ke.Field, "%s", ke.Reason)
	default:
		e.add(field, "%v", err)
	}
}
