package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

func TestChromiumPathNamesThePackage(t *testing.T) {
	t.Setenv(ChromiumEnv, "/nonexistent/chromium")
	if _, err := ChromiumPath(); err == nil || !strings.Contains(err.Error(), ChromiumEnv) {
		t.Fatalf("ChromiumPath with a bad $%s: %v", ChromiumEnv, err)
	}
	t.Setenv(ChromiumEnv, "")
	saved := chromiumLocations
	chromiumLocations = []string{"/nonexistent/chromium", "sluice-no-such-browser"}
	defer func() { chromiumLocations = saved }()
	if _, err := ChromiumPath(); err == nil || !strings.Contains(err.Error(), "Debian package chromium") {
		t.Fatalf("ChromiumPath without a browser: %v", err)
	}
}

func TestBrowserWaitsAndScreenshots(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, `<!doctype html><title>t</title><p id="p">waiting</p>
<script>setTimeout(() => { document.getElementById("p").textContent = "ready" }, 50)</script>`)
	}))
	defer srv.Close()
	t.Setenv(ArtifactsEnv, t.TempDir())

	ctx := NewBrowser(t)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	WaitJS(t, ctx, `document.getElementById("p").textContent === "ready"`, "the page's script")
	path := Screenshot(t, ctx, "testenv/browser smoke")
	if !strings.HasSuffix(path, "/ui/testenv-browser-smoke.png") {
		t.Errorf("screenshot saved as %s", path)
	}
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 8 || string(b[1:4]) != "PNG" {
		t.Fatalf("screenshot %s is not a PNG: %v", path, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the browser's context ended early")
	}
}
