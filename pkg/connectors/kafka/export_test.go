package kafka

// Test hooks, visible to the external tests of this package only.

// PoolStats reports how many partition readers the pool created, how many
// opens a warm reader served, and how many idle readers it closed.
func PoolStats(p *ReaderPool) (created, reused, evicted int) {
	s := p.statsSnapshot()
	return s.created, s.reused, s.evicted
}

// PoolSize is how many partition readers the pool holds (idle or in use).
func PoolSize(p *ReaderPool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

// EvictIdle runs one pass of the janitor.
func EvictIdle(p *ReaderPool) { p.evictIdle() }

var (
	WithStallCheck = withStallCheck
	WithClock      = withClock
	Prorate        = prorate
	SplitRange     = splitRange
	RateCap        = rateCap
)
