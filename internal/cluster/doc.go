// Package cluster is the only package that knows how drivers elect a leader
// through etcd, and how `sluice local` and tests run an etcd of their own.
//
// # Election
//
// Every driver campaigns with its advertised address. Election (etcd) and
// Standalone (one process, no etcd) both satisfy Elector, so the driver does
// not care which one it has:
//
//	candidate --Campaign--> leader --Lost / Resign--> (stop leader work, campaign again)
//
// Each Campaign grants a fresh lease (a session) and puts one key under the
// election prefix:
//
//	<prefix>/<lease id in hex> = <advertised address>
//
// The candidate whose key has the lowest create revision leads; the others
// wait for every older key to be deleted (by Resign, lease revocation or
// lease expiry). A Leadership's Fence is that key and its create revision.
// Checkpoint stores compare the key's create revision inside the same etcd
// transaction as every write, so once the key is gone (lease expired,
// resigned, deleted by an operator) every write of the deposed leader fails
// with checkpoint.ErrFenced, even writes already in flight. A key that no
// longer exists has create revision 0 and a recreated key has a newer one, so
// a fence can never become valid again.
//
// # Invariants
//
//   - At most one Leadership per election prefix is live at a time, as judged
//     by etcd; a process may still believe it leads for up to one keep-alive
//     interval after losing, which is why writes are fenced and why the driver
//     must stop leader work as soon as Lost is closed.
//   - Lost is closed exactly once, on lease expiry, key deletion, Resign or
//     Close; it is never reopened. A new term needs a new Campaign.
//   - Options are validated in New before any lease or goroutine exists.
//
// # Embedded etcd
//
// StartEmbeddedEtcd runs a single-member etcd in process on loopback, for
// `sluice local` and for tests that need a real server.
package cluster
