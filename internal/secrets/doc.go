// Package secrets keeps the secret values of job specs out of everything
// the cluster stores, logs and answers.
//
// It owns three things:
//
//   - Fields, the one table that marks which JobSpec options carry secrets
//     (by proto full name) and how (the whole string, the password parts of
//     a PostgreSQL connection string, the values of secret-looking client
//     properties). Redaction, encryption and reference resolution all walk
//     the spec through it, so a secret option added to job.proto needs one
//     line here (a test fails when a secret-looking field is missing).
//   - References: a secret value written ${env:NAME} or ${file:/path} is
//     kept as written everywhere and resolved only where the job's sources,
//     sinks and stores are built (Resolve), on the driver and on each
//     executor.
//   - Encryption at rest: Keyring holds the cluster's AES-256-GCM keys
//     (--secrets-key-file); Seal replaces each literal secret of a spec with
//     an envelope enc:v1:<key id>:<base64url nonce+ciphertext> before the
//     spec is written to the catalog, and Open restores it on the driver.
//
// Invariant: no error or log text built here holds a secret value; errors
// name the field and, for references, the reference.
package secrets
