package kafka

import (
	"fmt"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Test hooks for the reader pool's fetchers, visible to the external tests
// of this package only.

// PoolClients reports how many franz-go clients the pool created and how
// many run now.
func PoolClients(p *ReaderPool) (created, running int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.fetchers {
		if f != nil {
			running++
		}
	}
	return p.stats.clients, running
}

// PoolPrefetch reports what the pool holds fetched and unread now, the most
// it ever held, and the most one poll added.
func PoolPrefetch(p *ReaderPool) (buffered, peak, largestPoll int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buffered, p.stats.peakBuffered, p.stats.largestPoll
}

// PoolDebug describes a partition's slots and client state, for test
// failures.
func PoolDebug(p *ReaderPool, id string) string {
	tp, _ := parsePartitionID(stream.PartitionID(id))
	p.mu.Lock()
	defer p.mu.Unlock()
	out := fmt.Sprintf("buffered %d live %d kicks %d;", p.buffered, len(p.live), p.stats.kicks)
	for i, f := range p.fetchers {
		if f == nil {
			continue
		}
		_, parked := f.parked[tp]
		out += fmt.Sprintf(" lane %d: urgent %v added %v assigned %v paused %v parked %v", i, f.urgent(), f.added[tp], f.assigned[tp], f.paused[tp], parked)
		if s := f.slots[tp]; s != nil {
			out += fmt.Sprintf(" slot{next %d fetched %d end %d buf %d bytes %d pending %v awaiting %v err %v inUse %v waiting %v}",
				s.next, s.fetched, s.end, len(s.buf), s.bytes, s.pending, s.awaiting, s.err, s.inUse, s.waiting)
		}
		out += ";"
	}
	return out
}

// PoolConsumed is how many partitions the pool's clients were last told to
// consume, parked ones included.
func PoolConsumed(p *ReaderPool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.fetchers {
		if f != nil {
			n += len(f.added)
		}
	}
	return n
}

// PoolBudget is the pool's prefetch budget now.
func PoolBudget(p *ReaderPool) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.budget
}

// PoolShed reports how many idle buffers the pool dropped and trimmed for
// readers starved by the budget.
func PoolShed(p *ReaderPool) (shed, trimmed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.shed, p.stats.trimmed
}

var (
	WithPrefetchPerPartition = withPrefetchPerPartition
	ScaledBudget             = scaledBudget
	SizeFetches              = func(budget int64, live int, wire, counted int64) (total, partition int32) {
		s := sizeFetches(budget, live, wire, counted)
		return s.total, s.partition
	}
	WithFetchSizes = withFetchSizes
)

// PoisonedFetchSlabs is an option giving a reader pool's clients a slab
// pool like slabs that fills each slice given back with poison before
// keeping it, so that a record read after its batch came back shows
// garbage rather than what it held. The counts are of slices given back.
func PoisonedFetchSlabs() (opt Option, records, bytes *atomic.Int64) {
	p := &poisonedPool{}
	return withFetchSlabs(p), &p.records, &p.bytes
}

type poisonedPool struct {
	slabPool
	records, bytes atomic.Int64
}

// poison is what a recycled record's key and value read as.
var poison = []byte("poisoned after recycling")

func (p *poisonedPool) PutRecords(s []kgo.Record) {
	p.records.Add(1)
	s = s[:cap(s)]
	for i := range s {
		s[i] = kgo.Record{Key: poison, Value: poison, Offset: -1}
	}
	// Not kept: slabPool.PutRecords would zero the poison.
}

func (p *poisonedPool) PutDecompressBytes(s []byte) {
	p.bytes.Add(1)
	s = s[:cap(s)]
	for i := range s {
		s[i] = 0xAA
	}
	p.slabPool.PutDecompressBytes(s)
}

// PoolPaused reports whether the lane holding the partition's slot has it
// paused.
func PoolPaused(p *ReaderPool, id string) bool {
	tp, _ := parsePartitionID(stream.PartitionID(id))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.fetchers {
		if f != nil && f.slots[tp] != nil {
			return f.paused[tp]
		}
	}
	return false
}
