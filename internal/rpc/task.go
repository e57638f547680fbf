package rpc

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/pkg/connectors"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
)

// Error kinds of a failed task attempt (FailureKind): the values of the
// executor's sluice_executor_task_attempts_total outcome label besides ok
// and cancelled, and, for one release, of TaskResult.error_kind.
const (
	ErrorKindRetryable = "retryable"
	ErrorKindFatal     = "fatal"
	ErrorKindDataLoss  = "data_loss"
)

// FailureKind classifies a failed attempt's error: data_loss when planned
// records are gone (connectors.ErrDataLoss), fatal when a retry cannot help
// (connectors.IsPermanent: bad configuration, corrupt data under onError:
// fail), retryable otherwise. Both sides ask the error, never its text: the
// executor the error the task returned, the driver the one TaskFailure
// decoded.
func FailureKind(err error) string {
	switch {
	case errors.Is(err, connectors.ErrDataLoss):
		return ErrorKindDataLoss
	case connectors.IsPermanent(err):
		return ErrorKindFatal
	}
	return ErrorKindRetryable
}

// SetTaskFailure marks res as failed with err: ok false and status as
// ToStatus maps err (see the table in errors.go). For one release it also
// fills the deprecated error and error_kind, so that a driver of the
// previous release, which reads only those, still tells a data loss or a
// permanent failure from a retryable one while executors are upgraded
// first.
func SetTaskFailure(res *clusterv1.TaskResult, err error) {
	if err == nil {
		err = errNoReason
	}
	res.Ok = false
	res.Status = statusOf(err).Proto()
	//lint:ignore SA1019 written for drivers of the previous release until the next one reserves the fields
	res.Error, res.ErrorKind = err.Error(), FailureKind(err)
}

// TaskFailure is why the attempt behind res failed, nil when it succeeded.
// The error is FromStatus(res.status): its text is the executor's, and
// errors.Is, errors.As and connectors.IsPermanent answer as they did on the
// executor (a data loss is a *connectors.DataLossError naming the partition
// and positions).
//
// A result without status comes from an executor of the previous release:
// its error_kind then says what the error was (data_loss: ErrDataLoss,
// without the positions; fatal: permanent; else retryable) and error is the
// text. Those fields go in the release after this one.
func TaskFailure(res *clusterv1.TaskResult) error {
	if res.GetOk() {
		return nil
	}
	if s := res.GetStatus(); s != nil {
		if err := FromStatus(status.FromProto(s)); err != nil {
			return err
		}
		return errNoReason // OK status on a failed result: a broken executor
	}
	//lint:ignore SA1019 read from executors of the previous release until the next one reserves the fields
	msg, kind := res.GetError(), res.GetErrorKind()
	if msg == "" {
		msg = errNoReason.Error()
	}
	var st *status.Status
	switch kind {
	case ErrorKindDataLoss:
		st = withDetails(status.New(codes.DataLoss, msg), &errdetails.ErrorInfo{Reason: "DATA_LOSS", Domain: ErrorDomain})
	case ErrorKindFatal:
		st = withDetails(status.New(codes.FailedPrecondition, msg), &errdetails.ErrorInfo{Reason: reasonPermanent, Domain: ErrorDomain,
			Metadata: map[string]string{MetaPermanent: "true"}})
	default:
		st = status.New(codes.Internal, msg)
	}
	return FromStatus(st)
}

// errNoReason stands in for the error of a result that failed without one.
var errNoReason = errors.New("the task attempt failed without a reason")
