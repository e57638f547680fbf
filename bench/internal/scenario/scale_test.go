package scenario

import (
	"math"
	"strings"
	"testing"
)

func TestParseBenchAndScaleRow(t *testing.T) {
	out := []byte(`goos: linux
pkg: github.com/sluicehq/sluice/pkg/scheduler
BenchmarkAssignScale/partitions=1250/executors=62-2   3703   770901 ns/op   616.7 ns/partition   118683 B/op   88 allocs/op
BenchmarkAssignScale/partitions=10000/executors=500-2  272  6167208 ns/op   616.7 ns/partition   984214 B/op  934 allocs/op
BenchmarkAssign10kPartitions500Executors-2  100  13591011 ns/op  973345 B/op  777 allocs/op
PASS
`)
	rs, err := parseBench(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[0].name != "BenchmarkAssignScale/partitions=1250/executors=62" || rs[0].n != 3703 ||
		rs[0].metrics["ns/op"] != 770901 || rs[0].metrics["allocs/op"] != 88 || rs[2].name != "BenchmarkAssign10kPartitions500Executors" {
		t.Fatalf("parsed %+v", rs)
	}
	row, err := scaleRow("6a", "assign", "what", rs[:2])
	if err != nil {
		t.Fatal(err)
	}
	// 8x the partitions in 8x the time: linear.
	if math.Abs(row.Ratio-1) > 0.01 || row.Met == nil || !*row.Met || !strings.Contains(row.Sluice, "10000 partitions/500 executors") {
		t.Errorf("row %+v", row)
	}
	if _, err := scaleRow("6a", "assign", "what", rs[:1]); err == nil {
		t.Error("a single size gave a growth exponent")
	}
	if _, err := parseBench([]byte("BenchmarkX-2 10 abc ns/op\n")); err == nil {
		t.Error("bad value accepted")
	}
}
