package driver

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/internal/secrets"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// localKeyFile is the key a standalone driver uses when --secrets-key-file
// is not given: generated in its checkpoint directory (mode 0600) on first
// start, so `sluice local` and a single-node driver encrypt literal secrets
// with no setup. It sits beside what it protects: for anything but a
// laptop, give --secrets-key-file a key kept elsewhere (a Kubernetes
// Secret).
const localKeyFile = "secrets.key"

// loadKeyring returns the cluster key for the job catalog's secrets:
//
//   - --secrets-key-file: that file (several keys, newest first, for
//     rotation);
//   - no flag, standalone driver: <--checkpoint>/secrets.key, created if
//     absent;
//   - no flag, drivers on etcd: none. Literal secrets are then refused at
//     submit (InvalidArgument naming the fields); references work.
func loadKeyring(cfg Config, log *slog.Logger) (*secrets.Keyring, error) {
	path := cfg.SecretsKeyFile
	if path == "" {
		if len(cfg.Etcd) > 0 {
			return nil, nil
		}
		path = filepath.Join(cfg.Checkpoint, localKeyFile)
		created, err := secrets.GenerateKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("create the standalone driver's secrets key %s: %w", path, err)
		}
		if created {
			log.Info("created a secrets key for literal secrets in job specs; keep it with the checkpoint directory, "+
				"or use --secrets-key-file with a key kept elsewhere", "path", path)
		}
	}
	k, err := secrets.LoadKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("--secrets-key-file: %w", err)
	}
	return k, nil
}

// secretsError is a spec whose secrets cannot be stored; the API answers
// InvalidArgument with one violation per field.
type secretsError struct{ violations []rpc.FieldViolation }

func (e *secretsError) Error() string {
	parts := make([]string, len(e.violations))
	for i, v := range e.violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid job spec: " + strings.Join(parts, "; ")
}

func (e *secretsError) Violations() []rpc.FieldViolation { return e.violations }

// sealSpec encrypts the literal secrets of a validated spec for the job
// catalog (secrets.Seal). It refuses literal secrets without a key, and
// on a driver whose executor streams are not TLS off loopback
// (clearTransport).
func (d *Driver) sealSpec(spec *sluicev1.JobSpec) (*sluicev1.JobSpec, error) {
	sealed, err := secrets.Seal(spec, d.keys)
	var le *secrets.LiteralsError
	var ke *secrets.KeyError
	switch {
	case errors.As(err, &le):
		e := &secretsError{}
		for _, f := range le.Fields {
			e.violations = append(e.violations, rpc.FieldViolation{Field: f, Description: "holds a secret in clear, and the drivers have no " +
				"--secrets-key-file to encrypt it in the job catalog: write a reference (${env:NAME} or ${file:/path}, e.g. a " +
				"mounted Kubernetes Secret) or start the drivers with --secrets-key-file"})
		}
		return nil, e
	case errors.As(err, &ke):
		return nil, &secretsError{violations: []rpc.FieldViolation{{Field: ke.Field, Description: strings.TrimPrefix(ke.Error(), ke.Field+": ")}}}
	}
	if err != nil {
		return nil, err
	}
	if why := d.clearTransport(); why != "" {
		if lits := secrets.Literals(spec); len(lits) > 0 {
			e := &secretsError{}
			for _, f := range lits {
				e.violations = append(e.violations, rpc.FieldViolation{Field: f, Description: "holds a secret in clear, and " + why})
			}
			return nil, e
		}
	}
	return sealed, nil
}

// compileForUse turns a catalog entry's spec into a runnable job: its
// envelopes are decrypted (the result, Job.Spec, is what executors are
// sent) and its references resolved on this driver. The job's hash is that
// of the stored spec, so it changes with each secret yet is no digest of
// one.
func (d *Driver) compileForUse(stored *sluicev1.JobSpec) (*jobspec.Job, error) {
	opened, err := secrets.Open(stored, d.keys)
	if err != nil {
		return nil, err
	}
	if why := d.clearTransport(); why != "" {
		if lits := secrets.Literals(opened); len(lits) > 0 {
			return nil, fmt.Errorf("%s: holds a secret in clear, and %s", strings.Join(lits, ", "), why)
		}
	}
	if ids := secrets.KeyIDs(stored); d.keys != nil && len(ids) > 0 && !slices.Equal(ids, []string{d.keys.Primary()}) {
		d.log.Info("job's secrets are encrypted with a key that is not the primary one; submit the job again to re-encrypt it",
			"job", stored.GetName(), "keys", strings.Join(ids, ","), "primary", d.keys.Primary())
	}
	job, err := jobspec.CompileForUse(opened)
	if err != nil {
		return nil, err
	}
	job.Hash = jobspec.Hash(stored)
	return job, nil
}

// clearTransport says why this driver must neither accept nor run specs
// holding literal secrets: it serves the executor streams without TLS on an
// address other hosts reach (--insecure), so the decrypted spec it sends
// with tasks would cross the network in clear. It is "" when they may: a
// driver with TLS serves every stream with TLS (auth.go), and one on a
// loopback --listen only reaches executors on its own host.
func (d *Driver) clearTransport() string {
	if d.sec == nil || d.sec.tls != nil || rpc.IsLoopback(d.cfg.Listen) {
		return ""
	}
	return fmt.Sprintf("this driver serves executors without TLS on %s (--insecure), so the secret would cross the network in clear: "+
		"write a reference (${env:NAME} or ${file:/path}), which executors resolve themselves, or serve TLS (--tls-cert, --tls-key)", d.cfg.Listen)
}
