package webui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is the path the UI is served under.
const Prefix = "/ui/"

// ContentSecurityPolicy is sent with every response: the page may load
// scripts, styles, images and API answers from its own origin only, runs no
// inline script or style attribute and may not be framed.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	name        string
	contentType string
	body        []byte
	gzipped     []byte // nil when compression does not pay
	version     string // first 16 hex digits of the body's SHA-256
}

func (a *asset) etag(gz bool) string {
	if gz {
		return `"` + a.version + `-gz"`
	}
	return `"` + a.version + `"`
}

var (
	loadOnce sync.Once
	assets   map[string]*asset // by name below Prefix; "" is index.html
)

// hashed are the assets index.html names, rewritten to name?v=<version>.
var hashed = []string{"app.js", "app.css", "favicon.svg"}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// load reads the embedded files once. A missing file or an index.html that
// no longer names an asset is a build mistake, so it panics (a test loads the
// assets, so it never reaches a binary).
func load() {
	assets = map[string]*asset{}
	read := func(name string) *asset {
		body, err := static.ReadFile("static/" + name)
		if err != nil {
			panic(fmt.Sprintf("webui: embedded %s: %v", name, err))
		}
		a := &asset{name: name, contentType: contentTypes[path.Ext(name)]}
		a.setBody(body)
		return a
	}
	for _, name := range hashed {
		assets[name] = read(name)
	}
	index := read("index.html")
	html := string(index.body)
	for _, name := range hashed {
		quoted := `"` + name + `"`
		if !strings.Contains(html, quoted) {
			panic(fmt.Sprintf("webui: index.html does not name %s", quoted))
		}
		html = strings.ReplaceAll(html, quoted, `"`+name+"?v="+assets[name].version+`"`)
	}
	index.setBody([]byte(html))
	assets[""] = index
	assets["index.html"] = index
}

func (a *asset) setBody(body []byte) {
	sum := sha256.Sum256(body)
	a.body, a.version, a.gzipped = body, hex.EncodeToString(sum[:8]), nil
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(body)
	_ = zw.Close()
	if buf.Len() < len(body)*9/10 {
		a.gzipped = buf.Bytes()
	}
}

// Handler serves the UI under /ui/: index.html at /ui/ (and
// /ui/index.html), the assets at /ui/app.js, /ui/app.css and
// /ui/favicon.svg; /ui redirects to /ui/ and any other path is 404. Only GET
// and HEAD are allowed.
//
// Caching: index.html is revalidated on every load (no-cache, with an
// ETag); an asset asked for with its current ?v= hash is immutable for a
// year, any other asset request is revalidated. Clients that accept gzip get
// the compressed body.
func Handler() http.Handler {
	loadOnce.Do(load)
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")

	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	a := assets[name]
	if !ok || a == nil {
		http.Error(w, "not found: the UI is at "+Prefix, http.StatusNotFound)
		return
	}

	switch v := r.URL.Query().Get("v"); {
	case a.name == "index.html":
		h.Set("Cache-Control", "no-cache")
	case v == a.version:
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	default:
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("Content-Type", a.contentType)
	body, gz := a.body, false
	if a.gzipped != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, gz = a.gzipped, true
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", a.etag(gz))
	// The ETag carries the version; no Last-Modified, since embedded files
	// have no modification time.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip (an
// explicit q=0 refuses it).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
