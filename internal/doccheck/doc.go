// Package doccheck holds a test, run by `make test` (go test ./internal/...),
// that keeps the repository's documentation linked: it reads README.md and
// every docs/**/*.md and fails on a relative link whose file does not exist,
// that leaves the repository, or whose #anchor matches no heading of the
// target Markdown file. Anchors follow GitHub's rules (see anchor in the
// test). External http(s) and mailto links are not checked.
package doccheck
