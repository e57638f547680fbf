// Command docgen writes docs/reference/job-spec.md from the comments of
// proto/sluice/v1/job.proto, and docs/reference/api.md from those of
// proto/sluice/v1/driver.proto. Run it from the repository root
// (`make docs`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/docgen"
)

func main() {
	in := flag.String("proto", "proto/sluice/v1/job.proto", "the job .proto file to document")
	out := flag.String("out", "docs/reference/job-spec.md", "the job-spec page to write")
	apiIn := flag.String("api-proto", "proto/sluice/v1/driver.proto", "the .proto file declaring the public service")
	apiOut := flag.String("api-out", "docs/reference/api.md", "the API page to write")
	flag.Parse()
	if err := run(*in, *out, *apiIn, *apiOut); err != nil {
		fmt.Fprintln(os.Stderr, "docgen:", err)
		os.Exit(1)
	}
}

func parse(path string) (*docgen.File, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := docgen.Parse(string(src))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func write(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

func run(in, out, apiIn, apiOut string) error {
	job, err := parse(in)
	if err != nil {
		return err
	}
	if missing := job.Undocumented(docgen.Root); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "docgen: warning: %d fields have no comment, e.g. %s\n", len(missing), missing[0])
	}
	if err := write(out, job.Markdown(docgen.Root)); err != nil {
		return err
	}
	api, err := parse(apiIn)
	if err != nil {
		return err
	}
	if missing := api.ServiceUndocumented(docgen.APIService); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "docgen: warning: %d rpcs and fields of %s have no comment, e.g. %s\n",
			len(missing), apiIn, missing[0])
	}
	return write(apiOut, api.APIMarkdown(docgen.APIService, job))
}
