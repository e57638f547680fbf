// Package archtest enforces the import rules of docs/design.md, "Seams", with go list:
// connectors never import the scheduler, task runtime, checkpoint stores or
// internal/; the scheduler imports no etcd, gRPC or connector
// implementation; domain packages never import generated proto types;
// examples import only what a user outside the module can import (pkg/, and
// sluicecmd, which wires the binaries to internal/ for them).
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/sluicehq/sluice/"

type pkg struct {
	ImportPath string
	Deps       []string
	Imports    []string
}

func TestImportBoundaries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json=ImportPath,Deps,Imports", "../../pkg/...", "../../examples/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	rules := []struct {
		who       string
		forbidden []string
		why       string
		direct    bool // only the package's own imports, not what they import
	}{
		{mod + "pkg/connectors", []string{mod + "pkg/scheduler", mod + "pkg/task", mod + "pkg/checkpoint", mod + "internal/", mod + "proto/"},
			"connectors are imported by the engine, never the other way round", false},
		{mod + "pkg/scheduler", []string{"go.etcd.io/", "google.golang.org/grpc", mod + "pkg/connectors/", mod + "proto/"},
			"the scheduler is pure: no I/O, no connector implementation", false},
		{mod + "pkg/", []string{mod + "proto/", mod + "internal/"},
			"domain packages do not know generated proto types; conversion lives in internal/", false},
		{mod + "examples/", []string{mod + "internal/"},
			"examples are for users to copy, who cannot import internal/ from another module", true},
	}
	n := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		for _, r := range rules {
			if !strings.HasPrefix(p.ImportPath, r.who) || strings.HasSuffix(p.ImportPath, "test") {
				continue
			}
			deps := p.Deps
			if r.direct {
				deps = p.Imports
			}
			for _, d := range deps {
				for _, f := range r.forbidden {
					if strings.HasPrefix(d, f) {
						t.Errorf("%s imports %s: %s", p.ImportPath, d, r.why)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("go list found no packages")
	}
}
