// Package rpc holds what every gRPC endpoint of Sluice shares: the one table
// that turns internal errors into status codes with typed details and back
// (errors.go), the same table for a failed task's result on the executor
// stream (task.go), server interceptors that apply it, dialing, and the
// transport security every endpoint shares: TLS whose certificates are
// re-read when rotated (tls.go) and the principals of callers, from bearer
// tokens or client certificates (auth.go).
//
// Callers branch on sentinels and typed errors, never on message strings:
// a follower answers FAILED_PRECONDITION with a LeaderInfo detail, and
// LeaderFrom recovers the leader's address from it; a task that lost records
// fails with DATA_LOSS naming the partition and positions, and the driver's
// TaskFailure gives back a *connectors.DataLossError.
package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// ServerOptions returns the interceptors and keepalive settings every Sluice
// server uses.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			return resp, ToStatus(err)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return ToStatus(h(srv, ss))
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.MaxRecvMsgSize(64 << 20),
	}
}

// DialOption configures Dial.
type DialOption func(*dialOptions)

type dialOptions struct {
	tls   *tls.Config
	token string
}

// WithTLS dials with TLS (default: plaintext). The server name checked is
// tc.ServerName, or else the host of the address dialed, so a redirect to
// the leader checks the leader's name.
func WithTLS(tc *tls.Config) DialOption { return func(o *dialOptions) { o.tls = tc } }

// WithToken sends "authorization: Bearer <token>" with every call (default:
// none). Over plaintext Dial accepts it for loopback addresses only.
func WithToken(token string) DialOption { return func(o *dialOptions) { o.token = token } }

// ErrTokenInPlaintext: Dial refused to send a token unencrypted off this host.
var ErrTokenInPlaintext = errors.New("refusing to send a token in plaintext to a non-loopback address; dial with TLS (--tls-ca)")

// Dial opens a client connection to addr. Connections are lazy: errors
// surface on the first call.
func Dial(addr string, opts ...DialOption) (*grpc.ClientConn, error) {
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
	if o.token != "" {
		if o.tls == nil && !IsLoopback(addr) {
			return nil, fmt.Errorf("dial %s: %w", addr, ErrTokenInPlaintext)
		}
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}
