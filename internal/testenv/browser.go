package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser tests drive headless Chromium through the DevTools protocol
// (chromedp). A test asks for a tab with NewBrowser, acts with chromedp.Do and
// chromedp.Run on the context it returns, waits for DOM conditions with
// WaitJS (never with sleeps) and saves what it saw with Screenshot:
//
//	ctx := testenv.NewBrowser(t)
//	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
//		t.Fatal(err)
//	}
//	testenv.WaitJS(t, ctx, `document.querySelectorAll("[data-testid=job-row]").length === 2`, "both jobs listed")
//	testenv.Screenshot(t, ctx, "jobs-desktop")

// ChromiumEnv names a Chrome or Chromium binary to use instead of the one
// found on the machine.
const ChromiumEnv = "SLUICE_CHROMIUM"

// ArtifactsEnv names the directory that receives test artifacts (the
// screenshots go to its ui/ folder); CI uploads it.
const ArtifactsEnv = "SLUICE_ARTIFACTS"

var chromiumLocations = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"}

// ChromiumPath finds the browser: $SLUICE_CHROMIUM, /usr/bin/chromium, then
// chromium, chromium-browser, google-chrome or headless-shell on PATH. The
// error says which package to install.
func ChromiumPath() (string, error) {
	if p := os.Getenv(ChromiumEnv); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("$%s (%s): %w", ChromiumEnv, p, err)
		}
		return found, nil
	}
	for _, p := range chromiumLocations {
		if found, err := exec.LookPath(p); err == nil {
			return found, nil
		}
	}
	return "", errors.New("browser tests need Chromium and found none: install the Debian package chromium " +
		"(apt-get install chromium), or set " + ChromiumEnv + " to a Chrome or Chromium binary")
}

type browserConfig struct {
	timeout       time.Duration
	width, height int
}

// BrowserOption changes how NewBrowser starts the browser.
type BrowserOption func(*browserConfig)

// BrowserTimeout bounds the browser's whole life: when it passes, every
// chromedp call on the tab fails with context.DeadlineExceeded and the
// browser is stopped. Default 2 minutes, and never later than 10 seconds
// before the test binary's -timeout.
func BrowserTimeout(d time.Duration) BrowserOption {
	return func(c *browserConfig) { c.timeout = d }
}

// BrowserWindow sets the window size in CSS pixels. Default 1280x800; use
// chromedp.EmulateViewport to change it for one page (a phone's 390x844).
func BrowserWindow(width, height int) BrowserOption {
	return func(c *browserConfig) { c.width, c.height = width, height }
}

// NewBrowser starts headless Chromium for the test (with --no-sandbox when
// running as root, which Chromium's sandbox refuses, with a fresh profile,
// language en-US and time zone UTC, so pages render the same on every
// machine) and returns the chromedp context of its first tab. The
// browser is already running when NewBrowser returns; a browser that cannot
// start fails the test with its output.
//
// The browser, its tab and every goroutine of chromedp belong to the test:
// t.Cleanup closes them and waits for the process to exit, after saving a
// screenshot named after the test when the test failed. Do not call
// NewBrowser from a test's goroutine other than the test's own.
func NewBrowser(t testing.TB, opts ...BrowserOption) context.Context {
	t.Helper()
	cfg := browserConfig{timeout: 2 * time.Minute, width: 1280, height: 800}
	for _, o := range opts {
		o(&cfg)
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok {
			cfg.timeout = min(cfg.timeout, time.Until(end)-10*time.Second)
		}
	}
	if cfg.timeout <= 0 {
		t.Fatalf("browser: no time left before the test binary's -timeout")
	}
	exe, err := ChromiumPath()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "chromium.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	log := &lockedWriter{w: logFile}
	aopts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.WindowSize(cfg.width, cfg.height),
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("disable-gpu", true),
		chromedp.Env("TZ=UTC", "LANG=en_US.UTF-8"),
		chromedp.CombinedOutput(log),
	)
	if os.Geteuid() == 0 {
		aopts = append(aopts, chromedp.NoSandbox)
	}

	life, stopLife := context.WithTimeout(context.Background(), cfg.timeout)
	actx, stopAlloc := chromedp.NewExecAllocator(life, aopts...)
	logf := func(format string, args ...any) { fmt.Fprintf(log, "chromedp: "+format+"\n", args...) }
	ctx, stopTab := chromedp.NewContext(actx, chromedp.WithErrorf(logf), chromedp.WithLogf(logf))
	stop := func() {
		// The first tab's context owns the browser: cancelling it closes
		// the browser; the allocator's cancel then waits for the process.
		stopTab()
		stopAlloc()
		stopLife()
		logFile.Close()
	}
	if err := chromedp.Do(ctx); err != nil {
		stop()
		t.Fatalf("browser: start %s: %v\n%s", exe, err, tail(logPath))
	}
	t.Cleanup(func() {
		if t.Failed() && ctx.Err() == nil {
			saveScreenshot(t, ctx, "FAILED-"+t.Name())
		}
		stop()
	})
	return ctx
}

// ArtifactDir returns (and creates) the folder for the UI's test artifacts:
// $SLUICE_ARTIFACTS/ui, or sluice-artifacts/ui under os.TempDir().
func ArtifactDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv(ArtifactsEnv)
	if root == "" {
		root = filepath.Join(os.TempDir(), "sluice-artifacts")
	}
	dir := filepath.Join(root, "ui")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	return dir
}

// Screenshot saves a full-page PNG of the tab of ctx (the whole document, not
// only the viewport) as ArtifactDir/<name>.png, logs its path with t.Log and
// returns it. Characters of name other than letters, digits, '.', '_' and
// '-' become '-'. A screenshot that cannot be taken fails the test.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	path, err := saveScreenshot(t, ctx, name)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	return path
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func saveScreenshot(t testing.TB, ctx context.Context, name string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", err
	}
	path := filepath.Join(ArtifactDir(t), unsafeName.ReplaceAllString(name, "-")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", err
	}
	t.Logf("screenshot %s", path)
	return path, nil
}

// WaitJS polls the JavaScript expression in the tab of ctx until it is
// truthy, for up to timeout (default 20 s). It fails the test naming what,
// the page's address and the expression, after saving a screenshot, when the
// expression stays false, throws, or ctx ends. Tests wait with it for DOM
// conditions instead of sleeping, so they do not depend on the machine's
// speed.
func WaitJS(t testing.TB, ctx context.Context, expr, what string, timeout ...time.Duration) {
	t.Helper()
	d := 20 * time.Second
	if len(timeout) > 0 {
		d = timeout[0]
	}
	wctx, cancel := context.WithTimeout(ctx, d+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(wctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(d)))
	if err == nil {
		return
	}
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	url, _ := chromedp.Run(lctx, chromedp.Location())
	lcancel()
	if ctx.Err() == nil {
		_, _ = saveScreenshot(t, ctx, "WAIT-"+t.Name())
	}
	t.Fatalf("waiting %s for %s on %s: %v\n  expression: %s", d, what, url, err, expr)
}

// lockedWriter serialises the browser's output and chromedp's messages,
// which arrive from different goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *os.File
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
