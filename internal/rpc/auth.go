package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"sigs.k8s.io/yaml"
)

var (
	// ErrUnauthenticated: the caller presented no credentials, or ones this
	// server does not know (UNAUTHENTICATED).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrPermissionDenied: the caller is known but its role does not allow
	// the call (PERMISSION_DENIED).
	ErrPermissionDenied = errors.New("permission denied")
)

// Role is what a user may do; each role includes the ones before it.
type Role int

const (
	// RoleNone is a principal without a user role: an executor.
	RoleNone Role = iota
	// RoleViewer may list and read jobs and executors and watch jobs.
	RoleViewer
	// RoleOperator may also submit and stop jobs.
	RoleOperator
	// RoleAdmin may also delete jobs (and their checkpoints) and read
	// profiles on the HTTP port.
	RoleAdmin
)

var roleNames = map[Role]string{RoleNone: "none", RoleViewer: "viewer", RoleOperator: "operator", RoleAdmin: "admin"}

func (r Role) String() string { return roleNames[r] }

// ParseRole parses viewer, operator or admin.
func ParseRole(s string) (Role, bool) {
	for r, n := range roleNames {
		if r != RoleNone && n == s {
			return r, true
		}
	}
	return RoleNone, false
}

// ExecutorOU is the organizational unit of executor certificates. A client
// certificate whose OU names no role is an executor's too.
const ExecutorOU = "executor"

// Principal is who made a request.
type Principal struct {
	// Name is the token's name, or the certificate's common name (else
	// its first DNS name).
	Name string
	// Role is the user role; RoleNone for an executor.
	Role Role
	// Executor is set for a client certificate without a user role: it
	// may use the executor stream and nothing else.
	Executor bool
	// Via is "token" or "certificate", for audit lines.
	Via string
}

// Tokens is a token file (--auth-file), re-read when it changes:
//
//	tokens:
//	  - {name: ci, sha256: "<hex of sha256(token)>", role: operator}
//
// Only digests are stored, so the file is no secret by itself.
type Tokens struct {
	w *watchedFiles[map[string]Principal] // by digest
}

type tokenFile struct {
	Tokens []struct {
		Name   string `json:"name"`
		SHA256 string `json:"sha256"`
		Role   string `json:"role"`
	} `json:"tokens"`
}

// LoadTokens reads file; a bad file is an error naming the entry. Later
// changes are read on use; a bad change keeps the previous tokens and is
// passed to onError (which may be nil).
func LoadTokens(file string, onError func(error)) (*Tokens, error) {
	w, err := newWatchedFiles(func() (map[string]Principal, error) { return parseTokens(file) }, onError, file)
	if err != nil {
		return nil, err
	}
	return &Tokens{w: w}, nil
}

func parseTokens(file string) (map[string]Principal, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	var tf tokenFile
	if err := yaml.UnmarshalStrict(data, &tf); err != nil {
		return nil, fmt.Errorf("token file %s: %w", file, err)
	}
	out := map[string]Principal{}
	names := map[string]bool{}
	for i, t := range tf.Tokens {
		at := fmt.Sprintf("token file %s: tokens[%d]", file, i)
		if t.Name == "" {
			return nil, fmt.Errorf("%s: name is required", at)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("%s: name %q is used twice", at, t.Name)
		}
		names[t.Name] = true
		digest := strings.ToLower(t.SHA256)
		if b, err := hex.DecodeString(digest); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%s (%s): sha256 must be 64 hex digits (printf %%s \"$TOKEN\" | sha256sum)", at, t.Name)
		}
		if _, dup := out[digest]; dup {
			return nil, fmt.Errorf("%s (%s): the same token is listed twice", at, t.Name)
		}
		role, ok := ParseRole(t.Role)
		if !ok {
			return nil, fmt.Errorf("%s (%s): role %q is not viewer, operator or admin", at, t.Name, t.Role)
		}
		out[digest] = Principal{Name: t.Name, Role: role, Via: "token"}
	}
	return out, nil
}

// lookup finds the principal of a presented token. A map lookup by digest
// is fine against timing: what it could leak is a prefix of a digest, which
// does not help find a token.
func (t *Tokens) lookup(token string) (Principal, bool) {
	sum := sha256.Sum256([]byte(token))
	p, ok := t.w.get()[hex.EncodeToString(sum[:])]
	return p, ok
}

// Authenticator finds the principal of a request from its bearer token
// (Tokens) or its verified client certificate. Either source may be off.
type Authenticator struct {
	// Tokens is nil when no --auth-file is given.
	Tokens *Tokens
}

// FromContext authenticates a gRPC request: the "authorization: Bearer
// <token>" metadata first, else a client certificate verified against the
// server's client CA.
func (a *Authenticator) FromContext(ctx context.Context) (Principal, error) {
	var bearer string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			bearer = v[0]
		}
	}
	return a.authenticate(bearer, peerTLS(ctx))
}

// PeerCertPrincipal is CertPrincipal of a gRPC request's connection.
func PeerCertPrincipal(ctx context.Context) (Principal, bool) { return CertPrincipal(peerTLS(ctx)) }

func peerTLS(ctx context.Context) *tls.ConnectionState {
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			return &ti.State
		}
	}
	return nil
}

// FromHTTP is FromContext for an HTTP request.
func (a *Authenticator) FromHTTP(r *http.Request) (Principal, error) {
	return a.authenticate(r.Header.Get("Authorization"), r.TLS)
}

func (a *Authenticator) authenticate(authorization string, state *tls.ConnectionState) (Principal, error) {
	if authorization != "" {
		token, ok := strings.CutPrefix(authorization, "Bearer ")
		if !ok || token == "" {
			return Principal{}, fmt.Errorf("the authorization header is not \"Bearer <token>\": %w", ErrUnauthenticated)
		}
		if a.Tokens == nil {
			return Principal{}, fmt.Errorf("this driver accepts no tokens (no --auth-file): %w", ErrUnauthenticated)
		}
		p, ok := a.Tokens.lookup(token)
		if !ok {
			return Principal{}, fmt.Errorf("unknown token: %w", ErrUnauthenticated)
		}
		return p, nil
	}
	if p, ok := CertPrincipal(state); ok {
		return p, nil
	}
	return Principal{}, fmt.Errorf("no credentials: send a token (--token, SLUICE_TOKEN) or a client certificate: %w", ErrUnauthenticated)
}

// CertPrincipal is the principal of a client certificate the TLS handshake
// verified (it only verifies against a configured client CA). The first OU
// naming a role gives a user with that role; otherwise the certificate is
// an executor's.
func CertPrincipal(state *tls.ConnectionState) (Principal, bool) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return Principal{}, false
	}
	leaf := state.VerifiedChains[0][0]
	p := Principal{Name: CertName(leaf), Via: "certificate", Executor: true}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if r, ok := ParseRole(ou); ok {
			p.Role, p.Executor = r, false
			break
		}
	}
	return p, true
}

// IsLoopback reports whether the host of a host:port address is a loopback
// address or "localhost". An empty host (all interfaces) is not.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// bearer sends a token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

type principalKey struct{}

// WithPrincipal returns ctx carrying p, for handlers behind an
// authenticating interceptor.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal an interceptor stored in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
