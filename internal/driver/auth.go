package driver

// Transport security and access control of the driver's ports.
//
// Threat model: anyone who can reach the gRPC port could otherwise submit a
// job (which runs connectors with the credentials in its spec), delete
// checkpoints, or pose as an executor and receive job specs. So:
//
//   - TLS (--tls-cert, --tls-key) on the gRPC and HTTP ports, re-read from
//     disk when the files change (rotation without a restart);
//   - executors are admitted by a client certificate signed by
//     --tls-client-ca, and known by the name in it (a hello naming another
//     executor is refused);
//   - users present a bearer token listed in --auth-file, or a client
//     certificate whose OU names a role; the method table below says which
//     role each call needs;
//   - a driver reachable from other hosts without all of that refuses to
//     start unless --insecure says so.
//
// The gRPC health and reflection services stay open: probes (kubelet, load
// balancers) cannot present credentials, and neither reveals jobs or data.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sluicehq/sluice/internal/rpc"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// methodRule is what one gRPC method requires of its caller.
type methodRule struct {
	role rpc.Role
	// executor: only an executor's client certificate may call it.
	executor bool
	// audit: log every accepted call with who asked.
	audit bool
}

// methodRules is the access table: a DriverService or ExecutorService
// method missing from it is refused (new methods are closed until listed).
var methodRules = map[string]methodRule{
	sluicev1.DriverService_ListJobs_FullMethodName:          {role: rpc.RoleViewer},
	sluicev1.DriverService_GetJob_FullMethodName:            {role: rpc.RoleViewer},
	sluicev1.DriverService_WatchJob_FullMethodName:          {role: rpc.RoleViewer},
	sluicev1.DriverService_ListExecutors_FullMethodName:     {role: rpc.RoleViewer},
	sluicev1.DriverService_GetRecentProgress_FullMethodName: {role: rpc.RoleViewer},
	sluicev1.DriverService_ResumeJob_FullMethodName:         {role: rpc.RoleOperator, audit: true},
	sluicev1.DriverService_SubmitJob_FullMethodName:         {role: rpc.RoleOperator, audit: true},
	sluicev1.DriverService_StopJob_FullMethodName:           {role: rpc.RoleOperator, audit: true},
	sluicev1.DriverService_DeleteJob_FullMethodName:         {role: rpc.RoleAdmin, audit: true},
	clusterv1.ExecutorService_Connect_FullMethodName:        {executor: true},
	legacyExecutorConnect:                                   {executor: true},
}

// openServices need no credentials: see the package comment above.
var openServices = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// validateSecurity checks the TLS and auth flags (part of Validate).
func (c *Config) validateSecurity() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key: client certificates are only sent over TLS")
	}
	if !c.Insecure && !rpc.IsLoopback(c.Listen) && (c.TLSCert == "" || c.TLSClientCA == "") {
		return fmt.Errorf("--listen (%q) is reachable from other hosts, so serve TLS and admit executors by certificate "+
			"(--tls-cert, --tls-key, --tls-client-ca; add --auth-file for user tokens), "+
			"or pass --insecure to accept plaintext, unauthenticated connections", c.Listen)
	}
	return nil
}

// security is the driver's TLS and authentication, loaded by New.
type security struct {
	tls *rpc.ServerTLS // nil: plaintext
	// authn is nil when neither --auth-file nor --tls-client-ca is set:
	// then every call is allowed (loopback, or --insecure).
	authn *rpc.Authenticator
	// clientCA: executors must present a certificate.
	clientCA bool
	log      *slog.Logger
}

func newSecurity(cfg Config) (*security, error) {
	s := &security{log: cfg.Logger, clientCA: cfg.TLSClientCA != ""}
	reloadErr := func(what string) func(error) {
		return func(err error) { cfg.Logger.Error("reload "+what+"; keeping the previous one", "err", err) }
	}
	if cfg.TLSCert != "" {
		t, err := rpc.NewServerTLS(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA, reloadErr("--tls-cert, --tls-key or --tls-client-ca"))
		if err != nil {
			return nil, fmt.Errorf("TLS (--tls-cert, --tls-key, --tls-client-ca): %w", err)
		}
		s.tls = t
	}
	if cfg.AuthFile != "" || s.clientCA {
		s.authn = &rpc.Authenticator{}
	}
	if cfg.AuthFile != "" {
		tokens, err := rpc.LoadTokens(cfg.AuthFile, reloadErr("--auth-file"))
		if err != nil {
			return nil, fmt.Errorf("--auth-file: %w", err)
		}
		s.authn.Tokens = tokens
	}
	return s, nil
}

// warnIfInsecure is logged at every start of a driver that other hosts can
// reach without TLS or authentication (--insecure).
func (s *security) warnIfInsecure(cfg Config) {
	if rpc.IsLoopback(cfg.Listen) || (s.tls != nil && s.clientCA) {
		return
	}
	s.log.Warn("INSECURE: --listen is reachable from other hosts without TLS and client authentication (--insecure); "+
		"anyone who can connect may submit or delete jobs and pose as an executor",
		"listen", cfg.Listen, "tls", s.tls != nil, "clientCA", s.clientCA, "tokens", s.authn != nil && s.authn.Tokens != nil)
}

// serverOptions are the gRPC options for TLS and the access table.
func (s *security) serverOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls.Config())))
	}
	if s.authn == nil {
		return opts
	}
	return append(opts,
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, rule, err := s.authorize(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			resp, err := h(ctx, req)
			if err == nil && rule.audit {
				s.audit(ctx, info.FullMethod, req)
			}
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, _, err := s.authorize(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &principalStream{ServerStream: ss, ctx: ctx})
		}),
	)
}

// authorize finds the caller of method and checks the access table; ctx
// comes back carrying the principal (rpc.PrincipalFrom).
func (s *security) authorize(ctx context.Context, method string) (context.Context, methodRule, error) {
	for _, open := range openServices {
		if strings.HasPrefix(method, open) {
			return ctx, methodRule{}, nil
		}
	}
	rule, ok := methodRules[method]
	if !ok {
		return nil, rule, fmt.Errorf("%s has no access rule: %w", method, rpc.ErrPermissionDenied)
	}
	if rule.executor {
		if !s.clientCA {
			// No CA to admit executors by: only possible on loopback or
			// with --insecure (validateSecurity).
			return ctx, rule, nil
		}
		p, ok := rpc.PeerCertPrincipal(ctx)
		switch {
		case !ok:
			return nil, rule, fmt.Errorf("the executor stream needs a client certificate signed by --tls-client-ca (executor --tls-cert, --tls-key): %w",
				rpc.ErrUnauthenticated)
		case !p.Executor:
			return nil, rule, fmt.Errorf("certificate %q is a user's (role %s), not an executor's: %w", p.Name, p.Role, rpc.ErrPermissionDenied)
		case p.Name == "":
			// The name is the executor's id; without one there is nothing to bind its hello to.
			return nil, rule, fmt.Errorf("the executor's certificate names no one (no common name or DNS name): %w", rpc.ErrPermissionDenied)
		}
		return rpc.WithPrincipal(ctx, p), rule, nil
	}
	p, err := s.authn.FromContext(ctx)
	if err != nil {
		s.log.Warn("refused a call", "method", method, "err", err)
		return nil, rule, err
	}
	if p.Executor {
		return nil, rule, fmt.Errorf("certificate %q is an executor's; it may only use the executor stream: %w", p.Name, rpc.ErrPermissionDenied)
	}
	if p.Role < rule.role {
		s.log.Warn("refused a call", "method", method, "principal", p.Name, "role", p.Role)
		return nil, rule, fmt.Errorf("%s has role %s; %s needs %s: %w", p.Name, p.Role, shortMethod(method), rule.role, rpc.ErrPermissionDenied)
	}
	return rpc.WithPrincipal(ctx, p), rule, nil
}

// audit logs an accepted change with who asked. Requests are not logged:
// a spec may carry credentials.
func (s *security) audit(ctx context.Context, method string, req any) {
	p, _ := rpc.PrincipalFrom(ctx)
	var job string
	switch r := req.(type) {
	case *sluicev1.SubmitJobRequest:
		job = r.GetSpec().GetName()
	case interface{ GetName() string }:
		job = r.GetName()
	}
	s.log.Info("audit", "method", shortMethod(method), "job", job, "principal", p.Name, "via", p.Via, "role", p.Role)
}

// requireAdmin guards /debug/pprof on a non-loopback --http: a profile
// reveals memory contents (including secrets in job specs).
func (s *security) requireAdmin(httpAddr string, h http.Handler) http.Handler {
	if rpc.IsLoopback(httpAddr) {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authn == nil {
			http.Error(w, "profiles on a non-loopback --http need --auth-file and an admin token", http.StatusForbidden)
			return
		}
		p, err := s.authn.FromHTTP(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if p.Executor || p.Role < rpc.RoleAdmin {
			http.Error(w, fmt.Sprintf("%s has role %s; profiles need admin", p.Name, p.Role), http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func shortMethod(m string) string { return m[strings.LastIndex(m, "/")+1:] }

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (p *principalStream) Context() context.Context { return p.ctx }
