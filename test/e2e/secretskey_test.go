package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
)

// secretsKeyFile is the drivers' --secrets-key-file: drivers on etcd refuse
// job specs with literal secrets (the PostgreSQL URLs of testenv carry a
// password) unless they have a key to encrypt them in the catalog.
var secretsKeyFile string

// writeKeyFile writes a fresh key file into dir, as
// head -c32 /dev/urandom | base64 would.
func writeKeyFile(dir string) string {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	path := filepath.Join(dir, "secrets.key")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		panic(err)
	}
	return path
}
