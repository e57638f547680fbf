// Package rpc holds what every gRPC endpoint of Sluice shares: the one table
// that turns internal errors into status codes with typed details (and back,
// on the client), server interceptors that apply it, dialing, and the
// transport security every endpoint shares: TLS whose certificates are
// re-read when rotated (tls.go) and the principals of callers, from bearer
// tokens or client certificates (auth.go).
//
// Callers branch on sentinels and typed errors, never on message strings:
// a follower answers FAILED_PRECONDITION with a LeaderInfo detail, and
// LeaderFrom recovers the leader's address from it.
package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

var (
	// ErrNotFound: the named job does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a job of that name is already running.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the request contradicts stored state (e.g. a changed
	// source for an existing checkpoint).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: try again later (e.g. leadership is changing).
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidArgument: a request field is out of range (a whole spec's
	// problems travel as a BadRequester instead).
	ErrInvalidArgument = errors.New("invalid argument")
)

// Error kinds an executor reports with a failed task, so the driver knows
// whether a retry can help.
const (
	ErrorKindRetryable = "retryable"
	ErrorKindFatal     = "fatal"
	ErrorKindDataLoss  = "data_loss"
)

// NotLeaderError is returned by a follower; Leader is the leader's advertised
// address, empty while no leader is known, and HTTP its web UI's URL when
// known.
type NotLeaderError struct{ Leader, HTTP string }

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return "this driver is not the leader and no leader is elected yet"
	}
	return fmt.Sprintf("this driver is not the leader; the leader is %s", e.Leader)
}

// FieldViolation names a bad field of a request and why.
type FieldViolation struct {
	Field       string
	Description string
}

// BadRequester is implemented by validation errors; they become
// INVALID_ARGUMENT with a BadRequest detail listing each violation.
type BadRequester interface {
	error
	Violations() []FieldViolation
}

// ToStatus maps an error to a gRPC status error. This is the only place where
// that mapping is decided.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var nl *NotLeaderError
	var br BadRequester
	switch {
	case errors.As(err, &nl):
		st := status.New(codes.FailedPrecondition, err.Error())
		if d, derr := st.WithDetails(&sluicev1.LeaderInfo{Address: nl.Leader, HttpUrl: nl.HTTP}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.As(err, &br):
		st := status.New(codes.InvalidArgument, err.Error())
		var fv []*errdetails.BadRequest_FieldViolation
		for _, v := range br.Violations() {
			fv = append(fv, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: fv}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrAlreadyExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, ErrConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, ErrUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, ErrInvalidArgument):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// LeaderFrom returns the leader address carried by a follower's answer.
func LeaderFrom(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return "", false
	}
	for _, d := range st.Details() {
		if li, ok := d.(*sluicev1.LeaderInfo); ok {
			return li.GetAddress(), true
		}
	}
	return "", false
}

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
