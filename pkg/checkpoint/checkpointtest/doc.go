// Package checkpointtest is the contract every checkpoint.Store passes. Each
// implementation runs it from its own tests:
//
//	func TestContract(t *testing.T) {
//		checkpointtest.Run(t, func(t *testing.T) (checkpoint.Store, checkpoint.Fence, func()) {
//			...a fresh, empty store, a fence valid for it, and a way to depose it
//		})
//	}
//
// Beyond the interface's doc comments, the contract pins these choices:
//
//   - GetJob, LatestPlan and LatestCommit report a missing record with an
//     error matching checkpoint.ErrNotFound; TaskEnds of a batch without ends
//     is an empty map, not an error.
//   - "Latest" is the highest batch number, not the last written.
//   - Writing a batch's plan, commit or a task end again replaces it.
//   - DeleteJob removes the job's logs with it, leaves other jobs alone, and
//     deleting an unknown job succeeds (a retried delete does not fail).
//   - Job names and range keys may contain '/', '#', '%', spaces, and a job
//     whose name is a prefix of another's ("a" and "a/b") does not see its
//     records.
//   - Positions are bytes: binary values, nil and empty round-trip exactly.
//   - An empty job name or a negative batch is refused.
//   - Once deposed, every write fails with checkpoint.ErrFenced and changes
//     nothing (skipped for single-writer stores, which pass a nil depose).
package checkpointtest
