// Package scheduler decides, without doing any I/O, which executor runs which
// task and what happens to each attempt: it is the part of the driver that
// can be tested exhaustively.
//
// Assign places tasks on executor slots, preferring the executor that read a
// partition last (its reader is warm) and otherwise the least loaded one.
//
// Batch tracks one batch's tasks through their attempts:
//
//	pending ──dispatch──▶ running ──success──▶ done
//	   ▲                     │
//	   └──backoff elapsed────┘ failure / executor lost / timeout
//	                         │ (attempts exhausted or permanent error)
//	                         ▼
//	                      failed (the batch fails)
//
// Invariants, checked by property tests: a task is done at most once; only
// the result of a live attempt counts (a result from an attempt that was
// retried, cancelled or superseded is refused as stale); the batch completes
// only when every task is done; a task never has two live attempts.
package scheduler
