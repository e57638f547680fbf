// Package local keeps checkpoints in a directory, for `sluice local` and a
// standalone driver. It is single-writer by construction: Open takes an
// exclusive lock on the directory, so the Fence of each write is accepted as
// is (the zero Fence of cluster.Standalone included).
//
// # Layout
//
// Spark-like: one directory per job with its offset log, task ends and commit
// log, one file per batch (decimal batch number):
//
//	<dir>/LOCK                                flock(2)ed while a Store is open
//	<dir>/jobs/<job>.json                     JobRecord
//	<dir>/logs/<job>/offsets/<batch>          BatchPlan
//	<dir>/logs/<job>/ends/<batch>/<range>     task end
//	<dir>/logs/<job>/commits/<batch>          Commit
//
// Job logs live under logs/ rather than next to jobs/ and LOCK so that no job
// name can collide with them. Job names and range keys are escaped (see
// escape): every byte other than [A-Za-z0-9_-] becomes %XX, so names with
// '/', '#', '.' or non-ASCII bytes are single, safe path elements, and no
// escaped name starts with '.', which is kept for temporary files.
//
// # Durability
//
// Every file is written whole or not at all: a temporary file in the same
// directory is written and fsynced, renamed over the target, and the
// directory is fsynced; new directories are fsynced into their parents. A
// crash leaves either the old or the new content, plus perhaps a stray
// ".tmp-*" file, which readers ignore and Open removes.
//
// DeleteJob first renames the job's logs to a ".deleted-*" directory, then
// removes the catalog entry, then the renamed logs (Open finishes any removal
// a crash interrupted). The order matters: a crash can leave a catalog entry
// without logs (delete again), never logs without an entry that a new job of
// the same name would silently resume from.
package local
