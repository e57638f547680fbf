package doccheck

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// TestLinks checks every relative link of README.md and docs/**/*.md.
func TestLinks(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := []string{filepath.Join(root, "README.md")}
	err = filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk docs: %v", err)
	}
	c := &checker{root: root, anchors: map[string]map[string]bool{}}
	links := 0
	for _, f := range files {
		doc, err := parse(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range doc.links {
			links++
			if msg := c.check(f, l.target); msg != "" {
				rel, _ := filepath.Rel(root, f)
				t.Errorf("%s:%d: link %q: %s", rel, l.line, l.target, msg)
			}
		}
	}
	if links == 0 {
		t.Fatal("found no links at all: is the repository root right?")
	}
}

// repoRoot is the nearest directory at or above the working directory
// holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

type link struct {
	target string
	line   int
}

type document struct {
	links   []link
	anchors map[string]bool
}

var (
	// inlineLink matches [text](target) and ![alt](target), with an
	// optional title; the text may hold one level of brackets.
	inlineLink = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	// refDef matches a reference definition: [id]: target.
	refDef     = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	heading    = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$`)
	htmlAnchor = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
)

// parse reads a Markdown file's links and heading anchors, skipping fenced
// code blocks and inline code.
func parse(path string) (*document, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc := &document{anchors: map[string]bool{}}
	seen := map[string]int{}
	fence := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		for _, m := range htmlAnchor.FindAllStringSubmatch(line, -1) {
			doc.anchors[m[1]] = true
		}
		if m := heading.FindStringSubmatch(line); m != nil {
			a := anchor(m[2])
			if k := seen[a]; k > 0 {
				doc.anchors[a+"-"+strconv.Itoa(k)] = true
			} else {
				doc.anchors[a] = true
			}
			seen[a]++
		}
		text := codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			doc.links = append(doc.links, link{target: m[1], line: n})
		}
		if m := refDef.FindStringSubmatch(text); m != nil {
			doc.links = append(doc.links, link{target: m[1], line: n})
		}
	}
	return doc, sc.Err()
}

var (
	mdLink     = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	htmlTag    = regexp.MustCompile(`<[^>]+>`)
	emphasisCh = strings.NewReplacer("*", "", "~", "")
)

// anchor is the id GitHub gives a heading: its text (links reduced to their
// text, tags and emphasis dropped) in lower case, every space a '-', and
// every other character that is not a letter, a digit, '-' or '_' dropped.
// A repeated heading gets "-1", "-2", ... (parse adds those).
func anchor(text string) string {
	text = mdLink.ReplaceAllString(text, "$1")
	text = htmlTag.ReplaceAllString(text, "")
	text = emphasisCh.Replace(text)
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

type checker struct {
	root    string
	anchors map[string]map[string]bool // Markdown file → its anchors
}

// check returns why target, a link in file from, is broken, or "".
func (c *checker) check(from, target string) string {
	if target == "" {
		return "empty link"
	}
	if u, err := url.Parse(target); err == nil && u.Scheme != "" {
		return "" // http(s), mailto and other external links are not checked
	}
	if strings.HasPrefix(target, "//") {
		return ""
	}
	path, frag, _ := strings.Cut(target, "#")
	path, err := url.PathUnescape(path)
	if err != nil {
		return fmt.Sprintf("bad escape: %v", err)
	}
	file := from
	if path != "" {
		if strings.HasPrefix(path, "/") {
			file = filepath.Join(c.root, filepath.FromSlash(path))
		} else {
			file = filepath.Join(filepath.Dir(from), filepath.FromSlash(path))
		}
		if rel, err := filepath.Rel(c.root, file); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return "points outside the repository"
		}
		st, err := os.Stat(file)
		if err != nil {
			return "no such file"
		}
		if st.IsDir() {
			return "" // a folder: GitHub shows its listing
		}
	}
	if frag == "" || !strings.HasSuffix(file, ".md") {
		return "" // anchors of other files (#L10 of a source file) are not checked
	}
	anchors, ok := c.anchors[file]
	if !ok {
		doc, err := parse(file)
		if err != nil {
			return err.Error()
		}
		anchors = doc.anchors
		c.anchors[file] = anchors
	}
	if !anchors[frag] {
		return fmt.Sprintf("no heading with anchor #%s in %s", frag, filepath.Base(file))
	}
	return ""
}

func TestAnchor(t *testing.T) {
	for _, tc := range []struct{ heading, want string }{
		{"Sluice", "sluice"},
		{"Two commands", "two-commands"},
		{"Kafka source (`source.kafka`), Spark's option names", "kafka-source-sourcekafka-sparks-option-names"},
		{"Tests (`make test-k8s`, part of `make test`)", "tests-make-test-k8s-part-of-make-test"},
		{"Metrics (driver `/metrics`, Prometheus)", "metrics-driver-metrics-prometheus"},
		{"`sluice kinesis consumers`", "sluice-kinesis-consumers"},
		{"Kinesis enhanced fan-out (`consumerMode: efo`)", "kinesis-enhanced-fan-out-consumermode-efo"},
		{"snake_case and CamelCase", "snake_case-and-camelcase"},
		{"A [linked](https://example.com) heading", "a-linked-heading"},
		{"**Bold** and *emphasis*", "bold-and-emphasis"},
		{"1. Processes", "1-processes"},
		{"Things that will bite you", "things-that-will-bite-you"},
		{"Exactly once, per sink", "exactly-once-per-sink"},
		{"Ärger & Ünïcode", "ärger--ünïcode"},
		{"  padded  ", "padded"},
	} {
		if got := anchor(tc.heading); got != tc.want {
			t.Errorf("anchor(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}

// TestParse pins what parse sees: duplicate headings get numbered anchors;
// headings and links inside code are ignored.
func TestParse(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.md")
	src := "# Title\n## Same\n## Same\n```sh\n# not a heading\n[no](link.md)\n```\n" +
		"See [a](other.md#x) and `[code](no.md)`, ![img](i.png \"t\").\n[ref]: ref.md\n<a name=\"custom\"></a>\n"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	doc, err := parse(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"title", "same", "same-1", "custom"} {
		if !doc.anchors[a] {
			t.Errorf("anchor %q missing; have %v", a, doc.anchors)
		}
	}
	if doc.anchors["not-a-heading"] {
		t.Error("a heading inside a code fence was taken")
	}
	var got []string
	for _, l := range doc.links {
		got = append(got, l.target)
	}
	want := []string{"other.md#x", "i.png", "ref.md"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("links = %q, want %q", got, want)
	}
}

// TestCheck runs check over a small tree: existing and missing files and
// anchors, folders, links out of the repository, external links.
func TestCheck(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "# Top\n## Two words\n")
	write("docs/a.md", "# A page\n")
	write("pkg/x.go", "package x\n")
	c := &checker{root: root, anchors: map[string]map[string]bool{}}
	from := filepath.Join(root, "docs", "a.md")
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"../README.md", true},
		{"../README.md#two-words", true},
		{"../README.md#missing", false},
		{"#a-page", true},
		{"#nope", false},
		{"missing.md", false},
		{"../pkg/x.go", true},
		{"../pkg/x.go#L1", true},
		{"../pkg", true},
		{"/README.md#top", true},
		{"../../outside.md", false},
		{"https://example.com/nowhere#x", true},
		{"mailto:someone@example.com", true},
		{"", false},
	} {
		msg := c.check(from, tc.target)
		if (msg == "") != tc.ok {
			t.Errorf("check(%q) = %q, want ok=%v", tc.target, msg, tc.ok)
		}
	}
}
