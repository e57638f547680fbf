package jobspec

import (
	"io"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/postgres"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The PostgreSQL sink (sink.postgres, deadLetter.postgres).

type postgresSink struct{ cfg postgres.Config }

func (p postgresSink) newSink(io.Writer) (connectors.Sink, error) { return postgres.New(p.cfg) }

func compilePostgresSink(k *sluicev1.PostgresSink, f fieldErrors, role sinkRole) sinkConfig {
	cfg := PostgresConfig(k, role.name)
	if s := k.GetLockTimeout(); s != "" {
		d, err := parseDuration(s)
		switch {
		case err != nil:
			f.add("lockTimeout", "%q is not a duration like 10s", s)
			return nil
		case d <= 0:
			f.add("lockTimeout", "must be positive (got %s)", s)
			return nil
		}
		cfg.LockTimeout = d
	}
	if !f.addConfig(cfg.Validate(), postgresOption) {
		return nil
	}
	return postgresSink{cfg: cfg}
}

var postgresOption = typedOption(func(e *postgres.ConfigError) (string, string) { return e.Field, e.Reason })

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
