// Package statestore is the keyed state store of stateful streaming.
//
// A stateful job's state is split into state partitions. Each partition is
// owned by one executor at a time, which keeps the state in a local embedded
// LSM (Pebble) and, after every micro-batch, writes what the batch changed to
// a durable Location. The state after batch b is "version b"; version -1 is
// the empty state before batch 0.
//
// # Layout in the Location
//
// All files of a partition live directly under Options.Prefix:
//
//	<prefix>/000000000012.delta     the changes batch 12 made (sets and deletes)
//	<prefix>/000000000020.snapshot  the whole state at version 20
//
// Versions are zero-padded to 12 digits so that List's lexical order is
// version order. A delta is written for every version (even an empty one) so
// the chain has no holes; a snapshot is written when version % SnapshotInterval
// == 0, and also on the first commit after a Load that found no files at all
// (a new partition starting at v > -1 has no earlier files to build on).
//
// Both file kinds are: a 4-byte magic ("SSDL" delta, "SSSN" snapshot), a
// format byte (1), the version (8 bytes big-endian, checked against the name
// so a renamed or copied file is caught), a uvarint record count, the records
// with keys strictly ascending, and a CRC-32C of everything before it
// (format.go has the record layout). Keys are sorted so that two
// attempts of the same batch produce byte-identical deltas whatever order
// their changes came in; the racing writes are then harmless.
//
// Writes go through Location.Put, which must be atomic (Dir writes a temp file
// and renames it), so a reader never sees half a file. A torn or foreign file
// fails its checksum/magic and is reported with its name.
//
// # Restore rule
//
// To load version v from the Location: if the prefix holds no files at all the
// partition is new and the state is empty at any v. Otherwise take the latest
// snapshot s <= v (or the empty state at s = -1 when there is none) and apply
// the deltas s+1..v in order. A missing delta in that range is
// ErrVersionMissing naming the file. If the local database already is at v,
// nothing is read.
//
// The one shortcut: a local database at u < v rolls forward by applying deltas
// u+1..v instead, when no snapshot in (u, v] would be a shorter path, all
// those deltas exist, and the local state is provably the Location's version
// u: the local metadata records the checksum of the delta file that produced
// u, and it must match the Location's delta u now. Otherwise (local state
// reached from a snapshot, delta u rewritten by another attempt, local ahead
// of v as in a replay) the state is rebuilt from scratch: deltas have no
// before-images, so there is no way backwards.
//
// # Purge rule
//
// After committing v, the versions that must stay loadable are
// lo..v with lo = v - MinVersionsToRetain + 1. Let s be the latest snapshot
// <= lo (from the listing). Loading any version >= lo needs only snapshot s
// (or a later one) and deltas > s, so snapshots < s and deltas <= s are
// deleted. If there is no snapshot <= lo, nothing is deleted (the chain from
// version -1 is still needed). Files newer than v are never touched: another
// attempt of a later batch may have written them.
//
// # Local database
//
// The Pebble database holds user keys under a one-byte prefix and a metadata
// record (format, partition prefix, version, live key count, the checksum of
// the delta that produced the version, a "next commit needs a snapshot" flag)
// that is written
// in the same Pebble batch as the data it describes, so the local version is
// never ahead of or behind the local data, even after a crash. A database with
// data but no metadata (a crash in the middle of a restore) is wiped on Open.
package statestore
