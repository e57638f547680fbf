// Command manifests writes deploy/k8s/manifests/sluice.yaml from the Helm
// chart (make manifests), or with -check fails when the committed file differs
// from a fresh render (make manifests-check).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

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
	path := filepath.Join(chart.ManifestsDir(*root), chart.ManifestsFile)
	if *check {
		got, err := os.ReadFile(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s is stale: run make manifests and commit the result", path)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, want, 0o644)
}
