package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
)

// overWire sends err as a TaskResult's status through proto encoding, as
// the executor stream does, and decodes it as the driver does.
func overWire(t *testing.T, err error) (*status.Status, error) {
	t.Helper()
	res := &clusterv1.TaskResult{AttemptId: "a"}
	SetTaskFailure(res, err)
	b, merr := proto.Marshal(res)
	if merr != nil {
		t.Fatal(merr)
	}
	var got clusterv1.TaskResult
	if uerr := proto.Unmarshal(b, &got); uerr != nil {
		t.Fatal(uerr)
	}
	return status.FromProto(got.GetStatus()), TaskFailure(&got)
}

// TestSentinelRoundTrip: every sentinel of the table, wrapped with context,
// survives ToStatus, the wire and FromStatus: same code both ways, the text
// word for word, errors.Is the same sentinel and no other of the table, and
// permanence as on the sender.
func TestSentinelRoundTrip(t *testing.T) {
	for _, m := range table {
		for _, permanent := range []bool{false, true} {
			err := fmt.Errorf("read partition p/0: %w", m.err)
			if permanent {
				err = connectors.Permanent(err)
			}
			t.Run(fmt.Sprintf("%s/permanent=%v", m.reason, permanent), func(t *testing.T) {
				st, got := overWire(t, err)
				if st.Code() != m.code {
					t.Errorf("code %s, want %s", st.Code(), m.code)
				}
				if status.Code(ToStatus(err)) != m.code {
					t.Errorf("ToStatus code %s, want %s", status.Code(ToStatus(err)), m.code)
				}
				if got.Error() != err.Error() {
					t.Errorf("message %q, want %q", got.Error(), err.Error())
				}
				for _, other := range table {
					if is := errors.Is(got, other.err); is != (other.err == m.err) {
						t.Errorf("errors.Is(decoded, %v) = %v", other.err, is)
					}
				}
				// Data loss is permanent by definition.
				want := permanent || m.err == connectors.ErrDataLoss
				if connectors.IsPermanent(got) != want {
					t.Errorf("IsPermanent = %v, want %v", connectors.IsPermanent(got), want)
				}
				if FailureKind(got) != FailureKind(err) {
					t.Errorf("FailureKind %s, want %s", FailureKind(got), FailureKind(err))
				}
			})
		}
	}
}

// TestTypedRoundTrip: errors with data (a data loss's partition and
// positions, a follower's leader, a spec's violations) come back typed.
func TestTypedRoundTrip(t *testing.T) {
	dl := &connectors.DataLossError{Partition: "orders/3", Requested: "100", Earliest: "150", Reason: "offset out of range"}
	t.Run("data loss", func(t *testing.T) {
		err := fmt.Errorf("batch 7: read orders/3: %w", dl)
		st, got := overWire(t, err)
		if st.Code() != codes.DataLoss {
			t.Fatalf("code %s", st.Code())
		}
		var back *connectors.DataLossError
		if !errors.As(got, &back) {
			t.Fatalf("%v is no *DataLossError", got)
		}
		if diff := cmp.Diff(dl, back); diff != "" {
			t.Errorf("fields (-sent +decoded):\n%s", diff)
		}
		if got.Error() != err.Error() || !errors.Is(got, connectors.ErrDataLoss) || !connectors.IsPermanent(got) {
			t.Errorf("decoded %q: Is ErrDataLoss %v, permanent %v", got, errors.Is(got, connectors.ErrDataLoss), connectors.IsPermanent(got))
		}
		if FailureKind(got) != ErrorKindDataLoss {
			t.Errorf("kind %s", FailureKind(got))
		}
	})
	t.Run("permanent", func(t *testing.T) {
		err := connectors.Permanent(errors.New("compile job: unknown column amount"))
		st, got := overWire(t, err)
		if st.Code() != codes.FailedPrecondition || !connectors.IsPermanent(got) || got.Error() != err.Error() {
			t.Fatalf("code %s, permanent %v, %q", st.Code(), connectors.IsPermanent(got), got)
		}
		if FailureKind(got) != ErrorKindFatal {
			t.Errorf("kind %s", FailureKind(got))
		}
	})
	t.Run("retryable", func(t *testing.T) {
		err := errors.New("write s3://b/k: connection reset")
		st, got := overWire(t, err)
		if st.Code() != codes.Internal || connectors.IsPermanent(got) || got.Error() != err.Error() || errors.Unwrap(got) != nil {
			t.Fatalf("code %s, permanent %v, %q, unwraps to %v", st.Code(), connectors.IsPermanent(got), got, errors.Unwrap(got))
		}
		if FailureKind(got) != ErrorKindRetryable {
			t.Errorf("kind %s", FailureKind(got))
		}
	})
	t.Run("not leader", func(t *testing.T) {
		err := fmt.Errorf("submit: %w", &NotLeaderError{Leader: "10.0.0.1:7077", HTTP: "http://10.0.0.1:8080"})
		got := FromStatus(status.Convert(ToStatus(err)))
		var nl *NotLeaderError
		if !errors.As(got, &nl) || nl.Leader != "10.0.0.1:7077" || nl.HTTP != "http://10.0.0.1:8080" || got.Error() != err.Error() {
			t.Fatalf("decoded %q, leader %+v", got, nl)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		v := []FieldViolation{{"trigger.processingTime", "bad duration"}, {"name", "required"}}
		got := FromStatus(status.Convert(ToStatus(badReq{v: v})))
		var br BadRequester
		if !errors.As(got, &br) || got.Error() != "invalid" {
			t.Fatalf("decoded %q is no BadRequester", got)
		}
		if diff := cmp.Diff(v, br.Violations()); diff != "" {
			t.Errorf("violations (-sent +decoded):\n%s", diff)
		}
		if connectors.IsPermanent(got) {
			t.Error("a bad request decoded as permanent")
		}
	})
	// A spec that does not compile on the executor is both: its violations
	// and a failure no retry fixes. The permanence used to be dropped for
	// any error with details of its own.
	t.Run("permanent bad request", func(t *testing.T) {
		err := connectors.Permanent(fmt.Errorf("compile: %w", badReq{v: []FieldViolation{{"source", "is required"}}}))
		st, got := overWire(t, err)
		var br BadRequester
		if st.Code() != codes.InvalidArgument || !errors.As(got, &br) || len(br.Violations()) != 1 || !connectors.IsPermanent(got) {
			t.Fatalf("code %s, decoded %q, permanent %v", st.Code(), got, connectors.IsPermanent(got))
		}
		if FailureKind(got) != ErrorKindFatal {
			t.Errorf("kind %s", FailureKind(got))
		}
	})
}

// TestRelayKeepsDetails: a decoded error sent on again (wrapped, as the
// driver wraps a task's failure) keeps its code and details.
func TestRelayKeepsDetails(t *testing.T) {
	_, got := overWire(t, &connectors.DataLossError{Partition: "s/shardId-0", Requested: "4955", Earliest: "4960", Reason: "trimmed"})
	wrapped := fmt.Errorf("task s/shardId-0 failed 1 time(s), last: %w", got)
	again := FromStatus(status.Convert(ToStatus(wrapped)))
	var dl *connectors.DataLossError
	if !errors.As(again, &dl) || dl.Earliest != "4960" || again.Error() != wrapped.Error() {
		t.Fatalf("relayed %q lost its detail: %+v", again, dl)
	}
}

// TestPermanentStatusError: a permanent error wrapping a gRPC call's error
// kept the callee's status and lost its permanence, so the driver retried
// a failure no retry fixes.
func TestPermanentStatusError(t *testing.T) {
	for _, inner := range []error{
		status.Error(codes.NotFound, "table t"),
		FromStatus(status.Convert(ToStatus(fmt.Errorf("plan: %w", checkpoint.ErrNotFound)))), // already has our ErrorInfo
	} {
		err := connectors.Permanent(fmt.Errorf("open sink: %w", inner))
		st, got := overWire(t, err)
		if st.Code() != codes.NotFound || !connectors.IsPermanent(got) || got.Error() != err.Error() {
			t.Errorf("%v: code %s, permanent %v, %q", inner, st.Code(), connectors.IsPermanent(got), got)
		}
	}
	// Not permanent, the status goes through as it is.
	st, got := overWire(t, fmt.Errorf("open sink: %w", status.Error(codes.NotFound, "table t")))
	if st.Code() != codes.NotFound || connectors.IsPermanent(got) || len(st.Details()) != 0 {
		t.Errorf("code %s, permanent %v, details %v", st.Code(), connectors.IsPermanent(got), st.Details())
	}
}

// TestFromStatusWithoutSluiceDetail: statuses from gRPC itself or older
// peers decode by code where the code is unambiguous, and to nothing where
// it is not (an ABORTED from a proxy is no fenced checkpoint write).
func TestFromStatusWithoutSluiceDetail(t *testing.T) {
	tests := []struct {
		code codes.Code
		want error // nil: no sentinel
	}{
		{codes.NotFound, ErrNotFound},
		{codes.Unavailable, ErrUnavailable},
		{codes.Canceled, context.Canceled},
		{codes.DeadlineExceeded, context.DeadlineExceeded},
		{codes.PermissionDenied, ErrPermissionDenied},
		{codes.Aborted, nil},
		{codes.DataLoss, nil},
		{codes.FailedPrecondition, nil},
		{codes.Internal, nil},
	}
	for _, tt := range tests {
		got := FromStatus(status.New(tt.code, "msg"))
		if got.Error() != "msg" {
			t.Errorf("%s: message %q", tt.code, got.Error())
		}
		if tt.want != nil && !errors.Is(got, tt.want) {
			t.Errorf("%s: %v is not %v", tt.code, got, tt.want)
		}
		if tt.want == nil && errors.Unwrap(got) != nil {
			t.Errorf("%s: decoded to %v, want no sentinel", tt.code, errors.Unwrap(got))
		}
		if connectors.IsPermanent(got) {
			t.Errorf("%s: permanent without saying so", tt.code)
		}
	}
	if FromStatus(nil) != nil || FromStatus(status.New(codes.OK, "")) != nil {
		t.Error("nil or OK decoded to an error")
	}
	// Another domain's ErrorInfo names nothing of ours.
	st, _ := status.New(codes.Aborted, "x").WithDetails(&errdetails.ErrorInfo{Reason: "CHECKPOINT_FENCED", Domain: "example.com"})
	if errors.Is(FromStatus(st), checkpoint.ErrFenced) {
		t.Error("a foreign ErrorInfo decoded to ErrFenced")
	}
}
