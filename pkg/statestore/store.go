package statestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Options configure a Store.
type Options struct {
	LocalDir            string       // where the Pebble database lives (created; owned by this Store)
	Location            Location     // durable files
	Prefix              string       // this partition's folder in Location, e.g. "orders/3f2a/state/7"
	SnapshotInterval    int          // a snapshot every this many versions (version % n == 0); default 10
	MinVersionsToRetain int          // purge files not needed to load any of the last this many versions; default 100
	Logger              *slog.Logger // optional
	// Cache is the block cache, shared by the stores of one process
	// (Stores passes its own); nil gives the store a small one of its own.
	Cache *pebble.Cache
}

const (
	defaultSnapshotInterval    = 10
	defaultMinVersionsToRetain = 100

	// Small on purpose: an executor may hold many partitions open at once,
	// and state access is mostly point reads of recently written keys.
	cacheBytes    = 8 << 20
	memTableBytes = 4 << 20

	// restoreBatchBytes bounds one Pebble batch while loading a snapshot.
	restoreBatchBytes = 4 << 20
)

// Local key space: user keys live under dataPrefix so that the metadata
// record can share the database (and its atomic batches) without colliding.
var (
	metaKey    = []byte{0x00, 'm', 'e', 't', 'a'}
	dataPrefix = byte(0x01)
	dataLower  = []byte{dataPrefix}
	dataUpper  = []byte{dataPrefix + 1}
)

const (
	metaFormat = 1
	// metaNeedSnapshot marks a local state that the Location cannot rebuild
	// yet (see localMeta.needSnapshot); it is persisted so that a restart
	// between Load and Commit does not lose it.
	metaNeedSnapshot = 1 << 0
	// metaHasDeltaCRC says deltaCRC is set.
	metaHasDeltaCRC = 1 << 1
)

// localMeta is what the local database knows about itself. It is stored
// under metaKey in the same Pebble batch as the data it describes.
type localMeta struct {
	version int64 // version the local database holds
	keys    int64 // live keys at version
	// needSnapshot is set when Load found no files at all and version >= 0:
	// the next commit's delta alone could not be loaded (nothing earlier
	// exists), so that commit writes a snapshot whatever the interval.
	needSnapshot bool
	// deltaCRC is the checksum of the delta file that produced version,
	// when it was reached by a delta. Load uses it to check that the local
	// state is the Location's version before rolling it forward with newer
	// deltas instead of restoring from scratch.
	deltaCRC    uint32
	hasDeltaCRC bool
}

var emptyMeta = localMeta{version: -1}

// ErrClosed is returned by a Store used after Close or Remove.
var ErrClosed = errors.New("statestore: store is closed")

// CommitStats describe what a Commit wrote to the Location.
type CommitStats struct {
	DeltaBytes, SnapshotBytes int64
	Snapshot                  bool
}

// Stats describe a Store's local footprint.
type Stats struct {
	Keys        int64 // live keys at Version()
	DiskBytes   int64 // local database size on disk
	MemoryBytes int64 // memtables plus block cache in use
}

// Store is one state partition's state: a local Pebble database kept in step
// with the files in the Location. A Store is used by one task at a time; the
// mutex only protects against misuse and concurrent Stats calls.
type Store struct {
	ownCache bool // the block cache is this store's alone
	opts     Options
	log      *slog.Logger

	mu      sync.Mutex
	db      *pebble.DB
	meta    localMeta
	onClose func() // drops the store from its Stores cache
}

// Open opens (creating if needed) the local database in opts.LocalDir. The
// store starts at the version the local database last held, or -1 for a new
// one; call Load to bring it to the version a batch needs.
func Open(opts Options) (*Store, error) {
	if opts.LocalDir == "" {
		return nil, errors.New("statestore: Options.LocalDir: required")
	}
	if opts.Location == nil {
		return nil, errors.New("statestore: Options.Location: required")
	}
	if opts.Prefix == "" || opts.Prefix == "." || !fs.ValidPath(opts.Prefix) {
		return nil, fmt.Errorf("statestore: Options.Prefix: %q is not a valid relative slash-separated path", opts.Prefix)
	}
	switch {
	case opts.SnapshotInterval < 0:
		return nil, fmt.Errorf("statestore: Options.SnapshotInterval: %d is negative", opts.SnapshotInterval)
	case opts.SnapshotInterval == 0:
		opts.SnapshotInterval = defaultSnapshotInterval
	}
	switch {
	case opts.MinVersionsToRetain < 0:
		return nil, fmt.Errorf("statestore: Options.MinVersionsToRetain: %d is negative", opts.MinVersionsToRetain)
	case opts.MinVersionsToRetain == 0:
		opts.MinVersionsToRetain = defaultMinVersionsToRetain
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: opts, log: log.With("prefix", opts.Prefix), meta: emptyMeta}
	if err := s.openDB(); err != nil {
		return nil, err
	}
	if err := s.readMeta(); err != nil {
		if s.db != nil { // nil when a wipe failed half way
			_ = s.db.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) openDB() error {
	if err := os.MkdirAll(s.opts.LocalDir, 0o755); err != nil {
		return fmt.Errorf("statestore: Options.LocalDir: %w", err)
	}
	cache := s.opts.Cache
	s.ownCache = cache == nil
	if cache == nil {
		cache = pebble.NewCache(cacheBytes)
		// The DB takes its own reference; ours is dropped once it is open.
		defer cache.Unref()
	}
	db, err := pebble.Open(s.opts.LocalDir, &pebble.Options{
		Cache:        cache,
		MemTableSize: memTableBytes,
		Logger:       pebbleLogger{s.log},
		// No write-ahead log: the Location is the durable copy, and each
		// batch writes its data with the metadata naming its version, so
		// a crash leaves the database at some earlier consistent version,
		// which Load rolls forward or restores.
		DisableWAL: true,
	})
	if err != nil {
		return fmt.Errorf("statestore: open local database %s: %w", s.opts.LocalDir, err)
	}
	s.db = db
	return nil
}

// readMeta sets version and keys from the local metadata. A database that
// belongs to another prefix, has an unknown format, or holds data without
// metadata (a restore that crashed half way) cannot be trusted and is wiped.
func (s *Store) readMeta() error {
	val, closer, err := s.db.Get(metaKey)
	if errors.Is(err, pebble.ErrNotFound) {
		empty, err := s.dataEmpty()
		if err != nil {
			return err
		}
		if !empty {
			s.log.Warn("statestore: local database has data but no version; wiping", "dir", s.opts.LocalDir)
			return s.wipe()
		}
		s.meta = emptyMeta
		return nil
	}
	if err != nil {
		return fmt.Errorf("statestore: read local metadata: %w", err)
	}
	m, prefix, ok := decodeMeta(val)
	_ = closer.Close()
	if !ok || prefix != s.opts.Prefix {
		s.log.Warn("statestore: local database is not this partition's; wiping", "dir", s.opts.LocalDir, "found_prefix", prefix)
		return s.wipe()
	}
	s.meta = m
	return nil
}

func (s *Store) dataEmpty() (bool, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	if err != nil {
		return false, fmt.Errorf("statestore: scan local database: %w", err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return false, fmt.Errorf("statestore: scan local database: %w", err)
	}
	return empty, nil
}

// encode lays out the local metadata record: format byte, flags byte,
// version and live key count (big-endian int64), delta CRC (uint32), and the
// partition prefix, so a database left by another partition is not trusted.
func (m localMeta) encode(prefix string) []byte {
	b := []byte{metaFormat, 0}
	if m.needSnapshot {
		b[1] |= metaNeedSnapshot
	}
	if m.hasDeltaCRC {
		b[1] |= metaHasDeltaCRC
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.version))
	b = binary.BigEndian.AppendUint64(b, uint64(m.keys))
	b = binary.BigEndian.AppendUint32(b, m.deltaCRC)
	return append(b, prefix...)
}

func decodeMeta(b []byte) (m localMeta, prefix string, ok bool) {
	if len(b) < 22 || b[0] != metaFormat {
		return localMeta{}, "", false
	}
	return localMeta{
		version:      int64(binary.BigEndian.Uint64(b[2:10])),
		keys:         int64(binary.BigEndian.Uint64(b[10:18])),
		deltaCRC:     binary.BigEndian.Uint32(b[18:22]),
		needSnapshot: b[1]&metaNeedSnapshot != 0,
		hasDeltaCRC:  b[1]&metaHasDeltaCRC != 0,
	}, string(b[22:]), true
}

// wipe replaces the local database with an empty one at version -1.
// Deleting the directory (rather than a range tombstone) gives the disk space
// back at once and leaves nothing for compactions to chew through.
func (s *Store) wipe() error {
	if err := s.db.Close(); err != nil {
		s.log.Warn("statestore: close local database before wipe", "err", err)
	}
	s.db = nil
	if err := os.RemoveAll(s.opts.LocalDir); err != nil {
		return fmt.Errorf("statestore: wipe local database %s: %w", s.opts.LocalDir, err)
	}
	if err := s.openDB(); err != nil {
		return err
	}
	s.meta = emptyMeta
	return nil
}

func dataKey(key []byte) []byte {
	k := make([]byte, 0, len(key)+1)
	k = append(k, dataPrefix)
	return append(k, key...)
}

// Version is the version the store holds (-1: empty, before batch 0).
func (s *Store) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta.version
}

// Get returns a copy of key's value.
func (s *Store) Get(key []byte) (value []byte, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil, false, ErrClosed
	}
	v, closer, err := s.db.Get(dataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("statestore: get: %w", err)
	}
	value = bytes.Clone(v)
	if value == nil {
		value = []byte{}
	}
	_ = closer.Close()
	return value, true, nil
}

// Scan calls fn for every key in key order. key and value are only valid
// during the call. An error from fn stops the scan and is returned.
func (s *Store) Scan(fn func(key, value []byte) error) error {
	return s.scan(dataLower, dataUpper, fn)
}

// ScanPrefix calls fn for every key that starts with prefix, in key order;
// key and value are valid only during the call.
func (s *Store) ScanPrefix(prefix []byte, fn func(key, value []byte) error) error {
	lower := dataKey(prefix)
	upper := slices.Clone(lower)
	// The first key after every key with this prefix: the prefix with its
	// last byte below 0xff incremented (dataPrefix itself is below 0xff).
	for len(upper) > 0 && upper[len(upper)-1] == 0xff {
		upper = upper[:len(upper)-1]
	}
	upper[len(upper)-1]++
	return s.scan(lower, upper, fn)
}

func (s *Store) scan(lower, upper []byte, fn func(key, value []byte) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return ErrClosed
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("statestore: scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("statestore: scan: %w", err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("statestore: scan: %w", err)
	}
	return nil
}

// normalise returns changes sorted by key with one change per key (the last
// one given wins, as if applied in order). A canonical delta makes racing
// attempts of a batch write identical bytes, and unique keys keep the live
// key count exact.
func normalise(changes []Change) []Change {
	out := slices.Clone(changes)
	// Stable sort keeps the given order among equal keys; then keep the last.
	slices.SortStableFunc(out, func(a, b Change) int { return bytes.Compare(a.Key, b.Key) })
	n := 0
	for i := range out {
		if i+1 < len(out) && bytes.Equal(out[i].Key, out[i+1].Key) {
			continue
		}
		out[n] = out[i]
		n++
	}
	return out[:n]
}

// applyChanges adds changes to b and returns the new live key count.
// b must be an indexed batch (or reads go to db) so existence is checked
// against the state the change applies to.
func applyChanges(r pebble.Reader, b *pebble.Batch, keys int64, changes []Change) (int64, error) {
	for _, c := range changes {
		k := dataKey(c.Key)
		exists := c.Existed
		if !c.Known {
			_, closer, err := r.Get(k)
			exists = err == nil
			if err == nil {
				_ = closer.Close()
			} else if !errors.Is(err, pebble.ErrNotFound) {
				return 0, fmt.Errorf("statestore: read %q: %w", c.Key, err)
			}
		}
		if c.Value == nil {
			if exists {
				keys--
				if err := b.Delete(k, nil); err != nil {
					return 0, err
				}
			}
			continue
		}
		if !exists {
			keys++
		}
		if err := b.Set(k, c.Value, nil); err != nil {
			return 0, err
		}
	}
	return keys, nil
}

// Commit applies a batch's changes as version v, which must be Version()+1.
// It writes the delta of v to the Location (and a snapshot when due), and
// only then applies it locally, so that if the Location write fails the local
// state stays at v-1 and the batch can be retried. Finally old files are
// purged (failures there are logged, not returned: the commit has happened).
func (s *Store) Commit(ctx context.Context, v int64, changes []Change) (CommitStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var stats CommitStats
	if s.db == nil {
		return stats, ErrClosed
	}
	if v != s.meta.version+1 {
		return stats, fmt.Errorf("statestore: commit version %d: store is at version %d, want %d", v, s.meta.version, s.meta.version+1)
	}
	changes = normalise(changes)

	// An indexed batch reads through to the database, so it both answers
	// "did this key exist" and, iterated, is the state at v for a snapshot,
	// before anything is applied locally.
	b := s.db.NewIndexedBatch()
	defer b.Close()
	keys, err := applyChanges(b, b, s.meta.keys, changes)
	if err != nil {
		return stats, fmt.Errorf("statestore: commit version %d: %w", v, err)
	}
	delta := encodeDelta(v, changes)
	next := localMeta{version: v, keys: keys, deltaCRC: fileCRC(delta), hasDeltaCRC: true}
	if err := b.Set(metaKey, next.encode(s.opts.Prefix), nil); err != nil {
		return stats, fmt.Errorf("statestore: commit version %d: %w", v, err)
	}

	if err := s.opts.Location.Put(ctx, deltaName(s.opts.Prefix, v), delta); err != nil {
		return stats, fmt.Errorf("statestore: commit version %d: write delta: %w", v, err)
	}
	stats.DeltaBytes = int64(len(delta))

	if v%int64(s.opts.SnapshotInterval) == 0 || s.meta.needSnapshot {
		snap, err := encodeSnapshot(b, v, keys)
		if err != nil {
			return stats, fmt.Errorf("statestore: commit version %d: build snapshot: %w", v, err)
		}
		if err := s.opts.Location.Put(ctx, snapshotName(s.opts.Prefix, v), snap); err != nil {
			return stats, fmt.Errorf("statestore: commit version %d: write snapshot: %w", v, err)
		}
		stats.Snapshot, stats.SnapshotBytes = true, int64(len(snap))
	}

	// NoSync: the Location is the durable copy. After a crash Pebble
	// recovers a prefix of its batches, and since metadata rides in the same
	// batch as the data, the local version still matches the local data.
	if err := b.Commit(pebble.NoSync); err != nil {
		return stats, fmt.Errorf("statestore: commit version %d: apply locally: %w", v, err)
	}
	s.meta = next

	if err := s.purge(ctx, v); err != nil {
		s.log.Warn("statestore: purge old files", "version", v, "err", err)
	}
	return stats, nil
}

// encodeSnapshot writes the whole state seen through r (the database with a
// pending batch on top) as a snapshot file of version v.
func encodeSnapshot(r pebble.Reader, v, keys int64) ([]byte, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	if err != nil {
		return nil, err
	}
	e := newSnapshotEncoder(v, int(keys))
	for ok := it.First(); ok; ok = it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		e.add(it.Key()[1:], val)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	if int64(e.n) != keys {
		// The count is kept incrementally; a mismatch is a bug, and writing
		// the snapshot would make every future restore disagree.
		return nil, fmt.Errorf("live key count %d disagrees with %d keys found", keys, e.n)
	}
	return e.finish(), nil
}

// files is a partition's listing in the Location, by version.
type files struct {
	deltas    map[int64]bool
	snapshots []int64 // ascending
}

func (s *Store) list(ctx context.Context) (files, error) {
	names, err := s.opts.Location.List(ctx, s.opts.Prefix)
	if err != nil {
		return files{}, fmt.Errorf("statestore: list %s: %w", s.opts.Prefix, err)
	}
	f := files{deltas: map[int64]bool{}}
	for _, name := range names {
		v, snap, ok := parseName(s.opts.Prefix, name)
		switch {
		case !ok:
			continue
		case snap:
			f.snapshots = append(f.snapshots, v)
		default:
			f.deltas[v] = true
		}
	}
	slices.Sort(f.snapshots)
	return f, nil
}

func (f files) empty() bool { return len(f.deltas) == 0 && len(f.snapshots) == 0 }

// latestSnapshot returns the newest snapshot <= v, or -1 (the empty state).
func (f files) latestSnapshot(v int64) int64 {
	i, found := slices.BinarySearch(f.snapshots, v)
	if found {
		return v
	}
	if i == 0 {
		return -1
	}
	return f.snapshots[i-1]
}

// Load makes the store hold exactly version v (v >= -1). restored reports
// whether the Location was read; it is false when the local database already
// held v.
//
// When the local database is behind v and its version is provably the
// Location's (the delta that produced it has the checksum recorded locally)
// and no newer snapshot would be a shorter path, Load rolls it forward with
// the deltas after it. Any other local version is rebuilt from scratch,
// including one ahead of v (a replay of batch v+1): deltas carry no
// before-images, so the only way back is from a snapshot.
func (s *Store) Load(ctx context.Context, v int64) (restored bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return false, ErrClosed
	}
	if v < -1 {
		return false, fmt.Errorf("statestore: load version %d: must be >= -1", v)
	}
	if s.meta.version == v {
		return false, nil
	}
	f, err := s.list(ctx)
	if err != nil {
		return false, fmt.Errorf("statestore: load version %d: %w", v, err)
	}
	if f.empty() {
		// A new partition: nothing was ever committed, so every version is
		// the empty state.
		if err := s.wipe(); err != nil {
			return true, err
		}
		m := localMeta{version: v, needSnapshot: v >= 0}
		if err := s.db.Set(metaKey, m.encode(s.opts.Prefix), pebble.NoSync); err != nil {
			return true, fmt.Errorf("statestore: load version %d: %w", v, err)
		}
		s.meta = m
		s.log.Debug("statestore: new partition, empty state", "version", v)
		return true, nil
	}
	if ok, err := s.rollForward(ctx, f, v); err != nil || ok {
		if err != nil {
			err = fmt.Errorf("statestore: load version %d: %w", v, err)
		}
		return true, err
	}
	if err := s.restore(ctx, f, v); err != nil {
		return true, fmt.Errorf("statestore: load version %d: %w", v, err)
	}
	return true, nil
}

// missing returns the ErrVersionMissing error for the absent delta u.
func (s *Store) missing(f files, u, v int64) error {
	if len(f.snapshots) > 0 && f.snapshots[0] > v {
		return fmt.Errorf("%w: %s is missing (version %d was purged; oldest snapshot is %d)",
			ErrVersionMissing, deltaName(s.opts.Prefix, u), v, f.snapshots[0])
	}
	return fmt.Errorf("%w: %s is missing", ErrVersionMissing, deltaName(s.opts.Prefix, u))
}

// fetchedDelta is a verified delta and its file's checksum.
type fetchedDelta struct {
	changes []Change
	crc     uint32
}

// fetchDeltas reads and verifies the deltas from..to.
func (s *Store) fetchDeltas(ctx context.Context, from, to int64) ([]fetchedDelta, error) {
	deltas := make([]fetchedDelta, 0, max(to-from+1, 0))
	for u := from; u <= to; u++ {
		name := deltaName(s.opts.Prefix, u)
		data, err := s.get(ctx, name)
		if err != nil {
			return nil, err
		}
		changes, err := decodeDelta(name, u, data)
		if err != nil {
			return nil, err
		}
		deltas = append(deltas, fetchedDelta{changes: changes, crc: fileCRC(data)})
	}
	return deltas, nil
}

// rollForward brings a local database at u < v to v by applying deltas
// u+1..v, when that is both safe and the shortest path. It reports false
// (and changes nothing) when a full restore is needed instead.
func (s *Store) rollForward(ctx context.Context, f files, v int64) (bool, error) {
	u := s.meta.version
	if u >= v || f.latestSnapshot(v) > u {
		return false, nil
	}
	for w := u + 1; w <= v; w++ {
		if !f.deltas[w] {
			return false, nil // let restore decide (and report) what is missing
		}
	}
	switch {
	case u == -1:
		// The empty state is version -1 of every partition.
	case s.meta.needSnapshot || !s.meta.hasDeltaCRC || !f.deltas[u]:
		return false, nil
	default:
		// Same checksum, same file: the local state is the one the
		// Location's chain produces, not that of some attempt whose delta
		// was later replaced.
		data, err := s.get(ctx, deltaName(s.opts.Prefix, u))
		if crc, ok := checkedCRC(data); err != nil || !ok || crc != s.meta.deltaCRC {
			return false, nil
		}
	}
	deltas, err := s.fetchDeltas(ctx, u+1, v)
	if err != nil {
		return false, err
	}
	if err := s.applyDeltas(u+1, deltas); err != nil {
		return false, err
	}
	s.log.Debug("statestore: rolled forward", "from", u, "version", v)
	return true, nil
}

// restore rebuilds version v from the latest snapshot <= v and the deltas
// after it. Everything is read and verified before the local database is
// touched, so a missing or corrupt file leaves the store as it was.
func (s *Store) restore(ctx context.Context, f files, v int64) error {
	base := f.latestSnapshot(v)
	for u := base + 1; u <= v; u++ {
		if !f.deltas[u] {
			return s.missing(f, u, v)
		}
	}
	var snap []byte
	var snapKeys int
	if base >= 0 {
		name := snapshotName(s.opts.Prefix, base)
		data, err := s.get(ctx, name)
		if err != nil {
			return err
		}
		// Verify first (checksum, structure), apply after the wipe.
		if snapKeys, err = decodeSnapshot(name, base, data, func(_, _ []byte) error { return nil }); err != nil {
			return err
		}
		snap = data
	}
	deltas, err := s.fetchDeltas(ctx, base+1, v)
	if err != nil {
		return err
	}

	if err := s.wipe(); err != nil {
		return err
	}
	if snap != nil {
		if err := s.loadSnapshot(snapshotName(s.opts.Prefix, base), base, snap, int64(snapKeys)); err != nil {
			return err
		}
	}
	if err := s.applyDeltas(base+1, deltas); err != nil {
		return err
	}
	s.log.Debug("statestore: restored", "version", v, "snapshot", base, "deltas", len(deltas))
	return nil
}

// applyDeltas applies verified deltas of versions from, from+1, ... locally.
// Each delta is its own batch with its own metadata, so a crash part way
// leaves a consistent (older) local version.
func (s *Store) applyDeltas(from int64, deltas []fetchedDelta) error {
	for i, d := range deltas {
		u := from + int64(i)
		b := s.db.NewBatch()
		keys, err := applyChanges(s.db, b, s.meta.keys, d.changes)
		m := localMeta{version: u, keys: keys, deltaCRC: d.crc, hasDeltaCRC: true}
		if err == nil {
			err = b.Set(metaKey, m.encode(s.opts.Prefix), nil)
		}
		if err == nil {
			err = b.Commit(pebble.NoSync)
		}
		_ = b.Close()
		if err != nil {
			return fmt.Errorf("apply %s locally: %w", deltaName(s.opts.Prefix, u), err)
		}
		s.meta = m
	}
	return nil
}

func (s *Store) get(ctx context.Context, name string) ([]byte, error) {
	data, err := s.opts.Location.Get(ctx, name)
	if errors.Is(err, ErrNotExist) {
		// Listed a moment ago but gone now: purged under us.
		return nil, fmt.Errorf("%w: %s is missing: %w", ErrVersionMissing, name, err)
	}
	return data, err
}

// loadSnapshot writes a verified snapshot into the (empty) local database in
// bounded batches. Metadata goes in the last batch only: until then the
// database has data without a version, which Open treats as a crashed
// restore and wipes.
func (s *Store) loadSnapshot(name string, v int64, data []byte, keys int64) error {
	b := s.db.NewBatch()
	_, err := decodeSnapshot(name, v, data, func(key, value []byte) error {
		if err := b.Set(dataKey(key), value, nil); err != nil {
			return err
		}
		if b.Len() >= restoreBatchBytes {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			_ = b.Close()
			b = s.db.NewBatch()
		}
		return nil
	})
	// Reached by a snapshot, not a delta: no checksum to roll forward from.
	m := localMeta{version: v, keys: keys}
	if err == nil {
		err = b.Set(metaKey, m.encode(s.opts.Prefix), nil)
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	_ = b.Close()
	if err != nil {
		return fmt.Errorf("apply %s locally: %w", name, err)
	}
	s.meta = m
	return nil
}

// purge deletes files no longer needed to load any of the last
// MinVersionsToRetain versions up to v (see the package doc).
func (s *Store) purge(ctx context.Context, v int64) error {
	lo := v - int64(s.opts.MinVersionsToRetain) + 1
	if lo <= 0 {
		return nil
	}
	f, err := s.list(ctx)
	if err != nil {
		return err
	}
	keep := f.latestSnapshot(lo)
	if keep < 0 {
		return nil // no snapshot to stand on: the chain from -1 is needed
	}
	var errs []error
	for _, u := range f.snapshots {
		if u < keep {
			errs = append(errs, s.opts.Location.Delete(ctx, snapshotName(s.opts.Prefix, u)))
		}
	}
	for u := range f.deltas {
		if u <= keep {
			errs = append(errs, s.opts.Location.Delete(ctx, deltaName(s.opts.Prefix, u)))
		}
	}
	return errors.Join(errs...)
}

// Stats reports the live key count and the local footprint.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Keys: s.meta.keys}
	if s.db == nil {
		return st
	}
	m := s.db.Metrics()
	st.DiskBytes = int64(m.DiskSpaceUsage())
	st.MemoryBytes = int64(m.MemTable.Size)
	if s.ownCache { // a shared cache is no one store's
		st.MemoryBytes += m.BlockCache.Size
	}
	return st
}

// Close closes the local database; it stays on disk for a later Open.
// Without a write-ahead log, what is only in memory would be lost: it is
// flushed first, so an executor restarted on the same directory finds its
// partitions warm.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ferr error
	if s.db != nil {
		if err := s.db.Flush(); err != nil {
			ferr = fmt.Errorf("statestore: flush local database %s: %w", s.opts.LocalDir, err)
		}
	}
	return errors.Join(ferr, s.closeLocked())
}

func (s *Store) closeLocked() error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if s.onClose != nil {
		s.onClose()
	}
	if err != nil {
		return fmt.Errorf("statestore: close local database %s: %w", s.opts.LocalDir, err)
	}
	return nil
}

// Remove closes the store and deletes its local database, for when the
// partition has moved to another executor. The Location is untouched.
func (s *Store) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.closeLocked()
	if rmErr := os.RemoveAll(s.opts.LocalDir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("statestore: remove local database %s: %w", s.opts.LocalDir, rmErr))
	}
	return err
}

// pebbleLogger routes Pebble's own logging to slog.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf must not return (Pebble's contract); panicking keeps the message
// without killing the whole process from library code.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble: fatal: " + msg)
	panic("pebble: " + msg)
}
