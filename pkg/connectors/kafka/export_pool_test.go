package kafka

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
