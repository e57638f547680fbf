package rpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
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
	// ErrUnavailable: try again later (e.g. leadership is changing, or an
	// executor shutting down refused a task).
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidArgument: a request field is out of range (a whole spec's
	// problems travel as a BadRequester instead).
	ErrInvalidArgument = errors.New("invalid argument")
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that names
// the sentinel behind a status.
const ErrorDomain = "github.com/sluicehq/sluice"

// Metadata keys of the ErrorInfo detail.
const (
	// MetaPermanent is "true" on a failure that retrying cannot fix
	// (connectors.IsPermanent).
	MetaPermanent = "permanent"
	// MetaPartition, MetaRequested, MetaEarliest and MetaCause carry a
	// *connectors.DataLossError's fields: which partition (or shard) lost
	// records, the position that was asked for and the earliest one still
	// there, and why.
	MetaPartition = "partition"
	MetaRequested = "requested"
	MetaEarliest  = "earliest"
	MetaCause     = "cause"
)

// reasonPermanent is the ErrorInfo reason of a permanent failure that is no
// sentinel of the table (bad configuration, corrupt data under onError:
// fail). Its code is FAILED_PRECONDITION: the system is not in a state in
// which the call can succeed, and a retry will not change that.
const reasonPermanent = "PERMANENT"

// mapping is one row of the table: a sentinel, its code and the ErrorInfo
// reason that names it on the wire.
type mapping struct {
	err    error
	code   codes.Code
	reason string
	// byCode: a status with this code but without a Sluice ErrorInfo (from
	// gRPC itself, or a peer of an earlier release) still decodes to err.
	// Only for codes that can mean nothing else: ABORTED from a proxy is no
	// fenced checkpoint write, and FAILED_PRECONDITION is more than a
	// conflict.
	byCode bool
}

// table is the one place where Sluice's sentinels meet gRPC codes, both
// ways: ToStatus takes the first row whose sentinel the error wraps (so the
// more specific rows come first), FromStatus takes the row the ErrorInfo
// reason names, or the code's byCode row. NotLeaderError and BadRequester
// carry data and have their own details (LeaderInfo, BadRequest), and a
// permanent failure is a flag in the metadata, so that it can ride on any
// row.
var table = []mapping{
	// Records planned but gone (retention, a deleted topic or stream): a
	// *connectors.DataLossError's fields travel in the metadata.
	{connectors.ErrDataLoss, codes.DataLoss, "DATA_LOSS", false},
	// A deposed leader's write: it did not happen, and another driver now
	// owns the job. ABORTED (concurrency conflict), not INTERNAL.
	{checkpoint.ErrFenced, codes.Aborted, "CHECKPOINT_FENCED", false},
	{checkpoint.ErrNotFound, codes.NotFound, "CHECKPOINT_NOT_FOUND", false},
	{ErrNotFound, codes.NotFound, "NOT_FOUND", true},
	{ErrAlreadyExists, codes.AlreadyExists, "ALREADY_EXISTS", true},
	{ErrConflict, codes.FailedPrecondition, "CONFLICT", false},
	{ErrUnavailable, codes.Unavailable, "UNAVAILABLE", true},
	{ErrInvalidArgument, codes.InvalidArgument, "INVALID_ARGUMENT", true},
	{ErrUnauthenticated, codes.Unauthenticated, "UNAUTHENTICATED", true},
	{ErrPermissionDenied, codes.PermissionDenied, "PERMISSION_DENIED", true},
	{context.Canceled, codes.Canceled, "CANCELLED", true},
	{context.DeadlineExceeded, codes.DeadlineExceeded, "DEADLINE_EXCEEDED", true},
}

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

// ToStatus maps an error to a gRPC status error; nil stays nil. This and
// FromStatus are the only places where that mapping is decided (see table):
//
//   - an error that already carries a status (a gRPC call's error, or one
//     FromStatus decoded, possibly wrapped) keeps its code and details, and
//     gains the permanent flag when wrapped in connectors.Permanent;
//   - *NotLeaderError: FAILED_PRECONDITION with a LeaderInfo detail;
//   - BadRequester: INVALID_ARGUMENT with a BadRequest detail;
//   - a sentinel of the table: its code, with an ErrorInfo naming it (and,
//     for data loss, the partition and positions);
//   - any other connectors.Permanent error: FAILED_PRECONDITION;
//   - anything else: INTERNAL.
//
// The message is err.Error(), word for word. A permanent error carries an
// ErrorInfo that says so in its metadata, whatever its code (a spec that
// does not compile on the executor is INVALID_ARGUMENT and permanent).
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	return statusOf(err).Err()
}

func statusOf(err error) *status.Status {
	if st, ok := status.FromError(err); ok {
		if connectors.IsPermanent(err) {
			// Permanent(a gRPC call's error): the status is the callee's,
			// the permanence ours, and it must not get lost on the way.
			st = markPermanent(st)
		}
		return st
	}
	code := codes.Internal
	var details []protoadapt.MessageV1
	var info *errdetails.ErrorInfo
	var nl *NotLeaderError
	var br BadRequester
	switch {
	case errors.As(err, &nl):
		code = codes.FailedPrecondition
		details = append(details, &sluicev1.LeaderInfo{Address: nl.Leader, HttpUrl: nl.HTTP})
	case errors.As(err, &br):
		code = codes.InvalidArgument
		var fv []*errdetails.BadRequest_FieldViolation
		for _, v := range br.Violations() {
			fv = append(fv, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
		}
		details = append(details, &errdetails.BadRequest{FieldViolations: fv})
	default:
		for _, m := range table {
			if errors.Is(err, m.err) {
				code, info = m.code, &errdetails.ErrorInfo{Reason: m.reason, Domain: ErrorDomain}
				break
			}
		}
		var dl *connectors.DataLossError
		if code == codes.DataLoss && errors.As(err, &dl) {
			info.Metadata = map[string]string{MetaPartition: string(dl.Partition), MetaRequested: dl.Requested,
				MetaEarliest: dl.Earliest, MetaCause: dl.Reason}
		}
	}
	if connectors.IsPermanent(err) {
		if info == nil {
			info = &errdetails.ErrorInfo{Reason: reasonPermanent, Domain: ErrorDomain}
			if code == codes.Internal {
				code = codes.FailedPrecondition
			}
		}
		if info.Metadata == nil {
			info.Metadata = map[string]string{}
		}
		info.Metadata[MetaPermanent] = "true"
	}
	if info != nil {
		details = append(details, info)
	}
	return withDetails(status.New(code, err.Error()), details...)
}

// markPermanent returns st with the permanent flag in its Sluice
// ErrorInfo, adding one (reason PERMANENT) when it has none.
func markPermanent(st *status.Status) *status.Status {
	p := st.Proto()
	for _, d := range p.GetDetails() {
		info := &errdetails.ErrorInfo{}
		if d.UnmarshalTo(info) != nil || info.GetDomain() != ErrorDomain {
			continue
		}
		if info.GetMetadata()[MetaPermanent] == "true" {
			return st
		}
		if info.Metadata == nil {
			info.Metadata = map[string]string{}
		}
		info.Metadata[MetaPermanent] = "true"
		if d.MarshalFrom(info) != nil {
			return st
		}
		return status.FromProto(p)
	}
	return withDetails(st, &errdetails.ErrorInfo{Reason: reasonPermanent, Domain: ErrorDomain,
		Metadata: map[string]string{MetaPermanent: "true"}})
}

func withDetails(st *status.Status, d ...protoadapt.MessageV1) *status.Status {
	if len(d) == 0 {
		return st
	}
	if ds, err := st.WithDetails(d...); err == nil {
		return ds
	}
	return st // only for a detail that cannot be marshalled: keep the code and message
}

// FromStatus turns a status back into the error ToStatus made it from: its
// Error() is the status message, word for word, and errors.Is and errors.As
// find what the sender's error wrapped: the table's sentinel (with
// *connectors.DataLossError's fields for a data loss), a *NotLeaderError, a
// BadRequester, and connectors.IsPermanent holds where it held on the
// sender. The returned error also carries st itself (status.FromError gives
// it back), so ToStatus on it, or on an error wrapping it, keeps every
// detail. A status without a Sluice ErrorInfo (from gRPC, a proxy, a peer of
// an earlier release) decodes by its code alone where the code is
// unambiguous. OK and nil are nil.
func FromStatus(st *status.Status) error {
	if st == nil || st.Code() == codes.OK {
		return nil
	}
	var info *errdetails.ErrorInfo
	var leader *sluicev1.LeaderInfo
	var bad *errdetails.BadRequest
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				info = d
			}
		case *sluicev1.LeaderInfo:
			leader = d
		case *errdetails.BadRequest:
			bad = d
		}
	}
	var cause error
	switch {
	case leader != nil && st.Code() == codes.FailedPrecondition:
		cause = &NotLeaderError{Leader: leader.GetAddress(), HTTP: leader.GetHttpUrl()}
	case bad != nil && st.Code() == codes.InvalidArgument:
		br := &badRequest{msg: st.Message()}
		for _, v := range bad.GetFieldViolations() {
			br.violations = append(br.violations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
		}
		cause = br
	case info != nil:
		cause = sentinelOf(info)
	default:
		for _, m := range table {
			if m.byCode && m.code == st.Code() {
				cause = m.err
				break
			}
		}
	}
	if info.GetMetadata()[MetaPermanent] == "true" && !connectors.IsPermanent(cause) {
		if cause == nil {
			// Nothing to unwrap to but the text itself.
			cause = errors.New(st.Message())
		}
		cause = connectors.Permanent(cause)
	}
	return &remoteError{st: st, cause: cause}
}

// sentinelOf is the error an ErrorInfo names: a table's sentinel, a
// *connectors.DataLossError when the metadata carries its fields, nil for
// a reason of no row (PERMANENT, or one from a later release).
func sentinelOf(info *errdetails.ErrorInfo) error {
	md := info.GetMetadata()
	for _, m := range table {
		if m.reason != info.GetReason() {
			continue
		}
		if m.err == connectors.ErrDataLoss && md[MetaPartition] != "" {
			return &connectors.DataLossError{Partition: stream.PartitionID(md[MetaPartition]),
				Requested: md[MetaRequested], Earliest: md[MetaEarliest], Reason: md[MetaCause]}
		}
		return m.err
	}
	return nil
}

// remoteError is an error decoded from a status: the sender's text, the
// sender's sentinel or typed error underneath.
type remoteError struct {
	st    *status.Status
	cause error // nil when the status names nothing Sluice knows
}

func (e *remoteError) Error() string              { return e.st.Message() }
func (e *remoteError) Unwrap() error              { return e.cause }
func (e *remoteError) GRPCStatus() *status.Status { return e.st }

// badRequest is a BadRequester decoded from a BadRequest detail.
type badRequest struct {
	msg        string
	violations []FieldViolation
}

func (e *badRequest) Error() string                { return e.msg }
func (e *badRequest) Violations() []FieldViolation { return e.violations }

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
