// This file tests the deprecated TaskResult.error and error_kind on purpose:
// they are read and written for one release for rolling upgrades.
//
//lint:file-ignore SA1019 the deprecated fields are what these tests are about

package rpc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/pkg/connectors"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
)

// TestLegacyTaskResult: a result from an executor of the previous release,
// with error and error_kind only, still tells the driver what happened; and
// results of this release fill those fields for drivers of the previous one.
func TestLegacyTaskResult(t *testing.T) {
	tests := []struct {
		kind      string
		dataLoss  bool
		permanent bool
	}{
		{ErrorKindRetryable, false, false},
		{"", false, false},
		{ErrorKindFatal, false, true},
		{ErrorKindDataLoss, true, true},
	}
	for _, tt := range tests {
		res := &clusterv1.TaskResult{Error: "data loss on t/0: requested 1 but earliest available is 5", ErrorKind: tt.kind}
		got := TaskFailure(res)
		if got.Error() != res.Error || errors.Is(got, connectors.ErrDataLoss) != tt.dataLoss || connectors.IsPermanent(got) != tt.permanent {
			t.Errorf("kind %q: %q, data loss %v, permanent %v", tt.kind, got, errors.Is(got, connectors.ErrDataLoss), connectors.IsPermanent(got))
		}
	}
	if err := TaskFailure(&clusterv1.TaskResult{}); err == nil || err.Error() == "" {
		t.Errorf("a failure without any reason decoded to %v", err)
	}
	if err := TaskFailure(&clusterv1.TaskResult{Ok: true, Error: "stale"}); err != nil {
		t.Errorf("a successful result failed with %v", err)
	}
	for err, kind := range map[error]string{
		errors.New("boom"):                             ErrorKindRetryable,
		connectors.Permanent(errors.New("bad")):        ErrorKindFatal,
		fmt.Errorf("read: %w", connectors.ErrDataLoss): ErrorKindDataLoss,
	} {
		res := &clusterv1.TaskResult{}
		SetTaskFailure(res, err)
		if res.GetOk() || res.GetError() != err.Error() || res.GetErrorKind() != kind {
			t.Errorf("SetTaskFailure(%v): legacy fields %q %q, want %q %q", err, res.GetError(), res.GetErrorKind(), err.Error(), kind)
		}
	}
}
