// Package s3 keeps checkpoints as objects in an S3 bucket (or MinIO), for
// a driver group that runs where S3 is at hand (or a job that wants its
// checkpoints there). Fencing rests on conditional writes: If-None-Match: *
// to create an object, If-Match: <etag> to replace one. Open checks that
// the endpoint honours both (s3rver, for one, silently ignores them) and
// refuses to run otherwise. The bucket must exist.
//
// # Objects
//
// P is Config.Prefix. Job names are escaped into one path segment (every
// byte other than [A-Za-z0-9_-] becomes %XX), so "a" and "a/b" are
// separate directories; inc is a job's incarnation (random, new each time
// a job name is created); batch numbers are zero-padded to 20 digits:
//
//	P/fence.json                                 the store's fence {epoch, fenceKey}
//	P/<job>/head.json                            the job's head: catalog entry, latest plan and commit pointers
//	P/<job>/<inc>/<batch>/plan-<id>.json         a plan (write-once)
//	P/<job>/<inc>/<batch>/commit-<id>.json       a commit (write-once)
//	P/<job>/<inc>/<batch>/ends.json              the batch's task ends {key: {end, epoch, fenceKey}}
//
// Correctness never depends on a listing. LatestPlan and LatestCommit read
// the head and the object it points to; TaskEnds reads one object. Listings
// serve ListJobs (directories under P, each head read with a GET) and the
// clean-up of Purge and DeleteJob, where a lagging listing costs at most a
// job missing from a list a moment after its creation, or garbage that
// nothing points to.
//
// # Fencing
//
// A write is accepted only while the writer's Fence (the etcd election
// key and its create revision) is at least as new as any that wrote
// before; otherwise it fails with checkpoint.ErrFenced. The protocol (a
// fence object raised by every new leader, one head object per job
// replaced only with If-Match after checking that its epoch is no newer
// than the writer's, write-once log objects that a head points to, and
// readers that seal a head with the newest epoch before using it) is
// described in full, with what a deposed leader can still do in its last
// moments and why that cannot corrupt the log, in
// pkg/checkpoint/internal/casstore. A new leader should call Claim before
// reading. The zero Fence is refused: this store is for a driver elected
// through etcd.
//
// # Costs
//
// A plan or commit costs two GETs (fence, head) and two PUTs (blob, head);
// a task end three GETs (fence, head, ends.json) and one PUT of the batch's
// ends.json, whose size grows with the ranges of the batch that report
// ends (Kinesis shards): fine for hundreds of shards, heavy for thousands.
// LatestPlan and LatestCommit cost three GETs (fence, head, blob).
package s3
