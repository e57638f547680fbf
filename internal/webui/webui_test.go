package webui

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, target string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesEmbeddedFiles(t *testing.T) {
	h := Handler()
	tests := []struct {
		path, contentType, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<main id="main"`},
		{"/ui/index.html", "text/html; charset=utf-8", `<dialog id="token-dialog"`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "X-Sluice-Action"},
		{"/ui/app.css", "text/css; charset=utf-8", "prefers-color-scheme"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := get(t, h, http.MethodGet, tt.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			if got := res.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if got := res.Header.Get("Content-Encoding"); got != "" {
				t.Errorf("Content-Encoding %q without Accept-Encoding", got)
			}
			if b := body(t, res); !strings.Contains(b, tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
		})
	}
}

func TestHandlerSecurityHeaders(t *testing.T) {
	h := Handler()
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/nope", "/ui"} {
		res := get(t, h, http.MethodGet, path, nil)
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %q", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline code", path, csp)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q", path, got)
		}
		if got := res.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s: X-Frame-Options %q", path, got)
		}
	}
}

// The CSP forbids inline script and style: the page must not need them.
func TestIndexHasNoInlineCode(t *testing.T) {
	html := body(t, get(t, Handler(), http.MethodGet, "/ui/", nil))
	for _, tag := range regexp.MustCompile(`<script[^>]*>[^<]*`).FindAllString(html, -1) {
		if !strings.Contains(tag, " src=") || !strings.HasSuffix(tag, ">") {
			t.Errorf("index.html has an inline script: %q", tag)
		}
	}
	for _, re := range []string{`\sstyle=`, `<style`, `\son[a-z]+=`, `javascript:`} {
		if m := regexp.MustCompile(re).FindString(html); m != "" {
			t.Errorf("index.html has inline code %q (matches %s)", m, re)
		}
	}
	js := body(t, get(t, Handler(), http.MethodGet, "/ui/app.js", nil))
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function", "document.write", "setAttribute('style'"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s, which the CSP or the no-HTML-injection rule forbids", bad)
		}
	}
}

func TestIndexNamesAssetsByHash(t *testing.T) {
	h := Handler()
	html := body(t, get(t, h, http.MethodGet, "/ui/", nil))
	for _, name := range hashed {
		m := regexp.MustCompile(`"` + regexp.QuoteMeta(name) + `\?v=([0-9a-f]{16})"`).FindStringSubmatch(html)
		if m == nil {
			t.Errorf("index.html does not name %s?v=<hash>", name)
			continue
		}
		if m[1] != assets[name].version {
			t.Errorf("%s: index.html names version %s, the asset is %s", name, m[1], assets[name].version)
		}
		if strings.Contains(html, `"`+name+`"`) {
			t.Errorf("index.html still names %s without its hash", name)
		}
	}
}

func TestHandlerCaching(t *testing.T) {
	h := Handler()
	js := assets["app.js"]
	tests := []struct {
		path, cacheControl string
	}{
		{"/ui/", "no-cache"},
		{"/ui/index.html?v=" + assets[""].version, "no-cache"},
		{"/ui/app.js?v=" + js.version, "public, max-age=31536000, immutable"},
		{"/ui/app.js?v=0000000000000000", "no-cache"},
		{"/ui/app.js", "no-cache"},
	}
	for _, tt := range tests {
		res := get(t, h, http.MethodGet, tt.path, nil)
		if got := res.Header.Get("Cache-Control"); got != tt.cacheControl {
			t.Errorf("%s: Cache-Control %q, want %q", tt.path, got, tt.cacheControl)
		}
		if res.Header.Get("ETag") == "" {
			t.Errorf("%s: no ETag", tt.path)
		}
	}

	// Revalidation answers 304 without a body.
	etag := get(t, h, http.MethodGet, "/ui/app.js", nil).Header.Get("ETag")
	res := get(t, h, http.MethodGet, "/ui/app.js", map[string]string{"If-None-Match": etag})
	if res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match %s: status %d, want 304", etag, res.StatusCode)
	}
	if b := body(t, res); b != "" {
		t.Errorf("304 with a body of %d bytes", len(b))
	}
}

func TestHandlerGzip(t *testing.T) {
	h := Handler()
	plain := body(t, get(t, h, http.MethodGet, "/ui/app.js", nil))
	res := get(t, h, http.MethodGet, "/ui/app.js", map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if got := res.Header.Get("Content-Encoding"); got != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", got)
	}
	if got := res.Header.Get("Vary"); got != "Accept-Encoding" {
		t.Errorf("Vary %q", got)
	}
	if res.Header.Get("ETag") == get(t, h, http.MethodGet, "/ui/app.js", nil).Header.Get("ETag") {
		t.Error("the gzip and identity bodies share an ETag")
	}
	zr, err := gzip.NewReader(bytes.NewReader([]byte(body(t, res))))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if string(unzipped) != plain {
		t.Error("the gzip body does not decompress to the file")
	}
	if got := get(t, h, http.MethodGet, "/ui/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"}).Header.Get("Content-Encoding"); got != "" {
		t.Errorf("gzip;q=0: Content-Encoding %q", got)
	}
}

func TestHandlerRoutes(t *testing.T) {
	h := Handler()
	res := get(t, h, http.MethodGet, "/ui", nil)
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("/ui: %d to %q, want 301 to /ui/", res.StatusCode, res.Header.Get("Location"))
	}
	for _, path := range []string{"/ui/nope.js", "/ui/static/app.js", "/ui/../go.mod", "/app.js", "/"} {
		if res := get(t, h, http.MethodGet, path, nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, res.StatusCode)
		}
	}
	res = get(t, h, http.MethodPost, "/ui/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
	res = get(t, h, http.MethodHead, "/ui/app.css", nil)
	if res.StatusCode != http.StatusOK || body(t, res) != "" || res.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD /ui/app.css: %d, Content-Length %q", res.StatusCode, res.Header.Get("Content-Length"))
	}
}

// The UI must stay small: it is loaded on phones over the driver's port.
func TestAssetsStaySmall(t *testing.T) {
	Handler()
	total := 0
	for name, a := range assets {
		if name == "index.html" {
			continue
		}
		total += len(a.body)
		t.Logf("%-12s %6d bytes, %6d gzipped", a.name, len(a.body), len(a.gzipped))
	}
	if total > 150_000 {
		t.Errorf("the UI's files total %d bytes; keep them under 150 kB", total)
	}
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                   false,
		"gzip":               true,
		"GZIP":               true,
		"deflate, gzip":      true,
		"gzip;q=0":           false,
		"gzip; q=0.5":        true,
		"br":                 false,
		"x-gzip":             false,
		"identity, gzip;q=0": false,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}
