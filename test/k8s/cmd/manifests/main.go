// Command manifests writes deploy/k8s/manifests/sluice.yaml from the Helm
// chart, and the operations kit's deploy/grafana and deploy/prometheus files
// from the chart's files/ (make manifests), or with -check fails when the committed file differs
// from a fresh render (make manifests-check).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "manifests:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("manifests", flag.ContinueOnError)
	root := fs.String("root", "../..", "root of the repository")
	check := fs.Bool("check", false, "only check that the committed manifests are up to date")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := chart.Load(chart.Dir(*root))
	if err != nil {
		return err
	}
	want, err := chart.Manifests(c)
	if err != nil {
		return err
	}
	outputs := map[string][]byte{filepath.Join(chart.ManifestsDir(*root), chart.ManifestsFile): want}
	kit, err := chart.OpsKit(c)
	if err != nil {
		return err
	}
	for rel, b := range kit {
		outputs[filepath.Join(*root, filepath.FromSlash(rel))] = b
	}
	paths := make([]string, 0, len(outputs))
	for p := range outputs {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		want := outputs[path]
		if *check {
			got, err := os.ReadFile(path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("%s is stale: run make manifests and commit the result", path)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, want, 0o644); err != nil {
			return err
		}
	}
	return nil
}
