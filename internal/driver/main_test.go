package driver

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the driver, executor, sources and sinks start must be
// stopped by the time their owners' Run and Close return.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
