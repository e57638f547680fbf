package webui

import (
	"testing"

	"go.uber.org/goleak"
)

// The browser tests start Chromium and chromedp's goroutines; all of them
// must be gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
