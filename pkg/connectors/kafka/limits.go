package kafka

import (
	"math"
	"math/big"
	"time"
)

// This file holds the pure arithmetic of planning: no I/O, so it is tested
// exhaustively on its own.

// rateCap is maxRatePerPartition over one trigger interval: how many offsets
// a partition may advance in one batch. An interval of 0 (as fast as
// possible) counts as one second, so the option still means records per
// second. The cap is at least 1 so that a tiny rate still makes progress.
func rateCap(rate int64, interval time.Duration) int64 {
	if interval <= 0 {
		interval = time.Second
	}
	c := float64(rate) * interval.Seconds()
	switch {
	case c >= math.MaxInt64:
		return math.MaxInt64
	case c < 1:
		return 1
	}
	return int64(c)
}

// prorate splits limit across partitions in proportion to their lags, as
// Spark's rateLimit does: each gets floor(lag/total*limit). Unlike Spark,
// which rounds small shares up and so can exceed the limit, the sum never
// exceeds limit. A partition with lag whose share rounds to zero still gets
// one offset when the limit allows one per lagging partition, so that a
// quiet partition next to a busy one is not starved forever: that offset
// comes from what the flooring left over, else from the largest share. When
// the limit is smaller than the number of lagging partitions, the leftover
// goes round in a rotation that starts at rotate (the batch number), so that
// each gets its turn. The result is deterministic in its inputs.
//
// lags are offsets available per partition (>= 0) in a fixed order; the
// result has the same order. A limit <= 0 means no limit.
func prorate(lags []int64, limit int64, rotate int64) []int64 {
	out := make([]int64, len(lags))
	copy(out, lags)
	if limit <= 0 {
		return out
	}
	total := new(big.Int)
	var lagging int64
	for _, l := range lags {
		total.Add(total, big.NewInt(l))
		if l > 0 {
			lagging++
		}
	}
	if total.Cmp(big.NewInt(limit)) <= 0 {
		return out
	}
	// Big integers: lag*limit overflows int64 long before lags are absurd.
	var used int64
	var num, q big.Int
	bigLimit := big.NewInt(limit)
	for i, l := range lags {
		num.Mul(big.NewInt(l), bigLimit)
		q.Quo(&num, total)
		out[i] = q.Int64() // <= limit because l <= total
		used += out[i]
	}
	var starving []int
	for i, l := range lags {
		if l > 0 && out[i] == 0 {
			starving = append(starving, i)
		}
	}
	left := limit - used
	n := int64(len(starving))
	if n == 0 {
		return out
	}
	start := ((rotate % n) + n) % n
	for j := int64(0); j < n; j++ {
		i := starving[(start+j)%n]
		switch {
		case left > 0:
			left--
		case limit >= lagging:
			// Take one from the largest share. One exists above 1: the
			// shares sum to limit >= lagging, and not all of them are 1.
			donor := -1
			for k, v := range out {
				if v > 1 && (donor < 0 || v > out[donor]) {
					donor = k
				}
			}
			out[donor]--
		default:
			return out // the limit cannot give everyone one this batch
		}
		out[i] = 1
	}
	return out
}

// splitRange cuts [from, until) into the fewest contiguous pieces of at most
// max offsets, as equal as possible (the first pieces one larger), so that a
// hot partition's tasks take about the same time. max <= 0 means no split.
func splitRange(from, until, max int64) [][2]int64 {
	n := until - from
	if max <= 0 || n <= max {
		return [][2]int64{{from, until}}
	}
	k := n / max
	if n%max != 0 {
		k++
	}
	size, extra := n/k, n%k
	out := make([][2]int64, 0, k)
	at := from
	for i := int64(0); i < k; i++ {
		sz := size
		if i < extra {
			sz++
		}
		out = append(out, [2]int64{at, at + sz})
		at += sz
	}
	return out
}
