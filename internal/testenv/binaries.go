package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sluicehq/sluice/internal/secrets"
)

// Binaries are the project's programs built for tests that run them as
// separate processes (test/e2e, test/chaos), and the secrets key their
// drivers get.
type Binaries struct {
	// Dir holds one executable per name given to BuildBinaries.
	Dir string
	// SecretsKeyFile is a fresh --secrets-key-file: drivers on etcd refuse
	// job specs with literal secrets (the PostgreSQL URLs of testenv carry
	// a password) unless they have a key to encrypt them in the catalog.
	SecretsKeyFile string
}

// BuildBinaries builds each package (name → package path, relative to the
// caller's directory) into a new temporary directory, with its output on
// stderr. Remove Dir when done; on error nothing is left behind.
func BuildBinaries(prefix string, pkgs map[string]string) (Binaries, error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Dir: dir, SecretsKeyFile: filepath.Join(dir, "secrets.key")}
	if _, err := secrets.GenerateKeyFile(b.SecretsKeyFile); err != nil {
		os.RemoveAll(dir)
		return Binaries{}, fmt.Errorf("write the secrets key: %w", err)
	}
	for name, pkg := range pkgs {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			os.RemoveAll(dir)
			return Binaries{}, fmt.Errorf("build %s: %w", name, err)
		}
	}
	return b, nil
}
