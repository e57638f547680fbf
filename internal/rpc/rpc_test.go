package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
)

type badReq struct{ v []FieldViolation }

func (b badReq) Error() string                { return "invalid" }
func (b badReq) Violations() []FieldViolation { return b.v }

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("get job x: %w", ErrNotFound), codes.NotFound},
		{ErrAlreadyExists, codes.AlreadyExists},
		{fmt.Errorf("submit: %w", ErrConflict), codes.FailedPrecondition},
		{fmt.Errorf("limit -1: %w", ErrInvalidArgument), codes.InvalidArgument},
		{&NotLeaderError{Leader: "10.0.0.1:7077"}, codes.FailedPrecondition},
		{badReq{v: []FieldViolation{{"name", "required"}}}, codes.InvalidArgument},
		{fmt.Errorf("no credentials: %w", ErrUnauthenticated), codes.Unauthenticated},
		{fmt.Errorf("viewer may not submit: %w", ErrPermissionDenied), codes.PermissionDenied},
		// A fenced checkpoint write used to come out as INTERNAL, as if the
		// driver had a bug, when it had only lost its leadership.
		{fmt.Errorf("put commit 9: %w", checkpoint.ErrFenced), codes.Aborted},
		{fmt.Errorf("get plan 9: %w", checkpoint.ErrNotFound), codes.NotFound},
		{fmt.Errorf("read t/0: %w", &connectors.DataLossError{Partition: "t/0"}), codes.DataLoss},
		{connectors.Permanent(errors.New("bad spec")), codes.FailedPrecondition},
		{fmt.Errorf("shutting down: %w", context.Canceled), codes.Canceled},
		{errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		st, _ := status.FromError(ToStatus(tt.err))
		if st.Code() != tt.code {
			t.Errorf("ToStatus(%v) = %v, want %v", tt.err, st.Code(), tt.code)
		}
	}
}

func TestLeaderRoundTrip(t *testing.T) {
	err := ToStatus(fmt.Errorf("submit: %w", &NotLeaderError{Leader: "127.0.0.1:7077"}))
	addr, ok := LeaderFrom(err)
	if !ok || addr != "127.0.0.1:7077" {
		t.Fatalf("LeaderFrom = %q, %v", addr, ok)
	}
	if _, ok := LeaderFrom(ToStatus(ErrConflict)); ok {
		t.Fatal("a plain conflict carried a leader")
	}
}

func TestBadRequestDetails(t *testing.T) {
	st, _ := status.FromError(ToStatus(badReq{v: []FieldViolation{{"trigger.processingTime", "bad duration"}}}))
	var got []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				got = append(got, v.GetField())
			}
		}
	}
	if len(got) != 1 || got[0] != "trigger.processingTime" {
		t.Fatalf("violations = %v", got)
	}
}
