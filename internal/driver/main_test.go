package driver

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the driver, executor, sources and sinks start must be
// stopped by the time their owners' Run and Close return. The exception is
// the process's SQL engine (sqltransform.SharedEngine, a database/sql pool
// over DuckDB), which the first SQL job opens and the process keeps.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}
