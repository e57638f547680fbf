package rpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

func digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadTokensRefusesBadFiles(t *testing.T) {
	d := digest("secret")
	tests := []struct {
		name, file, want string
	}{
		{"short digest", "tokens:\n  - {name: ci, sha256: abc, role: operator}\n", "tokens[0] (ci): sha256 must be 64 hex digits"},
		{"bad role", "tokens:\n  - {name: ci, sha256: " + d + ", role: root}\n", `role "root" is not viewer, operator or admin`},
		{"no name", "tokens:\n  - {sha256: " + d + ", role: viewer}\n", "tokens[0]: name is required"},
		{"duplicate name", "tokens:\n  - {name: a, sha256: " + d + ", role: viewer}\n  - {name: a, sha256: " + digest("x") + ", role: viewer}\n", `name "a" is used twice`},
		{"duplicate token", "tokens:\n  - {name: a, sha256: " + d + ", role: viewer}\n  - {name: b, sha256: " + strings.ToUpper(d) + ", role: admin}\n", "the same token is listed twice"},
		{"unknown field", "tokens:\n  - {name: a, token: secret, role: viewer}\n", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "auth.yaml")
			writeFile(t, f, tt.file)
			_, err := LoadTokens(f, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadTokens: %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestAuthenticateTokens(t *testing.T) {
	f := filepath.Join(t.TempDir(), "auth.yaml")
	writeFile(t, f, "tokens:\n  - {name: ci, sha256: \""+digest("ci-token")+"\", role: operator}\n")
	var reloadErrs []error
	tokens, err := LoadTokens(f, func(err error) { reloadErrs = append(reloadErrs, err) })
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Tokens: tokens}
	call := func(auth string) (Principal, error) {
		ctx := context.Background()
		if auth != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", auth))
		}
		return a.FromContext(ctx)
	}
	tests := []struct {
		name, auth string
		want       Principal
		err        string
	}{
		{"operator token", "Bearer ci-token", Principal{Name: "ci", Role: RoleOperator, Via: "token"}, ""},
		{"no credentials", "", Principal{}, "no credentials"},
		{"wrong token", "Bearer nope", Principal{}, "unknown token"},
		{"not bearer", "Basic Y2k6eA==", Principal{}, "not \"Bearer <token>\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := call(tt.auth)
			if tt.err != "" {
				if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want Unauthenticated with %q", err, tt.err)
				}
				return
			}
			if err != nil || p != tt.want {
				t.Fatalf("got %+v, %v; want %+v", p, err, tt.want)
			}
		})
	}

	// The file is re-read when it changes: ci is now a viewer and a new
	// admin token works. The mtime is moved on explicitly, as two writes
	// within one tick of a coarse filesystem clock would look unchanged.
	writeFile(t, f, "tokens:\n  - {name: ci, sha256: \""+digest("ci-token")+"\", role: viewer}\n"+
		"  - {name: root, sha256: \""+digest("root-token")+"\", role: admin}\n")
	future := time.Now().Add(time.Minute)
	if err := os.Chtimes(f, future, future); err != nil {
		t.Fatal(err)
	}
	if p, err := call("Bearer ci-token"); err != nil || p.Role != RoleViewer {
		t.Fatalf("after the change ci = %+v, %v; want viewer", p, err)
	}
	if p, err := call("Bearer root-token"); err != nil || p.Role != RoleAdmin {
		t.Fatalf("after the change root = %+v, %v; want admin", p, err)
	}

	// A broken edit keeps the previous tokens.
	writeFile(t, f, "tokens: [oops")
	later := future.Add(time.Minute)
	if err := os.Chtimes(f, later, later); err != nil {
		t.Fatal(err)
	}
	if p, err := call("Bearer root-token"); err != nil || p.Role != RoleAdmin {
		t.Fatalf("after a broken edit root = %+v, %v; want the previous admin", p, err)
	}
	if len(reloadErrs) != 1 {
		t.Fatalf("reload errors %v, want one", reloadErrs)
	}
}

func TestAuthenticateWithoutTokenFile(t *testing.T) {
	a := &Authenticator{}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer x"))
	if _, err := a.FromContext(ctx); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "no --auth-file") {
		t.Fatalf("token without --auth-file: %v", err)
	}
}
