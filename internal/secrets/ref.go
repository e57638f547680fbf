package secrets

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// A reference names where a secret is, instead of holding it:
// ${env:NAME} (an environment variable of the process that uses it) or
// ${file:/absolute/path} (a file, typically a Kubernetes Secret mounted or
// projected into the pod; one trailing newline is dropped).
var referenceRE = regexp.MustCompile(`^\$\{(env|file):([^}]*)\}$`)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func isReference(v string) bool { return referenceRE.MatchString(v) }

// looksLikeReference is true for values that start like a reference; a
// malformed one is a validation error rather than a literal secret.
func looksLikeReference(v string) bool { return strings.HasPrefix(v, "${") }

// checkReference reports what is wrong with reference v, without quoting
// anything but a well-formed reference.
func checkReference(v string) error {
	m := referenceRE.FindStringSubmatch(v)
	if m == nil {
		return errors.New("starts like a reference but is not ${env:NAME} or ${file:/absolute/path}")
	}
	switch m[1] {
	case "env":
		if !envNameRE.MatchString(m[2]) {
			return fmt.Errorf("reference %s: %q is not an environment variable name (letters, digits, _)", v, m[2])
		}
	case "file":
		if !strings.HasPrefix(m[2], "/") {
			return fmt.Errorf("reference %s: the path must be absolute", v)
		}
	}
	return nil
}

// Resolver reads what references name. The zero value is not usable; OS is
// the process's environment and file system.
type Resolver struct {
	LookupEnv func(name string) (string, bool)
	ReadFile  func(path string) ([]byte, error)
}

// OS resolves references against the environment and files of this process.
var OS = Resolver{LookupEnv: os.LookupEnv, ReadFile: os.ReadFile}

// ReferenceError is a reference that cannot be resolved where it is used.
// Its text names the field and the reference, never a value.
type ReferenceError struct {
	Field     string
	Reference string
	Reason    string
}

func (e *ReferenceError) Error() string {
	return fmt.Sprintf("%s: secret reference %s: %s", e.Field, e.Reference, e.Reason)
}

// resolve returns the value reference ref names.
func (r Resolver) resolve(field, ref string) (string, error) {
	if err := checkReference(ref); err != nil {
		return "", &ReferenceError{Field: field, Reference: "${...}", Reason: err.Error()}
	}
	m := referenceRE.FindStringSubmatch(ref)
	switch m[1] {
	case "env":
		v, ok := r.LookupEnv(m[2])
		if !ok {
			return "", &ReferenceError{Field: field, Reference: ref,
				Reason: fmt.Sprintf("environment variable %s is not set in this process (set it on the driver and every executor, e.g. from a Kubernetes Secret with env.valueFrom.secretKeyRef)", m[2])}
		}
		if v == "" {
			return "", &ReferenceError{Field: field, Reference: ref, Reason: fmt.Sprintf("environment variable %s is empty", m[2])}
		}
		return v, nil
	default:
		b, err := r.ReadFile(m[2])
		if err != nil {
			reason := "cannot read the file (mount it on the driver and every executor, e.g. a Kubernetes Secret volume)"
			switch {
			case errors.Is(err, os.ErrNotExist):
				reason = "the file does not exist on this host (mount it on the driver and every executor, e.g. a Kubernetes Secret volume)"
			case errors.Is(err, os.ErrPermission):
				reason = "permission denied reading the file"
			}
			return "", &ReferenceError{Field: field, Reference: ref, Reason: reason}
		}
		v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if v == "" {
			return "", &ReferenceError{Field: field, Reference: ref, Reason: "the file is empty"}
		}
		return v, nil
	}
}
