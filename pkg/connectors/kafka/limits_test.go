package kafka_test

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/sluicehq/sluice/pkg/connectors/kafka"
)

func TestProrate(t *testing.T) {
	tests := []struct {
		name   string
		lags   []int64
		limit  int64
		rotate int64
		want   []int64
	}{
		{"no limit", []int64{5, 7}, 0, 0, []int64{5, 7}},
		{"under the limit", []int64{5, 7}, 12, 0, []int64{5, 7}},
		{"by lag", []int64{100, 10, 1}, 20, 0, []int64{18, 1, 1}},
		{"equal lags", []int64{10, 10, 10}, 10, 0, []int64{3, 3, 3}},
		{"small lags get one each", []int64{1000, 1, 1, 1}, 10, 0, []int64{7, 1, 1, 1}},
		{"small lags and the big share", []int64{1, 1, 4}, 3, 0, []int64{1, 1, 1}},
		{"too small a limit: turns", []int64{1000, 1, 1, 1}, 3, 0, []int64{2, 1, 0, 0}},
		{"next batch, next turn", []int64{1000, 1, 1, 1}, 3, 1, []int64{2, 0, 1, 0}},
		{"no lag gets nothing", []int64{0, 50, 0}, 10, 0, []int64{0, 10, 0}},
		{"huge lags do not overflow", []int64{math.MaxInt64 / 2, math.MaxInt64 / 2}, math.MaxInt64 - 1, 0,
			[]int64{math.MaxInt64/2 - 0, math.MaxInt64 / 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, kafka.Prorate(tt.lags, tt.limit, tt.rotate)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Invariants of prorate: no partition gets more than its lag; the sum never
// exceeds the limit; with enough room everyone gets everything; every
// partition with lag gets at least one offset when the limit covers one per
// lagging partition; the result depends on the inputs only.
func TestProrateProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		lags := rapid.SliceOfN(rapid.Int64Range(0, 1<<40), 1, 50).Draw(t, "lags")
		limit := rapid.Int64Range(1, 1<<41).Draw(t, "limit")
		rotate := rapid.Int64Range(0, 1000).Draw(t, "rotate")
		got := kafka.Prorate(lags, limit, rotate)
		var sum, total, lagging int64
		for i, g := range got {
			if g < 0 || g > lags[i] {
				t.Fatalf("partition %d gets %d of lag %d", i, g, lags[i])
			}
			sum += g
			total += lags[i]
			if lags[i] > 0 {
				lagging++
			}
		}
		if sum > limit {
			t.Fatalf("sum %d exceeds the limit %d", sum, limit)
		}
		if total <= limit && sum != total {
			t.Fatalf("under the limit but only %d of %d planned", sum, total)
		}
		if limit >= lagging {
			for i, g := range got {
				if lags[i] > 0 && g == 0 {
					t.Fatalf("partition %d with lag %d starves (limit %d, %d lagging)", i, lags[i], limit, lagging)
				}
			}
		}
		if again := kafka.Prorate(lags, limit, rotate); !cmp.Equal(got, again) {
			t.Fatalf("not deterministic: %v then %v", got, again)
		}
	})
}

func TestSplitRange(t *testing.T) {
	tests := []struct {
		from, until, max int64
		want             [][2]int64
	}{
		{0, 25, 0, [][2]int64{{0, 25}}},
		{0, 25, 25, [][2]int64{{0, 25}}},
		{0, 25, 10, [][2]int64{{0, 9}, {9, 17}, {17, 25}}},
		{100, 120, 10, [][2]int64{{100, 110}, {110, 120}}},
		{0, 3, 1, [][2]int64{{0, 1}, {1, 2}, {2, 3}}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, kafka.SplitRange(tt.from, tt.until, tt.max)); diff != "" {
			t.Errorf("SplitRange(%d, %d, %d) (-want +got):\n%s", tt.from, tt.until, tt.max, diff)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		from := rapid.Int64Range(0, 1<<50).Draw(t, "from")
		n := rapid.Int64Range(1, 100000).Draw(t, "n")
		max := rapid.Int64Range(1, 5000).Draw(t, "max")
		parts := kafka.SplitRange(from, from+n, max)
		at := from
		for _, p := range parts {
			if p[0] != at || p[1] <= p[0] || p[1]-p[0] > max {
				t.Fatalf("piece %v after %d (max %d)", p, at, max)
			}
			at = p[1]
		}
		if at != from+n || int64(len(parts)) != (n+max-1)/max {
			t.Fatalf("%d pieces ending at %d, want %d ending at %d", len(parts), at, (n+max-1)/max, from+n)
		}
	})
}

func TestRateCap(t *testing.T) {
	for _, tt := range []struct {
		rate     int64
		interval time.Duration
		want     int64
	}{
		{10, 0, 10},
		{10, time.Second, 10},
		{10, 2500 * time.Millisecond, 25},
		{1, 100 * time.Millisecond, 1}, // never zero
		{math.MaxInt64, time.Hour, math.MaxInt64},
	} {
		if got := kafka.RateCap(tt.rate, tt.interval); got != tt.want {
			t.Errorf("RateCap(%d, %s) = %d, want %d", tt.rate, tt.interval, got, tt.want)
		}
	}
}
