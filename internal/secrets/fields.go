package secrets

import (
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/pkg/connectors/kafka"
)

// Kind says which part of a marked field is secret.
type Kind int

const (
	// Whole: the whole string is the secret.
	Whole Kind = iota + 1
	// PostgresConn: a PostgreSQL URL or key=value connection string whose
	// password (in the URL's user info) and password and sslpassword
	// parameters are secret; the whole string may also be one reference.
	PostgresConn
	// SecretProperties: a map of client properties whose values are secret
	// when kafka.IsSecretProperty says so for their key (sasl.password,
	// ssl.key.password, sasl.jaas.config...).
	SecretProperties
)

// Fields marks every secret-bearing option of a JobSpec, by proto full
// name. It is the one place to add a new one: Redact, Seal, Open, Resolve,
// Check and Literals all read it. TestEverySecretFieldIsMarked walks
// job.proto and fails when a field whose name looks secret is not here.
var Fields = map[protoreflect.FullName]Kind{
	"sluice.v1.AwsAuth.aws_secret_key":          Whole,
	"sluice.v1.AwsAuth.aws_session_token":       Whole,
	"sluice.v1.KinesisSource.aws_secret_key":    Whole,
	"sluice.v1.KinesisSource.aws_session_token": Whole,
	"sluice.v1.KinesisSink.aws_secret_key":      Whole,
	"sluice.v1.KinesisSink.aws_session_token":   Whole,
	"sluice.v1.PostgresSink.url":                PostgresConn,
	"sluice.v1.KafkaSource.properties":          SecretProperties,
	"sluice.v1.KafkaSink.properties":            SecretProperties,
}

// escaping says how a value resolved from a reference is written into the
// string that held the reference.
type escaping int

const (
	escNone     escaping = iota // the whole field
	escUserinfo                 // the password of a URL's user info
	escQuery                    // a URL query parameter
	escKV                       // an unquoted value of a key=value string
	escKVQuoted                 // the inside of a single-quoted key=value value
)

func (e escaping) apply(v string) string {
	switch e {
	case escUserinfo:
		s := url.UserPassword("u", v).String()
		return strings.TrimPrefix(s, "u:")
	case escQuery:
		return url.QueryEscape(v)
	case escKV:
		return "'" + kvEscape(v) + "'"
	case escKVQuoted:
		return kvEscape(v)
	}
	return v
}

func kvEscape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)
}

// slot is one secret value inside a spec.
type slot struct {
	// field is the value's path in the spec as a user writes it, e.g.
	// sink.postgres.url (password) or source.kafka.properties["sasl.password"].
	field string
	value string
	esc   escaping
	// set replaces the value (as written, already escaped).
	set func(string)
}

// walk calls fn for every secret value in m, in a stable order. Values
// are replaced through slot.set after fn returns, so fn may call set.
func walk(m protoreflect.Message, path string, fn func(*slot) error) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := fd.JSONName()
		if path != "" {
			p = path + "." + p
		}
		if kind, ok := Fields[fd.FullName()]; ok {
			err = walkMarked(m, fd, v, p, kind, fn)
			return err == nil
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && err == nil; i++ {
				err = walk(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), fn)
			}
		case fd.IsMap():
		case fd.Message() != nil:
			err = walk(v.Message(), p, fn)
		}
		return err == nil
	})
	return err
}

func walkMarked(m protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value, p string, kind Kind, fn func(*slot) error) error {
	switch kind {
	case Whole:
		s := &slot{field: p, value: v.String(), set: func(nv string) { m.Set(fd, protoreflect.ValueOfString(nv)) }}
		if s.value == "" {
			return nil
		}
		return fn(s)
	case SecretProperties:
		mp := v.Map()
		var keys []string
		mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			if kafka.IsSecretProperty(k.String()) {
				keys = append(keys, k.String())
			}
			return true
		})
		sort.Strings(keys)
		for _, k := range keys {
			mk := protoreflect.ValueOfString(k).MapKey()
			s := &slot{field: fmt.Sprintf("%s[%q]", p, k), value: mp.Get(mk).String(),
				set: func(nv string) { mp.Set(mk, protoreflect.ValueOfString(nv)) }}
			if s.value == "" {
				continue
			}
			if err := fn(s); err != nil {
				return err
			}
		}
		return nil
	case PostgresConn:
		conn := v.String()
		if conn == "" {
			return nil
		}
		if isReference(conn) || isEnvelope(conn) || looksLikeReference(conn) {
			return fn(&slot{field: p, value: conn, set: func(nv string) { m.Set(fd, protoreflect.ValueOfString(nv)) }})
		}
		spans := postgresSpans(conn)
		repl := make([]string, len(spans))
		for i, sp := range spans {
			repl[i] = conn[sp.start:sp.end]
			i := i
			s := &slot{field: p + " (" + sp.name + ")", value: repl[i], esc: sp.esc, set: func(nv string) { repl[i] = nv }}
			if err := fn(s); err != nil {
				return err
			}
		}
		var b strings.Builder
		last := 0
		for i, sp := range spans {
			b.WriteString(conn[last:sp.start])
			b.WriteString(repl[i])
			last = sp.end
		}
		b.WriteString(conn[last:])
		if nv := b.String(); nv != conn {
			m.Set(fd, protoreflect.ValueOfString(nv))
		}
		return nil
	}
	return fmt.Errorf("secrets: field %s has unknown kind %d", fd.FullName(), kind)
}

// span is a secret value inside a PostgreSQL connection string.
type span struct {
	start, end int
	name       string // "password", "sslpassword", as the user wrote the key
	esc        escaping
}

// postgresSpans finds the secret values of a connection string: the
// password of a URL's user info and the values of password and sslpassword
// parameters (keys compared as pkg/connectors/postgres does: case-
// insensitive, after percent-decoding), in a URL query or a key=value
// string. References inside the string (${file:/a/b}) are skipped over
// whole, so their slashes and colons do not end a part early.
func postgresSpans(s string) []span {
	var out []span
	if i := strings.Index(s, "://"); i >= 0 {
		auth := i + 3
		end := scanUntil(s, auth, "/?#")
		// The user info ends at the authority's last @.
		if at := lastIndexOutsideRefs(s[auth:end], '@'); at >= 0 {
			ui := s[auth : auth+at]
			if c := indexOutsideRefs(ui, ':'); c >= 0 {
				out = append(out, span{start: auth + c + 1, end: auth + at, name: "password", esc: escUserinfo})
			}
		}
		q := scanUntil(s, end, "?")
		if q < len(s) {
			qend := scanUntil(s, q+1, "#")
			pos := q + 1
			for pos <= qend {
				next := scanUntil(s[:qend], pos, "&")
				kv := s[pos:next]
				if eq := strings.IndexByte(kv, '='); eq >= 0 && secretKey(kv[:eq]) {
					out = append(out, span{start: pos + eq + 1, end: next, name: kv[:eq], esc: escQuery})
				}
				pos = next + 1
			}
		}
		return out
	}
	for _, m := range keyValueRE.FindAllStringSubmatchIndex(s, -1) {
		key := s[m[4]:m[5]]
		if !secretKey(key) {
			continue
		}
		vs, ve := m[6], m[7]
		if ve > vs && s[vs] == '\'' {
			inner := ve
			if ve-vs >= 2 && s[ve-1] == '\'' {
				inner = ve - 1
			}
			out = append(out, span{start: vs + 1, end: inner, name: key, esc: escKVQuoted})
			continue
		}
		out = append(out, span{start: vs, end: ve, name: key, esc: escKV})
	}
	return out
}

// keyValueRE finds each key = value pair of a key=value connection string
// (as pkg/connectors/postgres does): 2 is the key, 3 the value, which may be
// single-quoted with backslash escapes; a reference is one value.
var keyValueRE = regexp.MustCompile(`(?:^|\s)(([^\s=']+)\s*=\s*)('(?:[^'\\]|\\.)*'?|\$\{[^}]*\}|[^\s]*)`)

func secretKey(k string) bool {
	if d, err := url.QueryUnescape(k); err == nil {
		k = d
	} else if d, err := url.PathUnescape(k); err == nil {
		k = d
	}
	k = strings.TrimSpace(k)
	return strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword")
}

// scanUntil returns the index of the first byte of stops in s at or after
// from, outside ${...} references; len(s) when there is none.
func scanUntil(s string, from int, stops string) int {
	for i := from; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) && s[i+1] == '{' {
			if j := strings.IndexByte(s[i:], '}'); j >= 0 {
				i += j
				continue
			}
		}
		if strings.IndexByte(stops, s[i]) >= 0 {
			return i
		}
	}
	return len(s)
}

func indexOutsideRefs(s string, c byte) int {
	if i := scanUntil(s, 0, string(c)); i < len(s) {
		return i
	}
	return -1
}

func lastIndexOutsideRefs(s string, c byte) int {
	last := -1
	for i := 0; ; {
		j := scanUntil(s, i, string(c))
		if j >= len(s) {
			return last
		}
		last, i = j, j+1
	}
}
