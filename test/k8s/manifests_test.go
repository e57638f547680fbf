package k8s

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/test/k8s/internal/chart"
)

// TestManifestsInSync: deploy/k8s/manifests is what `make manifests` renders
// from the chart now, and it decodes strictly like any render.
func TestManifestsInSync(t *testing.T) {
	c, err := chart.Load(chart.Dir(repoRoot))
	if err != nil {
		t.Fatal(err)
	}
	want, err := chart.Manifests(c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(chart.ManifestsDir(repoRoot), chart.ManifestsFile)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run make manifests", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run make manifests and commit the result", path)
	}
	// The Namespace that heads the file is not in the chart's renders.
	body := bytes.SplitN(got, []byte("\nkind: Namespace\nmetadata:\n  name: "+chart.ManifestsNamespace+"\n"), 2)
	if len(body) != 2 {
		t.Fatalf("%s does not start with the %s Namespace", path, chart.ManifestsNamespace)
	}
	if _, err := decodeManifest(string(body[1]), chart.ManifestsNamespace); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
