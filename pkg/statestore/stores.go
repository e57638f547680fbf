package statestore

import (
	"errors"
	"net/url"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Stores keeps an executor's Stores open between batches, one per Prefix,
// so a partition that stays on the executor does not re-open (or restore)
// its database every batch. It is safe for concurrent use.
type Stores struct {
	root  string
	cache *pebble.Cache // shared by the stores

	mu     sync.Mutex
	open   map[string]*Store
	closed bool
}

// NewStores returns a cache whose local databases live under root, in a
// directory per prefix (see Get).
func NewStores(root string) *Stores {
	return &Stores{root: root, open: map[string]*Store{}, cache: pebble.NewCache(sharedCacheBytes)}
}

// sharedCacheBytes is the block cache of all the stores of one Stores: an
// executor holds a few state partitions, and one cache lets a busy one use
// what idle ones do not.
const sharedCacheBytes = 64 << 20

// Get returns the open Store for opts.Prefix, opening it on first use. When
// opts.LocalDir is empty it is root/<prefix with '/' and other unsafe bytes
// escaped>, so distinct prefixes never share a directory. Later calls with
// the same Prefix return the same *Store; their other options are ignored.
// Closing or removing a Store drops it from the cache.
func (c *Stores) Get(opts Options) (*Store, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("statestore: Stores is closed")
	}
	if s, ok := c.open[opts.Prefix]; ok {
		return s, nil
	}
	if opts.Cache == nil {
		opts.Cache = c.cache
	}
	if opts.LocalDir == "" {
		if c.root == "" {
			return nil, errors.New("statestore: Options.LocalDir: required (Stores has no root)")
		}
		// PathEscape escapes '/', so "a/b" and "a_b" stay apart; Open
		// rejects prefixes such as "." and ".." that would escape root.
		opts.LocalDir = filepath.Join(c.root, url.PathEscape(opts.Prefix))
	}
	s, err := Open(opts)
	if err != nil {
		return nil, err
	}
	prefix := opts.Prefix
	// Runs under the Store's lock. Safe: the cache never takes a Store's
	// lock while holding its own, so the lock order is always Store, cache.
	s.onClose = func() { c.forget(prefix, s) }
	c.open[prefix] = s
	return s, nil
}

func (c *Stores) forget(prefix string, s *Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[prefix] == s {
		delete(c.open, prefix)
	}
}

// Close closes every open Store (their local databases stay on disk).
func (c *Stores) Close() error {
	c.mu.Lock()
	stores := c.open
	c.open = map[string]*Store{}
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, s := range stores {
		errs = append(errs, s.Close())
	}
	if c.cache != nil {
		c.cache.Unref() // each DB held its own reference
		c.cache = nil
	}
	return errors.Join(errs...)
}
