// Package casstore is the checkpoint.Store shared by the DynamoDB and S3
// stores: the records, the fencing protocol and the reading rules, written
// once over a small Backend that either service can provide with
// single-record conditional writes. Neither DynamoDB transactions (dynalite
// has none) nor S3 listings are needed for correctness.
//
// # Records
//
// Per store namespace (a table and prefix, or a bucket and prefix):
//
//	fence                 {epoch, fenceKey}: the newest leader epoch that wrote
//	head(job)             {epoch, fenceKey, name, inc, deleted, job, plan, commit}
//	blob(job, inc, b, id) a BatchPlan or Commit, write-once, never modified
//	ends(job, inc, b)     task ends of batch b, each {end, epoch, fenceKey}
//
// The head is everything a reader sees of a job: the catalog entry, and
// pointers {batch, id, epoch} to the blobs of the latest plan and the latest
// commit. Blobs are written under a fresh random id before a head points to
// them, so a reader never sees a half-written or replaced log entry, and an
// entry nobody points to (a superseded plan, a deposed leader's late write)
// is invisible. inc is the job's incarnation: DeleteJob turns the head into
// a tombstone and removes the incarnation's logs; a job created again under
// the same name gets a new inc, so leftovers of the old one can never reach
// it.
//
// # Fencing
//
// A Fence {Key, Epoch} is the etcd election key and its create revision, so
// a newer leader has a higher epoch. A stamp s admits a writer w when
// s.epoch < w.epoch, or the epochs are equal and the keys too (two driver
// groups sharing one namespace cannot pass for each other).
//
//  1. Every write first reads the fence record. If it does not admit the
//     writer the write fails with checkpoint.ErrFenced; if the writer is
//     newer it raises the record with a conditional write (compare and swap
//     on the record's version). This is what stops a deposed leader
//     promptly, in every job, including jobs it would create.
//  2. Every change to a head is a compare and swap on the head's version
//     that requires the head's stamp to admit the writer and stamps the head
//     with it; a leader's first write of a job of any kind, a task end
//     included, stamps the job's head. A head's stamp never goes down.
//  3. Readers seal: a read of a head whose stamp is older than the fence
//     record first raises the head's stamp to the fence's (compare and swap)
//     and only then returns it; ListJobs seals every head it lists. Claim
//     raises the fence record without writing anything else, for a new
//     leader that reads before it writes.
//  4. A task end is one entry of its batch, written with a condition on that
//     entry alone: an entry stamped by a newer leader is never replaced
//     (ErrFenced). Readers ignore the ends of a batch stamped with an older
//     epoch than the batch's current plan: they belong to a plan a newer
//     leader replaced.
//
// Step 1 and the write itself are two requests, so there is a window:
//
//   - What a deposed leader can still do once the new leader has claimed the
//     fence: finish the writes it had in flight, at most one per goroutine
//     that had already passed step 1. Its next write fails at step 1.
//   - Why that cannot corrupt the log: an in-flight head change (catalog,
//     plan, commit, purge, delete) lands only if the head still carries the
//     old epoch (step 2). The new leader's first read or write of that job
//     stamps the head (step 3 or 2), so an old write either lands before the
//     new leader looks at the job, and the new leader sees it as if the old
//     leader had finished a moment earlier, or it fails. The new leader
//     never acts on a view that an old write changes afterwards. Blobs the
//     failed write left behind are unreferenced: invisible, and removed by
//     Purge or DeleteJob.
//   - An in-flight task end may land after the new leader read the batch's
//     ends. It is a real end reached by an attempt of the same recorded
//     plan (if the new leader re-planned the batch, readers ignore it by
//     rule 4), it cannot replace an end the new leader recorded, and the new
//     leader's own end for that range replaces it when its attempt reports.
//     The commit is built from the new leader's results, never from ends it
//     did not read.
//   - An in-flight Purge or DeleteJob deletes logs only after its head
//     change succeeded, hence before the new leader saw the job: purged
//     batches are below every pointer the new leader can hold, and a
//     deleted job is a tombstone to it.
//   - An in-flight PutJob of a new job creates a head nobody has sealed; if
//     it lands after the new leader read the catalog, the new leader does
//     not know the job until it reads the catalog again. The job is not
//     lost, and nothing the new leader runs is affected.
//
// Without Claim, the new leader's reads of a job before its first write in
// the namespace are not sealed, and a deposed leader's in-flight or later
// writes may still change what those reads showed. The driver must therefore
// call Claim after it is elected and before it reads checkpoints.
package casstore
