// Package efo is Kinesis enhanced fan-out for the Kinesis source: the
// registered consumer's lifecycle on the driver, and shard subscriptions
// (SubscribeToShard over HTTP/2) on the executors. It knows nothing of
// micro-batches, checkpoints or KPL aggregation; the Kinesis source
// (pkg/connectors/kinesis) imports it, never the other way round.
//
// Main types:
//
//   - Config: the job's efo options (consumerName, consumerNamePrefix,
//     consumerRefreshInterval, requireConsumerDeregistration,
//     consumerLifecycle), with Validate naming each field.
//   - Manager: one job's consumer on one stream. Start registers or reuses
//     it (job-managed) or only finds it (self-managed) and waits out
//     CREATING and DELETING with back-off and a readable Status; Await runs
//     that Start in the background for a caller that may only wait a while
//     (the driver's Plan), so giving up never cuts a slow call short; a
//     refresh goroutine checks it stays ACTIVE; Stop deregisters it only on
//     a clean stop, never on failure.
//   - Subscription: one shard through one consumer, batch by batch, kept
//     open across micro-batches and renewed by itself from the last position
//     received when the service ends it (every five minutes) or it fails.
//
// Invariants: a renewal never starts before a position already delivered,
// and records at or before it are dropped; a consumer is deregistered only
// by Manager.Stop(StopClean) with RequireConsumerDeregistration, or by an
// explicit DeregisterConsumer; every goroutine (the Manager's refresh, the
// SDK's event-stream readers, a Start run by Await) ends on Stop or Close.
//
// Package efotest holds what tests need: kinesis-mock's initial-response
// shim and an HTTP/2 server speaking the SubscribeToShard event stream.
package efo
