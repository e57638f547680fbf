// Package etcd keeps checkpoints in etcd, the store of a replicated driver
// group. It is always used together with leader election (internal/cluster):
// every write carries the leader's Fence and is refused without one.
//
// # Key layout
//
// With the default prefix "/sluice/" (job names are URL-path-escaped so that
// a name containing '/' cannot reach into another job's keys; batches are
// zero-padded to 20 digits so key order is batch order):
//
//	/sluice/jobs/<job>                          JobRecord (JSON)
//	/sluice/plans/<job>/<batch %020d>           BatchPlan (JSON)
//	/sluice/ends/<job>/<batch %020d>/<range>    task end (JSON), range key as is
//	/sluice/commits/<job>/<batch %020d>         Commit (JSON)
//	/sluice/planparts/<job>/<batch %020d>/<gen>/<part %06d>    chunk of a large plan
//	/sluice/commitparts/<job>/<batch %020d>/<gen>/<part %06d>  chunk of a large commit
//
// The latest plan or commit is a prefix read sorted by key, descending,
// limit 1. Purge and DeleteJob are range deletes, parts included.
//
// # Large plans and commits
//
// etcd refuses a request above --max-request-bytes (1.5 MiB by default),
// and a plan or commit of some ten thousand partitions is larger. A plan or
// commit whose JSON exceeds DefaultChunkSize is stored as parts of that
// size, each written in its own fenced transaction under a generation new
// to this write, followed by a head at the usual key,
// {"chunked":{"gen":…,"parts":…,"size":…,"sha256":…}}, written last in a
// fenced transaction that also deletes the batch's parts of every other
// generation. Readers reach parts only through a head, reading them at the
// head's revision, so an entry is seen whole or not at all.
//
// # Fencing
//
// Every write (puts and deletes alike) is a single etcd transaction:
//
//	If(CreateRevision(fence.Key) == fence.Epoch) Then(writes...)
//
// fence.Key is the writer's election key and fence.Epoch its create
// revision. While that key exists its owner leads; once it is gone (lease
// expired or revoked, resigned, deleted) its create revision reads as 0, and
// a new term creates a new key, so the comparison fails and the write is
// refused with checkpoint.ErrFenced. Because the check and the write are one
// transaction, there is no window in which a deposed leader's write lands.
//
// Reads are not fenced: they are linearizable etcd reads and change nothing.
package etcd
