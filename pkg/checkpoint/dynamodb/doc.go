// Package dynamodb keeps checkpoints in one DynamoDB table, for a driver
// group that runs where DynamoDB is at hand (or a job that wants its
// checkpoints there). The table is created with on-demand billing when it
// does not exist. Several driver groups may share a table under different
// prefixes; one group per prefix.
//
// # Items
//
// Keys are strings: partition key pk, sort key sk. P is Config.Prefix, inc
// a job's incarnation (random, new each time a job name is created), batch
// numbers are zero-padded to 20 digits so that sort order is batch order:
//
//	pk = P+"fence"     sk = "fence"                        the store's fence {epoch, fenceKey}
//	pk = P+"jobs"      sk = <job name>                     the job's head: catalog entry, latest plan and commit pointers
//	pk = P+"log#"+inc  sk = <batch>#blob#plan#<id>#<part>  a plan (write-once; split into parts above 350 KB)
//	pk = P+"log#"+inc  sk = <batch>#blob#commit#<id>#<part> a commit (write-once)
//	pk = P+"log#"+inc  sk = <batch>#end#<range key>        a task end {end, epoch, fenceKey}
//
// Records and heads carry a version attribute (ver) and are replaced with
// PutItem conditioned on it; blobs with attribute_not_exists; task ends
// with "attribute_not_exists(pk) OR epoch < :e OR (epoch = :e AND fk =
// :k)". Every read is a consistent GetItem or Query; ListJobs is a
// consistent Query of the heads' partition. Nothing uses transactions
// (TransactWriteItems), which dynalite does not implement.
//
// # Fencing
//
// A write is accepted only while the writer's Fence (the etcd election
// key and its create revision) is at least as new as any that wrote
// before; otherwise it fails with checkpoint.ErrFenced. The protocol (a
// store-wide fence item raised by every new leader, one head item per job
// changed only by a conditional write that requires an epoch no newer than
// the writer's, write-once log items that a head points to, and readers
// that seal a head with the newest epoch before using it) is described in
// full, with what a deposed leader can still do in its last moments and why
// that cannot corrupt the log, in pkg/checkpoint/internal/casstore. A new
// leader should call Claim before reading. The zero Fence is refused: this
// store is for a driver elected through etcd.
//
// # Costs
//
// A plan or commit costs a consistent read of the fence and of the head,
// one write of the log item and one of the head; a task end a read of each
// and one conditional write. Heads of all jobs share one partition key,
// which DynamoDB serves at up to 1,000 writes a second before it splits it.
package dynamodb
