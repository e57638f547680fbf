package secrets

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Problem is a secret value written wrong, under its field path.
type Problem struct {
	Field       string
	Description string
}

// Check validates the syntax of every secret value of spec: references
// and envelopes must be well-formed. It neither reads what references name
// nor decrypts: that happens where the job is used, so a spec can be
// submitted before its Kubernetes Secret is mounted everywhere.
func Check(spec *sluicev1.JobSpec) []Problem {
	var out []Problem
	_ = walk(spec.ProtoReflect(), "", func(s *slot) error {
		switch {
		case looksLikeReference(s.value):
			if err := checkReference(s.value); err != nil {
				out = append(out, Problem{Field: s.field, Description: err.Error()})
			}
		case isEnvelope(s.value) && !envelopeRE.MatchString(s.value):
			out = append(out, Problem{Field: s.field, Description: "malformed encrypted value (want enc:v1:<key id>:<base64url>)"})
		}
		return nil
	})
	return out
}

// Literals lists the fields of spec that hold a secret in clear (neither a
// reference nor encrypted), in a stable order.
func Literals(spec *sluicev1.JobSpec) []string {
	var out []string
	_ = walk(spec.ProtoReflect(), "", func(s *slot) error {
		if isLiteral(s.value) {
			out = append(out, s.field)
		}
		return nil
	})
	return out
}

func isLiteral(v string) bool {
	return v != "" && !looksLikeReference(v) && !isEnvelope(v)
}

// LiteralsError refuses a spec with secrets in clear on a driver that has
// no key to encrypt them with.
type LiteralsError struct{ Fields []string }

func (e *LiteralsError) Error() string {
	return fmt.Sprintf("%s: holds a secret in clear, and this driver has no --secrets-key-file to encrypt it in the job catalog; "+
		"write a reference instead (${env:NAME} or ${file:/path}, e.g. a mounted Kubernetes Secret) or start the drivers with --secrets-key-file",
		strings.Join(e.Fields, ", "))
}

// aad binds an envelope to its job and field.
func aad(spec *sluicev1.JobSpec, field string) string {
	return "sluice/v1\x00" + spec.GetName() + "\x00" + field
}

// Seal returns a copy of spec whose literal secrets are encrypted with k's
// primary key, for writing to the job catalog. Envelopes already in spec
// must open with k. With k nil, a spec with literal secrets is refused with
// a *LiteralsError. References are kept as written.
func Seal(spec *sluicev1.JobSpec, k *Keyring) (*sluicev1.JobSpec, error) {
	out := proto.Clone(spec).(*sluicev1.JobSpec)
	var lits []string
	err := walk(out.ProtoReflect(), "", func(s *slot) error {
		switch {
		case isEnvelope(s.value):
			_, err := k.decrypt(s.field, s.value, aad(spec, s.field))
			return err
		case !isLiteral(s.value):
			return nil
		case k == nil:
			lits = append(lits, s.field)
			return nil
		}
		env, err := k.encrypt(s.value, aad(spec, s.field))
		if err != nil {
			return fmt.Errorf("%s: encrypt: %w", s.field, err)
		}
		s.set(env)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(lits) > 0 {
		return nil, &LiteralsError{Fields: lits}
	}
	return out, nil
}

// Open returns a copy of spec with every envelope decrypted with k (which
// may be nil when spec holds none). The result holds secrets in clear: keep
// it in memory and send it only over the executors' streams.
func Open(spec *sluicev1.JobSpec, k *Keyring) (*sluicev1.JobSpec, error) {
	out := proto.Clone(spec).(*sluicev1.JobSpec)
	err := walk(out.ProtoReflect(), "", func(s *slot) error {
		if !isEnvelope(s.value) {
			return nil
		}
		plain, err := k.decrypt(s.field, s.value, aad(spec, s.field))
		if err != nil {
			return err
		}
		s.set(plain)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// KeyIDs lists the ids of the keys spec's envelopes were encrypted with.
func KeyIDs(spec *sluicev1.JobSpec) []string {
	seen := map[string]bool{}
	_ = walk(spec.ProtoReflect(), "", func(s *slot) error {
		if m := envelopeRE.FindStringSubmatch(s.value); m != nil {
			seen[m[1]] = true
		}
		return nil
	})
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Resolve returns a copy of spec with every reference replaced by the
// value it names (escaped for its place in a connection string), and the
// secret values the copy holds, resolved or literal, for Scrub. An envelope
// is an error: Open first. Errors are *ReferenceError or name the field.
func Resolve(spec *sluicev1.JobSpec, r Resolver) (*sluicev1.JobSpec, []string, error) {
	out := proto.Clone(spec).(*sluicev1.JobSpec)
	var values []string
	err := walk(out.ProtoReflect(), "", func(s *slot) error {
		switch {
		case isEnvelope(s.value):
			return &KeyError{Field: s.field, Reason: "still encrypted where it is used; the driver decrypts specs before running or sending them"}
		case looksLikeReference(s.value):
			v, err := r.resolve(s.field, s.value)
			if err != nil {
				return err
			}
			values = append(values, v)
			if e := s.esc.apply(v); e != v {
				values = append(values, e)
			}
			s.set(s.esc.apply(v))
		default:
			values = append(values, s.value)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, values, nil
}

// Placeholders returns a copy of spec whose references and envelopes are
// replaced by harmless values of the right shape, so connector options can
// be validated without reading or decrypting secrets; changed reports
// whether it replaced any.
func Placeholders(spec *sluicev1.JobSpec) (out *sluicev1.JobSpec, changed bool) {
	out = proto.Clone(spec).(*sluicev1.JobSpec)
	_ = walk(out.ProtoReflect(), "", func(s *slot) error {
		if looksLikeReference(s.value) || isEnvelope(s.value) {
			changed = true
			if strings.HasSuffix(s.field, "postgres.url") {
				// The whole connection string is a reference.
				s.set("postgres://placeholder@localhost/placeholder")
			} else {
				s.set("placeholder")
			}
		}
		return nil
	})
	return out, changed
}

// Redact replaces every secret value of spec in place with mask: literals
// and envelopes. References stay as written: they name where a secret is,
// which an operator needs to see, and hold none.
func Redact(spec *sluicev1.JobSpec, mask string) {
	_ = walk(spec.ProtoReflect(), "", func(s *slot) error {
		if !isReference(s.value) {
			s.set(mask)
		}
		return nil
	})
}

// Scrub removes every value of values (longest first) from msg.
func Scrub(msg string, values []string) string {
	vs := append([]string(nil), values...)
	sort.Slice(vs, func(i, j int) bool { return len(vs[i]) > len(vs[j]) })
	for _, v := range vs {
		if len(v) >= 3 {
			msg = strings.ReplaceAll(msg, v, "*****")
		}
	}
	return msg
}
