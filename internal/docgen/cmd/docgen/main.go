// Command docgen writes docs/reference/job-spec.md from the comments of
// proto/sluice/v1/job.proto. Run it from the repository root (`make docs`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/docgen"
)

func main() {
	in := flag.String("proto", "proto/sluice/v1/job.proto", "the .proto file to document")
	out := flag.String("out", "docs/reference/job-spec.md", "the page to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	src, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	f, err := docgen.Parse(string(src))
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if missing := f.Undocumented(docgen.Root); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "docgen: warning: %d fields have no comment, e.g. %s\n", len(missing), missing[0])
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(out, []byte(f.Markdown(docgen.Root)), 0o644)
}
