package driver

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
)

// Every goroutine the driver, executor, sources and sinks start must be
// stopped by the time their owners' Run and Close return, but for the
// process's SQL engine (testenv.SharedEngineGoroutine).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction(testenv.SharedEngineGoroutine))
}
