package kinesis

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/stream"
)

// TestCheckEnd: the driver refuses a Kinesis end that precedes its range's
// start (a forged or corrupted result), and takes any end at or after it.
func TestCheckEnd(t *testing.T) {
	sub := func(n int64) *int64 { return &n }
	tests := []struct {
		name     string
		from, to position
		wantErr  string
	}{
		{"after", position{Seq: "100"}, position{Seq: "200"}, ""},
		{"nothing read", position{Seq: "100"}, position{Seq: "100"}, ""},
		{"before", position{Seq: "100"}, position{Seq: "99"}, "precedes"},
		{"longer number is later", position{Seq: "99"}, position{Seq: "100"}, ""},
		{"inside an aggregate, later", position{Seq: "100", Sub: sub(2)}, position{Seq: "100", Sub: sub(5)}, ""},
		{"inside an aggregate, earlier", position{Seq: "100", Sub: sub(5)}, position{Seq: "100", Sub: sub(2)}, "precedes"},
		{"whole aggregate after part of it", position{Seq: "100", Sub: sub(5)}, position{Seq: "100"}, ""},
		{"part of an aggregate already passed", position{Seq: "100"}, position{Seq: "100", Sub: sub(1)}, "precedes"},
		{"from trim horizon", position{Start: startTrimHorizon}, position{Seq: "5"}, ""},
		{"back to trim horizon", position{Seq: "100"}, position{Start: startTrimHorizon}, "precedes"},
		{"shard end", position{Seq: "100"}, position{End: true}, ""},
	}
	s := &Source{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CheckEnd(stream.Range{Partition: "s/shardId-000000000000", From: tc.from.encode()}, tc.to.encode())
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("CheckEnd = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	if err := s.CheckEnd(stream.Range{From: position{Seq: "1"}.encode()}, stream.Position("garbage")); err == nil {
		t.Fatal("an undecodable end was taken")
	}
}
